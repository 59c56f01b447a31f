//! Real-time chat over real WebSockets: fan-out, history, membership,
//! presence, multi-instance delivery, limits.

mod common;
use common::*;
use redis::AsyncCommands;
use redis_chat::protocol::{RoomSummary, ServerFrame};
use serde_json::json;

#[tokio::test]
async fn messages_reach_every_socket_of_every_member_with_server_identity() {
    let redis = TestRedis::start().await;
    let server = serve(config(&redis)).await;
    let mut a = Client::new(&server);
    let alice = a.register("alice").await;
    let mut b = Client::new(&server);
    b.register("bob").await;
    let mut a1 = a.socket().await;
    let mut a2 = a.socket().await;
    let mut b1 = b.socket().await;

    // A forged sender and date are ignored.
    a1.send_json(json!({"type":"message","data":{
        "roomId":"0","message":"  hello  ","nonce":"n-1","from":999,"date":1}}))
        .await;
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    for s in [&mut a1, &mut a2, &mut b1] {
        let m = s.wait_message("hello").await;
        assert_eq!(m.from, alice.id);
        assert_eq!(m.room_id, "0");
        assert!((m.date - before).abs() <= 5, "server time: {}", m.date);
        assert_eq!(m.date, m.date_ms / 1000);
        assert_eq!(m.nonce.as_deref(), Some("n-1"));
    }
    server.shutdown().await;
    redis.stop().await;
}

#[tokio::test]
async fn identical_messages_are_both_kept_and_nonces_make_sends_idempotent() {
    let redis = TestRedis::start().await;
    let server = serve(config(&redis)).await;
    let mut a = Client::new(&server);
    a.register("alice").await;
    let mut s = a.socket().await;
    s.say("0", "same", "x-1").await;
    let first = s.wait_message("same").await;
    s.say("0", "same", "x-2").await;
    let second = s.wait_message("same").await;
    assert_ne!(first.id, second.id);
    // A resend with a used nonce is not stored again; the sender gets the original.
    s.say("0", "same", "x-1").await;
    let again = s.wait_message("same").await;
    assert_eq!(again.id, first.id);
    assert_eq!(again.nonce.as_deref(), Some("x-1"));
    let p = page(&mut a, "0", None, None).await;
    assert_eq!(p.messages.iter().filter(|m| m.message == "same").count(), 2);
    server.shutdown().await;
    redis.stop().await;
}

#[tokio::test]
async fn history_pages_backwards_stably_while_messages_arrive() {
    let redis = TestRedis::start().await;
    let server = serve(config(&redis)).await;
    let mut a = Client::new(&server);
    a.register("alice").await;
    let mut s = a.socket().await;
    for i in 0..25 {
        s.say("0", &format!("m{i}"), &format!("n{i}")).await;
        s.wait_message(&format!("m{i}")).await;
    }
    let newest = page(&mut a, "0", None, Some("10")).await;
    let texts: Vec<_> = newest.messages.iter().map(|m| m.message.clone()).collect();
    assert_eq!(texts, (15..25).map(|i| format!("m{i}")).collect::<Vec<_>>());
    // New messages arrive between page loads; the cursor is unaffected.
    for i in 0..5 {
        s.say("0", &format!("late{i}"), &format!("l{i}")).await;
    }
    let older = page(&mut a, "0", newest.next.as_deref(), Some("10")).await;
    let texts: Vec<_> = older.messages.iter().map(|m| m.message.clone()).collect();
    assert_eq!(texts, (5..15).map(|i| format!("m{i}")).collect::<Vec<_>>());
    let oldest = page(&mut a, "0", older.next.as_deref(), Some("10")).await;
    assert_eq!(oldest.messages.len(), 5);
    assert_eq!(oldest.messages[0].message, "m0");
    assert_eq!(oldest.next, None);
    // Ids increase within the room.
    let all = page(&mut a, "0", None, Some("100")).await;
    assert!(all.messages.windows(2).all(|w| {
        let key = |id: &str| {
            let (ms, seq) = id.split_once('-').unwrap();
            (ms.parse::<u64>().unwrap(), seq.parse::<u64>().unwrap())
        };
        key(&w[0].id) < key(&w[1].id)
    }));
    server.shutdown().await;
    redis.stop().await;
}

#[tokio::test]
async fn history_parameters_are_checked() {
    let redis = TestRedis::start().await;
    let server = serve(config(&redis)).await;
    let mut a = Client::new(&server);
    assert_eq!(a.get("/api/messages?room_id=0").await.status, 401);
    a.register("alice").await;
    for q in [
        "room_id=0&limit=0",
        "room_id=0&limit=101",
        "room_id=0&limit=abc",
        "room_id=0&before=xyz",
        "",
    ] {
        let r = a.get(&format!("/api/messages?{q}")).await;
        assert_eq!(r.status, 400, "{q}: {:?}", r.body);
        assert_eq!(r.body["code"], "bad_request");
    }
    let r = a.get("/api/messages?room_id=0").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["messages"], json!([]));
    assert_eq!(r.body["next"], json!(null));
    server.shutdown().await;
    redis.stop().await;
}

#[tokio::test]
async fn private_rooms_are_for_their_two_members_only() {
    let redis = TestRedis::start().await;
    let server = serve(config(&redis)).await;
    let (mut a, mut b, mut e) = (
        Client::new(&server),
        Client::new(&server),
        Client::new(&server),
    );
    let alice = a.register("alice").await;
    let bob = b.register("bob").await;
    let eve = e.register("eve").await;
    let mut bob_socket = b.socket().await;
    let mut eve_socket = e.socket().await;

    let r = a
        .post("/api/private_room", &[("user_id", &bob.id.to_string())])
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let room: RoomSummary = serde_json::from_value(r.body).unwrap();
    assert_eq!(room.id, format!("{}:{}", alice.id, bob.id));
    assert_eq!(room.name, "bob");
    // Bob is told about the new room, with Alice's name.
    let shown = bob_socket
        .wait_for(|f| match f {
            ServerFrame::ShowRoom(r) => Some(r.clone()),
            _ => None,
        })
        .await;
    assert_eq!(shown.id, room.id);
    assert_eq!(shown.name, "alice");
    // Opening it again is idempotent.
    let again = a
        .post("/api/private_room", &[("user_id", &bob.id.to_string())])
        .await;
    assert_eq!(again.status, 200);

    // Bob's socket, open since before the room existed, can send there.
    bob_socket.say(&room.id, "hi alice", "b1").await;
    bob_socket.wait_message("hi alice").await;
    assert_eq!(page(&mut a, &room.id, None, None).await.messages.len(), 1);

    // Eve can neither read nor write it, nor learn whether it exists.
    for target in [room.id.as_str(), "1:999"] {
        let r = e
            .get(&format!("/api/messages?{}", query(&[("room_id", target)])))
            .await;
        assert_eq!(r.status, 403, "{target}");
    }
    eve_socket.say(&room.id, "let me in", "e1").await;
    let err = eve_socket.wait_error().await;
    assert_eq!(err.code, "forbidden");
    assert_eq!(err.nonce.as_deref(), Some("e1"));
    let p = page(&mut a, &room.id, None, None).await;
    assert!(p.messages.iter().all(|m| m.message != "let me in"));

    // Rooms list: only your own rooms.
    let r = e.get("/api/rooms").await;
    let rooms: Vec<RoomSummary> = serde_json::from_value(r.body).unwrap();
    assert_eq!(
        rooms.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["0"]
    );
    let r = a.get("/api/rooms").await;
    let rooms: Vec<RoomSummary> = serde_json::from_value(r.body).unwrap();
    assert_eq!(rooms[0].id, room.id, "most recent activity first");
    assert_eq!(
        rooms[0].last_message.as_ref().map(|m| m.message.as_str()),
        Some("hi alice")
    );
    assert_eq!(rooms[0].online, Some(true), "bob has a socket open");
    let _ = eve;
    assert_eq!(Client::new(&server).get("/api/rooms").await.status, 401);
    // Self and unknown users are refused clearly.
    let r = a
        .post("/api/private_room", &[("user_id", &alice.id.to_string())])
        .await;
    assert_eq!(r.status, 400);
    let r = a.post("/api/private_room", &[("user_id", "4242")]).await;
    assert_eq!(r.status, 404);
    server.shutdown().await;
    redis.stop().await;
}

#[tokio::test]
async fn user_directory_finds_by_prefix() {
    let redis = TestRedis::start().await;
    let server = serve(config(&redis)).await;
    let mut a = Client::new(&server);
    a.register("Mary").await;
    Client::new(&server).register("marcus").await;
    Client::new(&server).register("bob").await;
    let r = a.get("/api/users?q=MAR").await;
    assert_eq!(r.status, 200);
    let names: Vec<&str> = r
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["marcus"], "without the caller");
    assert_eq!(Client::new(&server).get("/api/users?q=m").await.status, 401);
    server.shutdown().await;
    redis.stop().await;
}

#[tokio::test]
async fn bad_frames_get_errors_and_the_socket_stays_open() {
    let redis = TestRedis::start().await;
    let server = serve(config(&redis)).await;
    let mut a = Client::new(&server);
    a.register("alice").await;
    let mut s = a.socket().await;
    s.send_raw("not json".into()).await;
    assert_eq!(s.wait_error().await.code, "malformed");
    s.send_json(json!({"type":"dance","data":{}})).await;
    assert_eq!(s.wait_error().await.code, "unknown_type");
    s.say("0", "   \n\t ", "e").await;
    assert_eq!(s.wait_error().await.code, "empty");
    s.say("0", &"x".repeat(4001), "t").await;
    let e = s.wait_error().await;
    assert_eq!(
        (e.code.as_str(), e.nonce.as_deref()),
        ("too_long", Some("t"))
    );
    // 4000 characters of 3-byte text is fine: the limit counts characters.
    s.say("0", &"€".repeat(4000), "ok").await;
    s.wait_message(&"€".repeat(4000)).await;
    s.say("0", "x", &"n".repeat(65)).await;
    assert_eq!(s.wait_error().await.code, "bad_request");
    // Control characters are stripped.
    s.say("0", "a\u{7}b\u{0}c", "c").await;
    s.wait_message("abc").await;
    // Oversized frames close the socket with 1009.
    s.send_raw(format!(
        "{{\"type\":\"message\",\"data\":{{\"roomId\":\"0\",\"message\":\"{}\"}}}}",
        "y".repeat(20_000)
    ))
    .await;
    loop {
        match s.next_event().await {
            Event::Closed(code) => {
                assert_eq!(code, Some(1009));
                break;
            }
            Event::Frame(_) => continue,
        }
    }
    server.shutdown().await;
    redis.stop().await;
}

#[tokio::test]
async fn two_instances_on_one_redis_deliver_to_each_other_with_one_subscriber_each() {
    let redis = TestRedis::start().await;
    let one = serve(config(&redis)).await;
    let two = serve(config(&redis)).await;
    let mut a = Client::new(&one);
    a.register("alice").await;
    let mut b = Client::new(&two);
    b.register("bob").await;
    let mut a_socket = a.socket().await;
    let mut b_sockets = vec![b.socket().await, b.socket().await, b.socket().await];
    let mut con = redis.con().await;
    eventually("both instances subscribed", || {
        let mut con = con.clone();
        async move {
            let r: (String, u64) = redis::cmd("PUBSUB")
                .arg("NUMSUB")
                .arg("MESSAGES")
                .query_async(&mut con)
                .await
                .unwrap();
            r.1 == 2
        }
    })
    .await;
    a_socket.say("0", "across", "a1").await;
    for s in &mut b_sockets {
        s.wait_message("across").await;
    }
    // Exactly once on the sender's side too, though both instances saw it.
    a_socket.wait_message("across").await;
    b_sockets[0].say("0", "back", "b1").await;
    let next = a_socket.next_frame().await;
    assert!(
        matches!(next, ServerFrame::Message(m) if m.message == "back"),
        "no duplicate of 'across' arrived before 'back'"
    );
    // Still one subscriber per process, however many sockets.
    let r: (String, u64) = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg("MESSAGES")
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(r.1, 2);
    one.shutdown().await;
    two.shutdown().await;
    redis.stop().await;
}

#[tokio::test]
async fn presence_counts_tabs_and_instances_and_survives_a_crash() {
    let redis = TestRedis::start().await;
    let mut cfg = config(&redis);
    cfg.presence_ttl = std::time::Duration::from_secs(3);
    let one = serve(cfg.clone()).await;
    let two = serve(cfg).await;
    let mut watcher = Client::new(&one);
    watcher.register("watcher").await;
    let mut m = Client::new(&one);
    let mary = m.register("mary").await;
    // Presence goes to private-room partners only.
    let r = watcher
        .post("/api/private_room", &[("user_id", &mary.id.to_string())])
        .await;
    assert_eq!(r.status, 200);
    let mut w = watcher.socket().await;
    let mut stranger = Client::new(&one);
    stranger.register("stranger").await;
    let mut st = stranger.socket().await;
    let con = redis.con().await;
    let online = |id| {
        let mut con = con.clone();
        async move {
            con.sismember::<_, _, bool>("online_users", id)
                .await
                .unwrap()
        }
    };

    let tab1 = m.socket().await;
    let came = w
        .wait_for(|f| match f {
            ServerFrame::UserConnected(u) if u.id == mary.id => Some(u.clone()),
            _ => None,
        })
        .await;
    assert_eq!(came.username, "mary");
    let tab2 = m.socket().await;
    // A second tab, and a tab on another instance, announce nothing.
    let mut m_on_two = m.clone();
    m_on_two.base = format!("http://{}", two.addr);
    let tab3 = m_on_two.socket().await;
    tab1.close().await;
    tab2.close().await;
    assert!(online(mary.id).await, "still open on instance two");
    // Instance two dies without cleaning up; the survivors reap it.
    two.abort();
    drop(tab3);
    let left = w
        .wait_for(|f| match f {
            ServerFrame::UserDisconnected(u) if u.id == mary.id => Some(u.clone()),
            ServerFrame::UserConnected(u) if u.id == mary.id => {
                panic!("reconnect announced twice")
            }
            _ => None,
        })
        .await;
    assert_eq!(left.username, "mary");
    assert!(!online(mary.id).await);
    // The stranger heard nothing about Mary: its next frame is its own message.
    st.say("0", "anyone?", "q").await;
    let next = st.next_frame().await;
    assert!(
        matches!(&next, ServerFrame::Message(m) if m.message == "anyone?"),
        "{next:?}"
    );
    one.shutdown().await;
    redis.stop().await;
}

#[tokio::test]
async fn a_socket_that_cannot_keep_up_is_closed_with_1013() {
    let redis = TestRedis::start().await;
    let server = serve(config(&redis)).await;
    let mut slow = Client::new(&server);
    slow.register("slowpoke").await;
    let mut slow_socket = slow.socket().await;
    let mut fast = Client::new(&server);
    fast.register("fast").await;
    let sender = fast.socket().await;
    let (mut sink, mut stream) = futures::StreamExt::split(sender.ws);
    // The sender reads everything it is sent, in the background.
    let drain =
        tokio::spawn(async move { while futures::StreamExt::next(&mut stream).await.is_some() {} });
    let text = "z".repeat(4000);
    // The slow socket reads nothing while ~32 MB are sent its way.
    for i in 0..8000 {
        let frame =
            json!({"type":"message","data":{"roomId":"0","message":text,"nonce":format!("n{i}")}});
        futures::SinkExt::send(
            &mut sink,
            tokio_tungstenite::tungstenite::Message::text(frame.to_string()),
        )
        .await
        .unwrap();
    }
    loop {
        match slow_socket.next_event().await {
            Event::Closed(code) => {
                assert_eq!(code, Some(1013));
                break;
            }
            Event::Frame(_) => continue,
        }
    }
    drain.abort();
    server.shutdown().await;
    redis.stop().await;
}

#[tokio::test]
async fn resume_replays_what_was_missed_in_order_without_duplicates() {
    let redis = TestRedis::start().await;
    let one = serve(config(&redis)).await;
    let mut a = Client::new(&one);
    a.register("alice").await;
    let mut b = Client::new(&one);
    let bob = b.register("bob").await;
    let mut b_socket = b.socket().await;
    let mut a_socket = a.socket().await;
    a_socket.say("0", "seen", "s").await;
    let seen = a_socket.wait_message("seen").await;
    b_socket.wait_message("seen").await;
    a_socket.close().await;

    // While Alice is away, Bob writes, and her instance restarts.
    for i in 0..3 {
        b_socket
            .say("0", &format!("missed {i}"), &format!("m{i}"))
            .await;
        b_socket.wait_message(&format!("missed {i}")).await;
    }
    one.shutdown().await;
    let two = serve(config(&redis)).await;
    a.base = format!("http://{}", two.addr);
    b.base = a.base.clone();
    let mut b_socket = b.socket().await;

    let mut a_socket = a.resuming_socket().await;
    // Bob keeps writing while the replay is under way.
    b_socket.say("0", "live", "l").await;
    b_socket.wait_message("live").await;
    a_socket
        .send_json(json!({"type":"resume","data":{"rooms":{"0": seen.id}}}))
        .await;
    let mut got = Vec::new();
    loop {
        match a_socket.next_frame().await {
            ServerFrame::Message(m) => got.push(m.message),
            ServerFrame::Resumed(r) => {
                assert!(r.truncated.is_empty());
                got.push("<resumed>".into());
            }
            _ => {}
        }
        if got.last().map(String::as_str) == Some("<resumed>") {
            break;
        }
    }
    // "live" was stored before the replay read the stream, so the replay
    // carries it and the held live copy is dropped: no gap, no duplicate.
    assert_eq!(
        got,
        ["missed 0", "missed 1", "missed 2", "live", "<resumed>"]
    );
    b_socket.say("0", "after", "a").await;
    let next = a_socket
        .wait_for(|f| match f {
            ServerFrame::Message(m) => Some(m.message.clone()),
            _ => None,
        })
        .await;
    assert_eq!(next, "after", "no duplicate of 'live' before 'after'");
    // Rooms the user is not in are ignored: a private room of Alice and
    // Bob that exists and has messages replays nothing to Eve.
    let private = open_private(&mut a, &bob).await;
    for text in ["private 1", "private 2"] {
        a_socket.say(&private.id, text, text).await;
        a_socket.wait_message(text).await;
    }
    let mut e = Client::new(&two);
    e.register("eve").await;
    let mut e_socket = e.socket().await;
    e_socket
        .send_json(json!({"type":"resume","data":{"rooms":{&private.id: "0-0"}}}))
        .await;
    let done = e_socket
        .wait_for(|f| match f {
            ServerFrame::Resumed(r) => Some(r.clone()),
            ServerFrame::Message(m) if m.room_id == private.id => {
                panic!("leaked a private message: {m:?}")
            }
            _ => None,
        })
        .await;
    assert!(
        done.rooms.is_empty() && done.truncated.is_empty(),
        "{done:?}"
    );
    assert_eq!(
        page(&mut b, &private.id, None, None).await.messages.len(),
        2
    );
    two.shutdown().await;
    redis.stop().await;
}

#[tokio::test]
async fn sending_too_fast_is_refused_with_an_error_frame() {
    let redis = TestRedis::start().await;
    let mut cfg = config(&redis);
    cfg.message_rate = redis_chat::server::limits::MessageRate::parse("3/60").unwrap();
    let server = serve(cfg).await;
    let mut a = Client::new(&server);
    a.register("alice").await;
    let mut s = a.socket().await;
    for i in 0..3 {
        s.say("0", &format!("ok {i}"), &format!("n{i}")).await;
        s.wait_message(&format!("ok {i}")).await;
    }
    s.say("0", "one too many", "n3").await;
    let e = s.wait_error().await;
    assert_eq!(e.code, "rate_limited");
    assert_eq!(e.nonce.as_deref(), Some("n3"));
    // A resend of an accepted message is not counted and still answered.
    s.say("0", "ok 0", "n0").await;
    s.wait_message("ok 0").await;
    server.shutdown().await;
    redis.stop().await;
}

/// Every endpoint as signed-out, as a non-member and as a member.
#[tokio::test]
async fn authorization_table() {
    let redis = TestRedis::start().await;
    let server = serve(config(&redis)).await;
    let mut member = Client::new(&server);
    let alice = member.register("alice").await;
    let mut other = Client::new(&server);
    let bob = other.register("bob").await;
    let mut outsider = Client::new(&server);
    outsider.register("eve").await;
    let mut anonymous = Client::new(&server);
    let room = format!("{}:{}", alice.id, bob.id);
    let r = member
        .post("/api/private_room", &[("user_id", &bob.id.to_string())])
        .await;
    assert_eq!(r.status, 200);

    let history = format!("/api/messages?{}", query(&[("room_id", &room)]));
    for (path, anon, outsider_status, member_status) in [
        ("/api/me", 401, 200, 200),
        ("/api/rooms", 401, 200, 200),
        ("/api/users?q=", 401, 200, 200),
        (history.as_str(), 401, 403, 200),
        ("/api/messages?room_id=0", 401, 200, 200),
    ] {
        assert_eq!(anonymous.get(path).await.status, anon, "anonymous {path}");
        assert_eq!(
            outsider.get(path).await.status,
            outsider_status,
            "outsider {path}"
        );
        assert_eq!(
            member.get(path).await.status,
            member_status,
            "member {path}"
        );
    }
    // Opening a private room of others gives you your own room with them, never theirs.
    let r = outsider
        .post("/api/private_room", &[("user_id", &bob.id.to_string())])
        .await;
    assert_eq!(r.status, 200);
    assert_ne!(r.body["id"], room.as_str());
    assert_eq!(
        anonymous
            .post("/api/private_room", &[("user_id", "1")])
            .await
            .status,
        401
    );
    // The rooms list never includes rooms of others.
    let rooms = outsider.get("/api/rooms").await.body;
    assert!(rooms
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["id"] != room.as_str()));
    // Sending to a private room of others.
    let mut s = outsider.socket().await;
    s.say(&room, "intrusion", "x").await;
    let e = s.wait_error().await;
    assert_eq!(e.code, "forbidden");
    assert_eq!(anonymous.try_socket(None).await.err(), Some(401));
    server.shutdown().await;
    redis.stop().await;
}

#[tokio::test]
async fn a_redis_outage_gives_clear_errors_and_everything_recovers() {
    let mut redis = TestRedis::start().await;
    let server = serve(config(&redis)).await;
    let mut a = Client::new(&server);
    a.register("alice").await;
    let mut s = a.socket().await;
    s.say("0", "before", "b").await;
    s.wait_message("before").await;

    redis.pause().await;
    s.say("0", "during", "d").await;
    let e = s.wait_error().await;
    assert_eq!(
        (e.code.as_str(), e.nonce.as_deref()),
        ("unavailable", Some("d"))
    );
    assert_eq!(a.get("/readyz").await.status, 503);
    let r = a.get("/api/rooms").await;
    assert_eq!(r.status, 503, "{:?}", r.body);
    assert_eq!(r.body["code"], "unavailable");

    redis.resume().await;
    let probe = a.clone();
    eventually("redis and the subscription back", || {
        let mut c = probe.clone();
        async move {
            let h = c.get("/readyz").await;
            h.status == 200 && h.body["pubsub"] == true
        }
    })
    .await;
    // The same socket works again, live delivery included, and the data
    // written before the outage survived it.
    s.say("0", "during", "d").await;
    s.wait_message("during").await;
    let page = a.get("/api/messages?room_id=0").await;
    let texts: Vec<&str> = page.body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["message"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["before", "during"]);
    server.shutdown().await;
    redis.stop().await;
}

/// The subscriber pings its connection every 10 s; the ping must not
/// cost the subscription (a lost one drops live messages until resubscribed).
#[tokio::test]
async fn the_subscription_outlives_its_watchdog_pings() {
    let redis = TestRedis::start().await;
    let server = serve(config(&redis)).await;
    let mut con = redis.con().await;
    let subscriber = |list: String| {
        // The hub's one connection subscribes to MESSAGES and the control channel.
        list.lines().find(|l| l.contains(" sub=2 ")).and_then(|l| {
            l.split(' ')
                .find_map(|f| f.strip_prefix("id="))
                .map(str::to_string)
        })
    };
    eventually("the subscriber connection", || {
        let mut con = con.clone();
        async move {
            let list: String = redis::cmd("CLIENT")
                .arg("LIST")
                .query_async(&mut con)
                .await
                .unwrap();
            subscriber(list).is_some()
        }
    })
    .await;
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(&mut con)
        .await
        .unwrap();
    let first = subscriber(list);
    // Time is the subject here: wait past the first watchdog ping.
    tokio::time::sleep(std::time::Duration::from_secs(11)).await;
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(subscriber(list), first, "same subscriber connection");
    server.shutdown().await;
    redis.stop().await;
}

/// Sends `r{i}` and waits for its echo (the acknowledgement).
async fn send(s: &mut Socket, i: usize) -> redis_chat::protocol::ChatMessage {
    let text = format!("r{i}");
    s.say("0", &text, &format!("n{i}")).await;
    s.wait_message(&text).await
}

/// Reads messages into `seen` up to and including `r{last}`.
async fn collect_until(
    r: &mut Socket,
    seen: &mut Vec<redis_chat::protocol::ChatMessage>,
    last: usize,
) {
    let want = format!("r{last}");
    loop {
        match r.next_event().await {
            Event::Frame(ServerFrame::Message(m)) => {
                let done = m.message == want;
                seen.push(m);
                if done {
                    return;
                }
            }
            Event::Frame(_) => {}
            Event::Closed(code) => panic!("closed ({code:?}) before {want}"),
        }
    }
}

/// Two instances restarted one after the other while messages flow: the
/// receiver resumes on whichever instance is up and sees every message
/// exactly once, in order; a resend after a restart is stored once.
#[tokio::test]
async fn a_rolling_restart_of_two_instances_loses_nothing() {
    let redis = TestRedis::start().await;
    let one = serve(config(&redis)).await;
    let two = serve(config(&redis)).await;
    let mut receiver = Client::new(&one);
    receiver.register("rita").await;
    let mut sender = Client::new(&two);
    sender.register("sam").await;
    let mut r = receiver.socket().await;
    let mut s = sender.socket().await;
    let mut seen: Vec<redis_chat::protocol::ChatMessage> = Vec::new();

    for i in 0..20 {
        send(&mut s, i).await;
    }
    collect_until(&mut r, &mut seen, 19).await;

    // Instance one restarts; meanwhile twenty more messages are accepted.
    let stopping = tokio::spawn(one.shutdown());
    assert!(matches!(r.next_event().await, Event::Closed(Some(1001))));
    stopping.await.unwrap();
    for i in 20..40 {
        send(&mut s, i).await;
    }
    let one = serve(config(&redis)).await;
    receiver.base = format!("http://{}", one.addr);
    let mut r = receiver.resuming_socket().await;
    let last = seen.last().unwrap().id.clone();
    r.send_json(json!({"type":"resume","data":{"rooms":{"0": last}}}))
        .await;
    collect_until(&mut r, &mut seen, 39).await;

    // Now instance two restarts under the sender, who resends its last
    // message (it cannot know it was stored) and goes on.
    let stopping = tokio::spawn(two.shutdown());
    loop {
        if let Event::Closed(code) = s.next_event().await {
            assert_eq!(code, Some(1001));
            break;
        }
    }
    stopping.await.unwrap();
    sender.base = format!("http://{}", one.addr);
    let mut s = sender.socket().await;
    let again = send(&mut s, 39).await;
    assert_eq!(
        again.id,
        seen.last().unwrap().id,
        "the resend is the stored message"
    );
    for i in 40..60 {
        send(&mut s, i).await;
    }
    collect_until(&mut r, &mut seen, 59).await;

    let texts: Vec<String> = seen.iter().map(|m| m.message.clone()).collect();
    assert_eq!(texts, (0..60).map(|i| format!("r{i}")).collect::<Vec<_>>());
    let page = receiver.get("/api/messages?room_id=0&limit=100").await;
    assert_eq!(page.body["messages"].as_array().unwrap().len(), 60);
    one.shutdown().await;
    redis.stop().await;
}

#[tokio::test]
async fn history_max_per_room_trims_the_oldest_messages() {
    let redis = TestRedis::start().await;
    let mut cfg = config(&redis);
    cfg.history_max_per_room = 20;
    cfg.nonce_ttl = std::time::Duration::from_secs(120);
    let server = serve(cfg).await;
    let mut a = Client::new(&server);
    let alice = a.register("alice").await;
    let mut s = a.socket().await;
    let edit =
        |id: &str, text: &str| json!({"type":"edit","data":{"roomId":"0","id":id,"message":text}});
    let mut sent = Vec::new();
    for i in 0..300 {
        s.say("0", &format!("m{i}"), &format!("n{i}")).await;
        sent.push(s.wait_message(&format!("m{i}")).await.id);
        if i == 0 {
            s.send_json(edit(&sent[0], "m0, edited")).await;
            s.wait_for(|f| matches!(f, ServerFrame::MessageUpdated(_)).then_some(()))
                .await;
        }
    }
    // `MAXLEN ~ 20` drops whole stream nodes (100 entries each): at least
    // 20 stay, and at most about a node more.
    let mut con = redis.con().await;
    let len: usize = con.xlen("room:{0}:stream").await.unwrap();
    assert!((20..=120).contains(&len), "{len} messages kept");
    // History pages over what is left, newest first, and ends.
    let mut kept = Vec::new();
    let mut before: Option<String> = None;
    loop {
        let p = page(&mut a, "0", before.as_deref(), Some("50")).await;
        kept.splice(0..0, p.messages.iter().map(|m| m.message.clone()));
        match p.next {
            Some(next) => before = Some(next),
            None => break,
        }
    }
    assert_eq!(kept.len(), len);
    let expected: Vec<String> = (300 - len..300).map(|i| format!("m{i}")).collect();
    assert_eq!(kept, expected);

    // Nonces are remembered for NONCE_TTL_SECS.
    let nonce_ttl: i64 = con
        .ttl(format!("room:{{0}}:nonce:{}:n299", alice.id))
        .await
        .unwrap();
    assert!((1..=120).contains(&nonce_ttl), "nonce TTL {nonce_ttl}");
    // The trim left m0's edit behind; the next edit in the room drops it.
    let edits = "room:{0}:edits";
    assert!(con.hexists::<_, _, bool>(edits, &sent[0]).await.unwrap());
    s.send_json(edit(&sent[299], "m299, edited")).await;
    s.wait_for(|f| match f {
        ServerFrame::MessageUpdated(m) if m.id == sent[299] => Some(()),
        _ => None,
    })
    .await;
    assert!(!con.hexists::<_, _, bool>(edits, &sent[0]).await.unwrap());
    assert!(con.hexists::<_, _, bool>(edits, &sent[299]).await.unwrap());
    server.shutdown().await;
    redis.stop().await;
}

#[tokio::test]
async fn history_max_age_days_removes_messages_as_they_become_too_old() {
    let redis = TestRedis::start().await;
    let mut cfg = config(&redis);
    cfg.history_max_age_days = 1;
    let server = serve(cfg).await;
    let mut a = Client::new(&server);
    a.register("alice").await;
    // Two messages from long ago and one from an hour ago, as an older
    // deployment (or the demo import) could have left them.
    let mut con = redis.con().await;
    let hour_ago = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
        - 3_600_000;
    for (id, text) in [
        ("1000-0".to_string(), "ancient"),
        ("2000-0".to_string(), "old"),
        (format!("{hour_ago}-0"), "recent"),
    ] {
        let _: String = redis::cmd("XADD")
            .arg("room:{0}:stream")
            .arg(&id)
            .arg("from")
            .arg(1)
            .arg("message")
            .arg(text)
            .query_async(&mut con)
            .await
            .unwrap();
    }
    // The next message trims what is older than a day, exactly.
    let mut s = a.socket().await;
    s.say("0", "now", "n1").await;
    s.wait_message("now").await;
    let texts: Vec<String> = page(&mut a, "0", None, None)
        .await
        .messages
        .into_iter()
        .map(|m| m.message)
        .collect();
    assert_eq!(texts, ["recent", "now"]);
    let len: usize = con.xlen("room:{0}:stream").await.unwrap();
    assert_eq!(len, 2);
    server.shutdown().await;
    redis.stop().await;
}
