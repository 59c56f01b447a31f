//! The fan-out hub: one Redis pub/sub subscriber per process feeding every
//! local WebSocket.
//!
//! Every instance publishes each event once to the `MESSAGES` channel
//! (inside the send script, see `store.rs`) and every instance — the
//! publisher included — delivers it to its own sockets. So a message
//! reaches every member's sockets exactly once, whichever instance they
//! are connected to.
//!
//! One task owns the index `user → sockets`; nothing on the delivery path
//! takes a lock. Each event is turned into its client frame once and the
//! same bytes (`Utf8Bytes`, reference-counted) are queued to every target
//! socket. Queues are bounded: a socket that falls too far behind is
//! dropped (close 1013) instead of growing memory.

use super::presence::Presence;
use super::redis_con::{self, RedisCon};
use super::store::CHANNEL;
use crate::protocol::{private_room_members, Envelope, ServerFrame, User, UserId, GENERAL_ROOM_ID};
use axum::extract::ws::Utf8Bytes;
use futures::StreamExt;
use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};
use tokio::sync::{mpsc, Notify};

/// Frames a socket may have queued before it counts as too slow.
pub const SOCKET_QUEUE: usize = 512;

/// What a WebSocket task gets when it joins the hub.
pub struct SocketLink {
    pub id: u64,
    /// Frames to write, in order.
    pub frames: mpsc::Receiver<Utf8Bytes>,
    /// Signalled when the hub dropped this socket for being too slow.
    pub kicked: Arc<Notify>,
}

struct LocalSocket {
    id: u64,
    tx: mpsc::Sender<Utf8Bytes>,
    kicked: Arc<Notify>,
}

enum Command {
    Join(User, LocalSocket),
    Leave(UserId, u64),
    Event(redis::Msg),
}

struct Shared {
    subscribed: AtomicBool,
    sockets: AtomicUsize,
    next_id: AtomicU64,
}

/// A handle to the hub task (cheap to clone).
#[derive(Clone)]
pub struct Hub {
    commands: mpsc::UnboundedSender<Command>,
    shared: Arc<Shared>,
}

impl Hub {
    /// Starts the hub task and its Redis subscriber. `urls` are the
    /// servers the subscriber may use: one Redis, or a cluster's nodes
    /// (`PUBLISH` reaches every node of a cluster, so any one will do; when
    /// it fails the subscriber moves on to the next).
    pub fn spawn(urls: Vec<String>, con: RedisCon, presence: Presence) -> redis::RedisResult<Self> {
        for url in &urls {
            redis::Client::open(url.as_str())?;
        }
        let (commands, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            subscribed: AtomicBool::new(false),
            sockets: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
        });
        tokio::spawn(subscribe_forever(
            urls,
            con,
            commands.clone(),
            shared.clone(),
        ));
        tokio::spawn(run(rx, presence, shared.clone()));
        Ok(Self { commands, shared })
    }

    /// Registers a socket of `user`.
    pub fn join(&self, user: &User) -> SocketLink {
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, frames) = mpsc::channel(SOCKET_QUEUE);
        let kicked = Arc::new(Notify::new());
        let _ = self.commands.send(Command::Join(
            user.clone(),
            LocalSocket {
                id,
                tx,
                kicked: kicked.clone(),
            },
        ));
        SocketLink { id, frames, kicked }
    }

    /// Unregisters a socket.
    pub fn leave(&self, user: UserId, id: u64) {
        let _ = self.commands.send(Command::Leave(user, id));
    }

    /// Whether the pub/sub subscription is currently up.
    pub fn is_subscribed(&self) -> bool {
        self.shared.subscribed.load(Ordering::Relaxed)
    }

    /// Open sockets on this instance.
    pub fn local_sockets(&self) -> usize {
        self.shared.sockets.load(Ordering::Relaxed)
    }
}

/// Keeps one SUBSCRIBE connection up, forever: reconnects with backoff
/// after any loss, and pings it so a silently dead link is noticed. On a
/// cluster it moves on to the next node: the configured ones, then every
/// primary the cluster reports (refreshed after each full round).
async fn subscribe_forever(
    seeds: Vec<String>,
    con: RedisCon,
    commands: mpsc::UnboundedSender<Command>,
    shared: Arc<Shared>,
) {
    let mut backoff = Duration::from_millis(100);
    let mut candidates = seeds.clone();
    let mut next = 0usize;
    loop {
        if next >= candidates.len() {
            next = 0;
            if con.is_cluster() {
                candidates = redis_con::subscriber_candidates(&seeds, &con).await;
            }
        }
        let Some(url) = candidates.get(next) else {
            tracing::error!("no Redis to subscribe to");
            return;
        };
        next += 1;
        let client = match redis::Client::open(url.as_str()) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "bad subscriber URL");
                continue;
            }
        };
        let connect = tokio::time::timeout(Duration::from_secs(5), client.get_async_pubsub());
        match connect.await.unwrap_or_else(|_| {
            Err(redis::RedisError::from(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "connect timed out",
            )))
        }) {
            Ok(mut pubsub) => match pubsub.subscribe(CHANNEL).await {
                Ok(()) => {
                    shared.subscribed.store(true, Ordering::Relaxed);
                    backoff = Duration::from_millis(100);
                    tracing::info!(channel = CHANNEL, "subscribed");
                    let (mut sink, mut stream) = pubsub.split();
                    let mut watchdog = tokio::time::interval(Duration::from_secs(10));
                    watchdog.tick().await;
                    loop {
                        tokio::select! {
                            msg = stream.next() => match msg {
                                Some(msg) => {
                                    if commands.send(Command::Event(msg)).is_err() {
                                        return;
                                    }
                                }
                                None => break,
                            },
                            _ = watchdog.tick() => {
                                // In subscribed mode PING answers ["pong", ""]: any reply will do.
                                let ping = sink.ping::<redis::Value>();
                                if !matches!(tokio::time::timeout(Duration::from_secs(5), ping).await, Ok(Ok(_))) {
                                    break;
                                }
                            }
                        }
                    }
                    shared.subscribed.store(false, Ordering::Relaxed);
                    tracing::warn!("pub/sub connection lost; resubscribing");
                    // Straight on to the next node of a cluster; a single
                    // Redis is retried after the backoff.
                    if con.is_cluster() {
                        continue;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "SUBSCRIBE failed"),
            },
            Err(e) => tracing::warn!(error = %e, "cannot open the pub/sub connection"),
        }
        if commands.is_closed() {
            return;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// The hub task: owns the socket index and does the fan-out.
async fn run(
    mut commands: mpsc::UnboundedReceiver<Command>,
    presence: Presence,
    shared: Arc<Shared>,
) {
    let mut by_user: HashMap<UserId, Vec<LocalSocket>> = HashMap::new();
    while let Some(command) = commands.recv().await {
        match command {
            Command::Join(user, socket) => {
                let sockets = by_user.entry(user.id).or_default();
                sockets.push(socket);
                shared.sockets.fetch_add(1, Ordering::Relaxed);
                if sockets.len() == 1 {
                    presence.local_online(user);
                }
            }
            Command::Leave(user, id) => remove(&mut by_user, &presence, &shared, user, id),
            Command::Event(msg) => {
                let Some((frame, targets)) = decode(msg.get_payload_bytes()) else {
                    continue;
                };
                let mut too_slow = Vec::new();
                let mut send = |user: UserId, sockets: &Vec<LocalSocket>| {
                    for s in sockets {
                        if let Err(mpsc::error::TrySendError::Full(_)) =
                            s.tx.try_send(frame.clone())
                        {
                            too_slow.push((user, s.id));
                        }
                    }
                };
                match targets {
                    Targets::Everyone => by_user.iter().for_each(|(u, s)| send(*u, s)),
                    Targets::Users(users) => {
                        for u in users {
                            if let Some(s) = by_user.get(&u) {
                                send(u, s);
                            }
                        }
                    }
                }
                for (user, id) in too_slow {
                    if let Some(s) = by_user
                        .get(&user)
                        .and_then(|v| v.iter().find(|s| s.id == id))
                    {
                        tracing::info!(user, socket = id, "dropping a socket that cannot keep up");
                        s.kicked.notify_one();
                    }
                    remove(&mut by_user, &presence, &shared, user, id);
                }
            }
        }
    }
}

fn remove(
    by_user: &mut HashMap<UserId, Vec<LocalSocket>>,
    presence: &Presence,
    shared: &Shared,
    user: UserId,
    id: u64,
) {
    let Some(sockets) = by_user.get_mut(&user) else {
        return;
    };
    let before = sockets.len();
    sockets.retain(|s| s.id != id);
    if sockets.len() < before {
        shared.sockets.fetch_sub(1, Ordering::Relaxed);
    }
    if sockets.is_empty() {
        by_user.remove(&user);
        presence.local_offline(user);
    }
}

/// Who gets an event.
#[derive(Debug, PartialEq, Eq)]
enum Targets {
    Everyone,
    Users(Vec<UserId>),
}

#[cfg(test)]
pub(crate) fn decode_for_tests(payload: &[u8]) -> bool {
    decode(payload).is_some()
}

/// The members of a room: everyone for General, the two members of a
/// private room; `None` for an id that is neither.
fn room_targets(room: &str) -> Option<Targets> {
    if room == GENERAL_ROOM_ID {
        return Some(Targets::Everyone);
    }
    private_room_members(room).map(|(a, b)| Targets::Users(vec![a, b]))
}

/// Parses a published envelope once and renders the client frame once.
fn decode(payload: &[u8]) -> Option<(Utf8Bytes, Targets)> {
    let envelope: Envelope = match serde_json::from_slice(payload) {
        Ok(e) => e,
        Err(e) => {
            tracing::debug!(error = %e, "ignoring an unknown pub/sub payload");
            return None;
        }
    };
    let targets = if !envelope.to.is_empty() {
        Targets::Users(envelope.to)
    } else {
        match &envelope.frame {
            ServerFrame::Message(m) | ServerFrame::MessageUpdated(m) => room_targets(&m.room_id)?,
            ServerFrame::Typing(t) => room_targets(&t.room_id)?,
            ServerFrame::UserConnected(_) | ServerFrame::UserDisconnected(_) => Targets::Everyone,
            // Read marks and the rest only go to the users named in `to`.
            ServerFrame::Read(_)
            | ServerFrame::Error(_)
            | ServerFrame::ShowRoom(_)
            | ServerFrame::Resumed(_) => return None,
        }
    };
    let text = serde_json::to_string(&envelope.frame).ok()?;
    Some((Utf8Bytes::from(text), targets))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_by_room() {
        let general = br#"{"serverId":"a","type":"message","data":{"id":"1-0","roomId":"0","from":1,"date":1,"dateMs":1000,"message":"hi"}}"#;
        let (frame, targets) = decode(general).unwrap();
        assert_eq!(targets, Targets::Everyone);
        assert!(frame
            .as_str()
            .starts_with(r#"{"type":"message","data":{"id":"1-0""#));
        assert!(!frame.as_str().contains("serverId"));

        let private = br#"{"serverId":"a","type":"message","data":{"id":"1-0","roomId":"2:5","from":2,"date":1,"message":"hi"}}"#;
        assert_eq!(decode(private).unwrap().1, Targets::Users(vec![2, 5]));

        let to =
            br#"{"serverId":"a","type":"show.room","data":{"id":"2:5","name":"Joe"},"to":[5]}"#;
        assert_eq!(decode(to).unwrap().1, Targets::Users(vec![5]));

        assert!(decode(b"not json").is_none());
        assert!(decode(br#"{"serverId":"a","type":"nope","data":{}}"#).is_none());
    }
}
