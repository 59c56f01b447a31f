//! Sessions that end, end everywhere: signing out, signing out
//! everywhere, a password change and expiry close the WebSockets opened
//! with the ended sessions (close code 4001) on every instance, and
//! nothing such a socket sends afterwards is stored.

mod common;
use common::*;
use redis::AsyncCommands;
use redis_chat::protocol::close_codes::SESSION_ENDED;
use redis_chat::server::session::{index_of, SessionId};
use std::time::{Duration, Instant};

/// Reads until the socket closes; the close code.
async fn closed(s: &mut Socket) -> Option<u16> {
    loop {
        if let Event::Closed(code) = s.next_event().await {
            return code;
        }
    }
}

/// Whether General's history holds a message with this text.
async fn stored(c: &mut Client, text: &str) -> bool {
    page(c, "0", None, Some("100"))
        .await
        .messages
        .iter()
        .any(|m| m.message == text)
}

#[tokio::test]
async fn signing_out_closes_that_sessions_sockets_on_every_instance_at_once() {
    let redis = TestRedis::start().await;
    let a = serve(config(&redis)).await;
    let b = serve(config(&redis)).await;
    let mut laptop = Client::new(&a);
    laptop.register("joe").await;
    let mut phone = Client::new(&b);
    assert_eq!(phone.login("joe", "password123").await.status, 200);
    let mut laptop_on_b = Client::for_addr(b.addr);
    laptop_on_b.cookie = laptop.cookie.clone();

    let mut ended_a = laptop.socket().await;
    let mut ended_b = laptop_on_b.socket().await;
    let mut other = phone.socket().await;

    let started = Instant::now();
    assert_eq!(laptop.post("/api/logout", &[]).await.status, 200);
    // Sent after the sign-out was answered: never stored.
    ended_a.say("0", "after sign-out (a)", "n-a").await;
    ended_b.say("0", "after sign-out (b)", "n-b").await;
    assert_eq!(closed(&mut ended_a).await, Some(SESSION_ENDED));
    assert_eq!(closed(&mut ended_b).await, Some(SESSION_ENDED));
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "closed after {:?}",
        started.elapsed()
    );

    // The other session's socket goes on.
    other.say("0", "still here", "n-c").await;
    other.wait_message("still here").await;
    assert!(!stored(&mut phone, "after sign-out (a)").await);
    assert!(!stored(&mut phone, "after sign-out (b)").await);
    a.shutdown().await;
    b.shutdown().await;
    redis.stop().await;
}

#[tokio::test]
async fn signing_out_everywhere_and_changing_the_password_close_the_other_sockets() {
    let redis = TestRedis::start().await;
    let a = serve(config(&redis)).await;
    let b = serve(config(&redis)).await;
    let mut laptop = Client::new(&a);
    laptop.register("kate").await;
    let mut phone = Client::new(&b);
    assert_eq!(phone.login("kate", "password123").await.status, 200);
    let mut stolen = Client::new(&b);
    stolen.cookie = phone.cookie.clone();
    let mut laptop_socket = laptop.socket().await;
    let mut phone_socket = phone.socket().await;
    let mut thief_socket = stolen.socket().await;

    // The victim changes the password on the laptop: the phone's session
    // (and the thief's copy of it) end; the laptop's socket stays.
    let r = laptop
        .post(
            "/api/change_password",
            &[
                ("current_password", "password123"),
                ("new_password", "new-password-1"),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    thief_socket.say("0", "thief writes", "t-1").await;
    assert_eq!(closed(&mut thief_socket).await, Some(SESSION_ENDED));
    assert_eq!(closed(&mut phone_socket).await, Some(SESSION_ENDED));
    laptop_socket.say("0", "laptop writes", "l-1").await;
    laptop_socket.wait_message("laptop writes").await;
    assert!(!stored(&mut laptop, "thief writes").await);

    // Sign out everywhere: the laptop's own socket too.
    let mut again = Client::new(&b);
    assert_eq!(again.login("kate", "new-password-1").await.status, 200);
    let mut again_socket = again.socket().await;
    assert_eq!(laptop.post("/api/logout_all", &[]).await.status, 200);
    again_socket.say("0", "after everywhere", "e-1").await;
    assert_eq!(closed(&mut laptop_socket).await, Some(SESSION_ENDED));
    assert_eq!(closed(&mut again_socket).await, Some(SESSION_ENDED));
    let mut reader = Client::new(&a);
    reader.register("reader").await;
    assert!(!stored(&mut reader, "after everywhere").await);
    a.shutdown().await;
    b.shutdown().await;
    redis.stop().await;
}

#[tokio::test]
async fn an_expired_session_closes_its_socket_and_activity_keeps_it_alive() {
    let redis = TestRedis::start().await;
    let mut c = config(&redis);
    c.session_ttl = Duration::from_secs(2);
    let server = serve(c).await;
    let mut idle = Client::new(&server);
    idle.register("idle").await;
    let mut busy = Client::new(&server);
    busy.register("busy").await;
    let mut idle_socket = idle.socket().await;
    let mut busy_socket = busy.socket().await;
    let opened = Instant::now();

    // The busy user types now and then for longer than the TTL: every
    // frame may renew the session (at most once a second).
    let busy_key = SessionId::of_token(busy.cookie.as_deref().unwrap()).key();
    let mut con = redis.con().await;
    let typing = tokio::spawn(async move {
        let frame = serde_json::json!({"type": "typing", "data": {"roomId": "0"}});
        while opened.elapsed() < Duration::from_millis(3500) {
            busy_socket.send_json(frame.clone()).await;
            let alive: bool = con.exists(&busy_key).await.unwrap();
            assert!(alive, "an active socket's session expired");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        busy_socket
    });

    // The idle one expires after 2 s; its socket is closed within 1 s.
    assert_eq!(closed(&mut idle_socket).await, Some(SESSION_ENDED));
    let after = opened.elapsed();
    assert!(
        (Duration::from_millis(1900)..Duration::from_millis(3000)).contains(&after),
        "closed after {after:?}"
    );
    assert_eq!(idle.get("/api/me").await.status, 401);
    let mut busy_socket = typing.await.unwrap();
    busy_socket.say("0", "still signed in", "b-1").await;
    busy_socket.wait_message("still signed in").await;
    server.shutdown().await;
    redis.stop().await;
}

#[tokio::test]
async fn the_sessions_index_lives_as_long_as_the_sessions_in_it() {
    let redis = TestRedis::start().await;
    let server = serve(config(&redis)).await;
    let mut c = Client::new(&server);
    let user = c.register("lena").await;
    let mut con = redis.con().await;
    let index = index_of(user.id);
    // No TTL of its own: sessions slide past any TTL given at sign-in.
    assert_eq!(con.ttl::<_, i64>(&index).await.unwrap(), -1);
    // An index written with a TTL (as before) loses it at the next sign-in.
    let _: () = con.expire(&index, 60).await.unwrap();
    let mut other = Client::new(&server);
    assert_eq!(other.login("lena", "password123").await.status, 200);
    assert_eq!(con.ttl::<_, i64>(&index).await.unwrap(), -1);
    let members: Vec<String> = con.smembers(&index).await.unwrap();
    assert_eq!(members.len(), 2);
    server.shutdown().await;
    redis.stop().await;
}

#[tokio::test]
async fn sessions_an_old_index_forgot_are_indexed_at_start_and_end_everywhere() {
    let redis = TestRedis::start().await;
    let first = serve(config(&redis)).await;
    let mut c = Client::new(&first);
    let user = c.register("olga").await;
    first.shutdown().await;
    // As an older version left it: a live session whose index expired.
    let forgotten = "f".repeat(64);
    let key = SessionId::of_token(&forgotten).key();
    let mut con = redis.con().await;
    let _: () = con
        .set_ex(&key, format!("{}:olga", user.id), 3600)
        .await
        .unwrap();
    let _: () = con.del(index_of(user.id)).await.unwrap();
    let _: () = con.del("sessions:indexed").await.unwrap();

    let server = serve(config(&redis)).await;
    let index = index_of(user.id);
    eventually("the forgotten session is indexed", || {
        let mut con = con.clone();
        let (index, key) = (index.clone(), key.clone());
        async move { con.sismember::<_, _, bool>(&index, &key).await.unwrap() }
    })
    .await;
    let mut thief = Client::new(&server);
    thief.cookie = Some(forgotten);
    assert_eq!(thief.get("/api/me").await.status, 200);
    let mut owner = Client::new(&server);
    assert_eq!(owner.login("olga", "password123").await.status, 200);
    assert_eq!(owner.post("/api/logout_all", &[]).await.status, 200);
    assert_eq!(thief.get("/api/me").await.status, 401);
    server.shutdown().await;
    redis.stop().await;
}
