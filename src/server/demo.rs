//! Demo data on first start, as the original demo had: four users, the
//! General room with a short conversation, and a private room between each
//! pair with a greeting.
//!
//! Exactly once, even with several instances starting on one empty Redis:
//! one instance takes a lock (`SET demo:lock NX EX 60`) and seeds; each
//! step is safe to repeat (existing users are kept, a room's messages are
//! written only while it is empty), so a seed interrupted half-way is
//! completed by the next start. The others wait for `demo:done`.

use super::store::{keys, Store};
use crate::protocol::{private_room_id, GENERAL_ROOM_ID};
use redis::AsyncCommands;
use std::time::Duration;

pub const DEMO_USERS: [&str; 4] = ["Pablo", "Joe", "Mary", "Alex"];
pub const DEMO_PASSWORD: &str = "password123";

const DONE: &str = "demo:done";
const LOCK: &str = "demo:lock";
const STARTED: &str = "demo:started";

const GENERAL: [(usize, &str); 6] = [
    (0, "Hello everyone! Welcome to the Redis chat."),
    (1, "Hi Pablo! How are you? What about our next meeting?"),
    (2, "Yeah, everything is fine."),
    (3, "Next meeting is tomorrow at 10:00 AM."),
    (1, "Wow, that's great."),
    (2, "See you all there!"),
];

/// The demo accounts that still sign in with the published password
/// (created by an earlier start on a loopback address, or with
/// `DEMO_DATA=true`): worth a warning when the server is reachable from
/// elsewhere.
pub async fn with_published_password(store: &Store) -> Vec<&'static str> {
    let mut open = Vec::new();
    for name in DEMO_USERS {
        if store.verify_login(name, DEMO_PASSWORD).await.is_ok() {
            open.push(name);
        }
    }
    open
}

/// Creates the demo data unless it exists. Returns whether this call wrote it.
pub async fn ensure(store: &Store) -> Result<bool, redis::RedisError> {
    let mut con = store.con();
    loop {
        if con.exists::<_, bool>(DONE).await? {
            return Ok(false);
        }
        // Users but no seed of ours: data of the original demo, or of a
        // deployment that ran without demo data. Leave it as it is.
        let (users, ours): (bool, bool) = crate::server::redis_con::from_values(
            con.batch(vec![
                redis::Cmd::exists(keys::TOTAL_USERS).into(),
                redis::Cmd::exists(STARTED).into(),
            ])
            .await?,
        )?;
        if users && !ours {
            let _: () = con.set(DONE, 1).await?;
            return Ok(false);
        }
        let locked: Option<String> = redis::cmd("SET")
            .arg(LOCK)
            .arg(store.server_id())
            .arg("NX")
            .arg("EX")
            .arg(60)
            .query_async(&mut con)
            .await?;
        if locked.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Marked before the first user exists, so that others never mistake a
    // half-written seed for foreign data.
    let _: () = con.set(STARTED, 1).await?;
    let mut ids = Vec::new();
    for name in DEMO_USERS {
        let id = match store.find_user_id(name).await {
            Ok(Some(id)) => id,
            _ => match store.register(name, DEMO_PASSWORD).await {
                Ok(user) => user.id,
                Err(e) => {
                    return Err(redis::RedisError::from(std::io::Error::other(format!(
                        "cannot create demo user {name}: {e}"
                    ))))
                }
            },
        };
        ids.push(id);
    }
    let _: () = con.set(keys::room_name(GENERAL_ROOM_ID), "General").await?;

    // Messages a minute apart, ending now, so the history looks lived-in.
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let mut seed_room = async |room: &str, lines: &[(usize, &str)]| -> redis::RedisResult<()> {
        let stream = keys::room_stream(room);
        let len: usize = con.xlen(&stream).await?;
        if len > 0 {
            return Ok(());
        }
        let start = now_ms.saturating_sub(60_000 * lines.len() as u64);
        let mut pipe = redis::pipe();
        pipe.atomic();
        for (i, (who, text)) in lines.iter().enumerate() {
            pipe.cmd("XADD")
                .arg(&stream)
                .arg(format!("{}-0", start + 60_000 * i as u64))
                .arg("from")
                .arg(ids[*who])
                .arg("message")
                .arg(*text)
                .ignore();
        }
        pipe.query_async::<()>(&mut con).await
    };
    seed_room(GENERAL_ROOM_ID, &GENERAL).await?;
    for a in 0..ids.len() {
        for b in a + 1..ids.len() {
            let room = private_room_id(ids[a], ids[b]);
            seed_room(
                &room,
                &[
                    (a, "Hello!"),
                    (b, &format!("Hi {}, nice to see you here.", DEMO_USERS[a])),
                ],
            )
            .await?;
        }
    }
    for a in 0..ids.len() {
        for b in a + 1..ids.len() {
            store
                .create_private_room(ids[a], ids[b])
                .await
                .map_err(|e| redis::RedisError::from(std::io::Error::other(e.message)))?;
        }
    }
    // The seeded conversations count as read.
    for a in 0..ids.len() {
        let mut rooms = vec![GENERAL_ROOM_ID.to_string()];
        rooms.extend(
            (0..ids.len())
                .filter(|b| *b != a)
                .map(|b| private_room_id(ids[a], ids[b])),
        );
        for room in rooms {
            store
                .mark_read(ids[a], &room, "+", false)
                .await
                .map_err(|e| redis::RedisError::from(std::io::Error::other(e.message)))?;
        }
    }
    // Done first, then the lock (different slots on a cluster).
    con.in_order(vec![redis::Cmd::set(DONE, 1), redis::Cmd::del(LOCK)])
        .await?;
    Ok(true)
}
