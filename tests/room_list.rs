//! `/api/rooms` for a user in more rooms than one summary call covers
//! (200 per call, 1,000 per pipeline): every room once, with its name,
//! last message, unread count and read mark, newest first.

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
