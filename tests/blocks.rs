//! Blocking users and the limit on opening new private rooms, over real
//! HTTP and WebSockets against a real Redis (issue 15).

mod common;
use common::*;
use redis_chat::protocol::{ServerFrame, User};
use redis_chat::server::config::Config;
use serde_json::{json, Value};

/// A server configuration read the way the binary reads it, from settings
/// (so `PRIVATE_ROOM_RATE_LIMIT` is parsed as an operator writes it).
fn config_with(redis: &TestRedis, settings: &[(&str, &str)]) -> Config {
    let url = redis.url();
    let mut all: Vec<(String, String)> = vec![
        ("REDIS_URL".into(), url),
        ("ADDR".into(), "127.0.0.1".into()),
        ("PORT".into(), "0".into()),
        ("BCRYPT_COST".into(), "4".into()),
        ("DEMO_DATA".into(), "false".into()),
        ("MSG_RATE_LIMIT".into(), "0".into()),
        ("REGISTER_RATE_LIMIT".into(), "0".into()),
    ];
    all.extend(settings.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Config::from_lookup(|key| {
        all.iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    })
    .expect("valid test settings")
}

async fn block(c: &mut Client, other: &User) -> Reply {
    c.post("/api/block", &[("user_id", &other.id.to_string())])
        .await
}

async fn unblock(c: &mut Client, other: &User) -> Reply {
    c.post("/api/unblock", &[("user_id", &other.id.to_string())])
        .await
}

async fn open(c: &mut Client, other: &User) -> Reply {
    c.post("/api/private_room", &[("user_id", &other.id.to_string())])
        .await
}

/// Sends a marker in General and collects what else arrived before it, so
/// a test can say "nothing of that kind came" without sleeping.
async fn frames_until_marker(
    s: &mut Socket,
    sender: &mut Socket,
    marker: &str,
) -> Vec<ServerFrame> {
    sender.say("0", marker, marker).await;
    let mut seen = Vec::new();
    loop {
        match s.next_frame().await {
            ServerFrame::Message(m) if m.message == marker => return seen,
            other => seen.push(other),
        }
    }
}

fn typing_in(frames: &[ServerFrame], room: &str) -> bool {
    frames
        .iter()
        .any(|f| matches!(f, ServerFrame::Typing(t) if t.room_id == room))
}

fn message_in(frames: &[ServerFrame], room: &str) -> bool {
    frames
        .iter()
        .any(|f| matches!(f, ServerFrame::Message(m) if m.room_id == room))
}

#[tokio::test]
async fn block_unblock_and_blocked_have_the_documented_shapes_and_errors() {
    let redis = TestRedis::start().await;
    let server = serve(config(&redis)).await;
    let mut anon = Client::new(&server);
    for path in ["/api/block", "/api/unblock"] {
        let r = anon.post(path, &[("user_id", "1")]).await;
        assert_eq!(r.status, 401, "{path}: {:?}", r.body);
        assert_eq!(r.body["code"], "unauthorized");
    }
    assert_eq!(anon.get("/api/blocked").await.status, 401);

    let mut a = Client::new(&server);
    let alice = a.register("alice").await;
    let mut b = Client::new(&server);
    let bob = b.register("bob").await;
    let mut c = Client::new(&server);
    let carol = c.register("Carol").await;

    // Bad ids, oneself, nobody.
    for bad in ["", "x", "-1", "1.5", "99999999999999999999999"] {
        let r = a.post("/api/block", &[("user_id", bad)]).await;
        assert_eq!(r.status, 400, "{bad:?}: {:?}", r.body);
        assert_eq!(r.body["code"], "bad_request");
    }
    let r = a.post("/api/block", &[]).await;
    assert_eq!(r.status, 400, "missing user_id: {:?}", r.body);
    let r = block(&mut a, &alice).await;
    assert_eq!(
        (r.status, r.body["code"].clone()),
        (400, json!("bad_request"))
    );
    assert!(r.body["message"].as_str().unwrap().contains("yourself"));
    let nobody = User {
        id: 999,
        username: "nobody".into(),
    };
    for r in [block(&mut a, &nobody).await, unblock(&mut a, &nobody).await] {
        assert_eq!(
            (r.status, r.body["code"].clone()),
            (404, json!("not_found"))
        );
    }

    // Cross-site posts are refused before anything happens.
    let cross = a
        .http
        .post(format!("{}/api/block", a.base))
        .header("origin", "https://evil.example")
        .header(
            "cookie",
            format!("rc_session={}", a.cookie.as_ref().unwrap()),
        )
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("user_id={}", bob.id))
        .send()
        .await
        .unwrap();
    assert_eq!(cross.status().as_u16(), 403);
    assert_eq!(a.get("/api/blocked").await.body, json!([]));

    // Idempotent both ways; the list is by name, of the caller's blocks only.
    for _ in 0..2 {
        let r = block(&mut a, &carol).await;
        assert_eq!((r.status, r.body.clone()), (200, Value::Null));
        let r = block(&mut a, &bob).await;
        assert_eq!((r.status, r.body.clone()), (200, Value::Null));
    }
    assert_eq!(
        a.get("/api/blocked").await.body,
        json!([{"id": bob.id, "username": "bob"}, {"id": carol.id, "username": "Carol"}])
    );
    assert_eq!(b.get("/api/blocked").await.body, json!([]));
    for _ in 0..2 {
        let r = unblock(&mut a, &bob).await;
        assert_eq!((r.status, r.body.clone()), (200, Value::Null));
    }
    assert_eq!(
        a.get("/api/blocked").await.body,
        json!([{"id": carol.id, "username": "Carol"}])
    );
    // Unblocking someone never blocked is fine too.
    assert_eq!(unblock(&mut b, &carol).await.status, 200);
    server.shutdown().await;
    redis.stop().await;
}

#[tokio::test]
async fn a_blocked_user_can_neither_open_nor_send_nor_type_and_unblock_restores() {
    let redis = TestRedis::start().await;
    let server = serve(config(&redis)).await;
    let mut a = Client::new(&server);
    let alice = a.register("alice").await;
    let mut b = Client::new(&server);
    let bob = b.register("bob").await;
    let room = open_private(&mut a, &bob).await.id;
    let mut as_ = a.socket().await;
    let mut bs = b.socket().await;
    bs.say(&room, "hi alice", "b1").await;
    let old = as_.wait_message("hi alice").await;
    bs.wait_message("hi alice").await;

    assert_eq!(block(&mut a, &bob).await.status, 200);

    // Bob cannot open the room, and is not told more than that.
    let r = open(&mut b, &alice).await;
    assert_eq!(
        (r.status, r.body["code"].clone()),
        (403, json!("forbidden"))
    );
    let refusal = r.body["message"].as_str().unwrap().to_lowercase();
    assert!(!refusal.contains("block"), "{refusal}");
    // Alice cannot either, and is told why.
    let r = open(&mut a, &bob).await;
    assert_eq!(r.status, 403);
    assert!(r.body["message"].as_str().unwrap().contains("Unblock"));

    // Bob's message is refused for its nonce; nothing is stored or delivered.
    bs.say(&room, "let me in", "b2").await;
    let e = bs.wait_error().await;
    assert_eq!(
        (e.code.as_str(), e.nonce.as_deref()),
        ("forbidden", Some("b2"))
    );
    // His typing is dropped, and his edits too.
    bs.send_json(json!({"type":"typing","data":{"roomId":room}}))
        .await;
    bs.send_json(json!({"type":"edit","data":{"roomId":room,"id":old.id,"message":"edited"}}))
        .await;
    assert_eq!(bs.wait_error().await.code, "forbidden");
    let before = frames_until_marker(&mut as_, &mut bs, "marker 1").await;
    assert!(!message_in(&before, &room), "{before:?}");
    assert!(!typing_in(&before, &room), "{before:?}");
    // Alice cannot send to him either until she unblocks, and is told so.
    as_.say(&room, "and stay out", "a1").await;
    let e = as_.wait_error().await;
    assert_eq!(
        (e.code.as_str(), e.nonce.as_deref()),
        ("forbidden", Some("a1"))
    );
    assert!(e.message.contains("Unblock"), "{}", e.message);
    // History stays readable for both; only the old message is there.
    for c in [&mut a, &mut b] {
        let texts: Vec<String> = page(c, &room, None, None)
            .await
            .messages
            .into_iter()
            .map(|m| m.message)
            .collect();
        assert_eq!(texts, ["hi alice"]);
    }
    // General is unaffected: "marker 1" above came from bob through it.

    // Unblocking restores everything at once.
    assert_eq!(unblock(&mut a, &bob).await.status, 200);
    assert_eq!(open(&mut b, &alice).await.status, 200);
    // (A new socket: each socket drops its own notices closer than 1.5 s.)
    let mut bs2 = b.socket().await;
    bs2.send_json(json!({"type":"typing","data":{"roomId":room}}))
        .await;
    let typing = as_
        .wait_for(|f| match f {
            ServerFrame::Typing(t) if t.room_id == room => Some(t.user_id),
            _ => None,
        })
        .await;
    assert_eq!(typing, bob.id);
    bs.say(&room, "thanks", "b3").await;
    as_.wait_message("thanks").await;
    as_.say(&room, "welcome back", "a2").await;
    bs.wait_message("welcome back").await;
    server.shutdown().await;
    redis.stop().await;
}

#[tokio::test]
async fn a_block_on_one_instance_applies_to_a_socket_on_another_at_once() {
    let redis = TestRedis::start().await;
    let one = serve(config(&redis)).await;
    let two = serve(config(&redis)).await;
    let mut a = Client::new(&one);
    let alice = a.register("alice").await;
    let mut b = Client::new(&two);
    let bob = b.register("bob").await;
    let room = open_private(&mut b, &alice).await.id;
    let mut bs = b.socket().await;
    bs.say(&room, "first", "b1").await;
    bs.wait_message("first").await;

    // Blocked on instance one; bob's socket on instance two is refused at
    // once: the send script reads the block in the same step as its write.
    assert_eq!(block(&mut a, &bob).await.status, 200);
    bs.say(&room, "second", "b2").await;
    let e = bs.wait_error().await;
    assert_eq!(
        (e.code.as_str(), e.nonce.as_deref()),
        ("forbidden", Some("b2"))
    );
    assert_eq!(page(&mut a, &room, None, None).await.messages.len(), 1);

    assert_eq!(unblock(&mut a, &bob).await.status, 200);
    bs.say(&room, "third", "b3").await;
    bs.wait_message("third").await;
    one.shutdown().await;
    two.shutdown().await;
    redis.stop().await;
}

#[tokio::test]
async fn new_private_rooms_are_limited_and_reopening_is_free() {
    let redis = TestRedis::start().await;
    let server = serve(config_with(
        &redis,
        &[("PRIVATE_ROOM_RATE_LIMIT", "3/3600")],
    ))
    .await;
    let mut a = Client::new(&server);
    let alice = a.register("alice").await;
    let mut others = Vec::new();
    for i in 0..5 {
        others.push(Client::new(&server).register(&format!("user{i}")).await);
    }
    for other in &others[..3] {
        assert_eq!(open(&mut a, other).await.status, 200);
    }
    // The fourth new room is one too many, with a clear message.
    let r = open(&mut a, &others[3]).await;
    assert_eq!(r.status, 429, "{:?}", r.body);
    assert_eq!(r.body["code"], "rate_limited");
    assert!(
        r.body["message"]
            .as_str()
            .unwrap()
            .contains("new private rooms"),
        "{:?}",
        r.body
    );
    // It was not created for either side.
    let listed: Vec<String> = rooms(&mut a).await.into_iter().map(|r| r.id).collect();
    assert_eq!(listed.len(), 4, "General and three rooms: {listed:?}");
    // Reopening existing rooms costs nothing.
    for _ in 0..3 {
        for other in &others[..3] {
            assert_eq!(open(&mut a, other).await.status, 200);
        }
    }
    // The limit is the opener's: others can still open rooms with alice,
    // and a room someone else opened is no new room to her.
    let mut u4 = Client::new(&server);
    assert_eq!(u4.login("user4", "password123").await.status, 200);
    assert_eq!(open(&mut u4, &alice).await.status, 200);
    assert_eq!(open(&mut a, &others[4]).await.status, 200);
    server.shutdown().await;
    redis.stop().await;
}

#[tokio::test]
async fn parallel_opens_cannot_exceed_the_limit() {
    let redis = TestRedis::start().await;
    let server = serve(config_with(
        &redis,
        &[("PRIVATE_ROOM_RATE_LIMIT", "3/3600")],
    ))
    .await;
    let mut a = Client::new(&server);
    a.register("alice").await;
    let mut others = Vec::new();
    for i in 0..12 {
        others.push(Client::new(&server).register(&format!("user{i}")).await);
    }
    let opens = others.iter().map(|other| {
        let mut a = a.clone();
        async move { open(&mut a, other).await.status }
    });
    let mut statuses = futures::future::join_all(opens).await;
    statuses.sort();
    assert_eq!(
        statuses,
        [[200; 3].as_slice(), [429; 9].as_slice()].concat()
    );
    assert_eq!(rooms(&mut a).await.len(), 4, "General and three rooms");
    server.shutdown().await;
    redis.stop().await;
}
