//! No silent gaps in live delivery: when an instance's pub/sub subscriber
//! loses its connection, what was published meanwhile still reaches every
//! open socket, once and in order (caught up from the room streams).

mod common;
use common::*;
use redis::AsyncCommands;
use redis_chat::protocol::{close_codes::SESSION_ENDED, ServerFrame};
use redis_chat::server::session::SessionId;

/// Kills every pub/sub connection of the test Redis (the hubs'
/// subscribers), as a network blip or `CLIENT KILL TYPE pubsub` would.
async fn kill_subscribers(redis: &TestRedis) -> u64 {
    let mut con = redis.con().await;
    redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query_async(&mut con)
        .await
        .unwrap()
}

/// Waits until a server's subscription is up again.
async fn resubscribed(server: &redis_chat::server::RunningServer) {
    let c = Client::new(server);
    eventually("the subscription is back", || {
        let mut c = c.clone();
        async move { c.get("/healthz").await.body["pubsub"] == true }
    })
    .await;
}

/// The texts of the next `n` General messages a socket gets.
async fn general_texts(s: &mut Socket, n: usize) -> Vec<String> {
    let mut texts = Vec::with_capacity(n);
    while texts.len() < n {
        if let ServerFrame::Message(m) = s.next_frame().await {
            if m.room_id == "0" {
                texts.push(m.message);
            }
        }
    }
    texts
}

#[tokio::test]
async fn a_lost_subscription_loses_no_message_and_doubles_none() {
    let redis = TestRedis::start().await;
    let a = serve(config(&redis)).await;
    let b = serve(config(&redis)).await;
    let mut alice = Client::new(&a);
    alice.register("alice").await;
    let mut bob = Client::new(&b);
    bob.register("bob").await;
    let mut alice_socket = alice.socket().await;
    let mut bob_socket = bob.socket().await;
    // Both subscriptions are up (each socket sees a message sent now).
    alice_socket.say("0", "warm-up", "w").await;
    alice_socket.wait_message("warm-up").await;
    bob_socket.wait_message("warm-up").await;

    let texts: Vec<String> = (0..200).map(|i| format!("m{i:03}")).collect();
    for (i, text) in texts.iter().enumerate() {
        alice_socket.say("0", text, &format!("n{i}")).await;
        if i == 60 || i == 130 {
            resubscribed(&a).await;
            resubscribed(&b).await;
            assert_eq!(kill_subscribers(&redis).await, 2);
        }
    }
    // Every message exactly once, in order, on both sides; then nothing more.
    assert_eq!(general_texts(&mut bob_socket, 200).await, texts);
    assert_eq!(general_texts(&mut alice_socket, 200).await, texts);
    alice_socket.say("0", "after", "z").await;
    assert_eq!(general_texts(&mut bob_socket, 1).await, ["after"]);
    assert_eq!(general_texts(&mut alice_socket, 1).await, ["after"]);
    a.shutdown().await;
    b.shutdown().await;
    redis.stop().await;
}

#[tokio::test]
async fn private_rooms_are_caught_up_too() {
    let redis = TestRedis::start().await;
    let a = serve(config(&redis)).await;
    let mut ann = Client::new(&a);
    ann.register("ann").await;
    let mut ben = Client::new(&a);
    let ben_user = ben.register("ben").await;
    let room = open_private(&mut ann, &ben_user).await;
    let mut ann_socket = ann.socket().await;
    let mut ben_socket = ben.socket().await;
    ann_socket.say(&room.id, "hello", "h").await;
    ben_socket.wait_message("hello").await;

    assert!(kill_subscribers(&redis).await >= 1);
    for i in 0..30 {
        ann_socket
            .say(&room.id, &format!("p{i}"), &format!("p{i}"))
            .await;
    }
    let mut got = Vec::new();
    while got.len() < 30 {
        if let ServerFrame::Message(m) = ben_socket.next_frame().await {
            got.push(m.message);
        }
    }
    assert_eq!(got, (0..30).map(|i| format!("p{i}")).collect::<Vec<_>>());
    a.shutdown().await;
    redis.stop().await;
}

#[tokio::test]
async fn a_session_that_ended_while_the_subscriber_was_away_closes_its_socket() {
    let redis = TestRedis::start().await;
    let server = serve(config(&redis)).await;
    let mut c = Client::new(&server);
    c.register("cleo").await;
    let mut socket = c.socket().await;
    // The session goes without the event that would close its socket (as
    // if it was published while the subscriber was down) ...
    let key = SessionId::of_token(c.cookie.as_deref().unwrap()).key();
    let mut con = redis.con().await;
    let _: () = con.del(&key).await.unwrap();
    // ... and then the subscription is lost and comes back.
    assert!(kill_subscribers(&redis).await >= 1);
    loop {
        if let Event::Closed(code) = socket.next_event().await {
            assert_eq!(code, Some(SESSION_ENDED));
            break;
        }
    }
    server.shutdown().await;
    redis.stop().await;
}
