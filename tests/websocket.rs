//! The WebSocket endpoint on the wire (RFC 6455): the upgrade, framing,
//! close codes, hostile frames, and the life of a socket task from its
//! upgrade to its close (shutdown included).

mod common;
use common::*;
use serde_json::json;

#[tokio::test]
async fn websocket_needs_a_session_and_the_own_origin() {
    let redis = TestRedis::start().await;
    let server = serve(config(&redis)).await;
    let mut c = Client::new(&server);
    assert_eq!(c.try_socket(None).await.err(), Some(401));
    c.register("alice").await;
    assert_eq!(
        c.try_socket(Some("https://evil.example")).await.err(),
        Some(403)
    );
    let own = format!("http://{}", server.addr);
    assert!(c.try_socket(Some(&own)).await.is_ok());
    assert!(c.try_socket(None).await.is_ok());
    server.shutdown().await;
    redis.stop().await;
}

#[tokio::test]
async fn websocket_speaks_rfc_6455() {
    let redis = TestRedis::start().await;
    let server = serve(config(&redis)).await;
    let mut c = Client::new(&server);
    c.register("alice").await;
    let cookie = c.cookie.clone().unwrap();

    // Not an upgrade, or a wrong version: refused with a status, no socket.
    let (_, head) = raw::upgrade(server.addr, &format!("Cookie: rc_session={cookie}\r\n")).await;
    assert!(head.starts_with("HTTP/1.1 426"), "{head}");
    let (_, head) = raw::upgrade(
        server.addr,
        &raw::handshake(&cookie).replace("Version: 13", "Version: 8"),
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");

    // The handshake of RFC 6455 §1.3.
    let (mut tcp, head) = raw::upgrade(server.addr, &raw::handshake(&cookie)).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
        "{head}"
    );
    use tokio::io::AsyncWriteExt;
    // A ping is answered with a pong carrying its payload.
    tcp.write_all(&raw::frame(true, 0x9, b"are you there", true))
        .await
        .unwrap();
    assert_eq!(raw::until(&mut tcp, 0xA).await, b"are you there");
    // A message in two fragments, with a ping between them.
    let text = json!({"type":"message","data":{"roomId":"0","message":"in two parts","nonce":"f"}})
        .to_string();
    let (first, second) = text.as_bytes().split_at(20);
    tcp.write_all(&raw::frame(false, 0x1, first, true))
        .await
        .unwrap();
    tcp.write_all(&raw::frame(true, 0x9, b"", true))
        .await
        .unwrap();
    tcp.write_all(&raw::frame(true, 0x0, second, true))
        .await
        .unwrap();
    loop {
        let payload = raw::until(&mut tcp, 0x1).await;
        if String::from_utf8(payload).unwrap().contains("in two parts") {
            break;
        }
    }
    // The peer's close is echoed, then the server ends the connection.
    tcp.write_all(&raw::frame(true, 0x8, &1000u16.to_be_bytes(), true))
        .await
        .unwrap();
    assert_eq!(raw::close_code(&mut tcp).await, 1000);

    // Broken rules close with their codes: unmasked (1002), not UTF-8
    // (1007), a continuation out of nowhere (1002), too big (1009, before
    // the payload is sent).
    for (frame, code) in [
        (raw::frame(true, 0x1, b"{}", false), 1002),
        (raw::frame(true, 0x1, b"\xff\xfe", true), 1007),
        (raw::frame(true, 0x0, b"x", true), 1002),
        (vec![0x81, 0xFF, 0, 0, 0, 0, 0, 1, 0, 0], 1009),
    ] {
        let (mut tcp, head) = raw::upgrade(server.addr, &raw::handshake(&cookie)).await;
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        tcp.write_all(&frame).await.unwrap();
        assert_eq!(raw::close_code(&mut tcp).await, code, "{frame:?}");
    }
    server.shutdown().await;
    redis.stop().await;
}

#[tokio::test]
async fn shutdown_closes_sockets_with_1001() {
    let redis = TestRedis::start().await;
    let server = serve(config(&redis)).await;
    let mut a = Client::new(&server);
    a.register("alice").await;
    let mut s = a.socket().await;
    let stopping = tokio::spawn(server.shutdown());
    loop {
        match s.next_event().await {
            Event::Closed(code) => {
                assert_eq!(code, Some(1001));
                break;
            }
            Event::Frame(_) => continue,
        }
    }
    drop(s);
    stopping.await.unwrap();
    redis.stop().await;
}
