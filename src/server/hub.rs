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
//! One task owns the routing: it turns each event into its complete
//! WebSocket frame once (`wire::text_frame`) and hands the same bytes
//! (`Bytes`, reference-counted) to the writer tasks (`writers.rs`), which
//! write them to every target socket with one non-blocking write each
//! (`outbox.rs`): delivering to an idle socket wakes no task.
//!
//! Everything on the way is bounded: the subscriber's feed
//! ([`subscriber::FEED_QUEUE`] payloads), each writer's queue
//! ([`writers::WRITER_QUEUE`] batches of at most [`writers::MAX_BATCH`]
//! frames) and each socket's backlog (`outbox::SOCKET_QUEUE` frames, then
//! close 1013 and the client resumes). When the writers fall behind, the
//! hub waits, the subscriber waits, and Redis holds the rest in this
//! client's output buffer until its limit closes the connection; what was
//! published meanwhile is then caught up from the room streams (`gap.rs`).
//!
//! Control events (`revocation.rs`: sessions that ended) come on the same
//! connection and close the sockets of those sessions.

mod catch_up;
mod events;

use super::gap::{self, CaughtUp, Gaps};
use super::outbox::Outbox;
use super::presence::Presence;
use super::redis_con::{self, Endpoints};
use super::revocation::Ending;
use super::session::SessionId;
use super::shards::{Report, Shards};
use super::store::Store;
use super::subscriber::{self, Feed};
use super::wire;
use super::writers::{self, Delivery, EndJob, LocalSocket, Targets, ToWriter, MAX_BATCH};
use super::ws::close;
use crate::protocol::{message_id_key, Control, ServerFrame, User, UserId};
use bytes::Bytes;
use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        Arc,
    },
};
use tokio::sync::{mpsc, oneshot};

/// What a WebSocket task gets when it joins the hub.
pub struct SocketLink {
    pub id: u64,
    /// Fires once the hub receives the events of all the user's rooms (at
    /// once on a single Redis; on a cluster, when the rooms' shard
    /// channels are subscribed). A resume waits for it before it reads the
    /// streams, so the replay covers whatever came before.
    pub ready: oneshot::Receiver<()>,
}

#[cfg(test)]
pub(crate) use events::decode_for_tests;
use events::{decode, follow, About, Event};

/// What the hub hears besides the subscriber's feed.
enum Command {
    Join(User, LocalSocket, oneshot::Sender<()>),
    Leave(UserId, u64),
    /// From the sharded subscriptions (cluster only).
    Shard(Report),
    /// A catch-up after a lost subscription finished (`None`: it failed).
    CaughtUp(Option<CaughtUp>),
    /// Sessions of local sockets found gone after a lost subscription.
    SessionsEnded(Vec<SessionId>),
}

struct Shared {
    subscribed: Arc<AtomicBool>,
    /// Rooms with a shard-channel subscription (cluster only).
    shard_rooms: AtomicUsize,
    sockets: AtomicUsize,
    /// Users with at least one socket here.
    users: AtomicUsize,
    next_id: AtomicU64,
}

/// A handle to the hub task (cheap to clone).
#[derive(Clone)]
pub struct Hub {
    commands: mpsc::UnboundedSender<Command>,
    shared: Arc<Shared>,
}

impl Hub {
    /// Starts the hub task and its Redis subscriber. `endpoints` are the
    /// servers the subscriber may use: one Redis, or a cluster's nodes
    /// (`PUBLISH` reaches every node of a cluster, so any one will do; when
    /// it fails the subscriber moves on to the next).
    /// On a cluster (`store.sharded()`) it also starts the sharded
    /// subscriptions of room events. A user keeps at most
    /// `max_sockets_per_user` sockets on this instance: a newer one closes
    /// the oldest (4002).
    pub fn spawn(
        endpoints: Endpoints,
        store: Store,
        timeouts: redis_con::Timeouts,
        presence: Presence,
        max_sockets_per_user: usize,
    ) -> redis::RedisResult<Self> {
        for url in &endpoints.urls {
            endpoints.tls.client(url)?;
        }
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
            Shards::spawn(store.clone(), endpoints.clone(), timeouts, reports)
        });
        let shared = Arc::new(Shared {
            shard_rooms: AtomicUsize::new(0),
            subscribed: Arc::default(),
            sockets: AtomicUsize::new(0),
            users: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
        });
        let (feed, feed_rx) = mpsc::channel(subscriber::FEED_QUEUE);
        tokio::spawn(subscriber::subscribe_forever(
            endpoints,
            store.con(),
            feed,
            shared.subscribed.clone(),
        ));
        let hub = Routing {
            writers: writers::spawn(writers::writer_count()),
            local: HashMap::new(),
            presence,
            shards,
            shared: shared.clone(),
            gaps: Gaps::default(),
            held: None,
            store,
            commands: commands.clone(),
            max_sockets_per_user: max_sockets_per_user.max(1),
        };
        tokio::spawn(hub.run(rx, feed_rx));
        Ok(Self { commands, shared })
    }

    /// Registers a socket of `user`, opened with `session`; the hub writes
    /// its frames to `out`.
    pub fn join(&self, user: &User, session: SessionId, out: Arc<Outbox>) -> SocketLink {
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let (ready_tx, ready) = oneshot::channel();
        let _ = self.commands.send(Command::Join(
            user.clone(),
            LocalSocket { id, session, out },
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

    /// Users with a socket open on this instance.
    pub fn local_users(&self) -> usize {
        self.shared.users.load(Ordering::Relaxed)
    }

    /// Rooms whose shard channel this instance subscribes to (cluster).
    pub fn shard_rooms(&self) -> usize {
        self.shared.shard_rooms.load(Ordering::Relaxed)
    }
}

/// Live events held back while a catch-up runs, and whether the
/// subscription was lost again meanwhile (at that Redis time).
struct Held {
    /// The subscription the catch-up follows.
    at_ms: u64,
    events: Vec<Event>,
    again_at: Option<u64>,
}

/// The hub task's state.
struct Routing {
    writers: Vec<mpsc::Sender<ToWriter>>,
    /// Sockets per local user, oldest first, with their sessions.
    local: HashMap<UserId, Vec<(u64, SessionId)>>,
    presence: Presence,
    shards: Option<Shards>,
    shared: Arc<Shared>,
    gaps: Gaps,
    held: Option<Held>,
    store: Store,
    commands: mpsc::UnboundedSender<Command>,
    max_sockets_per_user: usize,
}

impl Routing {
    async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
        mut feed: mpsc::Receiver<Feed>,
    ) {
        let mut pending: Option<Feed> = None;
        let mut pending_command: Option<Command> = None;
        loop {
            let next = match (pending_command.take(), pending.take()) {
                (Some(command), item) => {
                    pending = item;
                    Some(Ok(command))
                }
                (None, Some(item)) => Some(Err(item)),
                (None, None) => tokio::select! {
                    biased;
                    command = commands.recv() => command.map(Ok),
                    item = feed.recv() => item.map(Err),
                },
            };
            match next {
                None => return,
                Some(Ok(Command::Shard(Report::Event(payload)))) => {
                    pending_command = self.shard_events(payload, &mut commands).await;
                }
                Some(Ok(command)) => self.command(command).await,
                Some(Err(Feed::Event(payload))) => {
                    pending = self.events(payload, &mut feed).await;
                }
                Some(Err(Feed::Control(payload))) => self.control(&payload).await,
                Some(Err(Feed::Subscribed { at_ms })) => self.subscribed(at_ms),
            }
            if let Some(shards) = &self.shards {
                self.shared
                    .shard_rooms
                    .store(shards.rooms(), Ordering::Relaxed);
            }
        }
    }

    fn writer_of(&self, socket: u64) -> &mpsc::Sender<ToWriter> {
        &self.writers[socket as usize % self.writers.len()]
    }

    async fn to_all_writers(&self, job: impl Fn() -> ToWriter) {
        for writer in &self.writers {
            let _ = writer.send(job()).await;
        }
    }

    async fn command(&mut self, command: Command) {
        match command {
            Command::Join(user, socket, ready) => self.join(user, socket, ready).await,
            Command::Leave(user, id) => {
                let _ = self.writer_of(id).send(ToWriter::Leave(user, id)).await;
                let Some(sockets) = self.local.get_mut(&user) else {
                    return;
                };
                let before = sockets.len();
                sockets.retain(|(s, _)| *s != id);
                if sockets.len() < before {
                    self.shared.sockets.fetch_sub(1, Ordering::Relaxed);
                }
                if sockets.is_empty() {
                    self.local.remove(&user);
                    self.shared.users.fetch_sub(1, Ordering::Relaxed);
                    self.presence.local_offline(user);
                    if let Some(shards) = &mut self.shards {
                        shards.left(user);
                    }
                }
            }
            Command::Shard(report) => self.shard_report(report).await,
            Command::CaughtUp(done) => self.caught_up(done).await,
            Command::SessionsEnded(ended) => self.sessions_ended(ended).await,
        }
    }

    async fn join(&mut self, user: User, socket: LocalSocket, ready: oneshot::Sender<()>) {
        let sockets = self.local.entry(user.id).or_default();
        sockets.push((socket.id, socket.session));
        self.shared.sockets.fetch_add(1, Ordering::Relaxed);
        let first = sockets.len() == 1;
        let oldest = (sockets.len() > self.max_sockets_per_user).then(|| sockets[0].0);
        if first {
            self.shared.users.fetch_add(1, Ordering::Relaxed);
            self.presence.local_online(user.clone());
        }
        let _ = self
            .writer_of(socket.id)
            .send(ToWriter::Join(user.id, socket))
            .await;
        if let Some(oldest) = oldest {
            // The socket leaves the index when its task ends.
            let _ = self
                .writer_of(oldest)
                .send(ToWriter::Close(
                    user.id,
                    oldest,
                    close::TOO_MANY_SOCKETS,
                    "too many connections",
                ))
                .await;
        }
        match &mut self.shards {
            Some(shards) => shards.joined(user.id, first, ready),
            None => {
                let _ = ready.send(());
            }
        }
    }

    /// This event and whatever else is already waiting: under load, a
    /// socket gets the frames of many events in one `writev`. Returns a
    /// feed item that is not an event, taken off while batching.
    async fn events(&mut self, first: Vec<u8>, feed: &mut mpsc::Receiver<Feed>) -> Option<Feed> {
        let (batch, other) = batch_events(first, || match feed.try_recv() {
            Ok(Feed::Event(p)) => Some(Ok(p)),
            Ok(item) => Some(Err(item)),
            Err(_) => None,
        });
        self.route(batch).await;
        other
    }

    /// [`Routing::events`] for the shard channels' events (cluster), which
    /// come with the shards' other reports, in order.
    async fn shard_events(
        &mut self,
        first: Vec<u8>,
        commands: &mut mpsc::UnboundedReceiver<Command>,
    ) -> Option<Command> {
        let (batch, other) = batch_events(first, || match commands.try_recv() {
            Ok(Command::Shard(Report::Event(p))) => Some(Ok(p)),
            Ok(command) => Some(Err(command)),
            Err(_) => None,
        });
        self.route(batch).await;
        other
    }

    /// Hands decoded events to the writers (or holds them while a
    /// catch-up runs).
    async fn route(&mut self, events: Vec<Event>) {
        if let Some(held) = &mut self.held {
            held.events.extend(events);
            if held.events.len() > gap::MAX_HELD {
                tracing::warn!("too much arrived during a catch-up; every socket resumes");
                if let Some(held) = self.held.take() {
                    self.abandon(held).await;
                }
            }
            return;
        }
        let mut batch = Vec::with_capacity(events.len());
        let mut published_ms = None;
        for event in events {
            if let About::Message { room, id } = &event.about {
                if !self.gaps.fresh(room, id) {
                    continue;
                }
                let ms = message_id_key(id).0;
                published_ms = Some(published_ms.map_or(ms, |oldest: u64| oldest.min(ms)));
            }
            if let Some(shards) = &mut self.shards {
                follow(shards, &event, &self.local);
            }
            batch.push((event.frame, event.targets));
        }
        if !batch.is_empty() {
            let batch = Arc::new(Delivery {
                frames: batch,
                published_ms,
            });
            self.to_all_writers(|| ToWriter::Deliver(batch.clone()))
                .await;
        }
    }

    async fn control(&mut self, payload: &[u8]) {
        match serde_json::from_slice::<Control>(payload) {
            Ok(Control::SessionsEnded(event)) => {
                let job = Arc::new(EndJob {
                    ending: Ending::of(&event),
                    writers_left: AtomicUsize::new(self.writers.len()),
                    ack: Some((self.store.clone(), event.ack.clone())),
                });
                self.to_all_writers(|| ToWriter::End(job.clone())).await;
            }
            Err(e) => tracing::debug!(error = %e, "ignoring an unknown control event"),
        }
    }

    async fn shard_report(&mut self, report: Report) {
        let Some(shards) = &mut self.shards else {
            return;
        };
        match report {
            Report::Event(_) => {}
            Report::UserRooms(user, rooms) => {
                shards.user_rooms(user, rooms, self.local.contains_key(&user))
            }
            Report::Dropped(room) => shards.dropped(room),
            Report::Subscribed(room) => shards.subscribed(room),
            Report::CatchUp(room, messages) => {
                let Some((users, missed)) = shards.catch_up(&room, messages) else {
                    return;
                };
                let batch: Vec<(Bytes, Targets)> = missed
                    .into_iter()
                    .filter_map(|m| serde_json::to_string(&ServerFrame::Message(m)).ok())
                    .map(|text| (wire::text_frame(&text), Targets::Users(users.clone())))
                    .collect();
                super::metrics::get().replayed("catch_up", batch.len() as u64);
                let batch = Arc::new(Delivery::replayed(batch));
                self.to_all_writers(|| ToWriter::Deliver(batch.clone()))
                    .await;
            }
        }
    }
}

/// Decodes `first` and the events `try_next` has ready at once (up to
/// [`MAX_BATCH`]); also returns the first thing it took that is no event.
fn batch_events<T>(
    first: Vec<u8>,
    mut try_next: impl FnMut() -> Option<Result<Vec<u8>, T>>,
) -> (Vec<Event>, Option<T>) {
    let mut batch = Vec::new();
    let mut next = Some(first);
    let mut other = None;
    while let Some(payload) = next.take() {
        if let Some(event) = decode(&payload) {
            batch.push(event);
        }
        if batch.len() < MAX_BATCH {
            match try_next() {
                Some(Ok(p)) => next = Some(p),
                Some(Err(item)) => other = Some(item),
                None => {}
            }
        }
    }
    (batch, other)
}
