//! Blocking another user.
//!
//! Two sets say who blocked whom:
//!
//! - `user:{id}:blocked`: the users `id` blocked, for the account page
//!   (`GET /api/blocked`);
//! - `room:{ROOM}:blocked`: which of a private room's two members blocked
//!   the other. It is in the room's slot (hash tag), so the room's own
//!   scripts read it in the same step as their write: `lua/send.lua`
//!   refuses a message, `lua/edit.lua` an edit, `lua/typing.lua` drops a
//!   typing notice, on every instance from the moment the block is stored,
//!   with no extra round trip. Opening the room reads it too.
//!
//! Blocking writes the room's set first, then the user's (on a cluster two
//! slots, one after the other; on one Redis the same order): once the
//! block is listed it is in force. Unblocking goes the other way round, so
//! a block is listed for as long as any part of it holds. Both are
//! idempotent, so a retry after a failure half-way completes them.

use super::store::{unavailable, Store};
use crate::api::ApiError;
use crate::protocol::{codes, private_room_id, private_room_members, Envelope, ServerFrame};
use crate::protocol::{Typing, User, UserId};
use redis::Script;
use std::sync::LazyLock;

/// The users `user` blocked.
pub fn user_blocked(user: UserId) -> String {
    format!("user:{user}:blocked")
}

/// The members of private room `room` who blocked the other (0, 1 or 2
/// ids). In the room's slot, beside its stream.
pub fn room_blocked(room: &str) -> String {
    format!("room:{{{room}}}:blocked")
}

/// Publishes a typing notice unless the room is blocked (see `lua/typing.lua`).
static TYPING_SCRIPT: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/typing.lua")));

/// Who blocked whom between the caller and another user.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Between {
    /// The caller blocked the other user.
    pub by_me: bool,
    /// The other user blocked the caller.
    pub by_them: bool,
}

impl Between {
    /// Why the caller cannot open or write to the room, if they cannot.
    /// The blocked side is not told more than that it cannot.
    pub fn refusal(self) -> Option<ApiError> {
        if self.by_me {
            Some(ApiError::forbidden(blocked_by_me_message()))
        } else if self.by_them {
            Some(ApiError::forbidden(
                "You cannot open a conversation with this user.",
            ))
        } else {
            None
        }
    }
}

/// What the blocker is told when they try to write to the blocked user.
pub fn blocked_by_me_message() -> &'static str {
    "You blocked this user. Unblock them on your account page to send messages."
}

/// What a blocked user is told when they try to write.
pub fn blocked_by_them_message() -> &'static str {
    "You cannot send messages in this conversation."
}

/// Parses the `user_id` of the block endpoints.
pub fn parse_user_id(raw: &str) -> Result<UserId, ApiError> {
    raw.trim()
        .parse()
        .map_err(|_| ApiError::bad_request("user_id must be a user id."))
}

/// Checks that `other` is someone else who exists (400, 404).
async fn check_other(store: &Store, me: &User, other: UserId) -> Result<(), ApiError> {
    if other == me.id {
        return Err(ApiError::bad_request("You cannot block yourself."));
    }
    if store.username_of(other).await?.is_none() {
        return Err(ApiError::new(codes::NOT_FOUND, "No such user."));
    }
    Ok(())
}

/// `me` blocks `other` (idempotent).
pub async fn block(store: &Store, me: &User, other: UserId) -> Result<(), ApiError> {
    check_other(store, me, other).await?;
    let room = private_room_id(me.id, other);
    store
        .con()
        .in_order(vec![
            redis::Cmd::sadd(room_blocked(&room), me.id),
            redis::Cmd::sadd(user_blocked(me.id), other),
        ])
        .await
        .map_err(unavailable)
}

/// `me` unblocks `other` (idempotent; unblocking someone never blocked is
/// no error).
pub async fn unblock(store: &Store, me: &User, other: UserId) -> Result<(), ApiError> {
    check_other(store, me, other).await?;
    let room = private_room_id(me.id, other);
    store
        .con()
        .in_order(vec![
            redis::Cmd::srem(room_blocked(&room), me.id),
            redis::Cmd::srem(user_blocked(me.id), other),
        ])
        .await
        .map_err(unavailable)
}

/// The users `me` blocked, by name.
pub async fn blocked_users(store: &Store, me: UserId) -> Result<Vec<User>, ApiError> {
    let mut con = store.con();
    let ids: Vec<UserId> = redis::AsyncCommands::smembers(&mut con, user_blocked(me))
        .await
        .map_err(unavailable)?;
    let names = store.usernames(&ids).await?;
    let mut users: Vec<User> = ids
        .into_iter()
        .zip(names)
        .filter_map(|(id, name)| {
            Some(User {
                id,
                username: name?,
            })
        })
        .collect();
    users.sort_by_cached_key(|u| (u.username.to_lowercase(), u.id));
    Ok(users)
}

/// The `SMEMBERS` of a private room's blocked set, for a batch; read the
/// reply with [`between`].
pub fn between_op(room: &str) -> super::redis_con::Op {
    redis::Cmd::smembers(room_blocked(room)).into()
}

/// Who blocked whom, from the members of the room's blocked set.
pub fn between(me: UserId, blockers: &[UserId]) -> Between {
    Between {
        by_me: blockers.contains(&me),
        by_them: blockers.iter().any(|b| *b != me),
    }
}

/// Publishes a typing notice to its room's members, unless the room is a
/// private room in which either member blocked the other (then nothing is
/// published): one round trip either way. Returns whether it went out.
pub async fn publish_typing(store: &Store, typing: Typing) -> Result<bool, ApiError> {
    let room = typing.room_id.clone();
    if private_room_members(&room).is_none() {
        store
            .publish_room(&room, ServerFrame::Typing(typing))
            .await?;
        return Ok(true);
    }
    let envelope = Envelope {
        server_id: store.server_id().to_string(),
        frame: ServerFrame::Typing(typing),
        to: vec![],
    };
    let payload = serde_json::to_string(&envelope).unwrap_or_default();
    let mut con = store.con();
    let published: u8 = TYPING_SCRIPT
        .key(room_blocked(&room))
        .arg(store.publish_command())
        .arg(store.room_channel(&room))
        .arg(payload)
        .invoke_async(&mut con)
        .await
        .map_err(unavailable)?;
    Ok(published == 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::store::keys;

    #[test]
    fn keys_of_a_room_share_its_slot() {
        assert_eq!(room_blocked("2:7"), "room:{2:7}:blocked");
        assert_eq!(keys::room_stream("2:7"), "room:{2:7}:stream");
        assert_eq!(user_blocked(5), "user:5:blocked");
    }

    #[test]
    fn who_blocked_whom() {
        assert_eq!(between(1, &[]), Between::default());
        assert!(between(1, &[1]).by_me && !between(1, &[1]).by_them);
        assert!(!between(1, &[2]).by_me && between(1, &[2]).by_them);
        assert!(between(1, &[1, 2]).by_me && between(1, &[2, 1]).by_them);
        assert!(between(1, &[2]).refusal().is_some());
        assert_eq!(
            between(1, &[1]).refusal().unwrap().message,
            blocked_by_me_message()
        );
        assert!(between(1, &[]).refusal().is_none());
    }
}
