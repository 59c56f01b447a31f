//! The order of the room list and its pages (`GET /api/rooms?limit=&before=`).
//!
//! Rooms are ordered by the id of their newest message, newest first;
//! rooms without messages come last; ties go by room id, so General (`"0"`)
//! comes first among them and the order is the same on every request.
//!
//! A whole list reads every room's line (`lua/summary.lua`, five reads per
//! room), which for a user in 5,000 rooms is a megabyte and about 50 ms
//! of Redis time (BENCHMARKS.md). A page reads only the newest id of every
//! room (`room:{R}:last`, written by `lua/send.lua`: one `MGET` for a
//! thousand rooms), orders them, and reads the lines of the `limit` rooms
//! after the cursor only. The cursor is the id of the last room the client
//! has: it is placed where that room is *now*, so a room that moved up
//! since (a new message) makes the next page repeat rooms, never skip one.

use super::redis_con::Op;
use super::store::{keys, unavailable, RawEntry, Store};
use crate::api::ApiError;
use crate::protocol::message_id_key;
use redis::Script;
use std::cmp::Reverse;
use std::sync::LazyLock;

/// The newest message id of some rooms (see `lua/room_order.lua`).
static ORDER_SCRIPT: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/room_order.lua")));

/// The most rooms one page may ask for.
pub const MAX_ROOM_PAGE: usize = 500;
/// Keys per `MGET` of the rooms' newest ids.
const KEYS_PER_READ: usize = 1000;
/// Rooms per `lua/room_order.lua` call on a single Redis (about 2 ms of
/// Redis time each).
const STREAM_ROOMS_PER_CALL: usize = 500;

/// Which part of the room list a request asks for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoomPage {
    /// At most this many rooms; every room when absent.
    pub limit: Option<usize>,
    /// Only rooms after this one in the order (a room id of the caller's).
    pub before: Option<String>,
}

impl RoomPage {
    /// The page of `limit` (1–[`MAX_ROOM_PAGE`]) and `before` (a room id) as
    /// sent; absent or empty values mean "all" and "from the top".
    pub fn parse(limit: Option<&str>, before: Option<&str>) -> Result<Self, ApiError> {
        let limit = match limit.map(str::trim).filter(|s| !s.is_empty()) {
            None => None,
            Some(s) => match s.parse::<usize>() {
                Ok(n) if (1..=MAX_ROOM_PAGE).contains(&n) => Some(n),
                _ => {
                    return Err(ApiError::bad_request(format!(
                        "limit must be a number from 1 to {MAX_ROOM_PAGE}."
                    )))
                }
            },
        };
        let before = before
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        Ok(Self { limit, before })
    }

    /// Whether this is the whole list (no limit, no cursor).
    pub fn is_whole(&self) -> bool {
        self.limit.is_none() && self.before.is_none()
    }

    /// The rooms of this page out of `ordered` (already in list order).
    /// 400 when `before` is not one of them.
    pub fn select<T>(&self, ordered: Vec<T>, id: impl Fn(&T) -> &str) -> Result<Vec<T>, ApiError> {
        let start = match &self.before {
            None => 0,
            Some(before) => match ordered.iter().position(|r| id(r) == before) {
                Some(at) => at + 1,
                None => {
                    return Err(ApiError::bad_request(
                        "before must be the id of one of your rooms.",
                    ))
                }
            },
        };
        let limit = self.limit.unwrap_or(usize::MAX);
        Ok(ordered.into_iter().skip(start).take(limit).collect())
    }
}

/// The key rooms are sorted by: newest message first (none: last), then
/// room id.
pub fn sort_key<'a>(newest: Option<&str>, room: &'a str) -> (Reverse<(u64, u64)>, &'a str) {
    (Reverse(newest.map_or((0, 0), message_id_key)), room)
}

/// `rooms` in list order, given each one's newest message id (each id
/// parsed once; ties by room id, as in [`sort_key`]).
pub fn ordered(rooms: Vec<String>, newest: Vec<Option<String>>) -> Vec<String> {
    let mut keyed: Vec<(Reverse<(u64, u64)>, String)> = rooms
        .into_iter()
        .zip(newest)
        .map(|(room, id)| (sort_key(id.as_deref(), "").0, room))
        .collect();
    keyed.sort_unstable();
    keyed.into_iter().map(|(_, room)| room).collect()
}

/// The newest message id of each of `rooms` (`None`: empty), in order:
/// `MGET` of their `room:{R}:last` keys (one read per room, no script), and
/// only for rooms without one (history older than that key) the stream
/// itself, which also writes the key for next time.
pub async fn newest_ids(store: &Store, rooms: &[String]) -> Result<Vec<Option<String>>, ApiError> {
    let con = store.con();
    let mut ids: Vec<Option<String>> = if con.is_cluster() {
        let ops = rooms
            .iter()
            .map(|room| Op::Cmd(redis::Cmd::get(keys::room_last(room))))
            .collect();
        let replies = con.batch(ops).await.map_err(unavailable)?;
        replies
            .into_iter()
            .map(|reply| redis::from_redis_value(reply).unwrap_or(None))
            .collect()
    } else {
        let ops = rooms
            .chunks(KEYS_PER_READ)
            .map(|chunk| {
                let mut mget = redis::cmd("MGET");
                for room in chunk {
                    mget.arg(keys::room_last(room));
                }
                Op::Cmd(mget)
            })
            .collect();
        let replies = con.batch(ops).await.map_err(unavailable)?;
        let mut ids = Vec::with_capacity(rooms.len());
        for (reply, chunk) in replies.into_iter().zip(rooms.chunks(KEYS_PER_READ)) {
            let got: Vec<Option<String>> = redis::from_redis_value(reply).unwrap_or_default();
            // A short reply is the store misbehaving: those rooms are read below.
            ids.extend(
                got.into_iter()
                    .chain(std::iter::repeat(None))
                    .take(chunk.len()),
            );
        }
        ids
    };
    let missing: Vec<usize> = (0..rooms.len()).filter(|&i| ids[i].is_none()).collect();
    if !missing.is_empty() {
        let found = from_streams(store, missing.iter().map(|&i| rooms[i].as_str())).await?;
        for (i, id) in missing.into_iter().zip(found) {
            ids[i] = id;
        }
    }
    Ok(ids)
}

/// The newest id of rooms read from their streams (`lua/room_order.lua`
/// on a single Redis, which also writes their `last` key; a plain
/// `XREVRANGE` per room on a cluster).
async fn from_streams<'a>(
    store: &Store,
    rooms: impl Iterator<Item = &'a str>,
) -> Result<Vec<Option<String>>, ApiError> {
    let rooms: Vec<&str> = rooms.collect();
    let con = store.con();
    if con.is_cluster() {
        let ops = rooms
            .iter()
            .map(|room| {
                let mut cmd = redis::cmd("XREVRANGE");
                cmd.arg(keys::room_stream(room))
                    .arg("+")
                    .arg("-")
                    .arg("COUNT")
                    .arg(1);
                Op::Cmd(cmd)
            })
            .collect();
        let replies = con.batch(ops).await.map_err(unavailable)?;
        return Ok(replies
            .into_iter()
            .map(|reply| {
                let newest: Vec<RawEntry> = redis::from_redis_value(reply).unwrap_or_default();
                newest.into_iter().next().map(|(id, _)| id)
            })
            .collect());
    }
    let ops = rooms
        .chunks(STREAM_ROOMS_PER_CALL)
        .map(|call| {
            let mut invocation = ORDER_SCRIPT.prepare_invoke();
            for room in call {
                invocation
                    .key(keys::room_stream(room))
                    .key(keys::room_last(room));
            }
            Op::Script(&ORDER_SCRIPT, invocation)
        })
        .collect();
    let mut out = Vec::with_capacity(rooms.len());
    for (reply, call) in con
        .batch(ops)
        .await
        .map_err(unavailable)?
        .into_iter()
        .zip(rooms.chunks(STREAM_ROOMS_PER_CALL))
    {
        let ids: Vec<Option<String>> = redis::from_redis_value(reply).unwrap_or_default();
        out.extend(
            ids.into_iter()
                .chain(std::iter::repeat(None))
                .take(call.len()),
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_and_cursors_are_checked() {
        assert!(RoomPage::parse(None, None).unwrap().is_whole());
        assert!(RoomPage::parse(Some(" "), Some("")).unwrap().is_whole());
        let page = RoomPage::parse(Some("50"), Some("1:2")).unwrap();
        assert_eq!(page.limit, Some(50));
        assert_eq!(page.before.as_deref(), Some("1:2"));
        for bad in ["0", "501", "-1", "ten", "1e3"] {
            let e = RoomPage::parse(Some(bad), None).unwrap_err();
            assert_eq!(e.status(), 400, "{bad}");
        }
    }

    #[test]
    fn pages_follow_the_cursor() {
        let rooms: Vec<String> = ["0", "1:2", "1:3", "1:4"].map(String::from).to_vec();
        let page = |limit, before: Option<&str>| RoomPage {
            limit,
            before: before.map(str::to_string),
        };
        let id = String::as_str;
        assert_eq!(
            page(Some(2), None).select(rooms.clone(), id).unwrap(),
            ["0", "1:2"]
        );
        assert_eq!(
            page(Some(2), Some("1:2"))
                .select(rooms.clone(), id)
                .unwrap(),
            ["1:3", "1:4"]
        );
        assert!(page(Some(2), Some("1:4"))
            .select(rooms.clone(), id)
            .unwrap()
            .is_empty());
        assert_eq!(
            page(None, Some("1:3")).select(rooms.clone(), id).unwrap(),
            ["1:4"]
        );
        assert_eq!(
            page(Some(2), Some("9:9"))
                .select(rooms, id)
                .unwrap_err()
                .status(),
            400
        );
    }

    #[test]
    fn newest_first_then_by_id() {
        let mut rooms = [
            (None, "1:5"),
            (Some("10-0"), "1:3"),
            (Some("10-0"), "0"),
            (Some("9-7"), "1:2"),
            (Some("10-1"), "1:4"),
            (None, "0x"),
        ];
        let ids: Vec<String> = rooms.iter().map(|r| r.1.to_string()).collect();
        let newest = rooms.iter().map(|r| r.0.map(str::to_string)).collect();
        assert_eq!(
            ordered(ids, newest),
            ["1:4", "0", "1:3", "1:2", "0x", "1:5"]
        );
        // The whole list sorts with the same key.
        rooms.sort_by(|a, b| sort_key(a.0, a.1).cmp(&sort_key(b.0, b.1)));
        let sorted: Vec<&str> = rooms.iter().map(|r| r.1).collect();
        assert_eq!(sorted, ["1:4", "0", "1:3", "1:2", "0x", "1:5"]);
    }
}
