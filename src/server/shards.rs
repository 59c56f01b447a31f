//! Sharded pub/sub on a Redis Cluster: the hub's per-room subscriptions.
//!
//! On a cluster, room events (`message`, `message.updated`, `read`,
//! `typing`) are published with `SPUBLISH` on the room's shard channel
//! `room:{ROOM}:events`, inside the same scripts that store them (the
//! channel is in the room's slot). An event then stays on its shard and
//! reaches only the instances subscribed to that room, instead of every
//! node and every instance. Events about users rather than rooms
//! (presence, `show.room`) stay on the global `MESSAGES` channel.
//!
//! The hub keeps, for its local users, their rooms, and per room the
//! number of local users who are members. The first one makes it
//! `SSUBSCRIBE`; when the last one leaves it `SUNSUBSCRIBE`s. The
//! subscriptions live on a redis-rs cluster connection (RESP3, pushes to a
//! channel), which routes each one to its slot's node and subscribes again
//! after a reconnect, a failover or `MOVED`.
//!
//! Gaps, and how they close:
//! - a user's first socket: its rooms are fetched and subscribed before
//!   its `resume` is answered (the browser always resumes), so the replay
//!   covers anything published before the subscription;
//! - a room new to a local user (`show.room`) that this instance did not
//!   follow yet: once subscribed, the room's messages after the one the
//!   `show.room` named are read from the stream and delivered, except those
//!   that already came live (stream ids increase, and a subscription only
//!   ever sees a suffix).

use super::redis_con::{self, Endpoints, Timeouts};
use super::store::{keys, Store};
use crate::protocol::{ChatMessage, UserId};
use redis::{PushInfo, PushKind};
use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};
use tokio::sync::{mpsc, oneshot};

/// What the hub asks of the subscriber task, done in order.
pub enum Request {
    /// `SSUBSCRIBE` a room's channel (retried until it succeeds); with
    /// `confirm`, report [`Report::Subscribed`] afterwards.
    Subscribe {
        room: String,
        confirm: bool,
    },
    Unsubscribe(String),
    /// Fire these when every earlier request is done.
    Ready(Vec<oneshot::Sender<()>>),
    /// The server dropped a room's subscription (its slot moved to another
    /// node): refresh the slot map and subscribe again.
    Resubscribe(String),
}

/// What comes back to the hub from the subscriber and helper tasks.
pub enum Report {
    /// A shard-channel message's payload.
    Event(Vec<u8>),
    /// The rooms of a user (fetched when their first local socket joined).
    UserRooms(UserId, Vec<String>),
    /// A room's subscription is up.
    Subscribed(String),
    /// Messages of a room that its new local members may have missed.
    CatchUp(String, Vec<ChatMessage>),
    /// A room's subscription ended (ours, or the server's when the slot
    /// moved).
    Dropped(String),
}

/// A room followed for new local members who may have missed messages.
struct CatchUp {
    users: Vec<UserId>,
    after: String,
    /// The first message that arrived live since the subscription.
    first_live: Option<(u64, u64)>,
}

/// The hub's per-room subscription state (owned by the hub task).
pub struct Shards {
    store: Store,
    requests: mpsc::UnboundedSender<Request>,
    reports: mpsc::UnboundedSender<Report>,
    rooms_of: HashMap<UserId, HashSet<String>>,
    waiting: HashMap<UserId, Vec<oneshot::Sender<()>>>,
    /// Rooms shown to users whose rooms were still being read (the read
    /// may have missed them).
    shown_while_loading: HashMap<UserId, Vec<(String, Option<String>)>>,
    members: HashMap<String, usize>,
    catching_up: HashMap<String, CatchUp>,
}

fn id_key(id: &str) -> Option<(u64, u64)> {
    let (ms, seq) = id.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

impl Shards {
    /// Starts the subscriber task; its reports arrive on `reports`.
    pub fn spawn(
        store: Store,
        endpoints: Endpoints,
        timeouts: Timeouts,
        reports: mpsc::UnboundedSender<Report>,
    ) -> Self {
        let (requests, rx) = mpsc::unbounded_channel();
        tokio::spawn(subscriber(endpoints, timeouts, rx, reports.clone()));
        Self {
            store,
            requests,
            reports,
            rooms_of: HashMap::new(),
            waiting: HashMap::new(),
            shown_while_loading: HashMap::new(),
            members: HashMap::new(),
            catching_up: HashMap::new(),
        }
    }

    /// Rooms this instance follows (for `/healthz`).
    pub fn rooms(&self) -> usize {
        self.members.len()
    }

    /// A socket of `user` joined; `ready` fires once the user's rooms are
    /// subscribed. `first` says it is the user's first local socket.
    pub fn joined(&mut self, user: UserId, first: bool, ready: oneshot::Sender<()>) {
        if first {
            self.waiting.entry(user).or_default().push(ready);
            let store = self.store.clone();
            let reports = self.reports.clone();
            tokio::spawn(async move {
                let mut delay = Duration::from_millis(100);
                let rooms = loop {
                    match store.room_ids(user).await {
                        Ok(rooms) => break rooms,
                        Err(e) if delay < Duration::from_secs(5) => {
                            tracing::warn!(error = %e, user, "cannot read a user's rooms; retrying");
                            tokio::time::sleep(delay).await;
                            delay *= 2;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, user, "cannot read a user's rooms; General only");
                            break vec![crate::protocol::GENERAL_ROOM_ID.to_string()];
                        }
                    }
                };
                let _ = reports.send(Report::UserRooms(user, rooms));
            });
        } else if let Some(waiting) = self.waiting.get_mut(&user) {
            waiting.push(ready);
        } else {
            let _ = self.requests.send(Request::Ready(vec![ready]));
        }
    }

    /// The rooms of `user` arrived; `local` says the user still has sockets.
    pub fn user_rooms(&mut self, user: UserId, rooms: Vec<String>, local: bool) {
        let waiting = self.waiting.remove(&user).unwrap_or_default();
        let shown = self.shown_while_loading.remove(&user).unwrap_or_default();
        if local {
            self.rooms_of.entry(user).or_default();
            for room in rooms {
                if self.rooms_of.entry(user).or_default().insert(room.clone()) {
                    self.add_member(&room, None);
                }
            }
            for (room, after) in shown {
                self.room_shown(&room, &[user], after.as_deref());
            }
        }
        let _ = self.requests.send(Request::Ready(waiting));
    }

    /// The last local socket of `user` closed.
    pub fn left(&mut self, user: UserId) {
        for ready in self.waiting.remove(&user).unwrap_or_default() {
            let _ = ready.send(());
        }
        self.shown_while_loading.remove(&user);
        for room in self.rooms_of.remove(&user).unwrap_or_default() {
            if let Some(n) = self.members.get_mut(&room) {
                *n -= 1;
                if *n == 0 {
                    self.members.remove(&room);
                    self.catching_up.remove(&room);
                    let _ = self.requests.send(Request::Unsubscribe(room));
                }
            }
        }
    }

    /// `show.room`: `room` is new to `users` (those with local sockets);
    /// `after` is the newest message they were shown with it.
    pub fn room_shown(&mut self, room: &str, users: &[UserId], after: Option<&str>) {
        for user in users {
            let Some(rooms) = self.rooms_of.get_mut(user) else {
                if self.waiting.contains_key(user) {
                    self.shown_while_loading
                        .entry(*user)
                        .or_default()
                        .push((room.to_string(), after.map(str::to_string)));
                }
                continue;
            };
            if rooms.insert(room.to_string()) {
                self.add_member(room, Some((*user, after.unwrap_or("0-0"))));
            }
        }
    }

    fn add_member(&mut self, room: &str, new_to: Option<(UserId, &str)>) {
        let n = self.members.entry(room.to_string()).or_insert(0);
        *n += 1;
        if *n == 1 {
            let _ = self.requests.send(Request::Subscribe {
                room: room.to_string(),
                confirm: new_to.is_some(),
            });
            if let Some((user, after)) = new_to {
                self.catching_up.insert(
                    room.to_string(),
                    CatchUp {
                        users: vec![user],
                        after: after.to_string(),
                        first_live: None,
                    },
                );
            }
        } else if let (Some((user, _)), Some(c)) = (new_to, self.catching_up.get_mut(room)) {
            c.users.push(user);
        }
    }

    /// A subscription ended: if the room is still wanted, the server
    /// dropped it (resharding moved the slot), so subscribe again.
    pub fn dropped(&mut self, room: String) {
        if self.members.contains_key(&room) {
            tracing::info!(
                room,
                "shard subscription dropped by the server; resubscribing"
            );
            let _ = self.requests.send(Request::Resubscribe(room));
        }
    }

    /// A room message arrived live.
    pub fn live(&mut self, room: &str, id: &str) {
        if let Some(c) = self.catching_up.get_mut(room) {
            if c.first_live.is_none() {
                c.first_live = id_key(id);
            }
        }
    }

    /// A room's subscription is up: read what its new members missed.
    pub fn subscribed(&mut self, room: String) {
        let Some(c) = self.catching_up.get(&room) else {
            return;
        };
        let after = c.after.clone();
        let store = self.store.clone();
        let reports = self.reports.clone();
        tokio::spawn(async move {
            let messages = match store.replay(&[(room.clone(), after)], 500).await {
                Ok(mut pages) => pages.pop().map(|(m, _)| m).unwrap_or_default(),
                Err(_) => vec![],
            };
            let _ = reports.send(Report::CatchUp(room, messages));
        });
    }

    /// The missed messages of a room, and who gets them: those older than
    /// the first live one.
    pub fn catch_up(
        &mut self,
        room: &str,
        messages: Vec<ChatMessage>,
    ) -> Option<(Vec<UserId>, Vec<ChatMessage>)> {
        let c = self.catching_up.remove(room)?;
        Some((c.users, missed(c.first_live, messages)))
    }
}

/// The messages read from the stream that did not come live: those older
/// than the first live one (a subscription sees a suffix of the stream).
fn missed(first_live: Option<(u64, u64)>, messages: Vec<ChatMessage>) -> Vec<ChatMessage> {
    messages
        .into_iter()
        .filter(|m| match (first_live, id_key(&m.id)) {
            (Some(first), Some(id)) => id < first,
            _ => true,
        })
        .collect()
}

/// The subscriber task: one cluster connection for every room channel.
async fn subscriber(
    endpoints: Endpoints,
    timeouts: Timeouts,
    mut requests: mpsc::UnboundedReceiver<Request>,
    reports: mpsc::UnboundedSender<Report>,
) {
    let (push_tx, mut push_rx) = mpsc::unbounded_channel::<PushInfo>();
    let forward = reports.clone();
    tokio::spawn(async move {
        while let Some(push) = push_rx.recv().await {
            match push.kind {
                PushKind::SMessage => {
                    let payload = push
                        .data
                        .get(1)
                        .and_then(|v| redis::from_redis_value_ref::<Vec<u8>>(v).ok());
                    if let Some(payload) = payload {
                        if forward.send(Report::Event(payload)).is_err() {
                            return;
                        }
                    }
                }
                PushKind::SUnsubscribe => {
                    let room = push
                        .data
                        .first()
                        .and_then(|v| redis::from_redis_value_ref::<String>(v).ok())
                        .and_then(|c| {
                            Some(
                                c.strip_prefix("room:{")?
                                    .strip_suffix("}:events")?
                                    .to_string(),
                            )
                        });
                    if let Some(room) = room {
                        if forward.send(Report::Dropped(room)).is_err() {
                            return;
                        }
                    }
                }
                PushKind::Disconnection => {
                    tracing::warn!("a shard subscription connection dropped; resubscribing")
                }
                _ => {}
            }
        }
    });
    let mut delay = Duration::from_millis(100);
    let mut con = loop {
        match redis_con::sharded_subscriber(&endpoints, timeouts, push_tx.clone()).await {
            Ok(con) => break con,
            Err(e) => {
                tracing::warn!(error = %e, "cannot open the sharded pub/sub connection");
                if reports.is_closed() {
                    return;
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    };
    while let Some(request) = requests.recv().await {
        match request {
            Request::Subscribe { room, confirm } => {
                let mut delay = Duration::from_millis(100);
                while let Err(e) = con.ssubscribe(keys::room_events(&room)).await {
                    tracing::warn!(error = %e, room, "SSUBSCRIBE failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
                if confirm {
                    let _ = reports.send(Report::Subscribed(room));
                }
            }
            Request::Resubscribe(room) => {
                // A keyed command in the slot meets MOVED, so redis-rs
                // learns the slot's new node before the SSUBSCRIBE.
                let channel = keys::room_events(&room);
                let mut delay = Duration::from_millis(100);
                loop {
                    let _ = redis::cmd("EXISTS")
                        .arg(&channel)
                        .query_async::<bool>(&mut con)
                        .await;
                    match con.ssubscribe(&channel).await {
                        Ok(()) => break,
                        Err(e) => {
                            tracing::warn!(error = %e, room, "SSUBSCRIBE failed; retrying");
                            tokio::time::sleep(delay).await;
                            delay = (delay * 2).min(Duration::from_secs(2));
                        }
                    }
                }
            }
            Request::Unsubscribe(room) => {
                if let Err(e) = con.sunsubscribe(keys::room_events(&room)).await {
                    tracing::warn!(error = %e, room, "SUNSUBSCRIBE failed");
                }
            }
            Request::Ready(waiting) => {
                for ready in waiting {
                    let _ = ready.send(());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(id: &str) -> ChatMessage {
        ChatMessage {
            id: id.into(),
            room_id: "1:2".into(),
            from: 1,
            date: 0,
            date_ms: 0,
            message: id.into(),
            nonce: None,
            edited_ms: None,
            deleted: false,
        }
    }

    #[test]
    fn catch_up_skips_what_came_live() {
        let read = || {
            vec![
                message("5-0"),
                message("9-1"),
                message("10-0"),
                message("10-1"),
            ]
        };
        let ids = |v: Vec<ChatMessage>| v.into_iter().map(|m| m.id).collect::<Vec<_>>();
        // Nothing live yet: everything read was missed.
        assert_eq!(ids(missed(None, read())), ["5-0", "9-1", "10-0", "10-1"]);
        // "10-0" came live, so it and everything after it came live too.
        assert_eq!(ids(missed(id_key("10-0"), read())), ["5-0", "9-1"]);
        // Ids compare as numbers, not text.
        assert_eq!(ids(missed(id_key("9-10"), read())), ["5-0", "9-1"]);
    }
}
