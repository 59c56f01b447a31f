//! `GET /metrics` (its own test binary: the metrics are the process's, and
//! this is the only server in it). Scrape, act, scrape again: each counter
//! moved by exactly what was done; the endpoint is closed without the
//! token on the main port and open on `METRICS_ADDR`.

mod common;
use common::*;
use std::collections::HashMap;

const TOKEN: &str = "metrics-token-0123456789";

/// `name{labels}` → value, from OpenMetrics text.
fn parse(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            Some((key.to_string(), value.parse().ok()?))
        })
        .collect()
}

async fn scrape(addr: std::net::SocketAddr) -> HashMap<String, f64> {
    let r = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/openmetrics-text"));
    parse(&r.text().await.unwrap())
}

fn moved(before: &HashMap<String, f64>, after: &HashMap<String, f64>, key: &str) -> f64 {
    after.get(key).copied().unwrap_or(0.0) - before.get(key).copied().unwrap_or(0.0)
}

#[tokio::test]
async fn counters_move_by_what_was_done_and_the_endpoint_is_closed_by_default() {
    let redis = TestRedis::start().await;
    let mut cfg = config(&redis);
    cfg.metrics_token = Some(TOKEN.into());
    cfg.metrics_addr = Some("127.0.0.1:0".parse().unwrap());
    cfg.message_rate = redis_chat::server::limits::MessageRate::parse("3/60").unwrap();
    let server = serve(cfg).await;
    let metrics_at = server.metrics_addr.expect("a metrics listener");

    // On the main port: the token, exactly.
    let mut anon = Client::new(&server);
    assert_eq!(anon.get("/metrics").await.status, 401);
    let r = anon
        .http
        .get(format!("{}/metrics", anon.base))
        .header("authorization", format!("Bearer {TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("redis_chat_sockets_open"));

    let mut alice = Client::new(&server);
    alice.register("alice").await;
    let mut bob = Client::new(&server);
    bob.register("bob").await;
    let mut a = alice.socket().await;
    let mut b = bob.socket().await;
    let before = scrape(metrics_at).await;
    assert_eq!(before["redis_chat_sockets_open"], 2.0);
    assert_eq!(before["redis_chat_users_online"], 2.0);

    // Three messages are accepted, the fourth is over the limit (3/60).
    for i in 0..3 {
        a.say("0", &format!("m{i}"), &format!("n{i}")).await;
        a.wait_message(&format!("m{i}")).await;
        b.wait_message(&format!("m{i}")).await;
    }
    a.say("0", "too many", "n3").await;
    assert_eq!(a.wait_error().await.code, "rate_limited");
    // Sign-ins: one right, two wrong.
    assert_eq!(bob.login("bob", "password123").await.status, 200);
    for _ in 0..2 {
        assert_eq!(bob.login("bob", "wrong-password").await.status, 401);
    }
    // History: a first read (miss) and the same page again (hit).
    let page = format!(
        "/api/messages?room_id=0&before={}&limit=10",
        "9999999999999-0"
    );
    assert_eq!(alice.get(&page).await.status, 200);
    assert_eq!(alice.get(&page).await.status, 200);

    let after = scrape(metrics_at).await;
    let accepted = r#"redis_chat_messages_total{result="accepted",reason=""}"#;
    let limited = r#"redis_chat_messages_total{result="refused",reason="rate_limited"}"#;
    assert_eq!(moved(&before, &after, accepted), 3.0);
    assert_eq!(moved(&before, &after, limited), 1.0);
    // Each accepted message reached both sockets.
    assert_eq!(
        moved(&before, &after, "redis_chat_frames_delivered_total"),
        6.0
    );
    // One observation per message batch and writer that wrote it.
    assert!(moved(&before, &after, "redis_chat_fanout_seconds_count") >= 3.0);
    assert_eq!(
        moved(&before, &after, r#"redis_chat_sign_ins_total{kind="ok"}"#),
        1.0
    );
    assert_eq!(
        moved(
            &before,
            &after,
            r#"redis_chat_sign_ins_total{kind="failed"}"#
        ),
        2.0
    );
    assert_eq!(
        moved(
            &before,
            &after,
            r#"redis_chat_history_requests_total{kind="miss"}"#
        ),
        1.0
    );
    assert_eq!(
        moved(
            &before,
            &after,
            r#"redis_chat_history_requests_total{kind="hit"}"#
        ),
        1.0
    );
    assert!(moved(&before, &after, "redis_chat_redis_command_seconds_count") >= 8.0);
    assert_eq!(moved(&before, &after, "redis_chat_redis_errors_total"), 0.0);
    let logins = r#"redis_chat_http_requests_total{route="/api/login",status="401"}"#;
    assert_eq!(moved(&before, &after, logins), 2.0);
    // A path nobody routes is counted under one name, never its own.
    assert_eq!(anon.get("/no/such/page/12345").await.status, 404);
    let later = scrape(metrics_at).await;
    assert!(later.keys().all(|k| !k.contains("12345")));
    assert_eq!(
        moved(
            &after,
            &later,
            r#"redis_chat_http_requests_total{route="other",status="404"}"#
        ),
        1.0
    );

    server.shutdown().await;
    redis.stop().await;
}

#[tokio::test]
async fn without_a_token_metrics_are_not_on_the_main_port() {
    let redis = TestRedis::start().await;
    let server = serve(config(&redis)).await;
    assert!(server.metrics_addr.is_none());
    let mut c = Client::new(&server);
    let r = c
        .http
        .get(format!("{}/metrics", c.base))
        .header("authorization", "Bearer anything-at-all-12345")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(c.get("/metrics").await.status, 404);
    server.shutdown().await;
    redis.stop().await;
}
