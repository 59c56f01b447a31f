//! Catching up after the pub/sub subscription was lost.
//!
//! Pub/sub delivers only to connected subscribers: whatever is published
//! while the hub's connection is down (a network blip, a Redis restart,
//! `CLIENT KILL TYPE pubsub`, Redis dropping a subscriber that fell too far
//! behind) never arrives. Every message is also in its room's stream,
//! though, under an id that is Redis's clock at the time. So the hub
//! remembers the last message id it delivered per room ([`Gaps::seen`]),
//! and when the subscription is back ([`Gaps::subscribed`]) it reads every
//! room of its local users from there (or, for a room it delivered nothing
//! of, from the Redis time at which the previous subscription was up) and
//! delivers what it missed before any live event that came in meanwhile —
//! in order, and without the live copies of what the catch-up delivered.
//!
//! Only messages are caught up this way: an edit, a read mark or a typing
//! notice published during the gap is not (a reload shows the first two).
//! Sessions that ended during the gap (their `sessions.ended` event was
//! missed too) are found by checking the session of every local socket
//! ([`ended_sessions`]); that check holds nothing back, and it is retried
//! while Redis cannot answer it (on a cluster, a node may still be down
//! when the subscription is back on another one).
//!
//! On a Redis Cluster room events do not come through this subscription
//! (`shards.rs`), so only the sessions are checked.

use super::redis_con::{from_values, Op};
use super::session::SessionId;
use super::store::{keys, Store};
use crate::protocol::{message_id_key, ChatMessage, UserId, GENERAL_ROOM_ID, MAX_RESUME_PER_ROOM};
use std::collections::{BTreeSet, HashMap};

/// Live events held back while a catch-up runs; past this the catch-up is
/// given up and every local socket is asked to reconnect and resume.
pub const MAX_HELD: usize = 8192;

/// Rooms remembered before the oldest entries are dropped (see
/// [`Gaps::forget_old`]).
const MAX_ROOMS: usize = 100_000;
/// Entries this much older than the newest seen are the ones dropped.
const FORGET_AFTER_MS: u64 = 10 * 60 * 1000;

/// Rooms read per batch by a catch-up.
const ROOMS_PER_BATCH: usize = 200;

/// What the hub remembers to catch up after a loss (owned by the hub task).
#[derive(Default)]
pub struct Gaps {
    /// The last message id delivered, per room.
    last: HashMap<String, (u64, u64)>,
    /// Messages of rooms absent from `last` with ids up to this one were
    /// all delivered or not wanted: the Redis time at which the previous
    /// subscription was up, or later (see [`Gaps::forget_old`]).
    horizon: Option<(u64, u64)>,
    newest_ms: u64,
}

/// What a catch-up read.
pub struct CaughtUp {
    /// Per room: the missed messages, oldest first, and whether there were
    /// more than could be replayed.
    pub rooms: Vec<(String, Vec<ChatMessage>, bool)>,
    /// The subscription this catch-up followed (its `at_ms`).
    pub subscribed_at: (u64, u64),
}

/// A catch-up to run: everything it needs, read off the hub's state.
pub struct Plan {
    users: Vec<UserId>,
    from: HashMap<String, (u64, u64)>,
    horizon: (u64, u64),
    subscribed_at: (u64, u64),
}

impl Gaps {
    /// A message is about to be delivered live: `false` when it was
    /// delivered already. A room's messages are published in id order, so
    /// one at or below the last delivered id is a copy: the live echo of a
    /// message a catch-up read from the stream just before the echo came.
    pub fn fresh(&mut self, room: &str, id: &str) -> bool {
        let key = message_id_key(id);
        self.newest_ms = self.newest_ms.max(key.0);
        match self.last.get_mut(room) {
            Some(last) if *last >= key => false,
            Some(last) => {
                *last = key;
                true
            }
            None => {
                self.last.insert(room.to_string(), key);
                if self.last.len() > MAX_ROOMS {
                    self.forget_old();
                }
                true
            }
        }
    }

    /// Drops rooms with nothing new for [`FORGET_AFTER_MS`] and moves the
    /// horizon up to that age: nothing was delivered in them since, and
    /// anything published in them since was delivered (the subscription
    /// was up) or caught up, so their catch-up may start there.
    fn forget_old(&mut self) {
        let cut = self.newest_ms.saturating_sub(FORGET_AFTER_MS);
        self.last.retain(|_, last| last.0 >= cut);
        self.horizon = self.horizon.max(Some((cut, 0)));
    }

    /// The subscription is up since Redis time `at_ms`. The first time
    /// there is nothing to catch up; after a loss, the plan of a catch-up
    /// of the messages `users` missed.
    pub fn subscribed(&mut self, at_ms: u64, users: Vec<UserId>) -> Option<Plan> {
        // A message in the same millisecond as the clock reading may have
        // come just before the subscription: count the whole millisecond.
        let at = (at_ms, u64::MAX);
        let Some(horizon) = self.horizon else {
            self.horizon = Some(at);
            return None;
        };
        Some(Plan {
            users,
            from: self.last.clone(),
            horizon,
            subscribed_at: at,
        })
    }

    /// Starts over from the subscription at `at_ms` (a catch-up given up:
    /// every socket resumes instead).
    pub fn restart(&mut self, at_ms: u64) {
        self.last.clear();
        self.horizon = Some((at_ms, u64::MAX));
    }

    /// A catch-up is done: from now on the new subscription is the horizon.
    /// Rooms it read are remembered by what it delivered.
    pub fn caught_up(&mut self, done: &CaughtUp) {
        self.last.clear();
        self.horizon = Some(done.subscribed_at);
        for (room, messages, _) in &done.rooms {
            if let Some(m) = messages.last() {
                self.fresh(room, &m.id);
            }
        }
    }
}

/// The sessions among `sessions` that no longer exist.
pub async fn ended_sessions(
    store: &Store,
    sessions: &[SessionId],
) -> Result<Vec<SessionId>, redis::RedisError> {
    let con = store.con();
    let mut ended = Vec::new();
    for chunk in sessions.chunks(ROOMS_PER_BATCH * 5) {
        let ops = chunk
            .iter()
            .map(|s| redis::Cmd::exists(s.key()).into())
            .collect();
        let alive: Vec<bool> = from_values(con.batch(ops).await?)?;
        ended.extend(
            chunk
                .iter()
                .zip(alive)
                .filter(|(_, alive)| !alive)
                .map(|(s, _)| *s),
        );
    }
    Ok(ended)
}

impl Plan {
    /// Reads what the local users missed.
    pub async fn run(&self, store: &Store) -> Result<CaughtUp, redis::RedisError> {
        let con = store.con();
        let mut rooms = Vec::new();
        if !self.users.is_empty() {
            let mut wanted = BTreeSet::from([GENERAL_ROOM_ID.to_string()]);
            for chunk in self.users.chunks(ROOMS_PER_BATCH * 5) {
                let ops: Vec<Op> = chunk
                    .iter()
                    .map(|u| redis::Cmd::smembers(keys::user_rooms(*u)).into())
                    .collect();
                let sets: Vec<Vec<String>> = from_values(con.batch(ops).await?)?;
                wanted.extend(sets.into_iter().flatten());
            }
            let wanted: Vec<(String, String)> = wanted
                .into_iter()
                .map(|room| {
                    let (ms, seq) = self.from.get(&room).copied().unwrap_or(self.horizon);
                    (room, format!("{ms}-{seq}"))
                })
                .collect();
            for chunk in wanted.chunks(ROOMS_PER_BATCH) {
                let pages = store
                    .replay(chunk, MAX_RESUME_PER_ROOM)
                    .await
                    .map_err(|e| {
                        redis::RedisError::from(std::io::Error::other(e.message.clone()))
                    })?;
                for ((room, _), (messages, more)) in chunk.iter().zip(pages) {
                    if !messages.is_empty() || more {
                        rooms.push((room.clone(), messages, more));
                    }
                }
            }
        }
        Ok(CaughtUp {
            rooms,
            subscribed_at: self.subscribed_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catch_up_starts_after_what_was_delivered() {
        let mut gaps = Gaps::default();
        assert!(gaps.subscribed(1000, vec![1]).is_none());
        assert!(gaps.fresh("0", "1500-0"));
        assert!(!gaps.fresh("0", "1400-3"), "an older id is a copy");
        let plan = gaps.subscribed(3000, vec![1]).unwrap();
        // General from its last delivered message; any other room from the
        // whole millisecond of the first subscription on.
        assert_eq!(plan.from["0"], (1500, 0));
        assert_eq!(plan.horizon, (1000, u64::MAX));
        assert_eq!(plan.subscribed_at, (3000, u64::MAX));
        gaps.caught_up(&CaughtUp {
            rooms: vec![],
            subscribed_at: plan.subscribed_at,
        });
        let next = gaps.subscribed(5000, vec![1]).unwrap();
        assert!(next.from.is_empty());
        assert_eq!(next.horizon, (3000, u64::MAX));
    }

    #[test]
    fn forgetting_rooms_moves_the_horizon_up() {
        let mut gaps = Gaps::default();
        gaps.subscribed(1, vec![]);
        gaps.fresh("old", "1000-0");
        gaps.fresh("new", &format!("{}-0", 1000 + FORGET_AFTER_MS + 5));
        gaps.forget_old();
        assert!(!gaps.last.contains_key("old"));
        assert!(gaps.last.contains_key("new"));
        assert_eq!(gaps.horizon, Some((1005, 0)));
    }
}
