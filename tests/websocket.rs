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

/// What `GET /healthz` says about this instance's open sockets.
async fn sockets(c: &mut Client) -> u64 {
    c.get("/healthz").await.body["sockets"].as_u64().unwrap()
}

#[tokio::test]
async fn a_huge_continuation_after_a_fragment_closes_with_1009_and_leaves_the_hub() {
    let redis = TestRedis::start().await;
    let server = serve(config(&redis)).await;
    let mut c = Client::new(&server);
    c.register("alice").await;
    let cookie = c.cookie.clone().unwrap();
    use tokio::io::AsyncWriteExt;
    // Lengths whose sum with the 4 bytes already joined wraps around 2^64,
    // and others over the limit; no payload follows any of them.
    for claimed in [u64::MAX - 3, u64::MAX, 1 << 63, 16 * 1024 - 3] {
        let mut tcp = raw::open(server.addr, &cookie).await;
        tcp.write_all(&raw::frame(false, 0x1, b"{\"ty", true))
            .await
            .unwrap();
        tcp.write_all(&raw::header_claiming(true, 0x0, claimed))
            .await
            .unwrap();
        assert_eq!(raw::close_code(&mut tcp).await, 1009, "length {claimed}");
        eventually("the socket left the hub", || {
            let mut c = c.clone();
            async move { sockets(&mut c).await == 0 }
        })
        .await;
    }
    server.shutdown().await;
    redis.stop().await;
}

#[tokio::test]
async fn close_frames_follow_rfc_6455() {
    let redis = TestRedis::start().await;
    let server = serve(config(&redis)).await;
    let mut c = Client::new(&server);
    c.register("alice").await;
    let cookie = c.cookie.clone().unwrap();
    let code = |code: u16, reason: &[u8]| [&code.to_be_bytes()[..], reason].concat();
    // The payload of the client's close frame → the server's close code:
    // a valid code is echoed, a broken close fails the connection.
    let cases: Vec<(Vec<u8>, u16)> = vec![
        (vec![], 1000),
        (vec![0x03], 1002),
        (code(0, b""), 1002),
        (code(999, b""), 1002),
        (code(1000, b""), 1000),
        (code(1000, b"bye"), 1000),
        (code(1001, "\u{e9}t\u{e9}".as_bytes()), 1001),
        (code(1002, b""), 1002),
        (code(1003, b""), 1003),
        (code(1004, b""), 1002),
        (code(1005, b""), 1002),
        (code(1006, b""), 1002),
        (code(1007, b""), 1007),
        (code(1008, b""), 1008),
        (code(1009, b""), 1009),
        (code(1010, b""), 1010),
        (code(1011, b""), 1011),
        (code(1012, b""), 1012),
        (code(1013, b""), 1013),
        (code(1014, b""), 1014),
        (code(1015, b""), 1002),
        (code(1016, b""), 1002),
        (code(2000, b""), 1002),
        (code(2999, b""), 1002),
        (code(3000, b""), 3000),
        (code(3999, b""), 3999),
        (code(4000, b""), 4000),
        (code(4999, b""), 4999),
        (code(5000, b""), 1002),
        (code(u16::MAX, b""), 1002),
        (code(1000, b"\xff"), 1007),
        (code(1000, b"caf\xc3"), 1007),
        (code(4000, b"\xed\xa0\x80"), 1007),
    ];
    use tokio::io::AsyncWriteExt;
    for (payload, expected) in cases {
        let mut tcp = raw::open(server.addr, &cookie).await;
        tcp.write_all(&raw::frame(true, 0x8, &payload, true))
            .await
            .unwrap();
        assert_eq!(
            raw::close_code(&mut tcp).await,
            expected,
            "close payload {payload:?}"
        );
    }
    server.shutdown().await;
    redis.stop().await;
}

#[tokio::test]
async fn binary_frames_get_an_error_frame_and_the_socket_stays_open() {
    let redis = TestRedis::start().await;
    let server = serve(config(&redis)).await;
    let mut c = Client::new(&server);
    c.register("alice").await;
    let cookie = c.cookie.clone().unwrap();
    let mut tcp = raw::open(server.addr, &cookie).await;
    use tokio::io::AsyncWriteExt;
    tcp.write_all(&raw::frame(true, 0x2, b"\x00\x01", true))
        .await
        .unwrap();
    let error: serde_json::Value =
        serde_json::from_slice(&raw::until(&mut tcp, 0x1).await).unwrap();
    assert_eq!(error["type"], "error");
    assert_eq!(
        error["data"]["code"],
        redis_chat::protocol::codes::MALFORMED
    );
    // Fragmented binary too; the socket still answers afterwards.
    tcp.write_all(&raw::frame(false, 0x2, b"\x00", true))
        .await
        .unwrap();
    tcp.write_all(&raw::frame(true, 0x0, b"\x01", true))
        .await
        .unwrap();
    let error: serde_json::Value =
        serde_json::from_slice(&raw::until(&mut tcp, 0x1).await).unwrap();
    assert_eq!(
        error["data"]["code"],
        redis_chat::protocol::codes::MALFORMED
    );
    tcp.write_all(&raw::frame(true, 0x9, b"still here?", true))
        .await
        .unwrap();
    assert_eq!(raw::until(&mut tcp, 0xA).await, b"still here?");
    server.shutdown().await;
    redis.stop().await;
}

#[tokio::test]
async fn the_upgrade_needs_a_key_of_16_bytes_in_base64() {
    let redis = TestRedis::start().await;
    let server = serve(config(&redis)).await;
    let mut c = Client::new(&server);
    c.register("alice").await;
    let cookie = c.cookie.clone().unwrap();
    for key in [
        "aGVsbG8=",                     // "hello": 5 bytes
        "dGhlIHNhbXBsZSBub25jZQ",       // 16 bytes without the padding
        "dGhlIHNhbXBsZSBub25jZSE=",     // 17 bytes
        "dGhlIHNhbXBsZSBub25jZQ==AAAA", // 19 bytes
        "not base64 at all, not!!",     // 24 characters, not base64
        "",
    ] {
        let (_, head) = raw::upgrade(server.addr, &raw::handshake_with_key(&cookie, key)).await;
        assert!(head.starts_with("HTTP/1.1 400"), "key {key:?}: {head}");
    }
    let (_, head) = raw::upgrade(
        server.addr,
        &raw::handshake_with_key(&cookie, "AAECAwQFBgcICQoLDA0ODw=="),
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    server.shutdown().await;
    redis.stop().await;
}

#[tokio::test]
async fn a_socket_task_that_panics_still_leaves_the_hub_and_presence() {
    use redis::AsyncCommands;
    use redis_chat::server::{outbox::Outbox, socket_task::SocketGuard};
    let redis = TestRedis::start().await;
    let server = serve(config(&redis)).await;
    let mut a = Client::new(&server);
    let alice = a.register("alice").await;
    let mut b = Client::new(&server);
    b.register("bob").await;
    let mut bob = b.socket().await;
    // Alice's socket: a real connection, and a task that holds its guard
    // as the server's own socket task does, then panics.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (accepted, peer) = tokio::join!(
        listener.accept(),
        tokio::net::TcpStream::connect(listener.local_addr().unwrap())
    );
    let (stream, mut peer) = (std::sync::Arc::new(accepted.unwrap().0), peer.unwrap());
    let (joined, has_joined) = tokio::sync::oneshot::channel();
    let (go, panic_now) = tokio::sync::oneshot::channel::<()>();
    let state = server.state.clone();
    let user = alice.clone();
    let task = tokio::spawn(async move {
        let out = Outbox::new(stream, false);
        let session = redis_chat::server::session::SessionId::of_token("a test socket");
        let _guard = SocketGuard::join(&state.hub, &user, session, out, state.socket_tasks.start());
        joined.send(()).unwrap();
        panic_now.await.unwrap();
        panic!("a bug in a socket task (this panic is part of the test)");
    });
    has_joined.await.unwrap();
    let mut con = redis.con().await;
    let online = |con: &mut redis::aio::MultiplexedConnection| {
        let mut con = con.clone();
        async move {
            con.sismember::<_, _, bool>("online_users", alice.id)
                .await
                .unwrap()
        }
    };
    eventually("both sockets in the hub, alice online", || {
        let mut c = a.clone();
        let online = online(&mut con);
        async move { sockets(&mut c).await == 2 && online.await }
    })
    .await;

    go.send(()).unwrap();
    assert!(task.await.unwrap_err().is_panic());
    // The peer gets close 1011 (internal error), then the end of the stream.
    assert_eq!(raw::close_code(&mut peer).await, 1011);
    eventually("the socket left the hub, alice offline", || {
        let mut c = a.clone();
        let online = online(&mut con);
        async move { sockets(&mut c).await == 1 && !online.await }
    })
    .await;
    assert_eq!(
        server.state.socket_tasks.live(),
        1,
        "only Bob's task is left"
    );
    // Nothing else noticed: Bob's socket still sends and receives.
    bob.say("0", "still here", "n1").await;
    bob.wait_message("still here").await;
    server.shutdown().await;
    redis.stop().await;
}

#[tokio::test]
async fn shutdown_lets_every_socket_close_before_redis_stops() {
    let dir = tempfile::Builder::new()
        .prefix("rc-")
        .tempdir_in("/tmp")
        .unwrap();
    let data = dir.path().join("data");
    let mut cfg = redis_chat::server::config::Config::for_tests("");
    cfg.redis = redis_chat::server::config::RedisSource::Embedded {
        data_dir: data.clone(),
        binary: "redis-server".into(),
    };
    let server = serve(cfg).await;
    let redis_url = format!(
        "redis+unix://{}",
        data.canonicalize().unwrap().join("redis.sock").display()
    );
    let redis_up = |url: String| async move {
        let Ok(mut con) = redis::Client::open(url)
            .unwrap()
            .get_multiplexed_async_connection()
            .await
        else {
            return false;
        };
        redis::cmd("PING")
            .query_async::<String>(&mut con)
            .await
            .is_ok()
    };
    let mut open = Vec::new();
    let mut cookie = String::new();
    for name in ["alice", "bob", "carol"] {
        let mut user = Client::new(&server);
        user.register(name).await;
        open.push(user.socket().await);
        open.push(user.socket().await);
        cookie = user.cookie.unwrap();
    }
    // A peer that reads its close frame but never answers it.
    let mut silent = raw::open(server.addr, &cookie).await;
    let c = Client::new(&server);
    eventually("seven sockets in the hub", || {
        let mut c = c.clone();
        async move { sockets(&mut c).await == 7 }
    })
    .await;
    let tasks = server.state.socket_tasks.clone();
    assert_eq!(tasks.live(), 7);
    // Each client, once it has its close frame, checks that Redis is still
    // up, then ends its connection: the server's socket task lives until
    // then (it waits for the peer's end), and shutdown waits for it.
    let closers: Vec<_> = open
        .into_iter()
        .map(|mut s| {
            let url = redis_url.clone();
            tokio::spawn(async move {
                let code = loop {
                    match s.next_event().await {
                        Event::Closed(code) => break code,
                        Event::Frame(_) => continue,
                    }
                };
                (code, redis_up(url).await)
            })
        })
        .collect();
    let url = redis_url.clone();
    let silent_one = tokio::spawn(async move {
        let close = raw::until(&mut silent, 0x8).await;
        let up = redis_up(url).await;
        (u16::from_be_bytes([close[0], close[1]]), up, silent)
    });
    let started = std::time::Instant::now();
    server.shutdown().await;
    // The silent peer's task gave up on it after its closing wait (2 s).
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert_eq!(
        tasks.live(),
        0,
        "every socket task ended before Redis stopped"
    );
    for closer in closers {
        let (code, up) = closer.await.unwrap();
        assert_eq!(code, Some(1001));
        assert!(up, "Redis stopped while a socket was still closing");
    }
    let (code, up, _still_open) = silent_one.await.unwrap();
    assert_eq!(code, 1001);
    assert!(up, "Redis stopped while a socket was still closing");
    assert!(
        !redis_up(redis_url).await,
        "shutdown stops the embedded Redis"
    );
}
