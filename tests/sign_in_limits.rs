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
