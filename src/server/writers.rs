//! The hub's writer tasks: each owns part of the index `user → sockets`
//! and writes frames to its sockets directly (`outbox.rs`).
//!
//! Sockets are spread over one writer task per core ([`writer_count`]).
//! Every writer gets every batch and writes it to its own sockets, so the
//! walk over 1,000 sockets of a busy room runs on all cores at once. A
//! writer also pings its sockets every [`PING_EVERY`] and closes the
//! silent ones, so a socket has no timer of its own for that.

use super::outbox::Outbox;
use super::revocation::{self, Ending};
use super::session::SessionId;
use super::store::Store;
use super::wire;
use super::ws::close;
use crate::protocol::UserId;
use bytes::Bytes;
use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};
use tokio::sync::mpsc;

/// A ping every 15 s keeps proxies from closing idle sockets; a peer silent
/// for 45 s (no frame, no pong) is dropped, so a dead one goes within a minute.
pub const PING_EVERY: Duration = Duration::from_secs(15);
pub const IDLE_LIMIT: Duration = Duration::from_secs(45);

/// Batches a writer may have waiting. With at most 256 frames each, this
/// bounds the frames queued between the hub and one writer; when it is
/// full the hub waits, and so does the subscriber (see `hub.rs`).
pub const WRITER_QUEUE: usize = 16;

/// Most events the hub takes off its feed and hands on as one batch, and
/// most batches a writer merges into one walk over its sockets.
pub const MAX_BATCH: usize = 256;

/// A socket as the writers know it.
pub struct LocalSocket {
    pub id: u64,
    /// The session it was opened with: an ended session closes it.
    pub session: SessionId,
    pub out: Arc<Outbox>,
}

/// Who gets an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Targets {
    Everyone,
    Users(Vec<UserId>),
}

/// Sessions ended: every writer closes its sockets of them; the last one
/// to finish acknowledges for the instance.
pub struct EndJob {
    pub ending: Ending,
    pub writers_left: AtomicUsize,
    /// Where to acknowledge (`revocation::acknowledge`); `None` when the
    /// hub closes sockets on its own (sessions found gone after a gap).
    pub ack: Option<(Store, String)>,
}

/// Frames to write, in order, each with who gets it.
pub struct Delivery {
    pub frames: Vec<(Bytes, Targets)>,
    /// When the oldest new message among them was stored and published
    /// (its id's time, Unix ms): the fan-out latency is measured from it.
    pub published_ms: Option<u64>,
}

impl Delivery {
    /// Frames of messages read back from the streams (not timed).
    pub fn replayed(frames: Vec<(Bytes, Targets)>) -> Self {
        Self {
            frames,
            published_ms: None,
        }
    }
}

/// What the hub task sends its writers.
pub enum ToWriter {
    Join(UserId, LocalSocket),
    Leave(UserId, u64),
    /// Frames to write.
    Deliver(Arc<Delivery>),
    /// Close the sockets of ended sessions.
    End(Arc<EndJob>),
    /// Close one socket with this code and reason.
    Close(UserId, u64, u16, &'static str),
    /// Close every socket with this code and reason.
    CloseAll(u16, &'static str),
}

/// A writer whose last walk over its sockets took longer than this waits
/// as long again (at most [`MAX_LINGER`]) before the next.
const LINGER_FROM: Duration = Duration::from_millis(2);
const MAX_LINGER: Duration = Duration::from_millis(10);

/// One writer per core, at most 8.
pub fn writer_count() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 8)
}

/// Starts `n` writers; the hub sends socket `id` to writer `id % n`.
pub fn spawn(n: usize) -> Vec<mpsc::Sender<ToWriter>> {
    (0..n)
        .map(|_| {
            let (tx, rx) = mpsc::channel(WRITER_QUEUE);
            tokio::spawn(write_to_sockets(rx));
            tx
        })
        .collect()
}

/// A writer: its part of the socket index, written to directly.
async fn write_to_sockets(mut rx: mpsc::Receiver<ToWriter>) {
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
        let ToWriter::Deliver(batch) = job else {
            apply(&mut by_user, job);
            continue;
        };
        // After a long walk, wait as long again before the next one (at
        // most MAX_LINGER): under load each socket then gets several
        // frames per write, which halves the system calls where they cost
        // most; an evenly spaced low rate never waits.
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
        let frames: Vec<&(Bytes, Targets)> = batches.iter().flat_map(|b| b.frames.iter()).collect();
        let started = std::time::Instant::now();
        let written = deliver(&by_user, &frames);
        walk_end = std::time::Instant::now();
        last_walk = walk_end - started;
        count_delivery(&batches, written);
        if let Some(job) = after {
            apply(&mut by_user, job);
        }
    }
}

/// Everything but a delivery.
fn apply(by_user: &mut HashMap<UserId, Vec<LocalSocket>>, job: ToWriter) {
    match job {
        ToWriter::Join(user, socket) => by_user.entry(user).or_default().push(socket),
        ToWriter::Leave(user, id) => {
            if let Some(sockets) = by_user.get_mut(&user) {
                sockets.retain(|s| s.id != id);
                if sockets.is_empty() {
                    by_user.remove(&user);
                }
            }
        }
        ToWriter::Deliver(batch) => {
            let written = deliver(by_user, &batch.frames.iter().collect::<Vec<_>>());
            count_delivery(std::slice::from_ref(&batch), written);
        }
        ToWriter::End(job) => {
            for s in by_user.get(&job.ending.user).into_iter().flatten() {
                if job.ending.ends(job.ending.user, &s.session) {
                    s.out.close(close::SESSION_ENDED, "session ended");
                }
            }
            // The last writer through acknowledges: by then every socket
            // of those sessions on this instance has its close requested,
            // and the socket tasks check that before they store anything.
            if job.writers_left.fetch_sub(1, Ordering::AcqRel) == 1 {
                if let Some((store, ack)) = job.ack.clone() {
                    tokio::spawn(async move { revocation::acknowledge(&store, &ack).await });
                }
            }
        }
        ToWriter::Close(user, id, code, reason) => {
            for s in by_user.get(&user).into_iter().flatten() {
                if s.id == id {
                    s.out.close(code, reason);
                }
            }
        }
        ToWriter::CloseAll(code, reason) => {
            for s in by_user.values().flatten() {
                s.out.close(code, reason);
            }
        }
    }
}

/// The metrics of one walk that wrote anything: frames written, and per
/// batch of new messages the time from their publication to the end of
/// the walk (so one observation per batch and writer that wrote it).
fn count_delivery(batches: &[Arc<Delivery>], written: u64) {
    if written == 0 {
        return;
    }
    let m = super::metrics::get();
    m.frames_delivered.inc_by(written);
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    for published in batches.iter().filter_map(|b| b.published_ms) {
        m.fanout_seconds
            .observe(now_ms.saturating_sub(published) as f64 / 1000.0);
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
/// ends. Returns the frames written (one per socket and frame).
fn deliver(by_user: &HashMap<UserId, Vec<LocalSocket>>, batch: &[&(Bytes, Targets)]) -> u64 {
    let too_slow = |user: UserId, s: &LocalSocket| {
        tracing::info!(user, socket = s.id, "dropping a socket that cannot keep up");
        super::metrics::get().slow_socket_closes.inc();
        s.out.close(close::TRY_AGAIN_LATER, "too slow; reconnect");
    };
    let mut written = 0u64;
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
                        if s.out.live_many(&frames) {
                            written += frames.len() as u64;
                        } else {
                            too_slow(*user, s);
                        }
                    }
                }
                rest = &rest[run..];
            }
            Targets::Users(users) => {
                for user in users {
                    for s in by_user.get(user).into_iter().flatten() {
                        if s.out.live(frame) {
                            written += 1;
                        } else {
                            too_slow(*user, s);
                        }
                    }
                }
                rest = &rest[1..];
            }
        }
    }
    written
}
