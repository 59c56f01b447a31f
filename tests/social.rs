//! Read state, unread counts, typing notices, edits and deletions, over
//! real WebSockets and HTTP against a real Redis.

mod common;
use common::*;
use redis_chat::protocol::{ChatMessage, MessagePage, ReadMark, RoomSummary, ServerFrame, Typing};
use serde_json::json;

async fn room(c: &mut Client, id: &str) -> RoomSummary {
    rooms(c)
        .await
        .into_iter()
        .find(|r| r.id == id)
        .unwrap_or_else(|| panic!("room {id} not listed"))
}

async fn history(c: &mut Client, room: &str) -> MessagePage {
    let r = c
        .get(&format!("/api/messages?{}", query(&[("room_id", room)])))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    serde_json::from_value(r.body).unwrap()
}

async fn wait_read(s: &mut Socket, room: &str) -> ReadMark {
    s.wait_for(|f| match f {
        ServerFrame::Read(r) if r.room_id == room => Some(r.clone()),
        _ => None,
    })
    .await
}

async fn wait_updated(s: &mut Socket, id: &str) -> ChatMessage {
    s.wait_for(|f| match f {
        ServerFrame::MessageUpdated(m) if m.id == id => Some(m.clone()),
        _ => None,
    })
    .await
}

#[tokio::test]
async fn unread_counts_follow_read_marks_and_marks_only_move_forward() {
    let redis = TestRedis::start().await;
    let server = serve(config(&redis)).await;
    let mut a = Client::new(&server);
    let mut b = Client::new(&server);
    b.register("bob").await;
    let mut bs = b.socket().await;
    bs.say("0", "before alice joined", "n0").await;
    bs.wait_message("before alice joined").await;

    // A newcomer's General starts read: its past is not news.
    let alice = a.register("alice").await;
    let general = room(&mut a, "0").await;
    assert_eq!(general.unread, 0);
    assert!(general.last_read.is_some());

    let mut a1 = a.socket().await;
    let mut a2 = a.socket().await;
    let mut ids = Vec::new();
    for i in 0..3 {
        bs.say("0", &format!("news {i}"), &format!("n{}", i + 1))
            .await;
        ids.push(a1.wait_message(&format!("news {i}")).await.id);
    }
    // Own messages never count as unread.
    a1.say("0", "mine", "a-1").await;
    let mine = a1.wait_message("mine").await;
    assert_eq!(room(&mut a, "0").await.unread, 3);

    // Reading up to the second: one left, and every tab of alice hears it.
    a1.send_json(json!({"type":"read","data":{"roomId":"0","id":ids[1],"userId":999}}))
        .await;
    for s in [&mut a1, &mut a2] {
        let mark = wait_read(s, "0").await;
        assert_eq!(mark.id, ids[1]);
        assert_eq!(
            mark.user_id, alice.id,
            "the server decides whose mark it is"
        );
    }
    let general = room(&mut a, "0").await;
    assert_eq!(general.unread, 1);
    assert_eq!(general.last_read.as_deref(), Some(ids[1].as_str()));

    // Going back is ignored; a mark beyond the newest message is clamped.
    a1.send_json(json!({"type":"read","data":{"roomId":"0","id":ids[0]}}))
        .await;
    a1.send_json(json!({"type":"read","data":{"roomId":"0","id":"99999999999999-0"}}))
        .await;
    let mark = wait_read(&mut a1, "0").await;
    assert_eq!(mark.id, mine.id, "clamped to the newest message");
    let general = room(&mut a, "0").await;
    assert_eq!(general.unread, 0);
    assert_eq!(general.last_read.as_deref(), Some(mine.id.as_str()));

    // Bob does not hear alice's General read marks (no O(N) fan-out).
    bs.say("0", "after", "n9").await;
    let seen = bs
        .wait_for(|f| match f {
            ServerFrame::Read(_) => Some(false),
            ServerFrame::Message(m) if m.message == "after" => Some(true),
            _ => None,
        })
        .await;
    assert!(seen);

    // Bad marks get clear errors.
    a1.send_json(json!({"type":"read","data":{"roomId":"0","id":"yesterday"}}))
        .await;
    assert_eq!(a1.wait_error().await.code, "bad_request");
    a1.send_json(json!({"type":"read","data":{"roomId":"5:6","id":"1-0"}}))
        .await;
    assert_eq!(a1.wait_error().await.code, "forbidden");
    a1.send_json(json!({"type":"read","data":{"roomId":"0"}}))
        .await;
    let e = a1.wait_error().await;
    assert_eq!(e.code, "malformed");
    assert!(e.message.contains("data.id"), "{}", e.message);
    server.shutdown().await;
    redis.stop().await;
}

#[tokio::test]
async fn unread_counts_stop_at_the_cap() {
    let redis = TestRedis::start().await;
    let server = serve(config(&redis)).await;
    let mut a = Client::new(&server);
    let alice = a.register("alice").await;
    let mut b = Client::new(&server);
    b.register("bob").await;
    let room_id = open_private(&mut b, &alice).await.id;
    let mut bs = b.socket().await;
    let cap = redis_chat::protocol::MAX_UNREAD_COUNT as usize;
    for i in 0..cap + 5 {
        bs.say(&room_id, &format!("m{i}"), &format!("n{i}")).await;
    }
    bs.wait_message(&format!("m{}", cap + 4)).await;
    let summary = room(&mut a, &room_id).await;
    assert_eq!(summary.unread as usize, cap);
    assert_eq!(summary.last_read, None);
    assert_eq!(room(&mut b, &room_id).await.unread, 0);
    server.shutdown().await;
    redis.stop().await;
}

#[tokio::test]
async fn the_other_member_of_a_private_room_sees_the_read_mark() {
    let redis = TestRedis::start().await;
    let server = serve(config(&redis)).await;
    let mut a = Client::new(&server);
    let alice = a.register("alice").await;
    let mut b = Client::new(&server);
    let bob = b.register("bob").await;
    let mut c = Client::new(&server);
    c.register("carol").await;
    let room_id = open_private(&mut a, &bob).await.id;
    let mut as_ = a.socket().await;
    let mut bs = b.socket().await;
    let mut cs = c.socket().await;

    as_.say(&room_id, "did you see this?", "q1").await;
    let question = bs.wait_message("did you see this?").await;
    assert_eq!(room(&mut b, &room_id).await.unread, 1);
    assert_eq!(room(&mut a, &room_id).await.peer_read, None);

    bs.send_json(json!({"type":"read","data":{"roomId":room_id,"id":question.id}}))
        .await;
    let seen = wait_read(&mut as_, &room_id).await;
    assert_eq!(
        (seen.user_id, seen.id.as_str()),
        (bob.id, question.id.as_str())
    );
    let mine = wait_read(&mut bs, &room_id).await;
    assert_eq!(mine.user_id, bob.id);
    assert_eq!(
        room(&mut a, &room_id).await.peer_read.as_deref(),
        Some(question.id.as_str())
    );
    assert_eq!(room(&mut b, &room_id).await.unread, 0);

    // Carol hears nothing of it.
    cs.say("0", "carol here", "c1").await;
    let first = cs
        .wait_for(|f| match f {
            ServerFrame::Read(_) => Some(false),
            ServerFrame::Message(m) if m.message == "carol here" => Some(true),
            _ => None,
        })
        .await;
    assert!(first);
    let _ = alice;
    server.shutdown().await;
    redis.stop().await;
}

#[tokio::test]
async fn typing_reaches_room_members_only_and_is_throttled() {
    let redis = TestRedis::start().await;
    let server = serve(config(&redis)).await;
    let mut a = Client::new(&server);
    let alice = a.register("alice").await;
    let mut b = Client::new(&server);
    let bob = b.register("bob").await;
    let mut c = Client::new(&server);
    c.register("carol").await;
    let room_id = open_private(&mut a, &bob).await.id;
    let mut as_ = a.socket().await;
    let mut bs = b.socket().await;
    let mut cs = c.socket().await;

    // A burst: only the first goes out; the server says who types.
    for _ in 0..5 {
        as_.send_json(
            json!({"type":"typing","data":{"roomId":room_id,"userId":999,"username":"x"}}),
        )
        .await;
    }
    as_.say(&room_id, "done typing", "t1").await;
    let mut notices = Vec::new();
    bs.wait_for(|f| match f {
        ServerFrame::Typing(t) => {
            notices.push(t.clone());
            None
        }
        ServerFrame::Message(m) if m.message == "done typing" => Some(()),
        _ => None,
    })
    .await;
    assert_eq!(
        notices,
        vec![Typing {
            room_id: room_id.clone(),
            user_id: alice.id,
            username: "alice".into()
        }]
    );
    // Carol, not a member, gets nothing; nothing is stored.
    cs.say("0", "carol", "c1").await;
    let clean = cs
        .wait_for(|f| match f {
            ServerFrame::Typing(_) => Some(false),
            ServerFrame::Message(m) if m.message == "carol" => Some(true),
            _ => None,
        })
        .await;
    assert!(clean);
    assert_eq!(history(&mut a, &room_id).await.messages.len(), 1);

    // Typing in someone else's room is refused.
    cs.send_json(json!({"type":"typing","data":{"roomId":room_id}}))
        .await;
    assert_eq!(cs.wait_error().await.code, "forbidden");
    server.shutdown().await;
    redis.stop().await;
}

#[tokio::test]
async fn only_the_sender_edits_or_deletes_and_everyone_sees_it_everywhere() {
    let redis = TestRedis::start().await;
    let server = serve(config(&redis)).await;
    let mut a = Client::new(&server);
    let alice = a.register("alice").await;
    let mut b = Client::new(&server);
    b.register("bob").await;
    let mut as_ = a.socket().await;
    let mut bs = b.socket().await;
    as_.say("0", "teh first", "e1").await;
    let first = bs.wait_message("teh first").await;
    as_.say("0", "second", "e2").await;
    let second = bs.wait_message("second").await;

    // Bob can neither edit nor delete alice's message.
    bs.send_json(json!({"type":"edit","data":{"roomId":"0","id":first.id,"message":"hacked"}}))
        .await;
    assert_eq!(bs.wait_error().await.code, "forbidden");
    bs.send_json(json!({"type":"delete","data":{"roomId":"0","id":first.id}}))
        .await;
    assert_eq!(bs.wait_error().await.code, "forbidden");

    // Alice edits: both see it live, with the server's edit time.
    as_.send_json(
        json!({"type":"edit","data":{"roomId":"0","id":first.id,"message":"  the first  "}}),
    )
    .await;
    for s in [&mut as_, &mut bs] {
        let m = wait_updated(s, &first.id).await;
        assert_eq!(m.message, "the first");
        assert_eq!(m.from, alice.id);
        assert!(!m.deleted);
        assert!(m.edited_ms.unwrap() >= first.date_ms);
    }
    // Alice deletes the second: text gone for everyone.
    as_.send_json(json!({"type":"delete","data":{"roomId":"0","id":second.id}}))
        .await;
    let gone = wait_updated(&mut bs, &second.id).await;
    assert!(gone.deleted);
    assert_eq!(gone.message, "");

    // History, the room list preview and a resume all show the changes.
    let page = history(&mut b, "0").await;
    let texts: Vec<(&str, bool, bool)> = page
        .messages
        .iter()
        .map(|m| (m.message.as_str(), m.edited_ms.is_some(), m.deleted))
        .collect();
    assert_eq!(texts, vec![("the first", true, false), ("", true, true)]);
    let preview = room(&mut b, "0").await.last_message.unwrap();
    assert!(preview.deleted);
    let mut resumed = b.resuming_socket().await;
    resumed
        .send_json(json!({"type":"resume","data":{"rooms":{"0":"0-1"}}}))
        .await;
    let replayed = resumed.wait_message("the first").await;
    assert!(replayed.edited_ms.is_some());

    // A deleted message cannot be edited again; unknown ids and bad text
    // get clear errors.
    as_.send_json(json!({"type":"edit","data":{"roomId":"0","id":second.id,"message":"back"}}))
        .await;
    assert_eq!(as_.wait_error().await.code, "not_found");
    as_.send_json(json!({"type":"edit","data":{"roomId":"0","id":"1-0","message":"x"}}))
        .await;
    assert_eq!(as_.wait_error().await.code, "not_found");
    as_.send_json(json!({"type":"edit","data":{"roomId":"0","id":first.id,"message":" \u{7} "}}))
        .await;
    assert_eq!(as_.wait_error().await.code, "empty");
    as_.send_json(json!({"type":"edit","data":{"roomId":"0","id":"x","message":"y"}}))
        .await;
    assert_eq!(as_.wait_error().await.code, "bad_request");
    as_.send_json(json!({"type":"delete","data":{"roomId":"3:4","id":first.id}}))
        .await;
    assert_eq!(as_.wait_error().await.code, "forbidden");
    server.shutdown().await;
    redis.stop().await;
}

/// Pages with a cursor are served from memory (`server::history`); these
/// are the ways a cached page could go wrong: an edit or a deletion made
/// through another instance, a user outside the room asking for a page a
/// member just read, and a session that ended.
#[tokio::test]
async fn cached_history_pages_follow_edits_membership_and_sessions() {
    let redis = TestRedis::start().await;
    let one = serve(config(&redis)).await;
    let two = serve(config(&redis)).await;
    let mut a = Client::new(&one);
    let alice = a.register("alice").await;
    let mut b = Client::for_addr(two.addr);
    b.register("bob").await;
    let mut c = Client::for_addr(two.addr);
    c.register("carol").await;
    let mut as_ = a.socket().await;
    let mut sent = vec![];
    for text in ["one", "two", "three"] {
        as_.say("0", text, text).await;
        sent.push(as_.wait_message(text).await);
    }
    let texts = |p: &MessagePage| -> Vec<(String, bool)> {
        p.messages
            .iter()
            .map(|m| (m.message.clone(), m.deleted))
            .collect()
    };
    let cursor = Some(sent[2].id.as_str());
    let first = page(&mut b, "0", cursor, Some("2")).await;
    assert_eq!(
        texts(&first),
        vec![("one".into(), false), ("two".into(), false)]
    );
    // The same page again (now from instance two's cache) is the same.
    assert_eq!(page(&mut b, "0", cursor, Some("2")).await, first);

    // An edit and a deletion through instance one: instance two's next
    // answer has them, with no event needed.
    as_.send_json(json!({"type":"edit","data":{"roomId":"0","id":sent[0].id,"message":"uno"}}))
        .await;
    wait_updated(&mut as_, &sent[0].id).await;
    let edited = page(&mut b, "0", cursor, Some("2")).await;
    assert_eq!(
        texts(&edited),
        vec![("uno".into(), false), ("two".into(), false)]
    );
    assert!(edited.messages[0].edited_ms.is_some());
    as_.send_json(json!({"type":"delete","data":{"roomId":"0","id":sent[1].id}}))
        .await;
    wait_updated(&mut as_, &sent[1].id).await;
    assert_eq!(
        texts(&page(&mut b, "0", cursor, Some("2")).await),
        vec![("uno".into(), false), ("".into(), true)]
    );

    // A private room's page, cached for its member, is still 403 for
    // carol, who is not in it.
    let room = open_private(&mut b, &alice).await.id;
    let mut bs = b.socket().await;
    for text in ["p1", "p2"] {
        bs.say(&room, text, text).await;
        sent.push(bs.wait_message(text).await);
    }
    let private = format!(
        "/api/messages?{}",
        query(&[("room_id", &room), ("before", &sent[4].id)])
    );
    assert_eq!(b.get(&private).await.status, 200);
    let r = c.get(&private).await;
    assert_eq!(
        (r.status, r.body["code"].as_str()),
        (403, Some("forbidden"))
    );
    assert!(!r.body.to_string().contains("p1"));

    // Signed out: the cached pages are 401 with the old cookie.
    let mut old = b.clone();
    assert_eq!(b.post("/api/logout", &[]).await.status, 200);
    assert_eq!(old.get(&private).await.status, 401);
    let general = format!(
        "/api/messages?{}",
        query(&[("room_id", "0"), ("before", &sent[2].id), ("limit", "2")])
    );
    assert_eq!(old.get(&general).await.status, 401);
    one.shutdown().await;
    two.shutdown().await;
    redis.stop().await;
}

/// A resend (same nonce) after the message was edited or deleted answers
/// with the message as it is now, never the original text, and stores
/// nothing new; one whose message retention removed says so clearly.
#[tokio::test]
async fn a_resend_shows_the_message_as_it_is_now() {
    let redis = TestRedis::start().await;
    let server = serve(config(&redis)).await;
    let mut a = Client::new(&server);
    a.register("alice").await;
    let mut s = a.socket().await;
    let resend = async |s: &mut Socket, nonce: &str| {
        s.say("0", "first draft", nonce).await;
        s.wait_for(|f| match f {
            ServerFrame::Message(m) if m.nonce.as_deref() == Some(nonce) => Some(m.clone()),
            ServerFrame::Error(e) => panic!("resend refused: {e:?}"),
            _ => None,
        })
        .await
    };
    s.say("0", "first draft", "r1").await;
    let sent = s.wait_message("first draft").await;

    s.send_json(json!({"type":"edit","data":{"roomId":"0","id":sent.id,"message":"final text"}}))
        .await;
    let edited = wait_updated(&mut s, &sent.id).await;
    let again = resend(&mut s, "r1").await;
    assert_eq!(again.id, sent.id, "the same message, not a new one");
    assert_eq!(again.message, "final text", "the edit, not the original");
    assert_eq!(again.edited_ms, edited.edited_ms);
    assert!(!again.deleted);

    s.send_json(json!({"type":"delete","data":{"roomId":"0","id":sent.id}}))
        .await;
    wait_updated(&mut s, &sent.id).await;
    let again = resend(&mut s, "r1").await;
    assert_eq!(again.id, sent.id);
    assert!(again.deleted, "deleted stays deleted");
    assert_eq!(again.message, "");
    assert!(again.edited_ms.is_some());

    let page = history(&mut a, "0").await;
    let stored: Vec<(&str, &str, bool)> = page
        .messages
        .iter()
        .map(|m| (m.id.as_str(), m.message.as_str(), m.deleted))
        .collect();
    assert_eq!(stored, [(sent.id.as_str(), "", true)], "nothing new stored");

    // Retention removed the message while its nonce is still remembered:
    // a clear `not_found` for that nonce, and still nothing stored.
    s.say("0", "short-lived", "r2").await;
    s.wait_message("short-lived").await;
    let mut con = redis.con().await;
    let _: () = redis::cmd("XTRIM")
        .arg("room:{0}:stream")
        .arg("MAXLEN")
        .arg(0)
        .query_async(&mut con)
        .await
        .unwrap();
    s.say("0", "short-lived", "r2").await;
    let e = s.wait_error().await;
    assert_eq!(e.code, "not_found", "{e:?}");
    assert_eq!(e.nonce.as_deref(), Some("r2"));
    assert!(history(&mut a, "0").await.messages.is_empty());
    server.shutdown().await;
    redis.stop().await;
}
