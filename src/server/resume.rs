//! `resume`: replaying to a reconnecting client what it missed.
//!
//! The work one frame can ask for is bounded: at most
//! [`MAX_RESUME_ROOMS`] rooms are looked at, [`MAX_RESUME_PER_ROOM`]
//! messages per room and [`MAX_RESUME_TOTAL`] in all; a room past a limit
//! is listed in `resumed.truncated`, and the client reloads its history.
//! The replay is read a few rooms at a time and each part is written out
//! before the next is read, waiting while the peer has not taken it, so a
//! large resume never sits in memory whole. A socket may resume
//! [`RESUME_BURST`] times at once and then once every [`RESUME_EVERY`]
//! (a client resumes once per connection).

use super::outbox::Outbox;
use super::redis_con::{from_values, Op};
use super::store::{keys, parse_cursor, valid_room_id};
use super::AppState;
use crate::protocol::{
    codes, FrameError, ResumeRequest, Resumed, ServerFrame, User, MAX_RESUME_PER_ROOM,
    MAX_RESUME_ROOMS, MAX_RESUME_TOTAL,
};
use std::{
    collections::{BTreeMap, HashSet},
    time::{Duration, Instant},
};

/// Resumes a socket may make at once, and how often one more is allowed.
pub const RESUME_BURST: u32 = 3;
pub const RESUME_EVERY: Duration = Duration::from_secs(10);

/// Rooms read from Redis per round trip.
const ROOMS_PER_READ: usize = 4;

/// A replay waits while more than this is unwritten to its peer.
const HIGH_WATER: usize = 256 * 1024;
/// How long a replay waits for its peer to take what was written.
const WRITE_WAIT: Duration = Duration::from_secs(10);

/// A socket's allowance of resumes (a token bucket).
pub struct ResumeBudget {
    tokens: u32,
    refilled: Instant,
}

impl Default for ResumeBudget {
    fn default() -> Self {
        Self {
            tokens: RESUME_BURST,
            refilled: Instant::now(),
        }
    }
}

impl ResumeBudget {
    /// Takes one resume; `Err` with the wait when none is left.
    pub fn take(&mut self) -> Result<(), Duration> {
        let now = Instant::now();
        let earned = (now.duration_since(self.refilled).as_millis() / RESUME_EVERY.as_millis())
            .min(u128::from(RESUME_BURST)) as u32;
        if earned > 0 {
            self.tokens = (self.tokens + earned).min(RESUME_BURST);
            self.refilled += RESUME_EVERY * earned;
        }
        if self.tokens == 0 {
            return Err(RESUME_EVERY.saturating_sub(now.duration_since(self.refilled)));
        }
        self.tokens -= 1;
        Ok(())
    }
}

/// The answer to a resume over the budget.
pub fn too_many(wait: Duration) -> ServerFrame {
    ServerFrame::Error(FrameError {
        code: codes::RATE_LIMITED.to_string(),
        message: format!(
            "Too many resume requests; wait {} s.",
            wait.as_secs().max(1)
        ),
        nonce: None,
    })
}

/// Writes what the client missed in the rooms it names (its own rooms
/// only; others are ignored) to `out`, then a `resumed` frame. `known`
/// holds the rooms the socket knows the user is in; rooms found to be the
/// user's are added. Returns, per room, the last replayed id.
pub async fn replay(
    state: &AppState,
    known: &mut HashSet<String>,
    user: &User,
    request: ResumeRequest,
    out: &Outbox,
) -> BTreeMap<String, String> {
    let asked: Vec<(String, String)> = request
        .rooms
        .into_iter()
        .filter(|(room, after)| {
            valid_room_id(room) && parse_cursor(Some(after)).ok().flatten().is_some()
        })
        .take(MAX_RESUME_ROOMS)
        .collect();
    let mut done = Resumed::default();
    let wanted = match members_only(state, known, user, asked).await {
        Ok(wanted) => wanted,
        Err(()) => {
            out.direct(encode(&cannot_replay()));
            out.direct(encode(&ServerFrame::Resumed(done)));
            return BTreeMap::new();
        }
    };
    let mut budget = MAX_RESUME_TOTAL;
    for chunk in wanted.chunks(ROOMS_PER_READ) {
        if budget == 0 {
            done.truncated
                .extend(chunk.iter().map(|(room, _)| room.clone()));
            continue;
        }
        let limit = budget.min(MAX_RESUME_PER_ROOM);
        let pages = match state.store.replay(chunk, limit).await {
            Ok(pages) => pages,
            Err(_) => {
                out.direct(encode(&cannot_replay()));
                break;
            }
        };
        for ((room, _), (mut messages, more)) in chunk.iter().zip(pages) {
            let cut = messages.len() > budget;
            messages.truncate(budget);
            budget -= messages.len();
            if more || cut {
                done.truncated.push(room.clone());
            }
            if let Some(last) = messages.last() {
                done.rooms.insert(room.clone(), last.id.clone());
            }
            for m in messages {
                out.direct(encode(&ServerFrame::Message(m)));
            }
        }
        if out.backlog_bytes() > HIGH_WATER && !out.drain(WRITE_WAIT).await {
            break;
        }
    }
    let marks = done.rooms.clone();
    out.direct(encode(&ServerFrame::Resumed(done)));
    super::metrics::get().replayed("resume", (MAX_RESUME_TOTAL - budget) as u64);
    marks
}

/// The rooms of `asked` that are the user's: those `known`, and the
/// others checked in one batch.
async fn members_only(
    state: &AppState,
    known: &mut HashSet<String>,
    user: &User,
    asked: Vec<(String, String)>,
) -> Result<Vec<(String, String)>, ()> {
    let unknown: Vec<&String> = asked
        .iter()
        .map(|(room, _)| room)
        .filter(|room| !known.contains(*room))
        .collect();
    if !unknown.is_empty() {
        let ops: Vec<Op> = unknown
            .iter()
            .map(|room| redis::Cmd::sismember(keys::user_rooms(user.id), room.as_str()).into())
            .collect();
        let replies = state.store.con().batch(ops).await.map_err(|_| ())?;
        let member: Vec<bool> = from_values(replies).map_err(|_| ())?;
        for (room, member) in unknown.into_iter().zip(member) {
            if member {
                known.insert(room.clone());
            }
        }
    }
    Ok(asked
        .into_iter()
        .filter(|(room, _)| known.contains(room))
        .collect())
}

fn cannot_replay() -> ServerFrame {
    ServerFrame::Error(FrameError {
        code: codes::UNAVAILABLE.to_string(),
        message: "Could not replay missed messages; reload the history.".to_string(),
        nonce: None,
    })
}

/// A server frame, ready to write.
pub fn encode(frame: &ServerFrame) -> bytes::Bytes {
    super::wire::text_frame(&serde_json::to_string(frame).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_socket_resumes_a_few_times_then_waits() {
        let mut budget = ResumeBudget::default();
        for _ in 0..RESUME_BURST {
            assert!(budget.take().is_ok());
        }
        let wait = budget.take().unwrap_err();
        assert!(wait <= RESUME_EVERY && wait > Duration::ZERO, "{wait:?}");
        // Time passes: one more.
        budget.refilled -= RESUME_EVERY;
        assert!(budget.take().is_ok());
        assert!(budget.take().is_err());
    }
}
