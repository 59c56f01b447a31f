//! Paths under `/api` that are not a server function, and server functions
//! asked with the wrong method: clear JSON errors, like every other API
//! error, over real HTTP.

mod common;
use common::*;
use reqwest::Method;
use serde_json::Value;

/// `method path` with the client's session: status, `Allow`, JSON body.
async fn ask(c: &Client, method: Method, path: &str) -> (u16, Option<String>, Value) {
    let mut req = c.http.request(method, format!("{}{path}", c.base));
    if let Some(cookie) = &c.cookie {
        req = req.header("cookie", format!("rc_session={cookie}"));
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let allow = resp
        .headers()
        .get("allow")
        .map(|v| v.to_str().unwrap().to_string());
    let is_json = resp
        .headers()
        .get("content-type")
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    let text = resp.text().await.unwrap();
    let body = if is_json && !text.is_empty() {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("bad JSON {text:?}: {e}"))
    } else {
        Value::String(text)
    };
    (status, allow, body)
}

#[tokio::test]
async fn unknown_api_paths_are_404_and_wrong_methods_405_in_json() {
    let redis = TestRedis::start().await;
    let server = serve(config(&redis)).await;
    let mut c = Client::new(&server);
    c.register("alice").await;

    for path in [
        "/api/nope",
        "/api/nope?x=1",
        "/api/me/extra",
        "/api/messages/x",
        "/api/",
        "/api",
    ] {
        for method in [Method::GET, Method::POST, Method::PUT, Method::DELETE] {
            let (status, _, body) = ask(&c, method.clone(), path).await;
            assert_eq!(status, 404, "{method} {path}: {body:?}");
            assert_eq!(body["code"], "not_found", "{method} {path}: {body:?}");
            assert!(
                body["message"].as_str().unwrap().contains("/api"),
                "{body:?}"
            );
        }
    }

    // A server function asked with a method it does not take: 405, the
    // method it takes in `Allow`.
    for (method, path, allowed) in [
        (Method::GET, "/api/login", "POST"),
        (Method::GET, "/api/logout", "POST"),
        (Method::POST, "/api/me", "GET, HEAD"),
        (Method::DELETE, "/api/rooms", "GET, HEAD"),
        (Method::POST, "/api/messages?room_id=0", "GET, HEAD"),
        (Method::PUT, "/api/messages?room_id=0", "GET, HEAD"),
    ] {
        let (status, allow, body) = ask(&c, method.clone(), path).await;
        assert_eq!(status, 405, "{method} {path}: {body:?}");
        assert_eq!(body["code"], "method_not_allowed", "{body:?}");
        assert_eq!(allow.as_deref(), Some(allowed), "{method} {path}");
    }
    // HEAD is GET without the body.
    let (status, _, body) = ask(&c, Method::HEAD, "/api/me").await;
    assert_eq!((status, body), (200, Value::String(String::new())));

    // Known paths answer as before.
    let me = c.get("/api/me").await;
    assert_eq!((me.status, &me.body["username"]), (200, &"alice".into()));
    assert_eq!(page(&mut c, "0", None, None).await.messages.len(), 0);
    assert_eq!(
        c.get("/api/demo_accounts").await.body,
        serde_json::json!([])
    );
    let mut anonymous = Client::new(&server);
    let r = anonymous.get("/api/rooms").await;
    assert_eq!((r.status, &r.body["code"]), (401, &"unauthorized".into()));
    let r = anonymous.login("alice", "wrong password").await;
    assert_eq!(r.status, 401);
    // A cross-site POST is refused before the path is looked at.
    let r = c
        .http
        .post(format!("{}/api/nope", c.base))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    server.shutdown().await;
    redis.stop().await;
}
