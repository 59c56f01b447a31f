//! Accounts and sessions over real HTTP against a real Redis.

mod common;
use common::*;
use redis::AsyncCommands;

#[tokio::test]
async fn register_me_logout() {
    let redis = TestRedis::start().await;
    let server = serve(config(&redis)).await;
    let mut c = Client::new(&server);

    assert_eq!(c.get("/api/me").await.status, 401);
    let user = c.register("alice").await;
    assert_eq!(user.username, "alice");
    let me = c.get("/api/me").await;
    assert_eq!(me.status, 200);
    assert_eq!(me.body["id"], user.id);
    assert_eq!(me.body["username"], "alice");

    let token = c.cookie.clone().unwrap();
    let out = c.post("/api/logout", &[]).await;
    assert_eq!(out.status, 200);
    let cleared = out.headers.get("set-cookie").unwrap().to_str().unwrap();
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    // The old token is dead server-side, not just forgotten by the browser.
    c.cookie = Some(token);
    let me = c.get("/api/me").await;
    assert_eq!(me.status, 401);
    assert_eq!(me.body["code"], "unauthorized");
    server.shutdown().await;
    redis.stop().await;
}

#[tokio::test]
async fn session_cookie_is_httponly_and_lax() {
    let redis = TestRedis::start().await;
    let server = serve(config(&redis)).await;
    let mut c = Client::new(&server);
    let r = c
        .post(
            "/api/register",
            &[("username", "bob"), ("password", "password123")],
        )
        .await;
    let cookie = r.headers.get("set-cookie").unwrap().to_str().unwrap();
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Lax"), "{cookie}");
    assert!(cookie.contains("Path=/"), "{cookie}");
    // Redis holds a hash of the token, never the token itself.
    let mut con = redis.con().await;
    let keys: Vec<String> = con.keys("session:*").await.unwrap();
    assert_eq!(keys.len(), 1);
    assert!(!keys[0].contains(c.cookie.as_deref().unwrap()));
    server.shutdown().await;
    redis.stop().await;
}

#[tokio::test]
async fn wrong_password_and_unknown_user_look_the_same() {
    let redis = TestRedis::start().await;
    let server = serve(config(&redis)).await;
    let mut c = Client::new(&server);
    c.register("carol").await;
    let mut other = Client::new(&server);
    let wrong = other.login("carol", "nope-nope-nope").await;
    let unknown = other.login("nobody", "nope-nope-nope").await;
    assert_eq!(wrong.status, 401);
    assert_eq!(unknown.status, 401);
    assert_eq!(wrong.body, unknown.body);
    assert!(other.cookie.is_none());
    // Login never registers.
    assert_eq!(other.get("/api/users?q=nobody").await.status, 401);
    let ok = other.login("CAROL", "password123").await;
    assert_eq!(ok.status, 200, "names are case-insensitive: {:?}", ok.body);
    assert_eq!(ok.body["username"], "carol");
    server.shutdown().await;
    redis.stop().await;
}

#[tokio::test]
async fn validation_errors_are_specific_400s_and_names_are_unique() {
    let redis = TestRedis::start().await;
    let server = serve(config(&redis)).await;
    let mut c = Client::new(&server);
    for (name, pw, needle) in [
        ("ab", "password123", "3 to 32"),
        ("bad name", "password123", "letters"),
        ("<b>x</b>", "password123", "letters"),
        ("dave", "short", "at least 8"),
    ] {
        let r = c
            .post("/api/register", &[("username", name), ("password", pw)])
            .await;
        assert_eq!(r.status, 400, "{name}/{pw}: {:?}", r.body);
        assert_eq!(r.body["code"], "bad_request");
        assert!(
            r.body["message"].as_str().unwrap().contains(needle),
            "{:?}",
            r.body
        );
    }
    c.register("Dave").await;
    let mut d = Client::new(&server);
    let r = d
        .post(
            "/api/register",
            &[("username", "dAVE"), ("password", "password123")],
        )
        .await;
    assert_eq!(r.status, 409);
    assert_eq!(r.body["code"], "conflict");
    // Missing arguments are a 400 too, not a 500.
    let r = d.post("/api/register", &[("username", "erin")]).await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    server.shutdown().await;
    redis.stop().await;
}

#[tokio::test]
async fn concurrent_registrations_of_one_name_make_one_user() {
    let redis = TestRedis::start().await;
    let server = serve(config(&redis)).await;
    let mut tasks = Vec::new();
    for _ in 0..12 {
        let mut c = Client::new(&server);
        tasks.push(tokio::spawn(async move {
            c.post(
                "/api/register",
                &[("username", "frank"), ("password", "password123")],
            )
            .await
            .status
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 409),
        "{statuses:?}"
    );
    let mut con = redis.con().await;
    let total: u64 = con.get("total_users").await.unwrap();
    assert_eq!(total, 1);
    server.shutdown().await;
    redis.stop().await;
}

#[tokio::test]
async fn users_written_by_the_original_demo_sign_in() {
    let redis = TestRedis::start().await;
    let mut con = redis.con().await;
    // Exactly what the Flask demo writes (its bcrypt hashes are $2b$).
    let h2b = bcrypt::hash("secret-pass", 4).unwrap();
    let h2a = bcrypt::hash_with_result("other-pass", 4)
        .unwrap()
        .format_for_version(bcrypt::Version::TwoA);
    assert!(h2b.starts_with("$2b$") && h2a.starts_with("$2a$"));
    let _: () = redis::pipe()
        .set("total_users", 2)
        .hset_multiple(
            "user:1",
            &[("username", "Nick"), ("password", h2b.as_str())],
        )
        .set("username:Nick", "user:1")
        .sadd("user:1:rooms", "0")
        .hset_multiple("user:2", &[("username", "Old"), ("password", h2a.as_str())])
        .set("username:Old", "user:2")
        .sadd("user:2:rooms", "0")
        .query_async(&mut con)
        .await
        .unwrap();
    let server = serve(config(&redis)).await;
    let mut c = Client::new(&server);
    let r = c.login("Nick", "secret-pass").await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["id"], 1);
    let r = c.login("old", "other-pass").await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    // The backfill made their names unique case-insensitively.
    let r = c
        .post(
            "/api/register",
            &[("username", "NICK"), ("password", "password123")],
        )
        .await;
    assert_eq!(r.status, 409);
    // And new ids continue after theirs.
    let user = Client::new(&server).register("newbie").await;
    assert_eq!(user.id, 3);
    server.shutdown().await;
    redis.stop().await;
}

#[tokio::test]
async fn expired_sessions_are_refused() {
    let redis = TestRedis::start().await;
    let server = serve(config(&redis)).await;
    let mut c = Client::new(&server);
    c.register("grace").await;
    let mut con = redis.con().await;
    let keys: Vec<String> = con.keys("session:*").await.unwrap();
    let ttl: i64 = con.ttl(&keys[0]).await.unwrap();
    assert!(ttl > 3000, "sliding TTL set from the config: {ttl}");
    let _: () = con.pexpire(&keys[0], 1).await.unwrap();
    common::eventually("the session key to expire", || {
        let mut con = con.clone();
        let key = keys[0].clone();
        async move { !con.exists::<_, bool>(key).await.unwrap() }
    })
    .await;
    assert_eq!(c.get("/api/me").await.status, 401);
    server.shutdown().await;
    redis.stop().await;
}

#[tokio::test]
async fn sign_in_rotates_the_session_id() {
    let redis = TestRedis::start().await;
    let server = serve(config(&redis)).await;
    let mut c = Client::new(&server);
    c.register("heidi").await;
    let first = c.cookie.clone().unwrap();
    assert_eq!(c.login("heidi", "password123").await.status, 200);
    let second = c.cookie.clone().unwrap();
    assert_ne!(first, second);
    c.cookie = Some(first);
    assert_eq!(c.get("/api/me").await.status, 401, "the old id is gone");
    server.shutdown().await;
    redis.stop().await;
}

#[tokio::test]
async fn cross_site_posts_are_refused() {
    let redis = TestRedis::start().await;
    let server = serve(config(&redis)).await;
    let c = Client::new(&server);
    let resp = c
        .http
        .post(format!("{}/api/register", c.base))
        .header("origin", "https://evil.example")
        .header("content-type", "application/x-www-form-urlencoded")
        .body("username=ivan&password=password123")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    let resp = c
        .http
        .post(format!("{}/api/register", c.base))
        .header("sec-fetch-site", "cross-site")
        .header("content-type", "application/x-www-form-urlencoded")
        .body("username=ivan&password=password123")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    let own = format!("http://{}", server.addr);
    let resp = c
        .http
        .post(format!("{}/api/register", c.base))
        .header("origin", own)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("username=ivan&password=password123")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    // Oversized bodies get 413 before any work is done.
    let resp = c
        .http
        .post(format!("{}/api/login", c.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("username=x&password={}", "a".repeat(70_000)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 413);
    server.shutdown().await;
    redis.stop().await;
}

#[tokio::test]
async fn plain_form_posts_redirect() {
    let redis = TestRedis::start().await;
    let server = serve(config(&redis)).await;
    let mut c = Client::new(&server);
    c.register("judy").await;
    let referer = format!("http://{}/login", server.addr);
    // What a browser without JavaScript sends for the sign-in form.
    let form_post = |pw: &str| {
        c.http
            .post(format!("{}/api/login", c.base))
            .header("accept", "text/html")
            .header("referer", &referer)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("username=judy&password={pw}"))
            .send()
    };
    let ok = form_post("password123").await.unwrap();
    assert_eq!(ok.status().as_u16(), 302);
    assert_eq!(ok.headers()["location"], "/");
    assert!(ok.headers().get("set-cookie").is_some());
    let bad = form_post("wrong-password").await.unwrap();
    assert_eq!(bad.status().as_u16(), 302);
    let location = bad.headers()["location"].to_str().unwrap();
    assert!(
        location.starts_with(&referer) && location.contains("__err="),
        "{location}"
    );
    server.shutdown().await;
    redis.stop().await;
}

#[tokio::test]
async fn healthz_is_liveness_and_readyz_reflects_redis() {
    let redis = TestRedis::start().await;
    let server = serve(config(&redis)).await;
    let mut c = Client::new(&server);
    let probe = c.clone();
    eventually("ready once subscribed", || {
        let mut c = probe.clone();
        async move { c.get("/readyz").await.status == 200 }
    })
    .await;
    let h = c.get("/readyz").await;
    assert_eq!(h.status, 200, "{:?}", h.body);
    assert_eq!(h.body["redis"], true);
    assert_eq!(h.body["pubsub"], true);
    assert_eq!(c.get("/healthz").await.status, 200);
    redis.stop().await;
    let h = c.get("/readyz").await;
    assert_eq!(h.status, 503);
    assert_eq!(h.body["status"], "unavailable");
    assert_eq!(h.body["redis"], false);
    // Alive all the same: restarting the process would not bring Redis back.
    let h = c.get("/healthz").await;
    assert_eq!(h.status, 200);
    assert_eq!(h.body["status"], "ok");
    // A page that needs Redis fails with a clear error, not a panic.
    let r = c
        .post(
            "/api/login",
            &[("username", "kim"), ("password", "password123")],
        )
        .await;
    assert_eq!(r.status, 503, "{:?}", r.body);
    server.shutdown().await;
}

#[tokio::test]
async fn sign_out_everywhere_and_password_change_end_other_sessions() {
    let redis = TestRedis::start().await;
    let server = serve(config(&redis)).await;
    let mut laptop = Client::new(&server);
    laptop.register("kate").await;
    let mut phone = Client::new(&server);
    assert_eq!(phone.login("kate", "password123").await.status, 200);
    let mut tablet = Client::new(&server);
    assert_eq!(tablet.login("kate", "password123").await.status, 200);

    let r = laptop
        .post(
            "/api/change_password",
            &[
                ("current_password", "wrong-one"),
                ("new_password", "new-password-1"),
            ],
        )
        .await;
    assert_eq!(r.status, 403, "{:?}", r.body);
    let r = laptop
        .post(
            "/api/change_password",
            &[
                ("current_password", "password123"),
                ("new_password", "short"),
            ],
        )
        .await;
    assert_eq!(r.status, 400);
    let r = laptop
        .post(
            "/api/change_password",
            &[
                ("current_password", "password123"),
                ("new_password", "new-password-1"),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        laptop.get("/api/me").await.status,
        200,
        "this session stays"
    );
    assert_eq!(phone.get("/api/me").await.status, 401, "others end");
    assert_eq!(tablet.get("/api/me").await.status, 401);
    let mut fresh = Client::new(&server);
    assert_eq!(fresh.login("kate", "password123").await.status, 401);
    assert_eq!(fresh.login("kate", "new-password-1").await.status, 200);

    let r = laptop.post("/api/logout_all", &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(laptop.get("/api/me").await.status, 401);
    assert_eq!(fresh.get("/api/me").await.status, 401);
    server.shutdown().await;
    redis.stop().await;
}

#[tokio::test]
async fn repeated_wrong_passwords_slow_down_sign_in() {
    let redis = TestRedis::start().await;
    let server = serve(config(&redis)).await;
    let mut c = Client::new(&server);
    c.register("liam").await;
    let mut attacker = Client::new(&server);
    for _ in 0..redis_chat::server::limits::FREE_FAILURES {
        assert_eq!(attacker.login("liam", "guess-guess").await.status, 401);
    }
    let r = attacker.login("liam", "guess-guess").await;
    assert_eq!(r.status, 429, "{:?}", r.body);
    assert_eq!(r.body["code"], "rate_limited");
    assert!(r.body["message"].as_str().unwrap().contains("try again in"));
    // Even the right password waits, from this address (others: see
    // tests/sign_in_limits.rs).
    assert_eq!(attacker.login("LIAM", "password123").await.status, 429);
    server.shutdown().await;
    redis.stop().await;
}

#[tokio::test]
async fn pages_render_with_a_nonce_csp_and_security_headers() {
    let redis = TestRedis::start().await;
    let server = serve(config(&redis)).await;
    let mut c = Client::new(&server);
    let login = c.get("/login").await;
    assert_eq!(login.status, 200);
    let html = login.body.as_str().unwrap().to_string();
    assert!(html.contains(r#"id="login-form""#), "server-rendered form");
    let csp = login.headers["content-security-policy"].to_str().unwrap();
    let nonce = csp
        .split("'nonce-")
        .nth(1)
        .and_then(|rest| rest.split('\'').next())
        .expect("a script nonce");
    assert!(!csp.contains("script-src 'unsafe-inline'") && csp.contains("frame-ancestors 'none'"));
    let scripts: Vec<&str> = html
        .match_indices("<script")
        .map(|(i, _)| &html[i..i + 120.min(html.len() - i)])
        .collect();
    assert!(!scripts.is_empty());
    for s in scripts {
        assert!(
            s.contains(&format!("nonce=\"{nonce}\"")),
            "script without the nonce: {s}"
        );
    }
    assert_eq!(login.headers["x-content-type-options"], "nosniff");
    assert!(login.headers.get("referrer-policy").is_some());
    // Each response gets its own nonce.
    let again = c.get("/login").await;
    assert_ne!(
        again.headers["content-security-policy"],
        login.headers["content-security-policy"]
    );

    // Signed out, the chat page sends you to sign in; unknown pages are 404.
    let chat = c
        .http
        .get(format!("{}/", c.base))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(chat.status().as_u16(), 302);
    assert_eq!(chat.headers()["location"], "/login");
    assert_eq!(c.get("/no-such-page").await.status, 404);
    // Signed in, the chat page renders with the user's name.
    c.register("mallory").await;
    let chat = c.get("/").await;
    assert_eq!(chat.status, 200);
    assert!(chat.body.as_str().unwrap().contains("mallory"));
    server.shutdown().await;
    redis.stop().await;
}
