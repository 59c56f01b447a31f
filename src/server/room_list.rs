//! The room list (`GET /api/rooms`) and one room's line in it.
//!
//! Each line needs the room's newest message (with its edit), the user's
//! unread count and read marks, and the room's name: `lua/summary.lua`
//! reads them. A script call costs Redis far more than the few reads in
//! it (about 12 µs of a room's 18 µs, measured: BENCHMARKS.md), so on a
//! single Redis one call covers [`ROOMS_PER_CALL`] rooms, names included;
//! a user in 5,000 rooms costs 25 calls instead of 5,000 calls and 5,000
//! name lookups. The calls go out in pipelines of [`CALLS_PER_PIPELINE`],
//! one after another, so one large list does not queue 5,000 rooms' work
//! in front of everyone else's commands at once. On a cluster a script's
//! keys must share a slot and every room has its own, so each room is a
//! call of its own and names are separate lookups (all in flight at once,
//! each on its node).

use super::presence::Presence;
use super::redis_con::Op;
use super::room_order::{self, RoomPage};
use super::store::{apply_edit, entry_to_message, keys, unavailable, RawEntry, Store};
use crate::api::ApiError;
use crate::protocol::{
    private_room_members, RoomSummary, User, UserId, GENERAL_ROOM_ID, MAX_UNREAD_COUNT,
};
use redis::{Script, ScriptInvocation};
use std::sync::LazyLock;

/// Lines of rooms for one user (see `lua/summary.lua`).
static SUMMARY_SCRIPT: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/summary.lua")));

/// Rooms per script call on a single Redis: about 2 ms of Redis time each.
pub const ROOMS_PER_CALL: usize = 200;
/// Script calls per pipeline (one pipeline at a time per request).
pub const CALLS_PER_PIPELINE: usize = 5;

/// One room's line as `lua/summary.lua` returns it: newest entry, unread
/// count, own read mark, other member's read mark, edit of the newest
/// entry, name (when asked for).
type RoomLine = (
    Vec<RawEntry>,
    u32,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// The other member of a private room, seen from `user`.
fn partner(user: UserId, room: &str) -> Option<UserId> {
    private_room_members(room).map(|(a, b)| if a == user { b } else { a })
}

/// The key holding a room's name: the other member's user hash for a
/// private room, `room:{id}:name` for a public one.
fn name_key(room: &str, other: Option<UserId>) -> String {
    match other {
        Some(other) => keys::user(other),
        None => keys::room_name(room),
    }
}

/// A call of `lua/summary.lua` for `rooms` (with their partners), names
/// included when `with_names` (only where all the keys may be in one call:
/// a single Redis).
fn invocation(
    user: UserId,
    rooms: &[(String, Option<UserId>)],
    with_names: bool,
) -> ScriptInvocation<'static> {
    let mut call = SUMMARY_SCRIPT.prepare_invoke();
    call.arg(user)
        .arg(MAX_UNREAD_COUNT)
        .arg(if with_names { 4 } else { 3 });
    for (room, other) in rooms {
        call.key(keys::room_stream(room))
            .key(keys::room_read(room))
            .key(keys::room_edits(room));
        if with_names {
            call.key(name_key(room, *other));
        }
        call.arg(other.map(|o| o.to_string()).unwrap_or_default());
    }
    call
}

/// A room summary from its line (the name as stored, if read; no online
/// flag).
fn room_summary(
    id: String,
    other: Option<UserId>,
    line: RoomLine,
) -> (RoomSummary, Option<String>) {
    let (newest, unread, last_read, peer_read, edit, name) = line;
    let last_message = newest.into_iter().next().and_then(|e| {
        let mut m = entry_to_message(&id, e)?;
        apply_edit(&mut m, edit.as_deref());
        Some(m)
    });
    let summary = RoomSummary {
        id,
        other_user_id: other,
        last_message,
        unread,
        last_read,
        peer_read,
        ..Default::default()
    };
    (summary, name)
}

/// One room as `user` sees it (unread count, read marks, last message);
/// `name` and `online` are left for the caller.
pub async fn room_line(
    store: &Store,
    user: UserId,
    room: &str,
    other: Option<UserId>,
) -> Result<RoomSummary, ApiError> {
    let mut con = store.con();
    let mut lines: Vec<RoomLine> = invocation(user, &[(room.to_string(), other)], false)
        .invoke_async(&mut con)
        .await
        .map_err(unavailable)?;
    let line = lines.pop().unwrap_or_default();
    Ok(room_summary(room.to_string(), other, line).0)
}

/// The lines (and names) of `rooms`: in chunks of script calls on a single
/// Redis, one call and one name lookup per room on a cluster.
async fn lines(
    store: &Store,
    user: UserId,
    rooms: &[(String, Option<UserId>)],
) -> Result<Vec<(RoomLine, Option<String>)>, ApiError> {
    let con = store.con();
    if con.is_cluster() {
        let mut ops = Vec::with_capacity(rooms.len() * 2);
        for (room, other) in rooms {
            ops.push(Op::Cmd(match other {
                Some(_) => redis::Cmd::hget(name_key(room, *other), "username"),
                None => redis::Cmd::get(name_key(room, *other)),
            }));
            let call = invocation(user, std::slice::from_ref(&(room.clone(), *other)), false);
            ops.push(Op::Script(&SUMMARY_SCRIPT, call));
        }
        let replies = con.batch(ops).await.map_err(unavailable)?;
        return Ok(replies
            .chunks(2)
            .map(|pair| {
                let name: Option<String> = redis::from_redis_value_ref(&pair[0]).unwrap_or(None);
                let mut line: Vec<RoomLine> =
                    redis::from_redis_value_ref(&pair[1]).unwrap_or_default();
                (line.pop().unwrap_or_default(), name)
            })
            .collect());
    }
    let mut out = Vec::with_capacity(rooms.len());
    for pipeline in rooms.chunks(ROOMS_PER_CALL * CALLS_PER_PIPELINE) {
        let ops = pipeline
            .chunks(ROOMS_PER_CALL)
            .map(|call| Op::Script(&SUMMARY_SCRIPT, invocation(user, call, true)))
            .collect();
        for reply in con.batch(ops).await.map_err(unavailable)? {
            let call: Vec<RoomLine> = redis::from_redis_value(reply).unwrap_or_default();
            out.extend(call.into_iter().map(|mut line| {
                let name = line.5.take();
                (line, name)
            }));
        }
    }
    Ok(out)
}

/// The user's rooms (or one page of them, see [`super::room_order`]) with
/// names, presence and last message, most recent activity first.
pub async fn rooms_of(
    store: &Store,
    user: &User,
    presence: &Presence,
    page: &RoomPage,
) -> Result<Vec<RoomSummary>, ApiError> {
    let mut ids = store.room_ids(user.id).await.map_err(unavailable)?;
    if !page.is_whole() {
        // Order every room by one cheap read each, then read whole lines
        // for this page only.
        let newest = room_order::newest_ids(store, &ids).await?;
        ids = page.select(room_order::ordered(ids, newest), String::as_str)?;
    }
    let rooms: Vec<(String, Option<UserId>)> = ids
        .into_iter()
        .map(|id| {
            let other = partner(user.id, &id);
            (id, other)
        })
        .collect();
    let lines = lines(store, user.id, &rooms).await?;
    let online_ids: Vec<UserId> = rooms.iter().filter_map(|(_, o)| *o).collect();
    let mut online = presence.online_flags(&online_ids).await?.into_iter();

    let mut list = Vec::with_capacity(rooms.len());
    for ((id, other), (line, name)) in rooms.into_iter().zip(lines) {
        let (summary, _) = room_summary(id.clone(), other, line);
        let name = match (name, other) {
            (Some(n), _) => n,
            (None, None) if id == GENERAL_ROOM_ID => "General".to_string(),
            (None, Some(o)) => format!("User #{o}"),
            (None, None) => id,
        };
        list.push(RoomSummary {
            online: other.map(|_| online.next().unwrap_or(false)),
            name,
            ..summary
        });
    }
    fn newest(r: &RoomSummary) -> Option<&str> {
        r.last_message.as_ref().map(|m| m.id.as_str())
    }
    list.sort_by(|a, b| {
        room_order::sort_key(newest(a), &a.id).cmp(&room_order::sort_key(newest(b), &b.id))
    });
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_the_partner_or_the_room() {
        assert_eq!(partner(3, "2:3"), Some(2));
        assert_eq!(partner(2, "2:3"), Some(3));
        assert_eq!(partner(2, "0"), None);
        assert_eq!(name_key("2:3", Some(2)), "user:2");
        assert_eq!(name_key("0", None), "room:0:name");
    }
}
