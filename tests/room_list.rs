//! `/api/rooms` for a user in more rooms than one summary call covers
//! (200 per call, 1,000 per pipeline): every room once, with its name,
//! last message, unread count and read mark, newest first; and the same
//! list a page at a time (`limit`, `before`).

mod common;
use common::*;
use redis_chat::protocol::private_room_id;
use redis_chat::server::store::keys;

#[tokio::test]
async fn a_user_in_1100_rooms_gets_every_line_right_across_chunks() {
    let redis = TestRedis::start().await;
    let server = serve(config(&redis)).await;
    let mut a = Client::new(&server);
    let me = a.register("alice").await;
    // Partners and rooms written directly (1,100 opens through the API
    // would take long): each room has one message from its partner, and
    // every third room is read up to it.
    let mut con = redis.con().await;
    let first: u64 = redis::cmd("INCRBY")
        .arg(keys::TOTAL_USERS)
        .arg(1100)
        .query_async::<u64>(&mut con)
        .await
        .unwrap()
        - 1099;
    let mut pipe = redis::pipe();
    for partner in first..first + 1100 {
        let room = private_room_id(me.id, partner);
        pipe.hset(keys::user(partner), "username", format!("p{partner}"))
            .sadd(keys::user_rooms(partner), &room)
            .sadd(keys::user_rooms(me.id), &room)
            .cmd("XADD")
            .arg(keys::room_stream(&room))
            .arg(format!("{}-1", 1_000_000 + partner))
            .arg("from")
            .arg(partner)
            .arg("message")
            .arg(format!("hi from {partner}"));
        if partner % 3 == 0 {
            pipe.hset(
                keys::room_read(&room),
                me.id,
                format!("{}-1", 1_000_000 + partner),
            );
        }
    }
    pipe.query_async::<()>(&mut con).await.unwrap();

    let listed = rooms(&mut a).await;
    // Written directly, these rooms have no `last` key: the first page
    // reads their streams and writes it, later pages read the keys.
    let sample = keys::room_last(&private_room_id(me.id, first));
    assert!(!redis::cmd("EXISTS")
        .arg(&sample)
        .query_async::<bool>(&mut con)
        .await
        .unwrap());
    check_pages(&mut a, &listed).await;
    let backfilled: Option<String> = redis::cmd("GET")
        .arg(&sample)
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(backfilled, Some(format!("{}-1", 1_000_000 + first)));
    check_pages(&mut a, &listed).await;
    assert_eq!(listed.len(), 1101, "General and every private room");
    // Newest first: partner ids descending (their message ids grow with
    // them), then General, which has no message.
    assert_eq!(listed.last().unwrap().id, "0");
    for (line, partner) in listed.iter().zip((first..first + 1100).rev()) {
        assert_eq!(line.id, private_room_id(me.id, partner));
        assert_eq!(line.name, format!("p{partner}"));
        assert_eq!(line.other_user_id, Some(partner));
        let last = line.last_message.as_ref().unwrap();
        assert_eq!(last.message, format!("hi from {partner}"));
        assert_eq!(last.from, partner);
        let read = partner % 3 == 0;
        assert_eq!(line.unread, u32::from(!read), "room of {partner}");
        assert_eq!(line.last_read.is_some(), read, "room of {partner}");
    }
    server.shutdown().await;
    redis.stop().await;
}

/// Pages of 500 (across order calls of 1,000 rooms) are the whole list cut
/// in order; a page of 1 after the last room is empty.
async fn check_pages(a: &mut Client, whole: &[redis_chat::protocol::RoomSummary]) {
    let mut paged = Vec::new();
    let mut before = String::new();
    loop {
        let page = room_page(a, &format!("?limit=500&before={before}")).await;
        let full = page.len() == 500;
        paged.extend(page);
        if !full {
            break;
        }
        before = paged.last().unwrap().id.clone();
    }
    assert_eq!(paged, whole, "the pages are the whole list, in order");
    let after_last = format!("?limit=1&before={}", whole.last().unwrap().id);
    assert!(room_page(a, &after_last).await.is_empty());
}

async fn room_page(c: &mut Client, query: &str) -> Vec<redis_chat::protocol::RoomSummary> {
    let r = c.get(&format!("/api/rooms{query}")).await;
    assert_eq!(r.status, 200, "{query}: {:?}", r.body);
    serde_json::from_value(r.body).unwrap()
}

#[tokio::test]
async fn a_page_starts_where_its_cursor_room_is_now_and_bad_pages_get_400() {
    let redis = TestRedis::start().await;
    let server = serve(config(&redis)).await;
    let mut a = Client::new(&server);
    let alice = a.register("alice").await;
    let mut ws = a.socket().await;
    let mut room_of = std::collections::HashMap::new();
    for name in ["bob", "carol", "dave"] {
        let user = Client::new(&server).register(name).await;
        let room = private_room_id(alice.id, user.id);
        open_private(&mut a, &user).await;
        ws.say(&room, &format!("hello {name}"), name).await;
        ws.wait_message(&format!("hello {name}")).await;
        room_of.insert(name, room);
    }
    let ids = |page: &[redis_chat::protocol::RoomSummary]| -> Vec<String> {
        page.iter().map(|r| r.id.clone()).collect()
    };
    let first = room_page(&mut a, "?limit=2").await;
    assert_eq!(
        ids(&first),
        [room_of["dave"].as_str(), room_of["carol"].as_str()]
    );
    // The cursor room (carol's) moves to the top before the next page: the
    // next page starts below where it is now, so it repeats dave's room and
    // skips none.
    ws.say(&room_of["carol"], "carol again", "again").await;
    ws.wait_message("carol again").await;
    let next = room_page(&mut a, &format!("?limit=2&before={}", room_of["carol"])).await;
    assert_eq!(
        ids(&next),
        [room_of["dave"].as_str(), room_of["bob"].as_str()]
    );
    let last = room_page(&mut a, &format!("?before={}", room_of["bob"])).await;
    assert_eq!(ids(&last), ["0"]);

    for bad in [
        "?limit=0",
        "?limit=501",
        "?limit=x",
        "?limit=5&before=9:9",
        "?before=0:0",
    ] {
        let r = a.get(&format!("/api/rooms{bad}")).await;
        assert_eq!(r.status, 400, "{bad}: {:?}", r.body);
        assert_eq!(r.body["code"], "bad_request", "{bad}");
    }
    let r = Client::new(&server).get("/api/rooms?limit=5").await;
    assert_eq!(r.status, 401);
    server.shutdown().await;
    redis.stop().await;
}
