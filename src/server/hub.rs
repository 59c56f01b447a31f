//! The fan-out hub: one Redis pub/sub subscriber per process feeding every
//! local WebSocket.
//!
//! Every instance publishes each event once to the `MESSAGES` channel
//! (inside the send script, see `store.rs`) and every instance — the
//! publisher included — delivers it to its own sockets. So a message
//! reaches every member's sockets exactly once, whichever instance they
//! are connected to.
//!
//! On a Redis Cluster, room events come instead from per-room shard
//! channels that this instance subscribes to while one of its users is a
//! member (`shards.rs`); events about users (presence, `show.room`) still
//! come from `MESSAGES`.
//!
//! One task owns the index `user → sockets`. Each event is turned into its
//! complete WebSocket frame once (`wire::text_frame`) and the hub writes
//! the same bytes (`Bytes`, reference-counted) to every target socket
//! itself, with one non-blocking write each (`outbox.rs`): delivering to
//! an idle socket wakes no task. Backlogs are bounded: a socket that falls
//! too far behind is dropped (close 1013) instead of growing memory.
//!
//! The hub also pings every socket every [`PING_EVERY`] (one shared frame)
//! and closes those silent for [`IDLE_LIMIT`], so a socket has no timer of
//! its own.

use super::outbox::Outbox;
use super::presence::Presence;
use super::redis_con::{self, RedisCon};
use super::shards::{Report, Shards};
use super::store::{Store, CHANNEL};
use super::wire;
use super::ws::close;
use crate::protocol::{private_room_members, Envelope, ServerFrame, User, UserId, GENERAL_ROOM_ID};
use bytes::Bytes;
use futures::StreamExt;
use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};
use tokio::sync::{mpsc, oneshot};

/// A ping every 15 s keeps proxies from closing idle sockets; a peer silent
/// for 45 s (no frame, no pong) is dropped, so a dead one goes within a minute.
pub const PING_EVERY: Duration = Duration::from_secs(15);
pub const IDLE_LIMIT: Duration = Duration::from_secs(45);

/// What a WebSocket task gets when it joins the hub.
pub struct SocketLink {
    pub id: u64,
    /// Fires once the hub receives the events of all the user's rooms (at
    /// once on a single Redis; on a cluster, when the rooms' shard
    /// channels are subscribed). A resume waits for it before it reads the
    /// streams, so the replay covers whatever came before.
    pub ready: oneshot::Receiver<()>,
}

struct LocalSocket {
    id: u64,
    out: Arc<Outbox>,
}

enum Command {
    Join(User, LocalSocket, oneshot::Sender<()>),
    Leave(UserId, u64),
    /// A payload from `MESSAGES`.
    Event(Vec<u8>),
    /// From the sharded subscriptions (cluster only).
    Shard(Report),
}

struct Shared {
    subscribed: AtomicBool,
    /// Rooms with a shard-channel subscription (cluster only).
    shard_rooms: AtomicUsize,
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
    /// On a cluster (`store.sharded()`) it also starts the sharded
    /// subscriptions of room events.
    pub fn spawn(
        urls: Vec<String>,
        store: Store,
        timeouts: redis_con::Timeouts,
        presence: Presence,
    ) -> redis::RedisResult<Self> {
        for url in &urls {
            redis::Client::open(url.as_str())?;
        }
        let con = store.con();
        let (commands, rx) = mpsc::unbounded_channel();
        let shards = store.sharded().then(|| {
            let (reports, mut reports_rx) = mpsc::unbounded_channel();
            let forward = commands.clone();
            tokio::spawn(async move {
                while let Some(report) = reports_rx.recv().await {
                    if forward.send(Command::Shard(report)).is_err() {
                        return;
                    }
                }
            });
            Shards::spawn(store.clone(), urls.clone(), timeouts, reports)
        });
        let shared = Arc::new(Shared {
            shard_rooms: AtomicUsize::new(0),
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
        tokio::spawn(run(rx, presence, shards, shared.clone()));
        Ok(Self { commands, shared })
    }

    /// Registers a socket of `user`; the hub writes its frames to `out`.
    pub fn join(&self, user: &User, out: Arc<Outbox>) -> SocketLink {
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let (ready_tx, ready) = oneshot::channel();
        let _ = self.commands.send(Command::Join(
            user.clone(),
            LocalSocket { id, out },
            ready_tx,
        ));
        SocketLink { id, ready }
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

    /// Rooms whose shard channel this instance subscribes to (cluster).
    pub fn shard_rooms(&self) -> usize {
        self.shared.shard_rooms.load(Ordering::Relaxed)
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
                                    if commands.send(Command::Event(msg.get_payload_bytes().to_vec())).is_err() {
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

/// Events taken off the channel and written together: under load, a
/// socket gets the frames of many events in one `writev`.
const MAX_BATCH: usize = 256;

/// What the hub task sends its writers.
enum ToWriter {
    Join(UserId, LocalSocket),
    Leave(UserId, u64),
    /// Frames to write, in order, each with who gets it.
    Deliver(Arc<Vec<(Bytes, Targets)>>),
}

/// The hub task: routes events, keeps presence and the cluster's shard
/// subscriptions, and hands the frames to the writers.
///
/// Sockets are spread over one writer task per core ([`writer_count`]),
/// each owning its part of the index `user → sockets`. Every writer gets
/// every batch and writes it to its own sockets, so the walk over 1,000
/// sockets of a busy room runs on all cores at once.
async fn run(
    mut commands: mpsc::UnboundedReceiver<Command>,
    presence: Presence,
    mut shards: Option<Shards>,
    shared: Arc<Shared>,
) {
    let writers: Vec<mpsc::UnboundedSender<ToWriter>> = (0..writer_count())
        .map(|_| {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(write_to_sockets(rx));
            tx
        })
        .collect();
    let writer_of = |socket: u64| &writers[socket as usize % writers.len()];
    // Sockets per local user.
    let mut local: HashMap<UserId, usize> = HashMap::new();
    let mut pending: Option<Command> = None;
    loop {
        let command = match pending.take() {
            Some(command) => command,
            None => match commands.recv().await {
                Some(command) => command,
                None => return,
            },
        };
        match command {
            Command::Join(user, socket, ready) => {
                let count = local.entry(user.id).or_default();
                *count += 1;
                shared.sockets.fetch_add(1, Ordering::Relaxed);
                let first = *count == 1;
                if first {
                    presence.local_online(user.clone());
                }
                let _ = writer_of(socket.id).send(ToWriter::Join(user.id, socket));
                match &mut shards {
                    Some(shards) => shards.joined(user.id, first, ready),
                    None => {
                        let _ = ready.send(());
                    }
                }
            }
            Command::Leave(user, id) => {
                let _ = writer_of(id).send(ToWriter::Leave(user, id));
                let Some(count) = local.get_mut(&user) else {
                    continue;
                };
                *count -= 1;
                shared.sockets.fetch_sub(1, Ordering::Relaxed);
                if *count == 0 {
                    local.remove(&user);
                    presence.local_offline(user);
                    if let Some(shards) = &mut shards {
                        shards.left(user);
                    }
                }
            }
            Command::Event(payload) | Command::Shard(Report::Event(payload)) => {
                // This event and whatever else is already waiting.
                let mut batch = Vec::new();
                let mut next = Some(payload);
                while let Some(payload) = next.take() {
                    if let Some(event) = decode(&payload) {
                        if let Some(shards) = &mut shards {
                            follow(shards, &event, &local);
                        }
                        batch.push((event.frame, event.targets));
                    }
                    if batch.len() < MAX_BATCH {
                        match commands.try_recv() {
                            Ok(Command::Event(p)) | Ok(Command::Shard(Report::Event(p))) => {
                                next = Some(p)
                            }
                            Ok(other) => pending = Some(other),
                            Err(_) => {}
                        }
                    }
                }
                if !batch.is_empty() {
                    let batch = Arc::new(batch);
                    for writer in &writers {
                        let _ = writer.send(ToWriter::Deliver(batch.clone()));
                    }
                }
            }
            Command::Shard(Report::UserRooms(user, rooms)) => {
                if let Some(shards) = &mut shards {
                    shards.user_rooms(user, rooms, local.contains_key(&user));
                }
            }
            Command::Shard(Report::Dropped(room)) => {
                if let Some(shards) = &mut shards {
                    shards.dropped(room);
                }
            }
            Command::Shard(Report::Subscribed(room)) => {
                if let Some(shards) = &mut shards {
                    shards.subscribed(room);
                }
            }
            Command::Shard(Report::CatchUp(room, messages)) => {
                let Some((users, missed)) =
                    shards.as_mut().and_then(|s| s.catch_up(&room, messages))
                else {
                    continue;
                };
                let batch: Vec<(Bytes, Targets)> = missed
                    .into_iter()
                    .filter_map(|m| serde_json::to_string(&ServerFrame::Message(m)).ok())
                    .map(|text| (wire::text_frame(&text), Targets::Users(users.clone())))
                    .collect();
                let batch = Arc::new(batch);
                for writer in &writers {
                    let _ = writer.send(ToWriter::Deliver(batch.clone()));
                }
            }
        }
        if let Some(shards) = &shards {
            shared.shard_rooms.store(shards.rooms(), Ordering::Relaxed);
        }
    }
}

/// Tells the cluster's shard subscriptions about an event.
fn follow(shards: &mut Shards, event: &Event, local: &HashMap<UserId, usize>) {
    match &event.about {
        About::Message { room, id } => shards.live(room, id),
        About::NewRoom { room, after } => {
            if let Targets::Users(users) = &event.targets {
                let here: Vec<UserId> = users
                    .iter()
                    .copied()
                    .filter(|u| local.contains_key(u))
                    .collect();
                shards.room_shown(room, &here, after.as_deref());
            }
        }
        About::Other => {}
    }
}

/// A writer whose last walk over its sockets took longer than this waits
/// as long again (at most [`MAX_LINGER`]) before the next.
const LINGER_FROM: Duration = Duration::from_millis(2);
const MAX_LINGER: Duration = Duration::from_millis(10);

/// One writer per core, at most 8.
fn writer_count() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 8)
}

/// A writer: its part of the socket index, written to directly. It also
/// pings its sockets every [`PING_EVERY`] and closes the silent ones.
async fn write_to_sockets(mut rx: mpsc::UnboundedReceiver<ToWriter>) {
    let mut by_user: HashMap<UserId, Vec<LocalSocket>> = HashMap::new();
    let ping = wire::encode_frame(wire::opcode::PING, b"");
    let mut ping_timer = tokio::time::interval(PING_EVERY);
    ping_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ping_timer.tick().await;
    let mut last_walk = Duration::ZERO;
    let mut walk_end = std::time::Instant::now();
    loop {
        let job = tokio::select! {
            job = rx.recv() => match job {
                Some(job) => job,
                None => return,
            },
            _ = ping_timer.tick() => {
                ping_all(&by_user, &ping);
                continue;
            }
        };
        match job {
            ToWriter::Join(user, socket) => by_user.entry(user).or_default().push(socket),
            ToWriter::Leave(user, id) => forget(&mut by_user, user, id),
            ToWriter::Deliver(batch) => {
                // After a long walk, wait as long again before the next one
                // (at most MAX_LINGER): under load each socket then gets
                // several frames per write, which halves the system calls
                // where they cost most; an evenly spaced low rate never waits.
                if last_walk > LINGER_FROM {
                    let until = walk_end + last_walk.min(MAX_LINGER);
                    if until > std::time::Instant::now() {
                        tokio::time::sleep_until(until.into()).await;
                    }
                }
                // Batches that queued up while this writer was busy go out
                // together: fewer, larger writes exactly when load is high.
                let mut batches = vec![batch];
                let mut after = None;
                while batches.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(ToWriter::Deliver(more)) => batches.push(more),
                        Ok(other) => {
                            after = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                let frames: Vec<&(Bytes, Targets)> =
                    batches.iter().flat_map(|b| b.iter()).collect();
                let started = std::time::Instant::now();
                deliver(&by_user, &frames);
                walk_end = std::time::Instant::now();
                last_walk = walk_end - started;
                match after {
                    Some(ToWriter::Join(user, socket)) => {
                        by_user.entry(user).or_default().push(socket)
                    }
                    Some(ToWriter::Leave(user, id)) => forget(&mut by_user, user, id),
                    _ => {}
                }
            }
        }
    }
}

fn forget(by_user: &mut HashMap<UserId, Vec<LocalSocket>>, user: UserId, id: u64) {
    if let Some(sockets) = by_user.get_mut(&user) {
        sockets.retain(|s| s.id != id);
        if sockets.is_empty() {
            by_user.remove(&user);
        }
    }
}

/// Pings every socket; closes those silent for too long.
fn ping_all(by_user: &HashMap<UserId, Vec<LocalSocket>>, ping: &Bytes) {
    for s in by_user.values().flatten() {
        if s.out.silent_for() > IDLE_LIMIT {
            s.out.close(close::POLICY, "idle");
        } else {
            s.out.direct(ping.clone());
        }
    }
}

/// Writes a batch to the sockets it targets, in order. Consecutive frames
/// for everyone go to each socket together (one `writev`). A socket whose
/// backlog is full is closed (1013); it leaves the index when its task
/// ends.
fn deliver(by_user: &HashMap<UserId, Vec<LocalSocket>>, batch: &[&(Bytes, Targets)]) {
    let too_slow = |user: UserId, s: &LocalSocket| {
        tracing::info!(user, socket = s.id, "dropping a socket that cannot keep up");
        s.out.close(close::TRY_AGAIN_LATER, "too slow; reconnect");
    };
    let mut rest = batch;
    while let Some((frame, targets)) = rest.first() {
        match targets {
            Targets::Everyone => {
                let run = rest
                    .iter()
                    .take_while(|(_, t)| *t == Targets::Everyone)
                    .count();
                let frames: Vec<Bytes> = rest[..run].iter().map(|(f, _)| f.clone()).collect();

                for (user, sockets) in by_user {
                    for s in sockets {
                        if !s.out.live_many(&frames) {
                            too_slow(*user, s);
                        }
                    }
                }
                rest = &rest[run..];
            }
            Targets::Users(users) => {
                for user in users {
                    for s in by_user.get(user).into_iter().flatten() {
                        if !s.out.live(frame) {
                            too_slow(*user, s);
                        }
                    }
                }
                rest = &rest[1..];
            }
        }
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

/// A published event, decoded once.
struct Event {
    /// The client frame, rendered and framed once.
    frame: Bytes,
    targets: Targets,
    /// What the sharded subscriptions need to know about it.
    about: About,
}

enum About {
    /// A new message in a room.
    Message {
        room: String,
        id: String,
    },
    /// `show.room`: a room new to its targets, shown with this newest message.
    NewRoom {
        room: String,
        after: Option<String>,
    },
    Other,
}

/// Parses a published envelope once and renders the client frame once.
fn decode(payload: &[u8]) -> Option<Event> {
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
    let about = match &envelope.frame {
        ServerFrame::Message(m) => About::Message {
            room: m.room_id.clone(),
            id: m.id.clone(),
        },
        ServerFrame::ShowRoom(r) => About::NewRoom {
            room: r.id.clone(),
            after: r.last_message.as_ref().map(|m| m.id.clone()),
        },
        _ => About::Other,
    };
    let text = serde_json::to_string(&envelope.frame).ok()?;
    Some(Event {
        frame: wire::text_frame(&text),
        targets,
        about,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_by_room() {
        let general = br#"{"serverId":"a","type":"message","data":{"id":"1-0","roomId":"0","from":1,"date":1,"dateMs":1000,"message":"hi"}}"#;
        let Event { frame, targets, .. } = decode(general).unwrap();
        assert_eq!(targets, Targets::Everyone);
        let json = std::str::from_utf8(wire::payload_of(&frame)).unwrap();
        assert!(json.starts_with(r#"{"type":"message","data":{"id":"1-0""#));
        assert!(!json.contains("serverId"));

        let private = br#"{"serverId":"a","type":"message","data":{"id":"1-0","roomId":"2:5","from":2,"date":1,"message":"hi"}}"#;
        assert_eq!(decode(private).unwrap().targets, Targets::Users(vec![2, 5]));

        let to =
            br#"{"serverId":"a","type":"show.room","data":{"id":"2:5","name":"Joe"},"to":[5]}"#;
        let shown = decode(to).unwrap();
        assert_eq!(shown.targets, Targets::Users(vec![5]));
        assert!(matches!(shown.about, About::NewRoom { room, after: None } if room == "2:5"));

        assert!(decode(b"not json").is_none());
        assert!(decode(br#"{"serverId":"a","type":"nope","data":{}}"#).is_none());
    }
}
