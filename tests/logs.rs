//! The server's log as an operator ships it (`LOG_FORMAT=json`): one JSON
//! object per line with time, level, target and message; the lines of one
//! request carry its id (also in `X-Request-Id`), those of a WebSocket its
//! connection id; and no password, session cookie or message text appears,
//! at the debug level of the server's own code either.

mod common;
use common::process::ServerProcess;
use common::*;
use serde_json::Value;

#[tokio::test]
async fn json_lines_with_request_and_connection_ids_and_no_secrets() {
    let redis = TestRedis::start().await;
    let env = vec![
        ("REDIS_URL", redis.url()),
        ("PORT", "0".into()),
        ("ADDR", "127.0.0.1".into()),
        ("DEMO_DATA", "false".into()),
        ("BCRYPT_COST", "4".into()),
        ("LOG_FORMAT", "json".into()),
        ("RUST_LOG", "redis_chat=debug,info".into()),
    ];
    let server = ServerProcess::start(&env, redis.dir.path()).await;
    server.wait_ready().await;
    let addr = server.url.trim_start_matches("http://").parse().unwrap();

    const PASSWORD: &str = "Pw-never-logged-7391";
    const TEXT: &str = "text-never-logged-4417";
    let mut alice = Client::for_addr(addr);
    let r = alice
        .post(
            "/api/register",
            &[("username", "alice"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let rid = r.headers["x-request-id"].to_str().unwrap().to_string();
    let wrong = alice
        .post(
            "/api/login",
            &[("username", "alice"), ("password", "Wrong-guess-2288")],
        )
        .await;
    assert_eq!(wrong.status, 401);
    let r = alice
        .post(
            "/api/login",
            &[("username", "alice"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(r.status, 200);
    let cookie = alice.cookie.clone().unwrap();
    let mut ws = alice.socket().await;
    ws.say("0", TEXT, "n1").await;
    ws.wait_message(TEXT).await;
    ws.send_raw("{not json".into()).await;
    ws.wait_error().await;
    ws.close().await;
    let r = alice.get(&format!("/api/users?q={TEXT}")).await;
    assert_eq!(r.status, 200);

    let mut server = server;
    // The socket's close is logged after the client's close frame: wait for it.
    server
        .wait_line(|l| l.contains("\"conn\"") && l.contains("closed"))
        .await;
    let log = server.stop_with_log().await;

    let mut json_lines = 0;
    let mut request_line = false;
    let mut socket_lines = 0;
    for line in &log {
        for secret in [PASSWORD, "Wrong-guess-2288", TEXT, cookie.as_str()] {
            assert!(!line.contains(secret), "the log shows {secret:?}: {line}");
        }
        if line.starts_with("listening on ") {
            continue;
        }
        let v: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        json_lines += 1;
        for field in ["timestamp", "level", "target", "message"] {
            assert!(v.get(field).is_some(), "no {field}: {line}");
        }
        let spans = v["spans"].as_array().cloned().unwrap_or_default();
        if spans.iter().any(|s| s["rid"] == rid.as_str()) && v["path"] == "/api/register" {
            request_line = true;
            assert_eq!(v["status"], 200);
        }
        if spans
            .iter()
            .any(|s| s["name"] == "ws" && s["conn"].is_string())
        {
            socket_lines += 1;
        }
    }
    assert!(json_lines > 5, "{log:#?}");
    assert!(request_line, "no line of request {rid}: {log:#?}");
    assert!(
        socket_lines >= 2,
        "the socket's lines carry its id: {log:#?}"
    );
    redis.stop().await;
}
