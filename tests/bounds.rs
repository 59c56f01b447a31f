//! Bounded work per request: what one resume replays and how often a
//! socket may ask, typing notices per user, open sockets per user.

mod common;
use common::*;
use redis_chat::protocol::{close_codes::TOO_MANY_SOCKETS, ServerFrame, MAX_RESUME_TOTAL};
use serde_json::json;
use std::collections::BTreeMap;

/// Appends `n` messages from `from` to a room's stream, as the send
/// script stores them.
async fn fill(redis: &TestRedis, room: &str, from: u64, n: usize) {
    let mut con = redis.con().await;
    let mut pipe = redis::pipe();
    for i in 0..n {
        pipe.cmd("XADD")
            .arg(format!("room:{{{room}}}:stream"))
            .arg("*")
            .arg("from")
            .arg(from)
            .arg("message")
            .arg(format!("{room} #{i}"))
            .ignore();
    }
    let _: () = pipe.query_async(&mut con).await.unwrap();
}

/// Sends a resume and reads up to its `resumed`: the messages per room
/// and the `resumed` frame (or the error frame instead).
async fn resume(
    s: &mut Socket,
    rooms: &BTreeMap<String, String>,
) -> Result<(BTreeMap<String, usize>, redis_chat::protocol::Resumed), String> {
    s.send_json(json!({"type": "resume", "data": {"rooms": rooms}}))
        .await;
    let mut got = BTreeMap::new();
    loop {
        match s.next_frame().await {
            ServerFrame::Message(m) => *got.entry(m.room_id).or_insert(0) += 1,
            ServerFrame::Resumed(r) => return Ok((got, r)),
            ServerFrame::Error(e) => return Err(e.code),
            _ => {}
        }
    }
}

#[tokio::test]
async fn one_resume_replays_a_bounded_total_and_a_socket_resumes_a_few_times() {
    let redis = TestRedis::start().await;
    let server = serve(config(&redis)).await;
    let mut me = Client::new(&server);
    let my = me.register("reader").await;
    let mut rooms = BTreeMap::new();
    for i in 0..5 {
        let mut other = Client::new(&server);
        other.register(&format!("writer{i}")).await;
        let them = serde_json::from_value(other.get("/api/me").await.body).unwrap();
        let room = open_private(&mut me, &them).await;
        fill(&redis, &room.id, my.id, 600).await;
        rooms.insert(room.id, "0-0".to_string());
    }
    let mut socket = me.socket().await;
    let (got, resumed) = resume(&mut socket, &rooms).await.unwrap();
    let total: usize = got.values().sum();
    assert_eq!(total, MAX_RESUME_TOTAL, "{got:?}");
    assert!(got.values().all(|n| *n <= 500), "{got:?}");
    // Every room was cut short (500 of 600 each, or nothing once the total
    // was reached), so each is listed for the client to reload.
    let listed: Vec<&String> = resumed.truncated.iter().collect();
    assert_eq!(listed, rooms.keys().collect::<Vec<_>>());

    // Two more resumes go through; the fourth in a row is refused.
    let small: BTreeMap<String, String> = rooms
        .keys()
        .take(1)
        .map(|r| (r.clone(), "0-0".into()))
        .collect();
    assert!(resume(&mut socket, &small).await.is_ok());
    assert!(resume(&mut socket, &small).await.is_ok());
    assert_eq!(
        resume(&mut socket, &small).await.unwrap_err(),
        "rate_limited"
    );
    server.shutdown().await;
    redis.stop().await;
}

#[tokio::test]
async fn typing_notices_count_toward_a_limit_per_user() {
    let redis = TestRedis::start().await;
    let mut c = config(&redis);
    c.typing_rate = redis_chat::server::limits::MessageRate::parse("3/60").unwrap();
    let server = serve(c).await;
    let mut watcher = Client::new(&server);
    watcher.register("watcher").await;
    let mut typist = Client::new(&server);
    typist.register("typist").await;
    let mut watching = watcher.socket().await;
    // Five sockets of one user, each typing once in General (each socket
    // on its own would be allowed), then saying it is done.
    let mut sockets = Vec::new();
    for _ in 0..5 {
        sockets.push(typist.socket().await);
    }
    for (i, s) in sockets.iter_mut().enumerate() {
        s.send_json(json!({"type": "typing", "data": {"roomId": "0"}}))
            .await;
        s.say("0", &format!("done {i}"), &format!("d{i}")).await;
    }
    // A socket publishes its typing notice before its message, so every
    // notice that went out arrives before the last "done".
    let (mut typing, mut done) = (0, 0);
    while done < 5 {
        match watching.next_frame().await {
            ServerFrame::Typing(_) => typing += 1,
            ServerFrame::Message(m) if m.message.starts_with("done") => done += 1,
            _ => {}
        }
    }
    assert_eq!(typing, 3);
    server.shutdown().await;
    redis.stop().await;
}

#[tokio::test]
async fn a_user_keeps_a_bounded_number_of_sockets_and_the_oldest_goes() {
    let redis = TestRedis::start().await;
    let mut c = config(&redis);
    c.max_sockets_per_user = 2;
    let server = serve(c).await;
    let mut me = Client::new(&server);
    me.register("tabs").await;
    let mut first = me.socket().await;
    let mut second = me.socket().await;
    let mut third = me.socket().await;
    loop {
        if let Event::Closed(code) = first.next_event().await {
            assert_eq!(code, Some(TOO_MANY_SOCKETS));
            break;
        }
    }
    for (i, s) in [&mut second, &mut third].into_iter().enumerate() {
        s.say("0", &format!("still open {i}"), &format!("o{i}"))
            .await;
        s.wait_message(&format!("still open {i}")).await;
    }
    server.shutdown().await;
    redis.stop().await;
}
