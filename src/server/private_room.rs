//! Opening a private room (`POST /api/private_room`, `redis-chat send --to`).
//!
//! In order: the other user must exist (404); neither may have blocked the
//! other (403, see [`super::blocks`]); then the room joins the opener's
//! room set by `lua/open_room.lua`, which counts a room new to the opener
//! against `PRIVATE_ROOM_RATE_LIMIT` in the same step (429 past it;
//! reopening is free); then the other member's set. Each member who did
//! not have the room yet is told once with `show.room`.

use super::blocks;
use super::presence::Presence;
use super::store::{keys, unavailable, Store};
use crate::api::ApiError;
use crate::protocol::{codes, private_room_id, RoomSummary, ServerFrame, User, UserId};
use redis::Script;
use std::sync::LazyLock;

/// Adds a room to the opener's set within their limit (see `lua/open_room.lua`).
static OPEN_SCRIPT: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/open_room.lua")));

/// New private rooms `user` opened in the current window of
/// `PRIVATE_ROOM_RATE_LIMIT`. Its hash tag is the name of the user's room
/// set, so on a cluster both are in one slot and one script updates them.
pub fn open_counter(user: UserId) -> String {
    format!("ratelimit:private_rooms:{{{}}}", keys::user_rooms(user))
}

/// The 429 of an opener past their limit, with the wait in words.
fn too_many_rooms(retry_ms: i64) -> ApiError {
    let secs = (retry_ms.max(1) as u64).div_ceil(1000);
    let wait = if secs >= 120 {
        format!("{} minutes", secs.div_ceil(60))
    } else {
        format!("{secs} s")
    };
    ApiError::new(
        codes::RATE_LIMITED,
        format!(
            "You have opened too many new private rooms; try again in {wait}. \
             Your existing rooms are still open."
        ),
    )
}

/// Opens the private room of `user` and `other` (idempotent), telling
/// each member's sockets once with `show.room` when it is new to them.
/// Used by the server and by the command line, whose announcement reaches
/// the sockets of every running instance through the pub/sub channel.
pub async fn open_private_room(
    store: &Store,
    presence: &Presence,
    user: &User,
    other: UserId,
) -> Result<RoomSummary, ApiError> {
    if other == user.id {
        return Err(ApiError::bad_request(
            "You cannot open a room with yourself.",
        ));
    }
    let room = private_room_id(user.id, other);
    // The other user's hash and the room's blocked set: two slots, a batch.
    let mut replies = store
        .con()
        .batch(vec![
            redis::Cmd::hget(keys::user(other), "username").into(),
            blocks::between_op(&room),
        ])
        .await
        .map_err(unavailable)?
        .into_iter();
    let other_name: Option<String> = super::store::next_reply(&mut replies)?;
    let blockers: Vec<UserId> = super::store::next_reply(&mut replies)?;
    let Some(other_name) = other_name else {
        return Err(ApiError::new(codes::NOT_FOUND, "No such user."));
    };
    if let Some(refusal) = blocks::between(user.id, &blockers).refusal() {
        return Err(refusal);
    }
    let (new_for_user, new_for_other) = add_to_both(store, user.id, other, &room).await?;
    let other_user = User {
        id: other,
        username: other_name,
    };
    let online = presence.online_flags(&[user.id, other]).await?;
    let (user_online, other_online) = (online[0], online[1]);
    // The room as `me` sees it: with `them` as its name, and `me`'s unread
    // count and read marks.
    let summary_for = async |me: &User, them: &User, them_online: bool| {
        let mut summary = store.room_line(me.id, &room, Some(them.id)).await?;
        summary.name = them.username.clone();
        summary.online = Some(them_online);
        Ok::<_, ApiError>(summary)
    };
    for (new, me, them, them_online) in [
        (new_for_user, user, &other_user, other_online),
        (new_for_other, &other_user, user, user_online),
    ] {
        if new {
            let summary = summary_for(me, them, them_online).await?;
            store
                .publish(ServerFrame::ShowRoom(summary), vec![me.id])
                .await?;
        }
    }
    summary_for(user, &other_user, other_online).await
}

/// Adds `room` to the opener's set (counted, see `lua/open_room.lua`),
/// then to the other member's (two slots on a cluster). Each `SADD` is
/// idempotent and says whether it was new, so a retry after a failure
/// half-way completes the room and each member is reported new once.
async fn add_to_both(
    store: &Store,
    opener: UserId,
    other: UserId,
    room: &str,
) -> Result<(bool, bool), ApiError> {
    let rate = store.private_room_rate;
    let mut con = store.con();
    let (status, retry_ms): (u8, i64) = OPEN_SCRIPT
        .key(keys::user_rooms(opener))
        .key(open_counter(opener))
        .arg(room)
        .arg(rate.count)
        .arg(rate.window_ms)
        .invoke_async(&mut con)
        .await
        .map_err(unavailable)?;
    if status == 2 {
        return Err(too_many_rooms(retry_ms));
    }
    let new_for_other: bool = redis::AsyncCommands::sadd(&mut con, keys::user_rooms(other), room)
        .await
        .map_err(unavailable)?;
    Ok((status == 1, new_for_other))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_counter_shares_the_room_sets_slot() {
        assert_eq!(open_counter(42), "ratelimit:private_rooms:{user:42:rooms}");
    }

    #[test]
    fn the_wait_is_said_in_words() {
        assert!(too_many_rooms(1_500).message.contains("2 s"));
        assert!(too_many_rooms(3_000_000).message.contains("50 minutes"));
        assert_eq!(too_many_rooms(0).status(), 429);
    }
}
