//! What the server writes to one WebSocket, and how.
//!
//! The hub hands every frame to [`Outbox::live`] from its own task. When
//! nothing is waiting ahead of it, the frame is written at once with one
//! non-blocking `write` on the socket's TCP stream: the common case costs
//! one system call and no task wake-up. Only when the kernel's send buffer
//! is full does the rest wait in the backlog, which the socket's own task
//! writes out when the stream is writable again (`ws.rs`). A backlog of
//! [`SOCKET_QUEUE`] frames means the peer cannot keep up: the hub closes
//! it (1013) instead of growing memory.
//!
//! Every frame is complete WebSocket bytes (`wire::encode_frame`), shared
//! by reference count between all the sockets it goes to.

use super::wire::payload_of;
use bytes::Bytes;
use std::{
    collections::VecDeque,
    io::{self, IoSlice},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, MutexGuard, OnceLock,
    },
    time::{Duration, Instant},
};
use tokio::{net::TcpStream, sync::Notify};

/// Frames a socket may have waiting before it counts as too slow.
pub const SOCKET_QUEUE: usize = 512;

/// Most frames written by one `writev`.
const WRITE_BATCH: usize = 64;

/// See [`Outbox::status`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Open,
    /// A close was requested (too slow, idle): send it and end.
    Closing(u16, &'static str),
    /// A write failed: the connection is gone.
    Broken,
}

/// The output side of one WebSocket.
pub struct Outbox {
    stream: Arc<TcpStream>,
    state: Mutex<State>,
    /// Wakes the socket's task: a backlog to write, or a close to send.
    wake: Notify,
    /// When the peer was last heard from, in ms since [`epoch`].
    last_heard: AtomicU64,
}

#[derive(Default)]
struct State {
    /// Bytes accepted but not yet written, in order; the front may be
    /// partly written already.
    backlog: VecDeque<Bytes>,
    backlog_bytes: usize,
    /// The front of the backlog is the rest of a frame partly written.
    front_begun: bool,
    /// Live frames held back until a resume's replay is written.
    held: Option<Vec<Bytes>>,
    /// The close the socket's task is to send; nothing is accepted after.
    close: Option<(u16, &'static str)>,
    /// A write failed, or the socket's task ended: nothing more is written.
    broken: bool,
    /// The close frame is queued or written ([`Outbox::finish_with`]).
    close_sent: bool,
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_ms() -> u64 {
    epoch().elapsed().as_millis() as u64
}

impl Outbox {
    /// `hold`: keep live frames back until [`Outbox::release`].
    pub fn new(stream: Arc<TcpStream>, hold: bool) -> Arc<Self> {
        Arc::new(Self {
            stream,
            state: Mutex::new(State {
                held: hold.then(Vec::new),
                ..Default::default()
            }),
            wake: Notify::new(),
            last_heard: AtomicU64::new(now_ms()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding it; a poisoned lock is still consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A frame from the hub. `false`: the socket is too slow (its backlog
    /// or held frames are full); the frame was not taken.
    pub fn live(&self, frame: &Bytes) -> bool {
        self.live_many(std::slice::from_ref(frame))
    }

    /// Frames from the hub, in order, written with one `writev` when
    /// nothing is waiting ahead of them. `false`: too slow, none taken.
    pub fn live_many(&self, frames: &[Bytes]) -> bool {
        let mut state = self.lock();
        if state.broken || state.close.is_some() {
            return true;
        }
        if let Some(held) = &mut state.held {
            if held.len() + frames.len() > SOCKET_QUEUE {
                return false;
            }
            held.extend_from_slice(frames);
            return true;
        }
        if state.backlog.len() >= SOCKET_QUEUE {
            return false;
        }
        self.write_or_queue(&mut state, frames);
        true
    }

    /// A frame for this socket alone (replies, replays, pings): never
    /// refused; the socket's task keeps its own backlog in check
    /// ([`Outbox::backlog_bytes`]).
    pub fn direct(&self, frame: Bytes) {
        let mut state = self.lock();
        if !state.broken && state.close.is_none() {
            self.write_or_queue(&mut state, std::slice::from_ref(&frame));
        }
    }

    /// Ends holding: the held live frames follow, except those `covered`
    /// says the replay already delivered (it gets each frame's JSON).
    pub fn release(&self, covered: impl Fn(&[u8]) -> bool) {
        let mut state = self.lock();
        let Some(held) = state.held.take() else {
            return;
        };
        if state.broken || state.close.is_some() {
            return;
        }
        let frames: Vec<Bytes> = held
            .into_iter()
            .filter(|frame| !covered(payload_of(frame)))
            .collect();
        for chunk in frames.chunks(WRITE_BATCH) {
            self.write_or_queue(&mut state, chunk);
        }
    }

    /// Writes `frames` now if nothing waits ahead of them; what the
    /// kernel does not take goes to the backlog for the socket's task.
    fn write_or_queue(&self, state: &mut State, frames: &[Bytes]) {
        let was_empty = state.backlog.is_empty();
        let mut done = 0;
        // At most WRITE_BATCH frames per `writev` (the kernel caps the
        // number of slices), and only while nothing waits ahead.
        while done < frames.len() && state.backlog.is_empty() {
            let chunk = &frames[done..frames.len().min(done + WRITE_BATCH)];
            done += chunk.len();
            let written = match chunk {
                [one] => self.stream.try_write(one),
                _ => {
                    let slices: Vec<IoSlice<'_>> = chunk.iter().map(|f| IoSlice::new(f)).collect();
                    self.stream.try_write_vectored(&slices)
                }
            };
            let mut skip = match written {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
                Err(_) => {
                    state.broken = true;
                    self.wake.notify_one();
                    return;
                }
            };
            for frame in chunk {
                if skip >= frame.len() {
                    skip -= frame.len();
                    continue;
                }
                if state.backlog.is_empty() {
                    state.front_begun = skip > 0;
                }
                let rest = frame.slice(skip..);
                skip = 0;
                state.backlog_bytes += rest.len();
                state.backlog.push_back(rest);
            }
        }
        for frame in &frames[done..] {
            state.backlog_bytes += frame.len();
            state.backlog.push_back(frame.clone());
        }
        if was_empty && !state.backlog.is_empty() {
            self.wake.notify_one();
        }
    }

    /// Writes as much of the backlog as the stream takes now. `Ok(true)`
    /// when it is all written.
    pub fn flush(&self) -> io::Result<bool> {
        let mut guard = self.lock();
        let state = &mut *guard;
        while !state.backlog.is_empty() {
            let slices: Vec<IoSlice<'_>> = state
                .backlog
                .iter()
                .take(WRITE_BATCH)
                .map(|b| IoSlice::new(b))
                .collect();
            let mut written = match self.stream.try_write_vectored(&slices) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => {
                    state.broken = true;
                    return Err(e);
                }
            };
            drop(slices);
            state.backlog_bytes -= written;
            while written > 0 {
                let front = state
                    .backlog
                    .front_mut()
                    .expect("written bytes were queued");
                if written >= front.len() {
                    written -= front.len();
                    state.backlog.pop_front();
                    state.front_begun = false;
                } else {
                    *front = front.slice(written..);
                    written = 0;
                    state.front_begun = true;
                }
            }
        }
        Ok(true)
    }

    /// Bytes accepted and not yet written.
    pub fn backlog_bytes(&self) -> usize {
        self.lock().backlog_bytes
    }

    /// Whether the socket's task has something to write.
    pub fn has_backlog(&self) -> bool {
        !self.lock().backlog.is_empty()
    }

    /// Asks the socket's task to close with `code` (the first request wins).
    pub fn close(&self, code: u16, reason: &'static str) {
        let mut state = self.lock();
        if state.close.is_none() {
            state.close = Some((code, reason));
        }
        self.wake.notify_one();
    }

    /// Whether the socket's task should go on, close, or give up.
    pub fn status(&self) -> Status {
        let state = self.lock();
        match (state.broken, state.close) {
            (true, _) => Status::Broken,
            (false, Some((code, reason))) => Status::Closing(code, reason),
            (false, None) => Status::Open,
        }
    }

    /// Replaces what is waiting by `frame` (a close frame): only the part
    /// of a frame already begun is kept, so the peer still gets whole
    /// frames. Nothing is accepted afterwards.
    pub fn finish_with(&self, frame: Bytes, code: u16, reason: &'static str) {
        let mut state = self.lock();
        state.close.get_or_insert((code, reason));
        state.held = None;
        if state.broken {
            return;
        }
        state.close_sent = true;
        let begun = state.backlog.pop_front().filter(|_| state.front_begun);
        state.backlog.clear();
        state.backlog_bytes = 0;
        if let Some(rest) = begun {
            state.backlog_bytes += rest.len();
            state.backlog.push_back(rest);
        }
        self.write_or_queue(&mut state, std::slice::from_ref(&frame));
    }

    /// Writes the backlog out, waiting up to `limit` for the peer to take
    /// it. `false` when it could not.
    pub async fn drain(&self, limit: Duration) -> bool {
        let written = tokio::time::timeout(limit, async {
            loop {
                match self.flush() {
                    Ok(true) => return true,
                    Ok(false) => {
                        if self.stream.writable().await.is_err() {
                            return false;
                        }
                    }
                    Err(_) => return false,
                }
            }
        });
        written.await.unwrap_or(false)
    }

    /// The socket's task has ended, or is unwinding from a panic: nothing
    /// more is written (the hub's writers and pings skip this socket until
    /// it has left the hub) and what waits is dropped. `last`, a close
    /// frame, goes out first if it can without waiting: when no close was
    /// sent yet and the stream is between two frames; then FIN follows.
    pub fn end(&self, last: Option<Bytes>) {
        let mut state = self.lock();
        let between_frames = state.backlog.is_empty() || !state.front_begun;
        if let Some(frame) = last.filter(|_| !state.broken && !state.close_sent && between_frames) {
            let _ = self.stream.try_write(&frame);
            let _ = super::wire::shutdown_write(&self.stream);
        }
        state.broken = true;
        state.backlog.clear();
        state.backlog_bytes = 0;
        state.held = None;
    }

    /// Waits until the task should look again (backlog or close).
    pub async fn woken(&self) {
        self.wake.notified().await
    }

    /// The peer sent something (any frame, pongs included).
    pub fn heard(&self) {
        self.last_heard.store(now_ms(), Ordering::Relaxed);
    }

    /// How long the peer has been silent.
    pub fn silent_for(&self) -> Duration {
        Duration::from_millis(now_ms().saturating_sub(self.last_heard.load(Ordering::Relaxed)))
    }

    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::wire::{close_frame, text_frame};
    use tokio::io::AsyncReadExt;

    async fn pair() -> (Arc<TcpStream>, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap());
        let (accepted, client) = tokio::join!(listener.accept(), client);
        (Arc::new(accepted.unwrap().0), client.unwrap())
    }

    /// What the socket's task does: write the backlog whenever it can.
    async fn drain(out: &Outbox) {
        while !out.flush().unwrap() {
            out.stream().writable().await.unwrap();
        }
    }

    #[tokio::test]
    async fn a_peer_that_reads_late_gets_every_accepted_frame_whole_and_in_order() {
        let (stream, mut peer) = pair().await;
        let out = Outbox::new(stream, false);
        // The peer reads nothing: the kernel's buffers fill, then the
        // backlog, then the socket counts as too slow.
        let mut expected = Vec::new();
        let mut n = 0;
        loop {
            let frames: Vec<Bytes> = (0..3)
                .map(|i| text_frame(&format!("{n}-{i}-{}", "x".repeat(5000 + n % 7))))
                .collect();
            if !out.live_many(&frames) {
                break;
            }
            expected.extend(frames.iter().flat_map(|f| f.iter().copied()));
            n += 1;
            assert!(n < 100_000, "never too slow");
        }
        assert!(out.has_backlog());
        // A frame of its own still goes in behind the backlog.
        let pong = text_frame("direct");
        out.direct(pong.clone());
        expected.extend_from_slice(&pong);
        let reader = tokio::spawn(async move {
            let mut got = vec![0u8; expected.len()];
            peer.read_exact(&mut got).await.unwrap();
            assert!(got == expected, "bytes differ");
        });
        drain(&out).await;
        reader.await.unwrap();
    }

    #[tokio::test]
    async fn closing_keeps_the_frame_begun_and_drops_the_rest() {
        let (stream, mut peer) = pair().await;
        let out = Outbox::new(stream, false);
        let big = text_frame(&"y".repeat(60_000));
        while out.live(&big) {}
        out.finish_with(close_frame(1013, "slow"), 1013, "slow");
        assert!(
            out.live(&big),
            "frames after the close are ignored, not refused"
        );
        let reader = tokio::spawn(async move {
            // Whole frames of 60,000 bytes, then the close frame.
            let mut all = Vec::new();
            peer.read_to_end(&mut all).await.unwrap();
            all
        });
        drain(&out).await;
        crate::server::wire::shutdown_write(out.stream()).unwrap();
        let all = reader.await.unwrap();
        let close = close_frame(1013, "slow");
        assert!(all.ends_with(&close));
        let frames = &all[..all.len() - close.len()];
        assert_eq!(frames.len() % big.len(), 0);
        assert!(frames.chunks(big.len()).all(|f| f == &big[..]));
    }

    #[tokio::test]
    async fn held_frames_follow_the_release_minus_the_covered_ones() {
        let (stream, mut peer) = pair().await;
        let out = Outbox::new(stream, true);
        out.live(&text_frame("live-1"));
        out.live(&text_frame("replayed"));
        out.direct(text_frame("replay"));
        out.release(|json| json == b"replayed");
        out.live(&text_frame("live-2"));
        let mut expected = Vec::new();
        for text in ["replay", "live-1", "live-2"] {
            expected.extend_from_slice(&text_frame(text));
        }
        let mut got = vec![0u8; expected.len()];
        peer.read_exact(&mut got).await.unwrap();
        assert_eq!(got, expected);
    }
}
