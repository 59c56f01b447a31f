//! Sign-in and registration limits over real HTTP against a real Redis:
//! which client address counts behind a proxy (`TRUST_PROXY`), IPv6 /64
//! budgets, the per-account policy (an attacker cannot lock the owner
//! out, parallel guesses are counted before bcrypt), the registration
//! limit, and the 72-byte password bound.
//!
//! The tests connect over loopback, so the server's peer is 127.0.0.1: the
//! one trusted hop. `X-Forwarded-For` then plays the proxy's part: its
//! right-most entry is what the proxy appended, the rest is what the
//! client wrote.

mod common;
use common::*;
use redis_chat::server::config::Config;
use redis_chat::server::limits::{FREE_FAILURES, LOGIN_PER_ADDRESS};

/// Test settings with `TRUST_PROXY` parsed as the server would parse it.
fn behind_proxy(redis: &TestRedis, trust_proxy: &str) -> Config {
    let mut c = config(redis);
    c.trust_proxy = Config::from_lookup(|k| (k == "TRUST_PROXY").then(|| trust_proxy.to_string()))
        .expect("valid TRUST_PROXY")
        .trust_proxy;
    c
}

/// A sign-in attempt whose proxy header is `xff`.
async fn login_via(c: &mut Client, xff: &str, name: &str, password: &str) -> Reply {
    c.post_with_headers(
        "/api/login",
        &[("username", name), ("password", password)],
        &[("x-forwarded-for", xff)],
    )
    .await
}

/// A made-up address for the `i`-th request (scattered, not sequential).
fn made_up(i: u32) -> String {
    let x = i.wrapping_mul(2_654_435_761).rotate_left(7) ^ 0x5bd1_e995;
    let [a, b, c, d] = x.to_be_bytes();
    format!("{}.{b}.{c}.{d}", a.clamp(1, 223))
}

/// Tried today: with `TRUST_PROXY=true`, 80 sign-ins whose `X-Forwarded-For`
/// starts with a made-up address were never limited. The address that
/// counts is the one the trusted proxy appended.
#[tokio::test]
async fn a_made_up_forwarded_address_does_not_escape_the_address_limit() {
    let redis = TestRedis::start().await;
    let server = serve(behind_proxy(&redis, "true")).await;
    let mut c = Client::new(&server);
    let mut statuses = Vec::new();
    for i in 0..80 {
        // Distinct unknown names: only the address limit can refuse these.
        let xff = format!("{}, 203.0.113.7", made_up(i));
        let r = login_via(&mut c, &xff, &format!("ghost{i}"), "wrong-password").await;
        statuses.push(r.status);
    }
    let allowed = LOGIN_PER_ADDRESS as usize;
    assert!(
        statuses[..allowed].iter().all(|s| *s == 401),
        "the first {allowed} are plain wrong passwords: {statuses:?}"
    );
    assert!(
        statuses[allowed..].iter().all(|s| *s == 429),
        "past {allowed} attempts from 203.0.113.7 everything is refused: {statuses:?}"
    );
    server.shutdown().await;
    redis.stop().await;
}

/// Tried today: after five wrong guesses for Joe, Joe's right password got
/// 429. Wrong guesses slow down that account from that address only.
#[tokio::test]
async fn wrong_guesses_from_one_address_do_not_lock_the_owner_out() {
    let redis = TestRedis::start().await;
    let server = serve(behind_proxy(&redis, "true")).await;
    let mut joe = Client::new(&server);
    joe.register("joe").await;

    let mut attacker = Client::new(&server);
    let attacker_at = "198.51.100.66";
    for _ in 0..FREE_FAILURES {
        let r = login_via(&mut attacker, attacker_at, "joe", "guess-guess").await;
        assert_eq!(r.status, 401, "{:?}", r.body);
    }
    let r = login_via(&mut attacker, attacker_at, "joe", "guess-guess").await;
    assert_eq!(r.status, 429, "{:?}", r.body);

    let mut owner = Client::new(&server);
    let r = login_via(&mut owner, "203.0.113.20", "joe", "password123").await;
    assert_eq!(
        r.status, 200,
        "the owner signs in from elsewhere: {:?}",
        r.body
    );
    // The attacker's address still waits, even with the right password.
    let r = login_via(&mut attacker, attacker_at, "joe", "password123").await;
    assert_eq!(r.status, 429, "{:?}", r.body);
    server.shutdown().await;
    redis.stop().await;
}

/// A client that writes `X-Forwarded-For` through one trusted hop can
/// neither spend another address's budget nor escape its own by naming
/// another address.
#[tokio::test]
async fn a_written_forwarded_for_neither_spends_nor_resets_another_budget() {
    let redis = TestRedis::start().await;
    let server = serve(behind_proxy(&redis, "1")).await;
    let mut c = Client::new(&server);
    let (a, b) = ("203.0.113.10", "203.0.113.20");
    let mut attempt = 0;
    let mut try_from = async |c: &mut Client, xff: &str| {
        attempt += 1;
        login_via(c, xff, &format!("ghost{attempt}"), "wrong-password")
            .await
            .status
    };

    // B, pretending to be A, spends only its own budget.
    for _ in 0..LOGIN_PER_ADDRESS / 2 {
        assert_eq!(try_from(&mut c, &format!("{a}, {b}")).await, 401);
    }
    // So A still has all of its own.
    for _ in 0..LOGIN_PER_ADDRESS {
        assert_eq!(try_from(&mut c, a).await, 401);
    }
    assert_eq!(try_from(&mut c, a).await, 429);
    // A cannot get out by naming B (or anything) to the left.
    assert_eq!(try_from(&mut c, &format!("{b}, {a}")).await, 429);
    assert_eq!(try_from(&mut c, &format!("{b}, 10.0.0.1, {a}")).await, 429);
    // B is not limited by A's exhaustion, whatever it writes.
    assert_eq!(try_from(&mut c, &format!("{a}, {b}")).await, 401);
    assert_eq!(try_from(&mut c, b).await, 401);
    server.shutdown().await;
    redis.stop().await;
}

/// Guesses sent at once are counted before bcrypt: only the free ones
/// reach the password check, the rest are refused at once.
#[tokio::test]
async fn parallel_guesses_do_not_all_pass_the_check() {
    let redis = TestRedis::start().await;
    let server = serve(behind_proxy(&redis, "true")).await;
    Client::new(&server).register("joe").await;
    let client = Client::new(&server);
    let guesses = (0..20).map(|i| {
        let mut c = client.clone();
        async move {
            login_via(&mut c, "198.51.100.5", "joe", &format!("guess-{i:04}"))
                .await
                .status
        }
    });
    let statuses = futures::future::join_all(guesses).await;
    let checked = statuses.iter().filter(|s| **s == 401).count();
    let refused = statuses.iter().filter(|s| **s == 429).count();
    // Each attempt is counted atomically as it starts, so exactly the free
    // attempts are let through, however the requests interleave.
    assert_eq!(
        (checked, refused),
        (FREE_FAILURES as usize, 20 - FREE_FAILURES as usize),
        "{statuses:?}"
    );
    // The owner, elsewhere, is not affected.
    let r = login_via(
        &mut Client::new(&server),
        "198.51.100.6",
        "joe",
        "password123",
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    server.shutdown().await;
    redis.stop().await;
}

/// IPv6 clients are limited per /64: two addresses of one /64 share a
/// budget (for the address and for an account), another /64 has its own.
#[tokio::test]
async fn ipv6_addresses_of_one_64_share_a_budget() {
    let redis = TestRedis::start().await;
    let server = serve(behind_proxy(&redis, "true")).await;
    Client::new(&server).register("joe").await;
    let mut c = Client::new(&server);
    let first = "2001:db8:1:2::1";
    let second = "[2001:db8:1:2:ffff:ffff:ffff:ffff]:5123";
    let other = "2001:db8:1:3::1";

    // An account: wrong guesses from one address of the /64 make the other
    // wait too; another /64 signs in.
    for _ in 0..FREE_FAILURES {
        assert_eq!(
            login_via(&mut c, first, "joe", "guess-guess").await.status,
            401
        );
    }
    assert_eq!(
        login_via(&mut c, second, "joe", "password123").await.status,
        429
    );
    assert_eq!(
        login_via(&mut c, other, "joe", "password123").await.status,
        200
    );

    // The address budget: half from each address, then both are refused.
    let half = (LOGIN_PER_ADDRESS - FREE_FAILURES - 1) / 2;
    for (i, from) in [first, second].into_iter().enumerate() {
        for j in 0..half {
            let name = format!("ghost{i}-{j}");
            assert_eq!(
                login_via(&mut c, from, &name, "wrong-password")
                    .await
                    .status,
                401
            );
        }
    }
    let rest = LOGIN_PER_ADDRESS - FREE_FAILURES - 1 - 2 * half;
    for j in 0..rest {
        let name = format!("ghost-rest-{j}");
        assert_eq!(
            login_via(&mut c, first, &name, "wrong-password")
                .await
                .status,
            401
        );
    }
    for from in [first, second, "2001:db8:1:2:abcd::9"] {
        let r = login_via(&mut c, from, "ghost-late", "wrong-password").await;
        assert_eq!(r.status, 429, "{from}: {:?}", r.body);
    }
    let r = login_via(&mut c, other, "ghost-late", "wrong-password").await;
    assert_eq!(r.status, 401, "{:?}", r.body);
    server.shutdown().await;
    redis.stop().await;
}

/// `REGISTER_RATE_LIMIT` (default 10 per hour): the 11th registration from
/// one address is refused; another address still registers.
#[tokio::test]
async fn registrations_per_address_are_limited() {
    let redis = TestRedis::start().await;
    let mut config = behind_proxy(&redis, "true");
    config.register_rate = Config::from_lookup(|_| None)
        .expect("defaults")
        .register_rate;
    let server = serve(config).await;
    let mut c = Client::new(&server);
    let register_via = async |c: &mut Client, xff: &str, name: &str| {
        c.post_with_headers(
            "/api/register",
            &[("username", name), ("password", "password123")],
            &[("x-forwarded-for", xff)],
        )
        .await
    };
    for i in 0..10 {
        let r = register_via(&mut c, "198.51.100.7", &format!("user{i}")).await;
        assert_eq!(r.status, 200, "registration {i}: {:?}", r.body);
    }
    let r = register_via(&mut c, "198.51.100.7", "user10").await;
    assert_eq!(r.status, 429, "{:?}", r.body);
    assert_eq!(r.body["code"], "rate_limited");
    let message = r.body["message"].as_str().unwrap();
    assert!(
        message.contains("new accounts from your address") && message.contains("try again in"),
        "{message}"
    );
    let r = register_via(&mut c, "198.51.100.8", "user10").await;
    assert_eq!(r.status, 200, "another address: {:?}", r.body);
    server.shutdown().await;
    redis.stop().await;
}

/// bcrypt ignores every byte after the 72nd: longer passwords are refused
/// (400) wherever one is set, and at sign-in; 72 bytes work.
#[tokio::test]
async fn passwords_are_at_most_72_bytes() {
    use redis_chat::protocol::PASSWORD_TOO_LONG;
    let redis = TestRedis::start().await;
    let server = serve(config(&redis)).await;
    let mut c = Client::new(&server);
    let bytes_72 = "x".repeat(72);
    let bytes_73 = "x".repeat(73);

    let r = c
        .post(
            "/api/register",
            &[("username", "longpw"), ("password", &bytes_73)],
        )
        .await;
    assert_eq!((r.status, &r.body["code"]), (400, &"bad_request".into()));
    assert_eq!(r.body["message"], PASSWORD_TOO_LONG);
    let r = c
        .post(
            "/api/register",
            &[("username", "longpw"), ("password", &bytes_72)],
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);

    // At sign-in a longer one is a clear 400 too (it could match nothing).
    let mut other = Client::new(&server);
    assert_eq!(other.login("longpw", &bytes_72).await.status, 200);
    let r = other.login("longpw", &bytes_73).await;
    assert_eq!(
        (r.status, &r.body["message"]),
        (400, &PASSWORD_TOO_LONG.into())
    );

    // Changing it: 36 two-byte letters are 72 bytes, one more letter is 73.
    let accented_72 = "é".repeat(36);
    let accented_73 = format!("{accented_72}x");
    let change = |new: &str| {
        [
            ("current_password", bytes_72.clone()),
            ("new_password", new.to_string()),
        ]
    };
    let form = change(&accented_73);
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let r = c.post("/api/change_password", &form).await;
    assert_eq!(
        (r.status, &r.body["message"]),
        (400, &PASSWORD_TOO_LONG.into())
    );
    let form = change(&accented_72);
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let r = c.post("/api/change_password", &form).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        Client::new(&server)
            .login("longpw", &accented_72)
            .await
            .status,
        200
    );
    server.shutdown().await;
    redis.stop().await;
}
