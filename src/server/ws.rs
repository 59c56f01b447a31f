//! `GET /ws`: the WebSocket endpoint.
//!
//! The upgrade needs a valid session cookie (401) and, when the browser
//! sends an `Origin`, the site's own origin or one of `ALLOWED_ORIGINS`
//! (403) — so another site cannot open a socket with the user's cookie.
//!
//! Each socket is two tasks: the reader checks and stores what the client
//! sends (`store.rs` publishes it), the writer drains the socket's hub
//! queue, batching frames into one flush, pinging idle peers and closing
//! with the right code (1001 shutdown, 1009 too big, 1013 too slow).

use super::store::{parse_cursor, SendOutcome};
use super::{session, AppState};
use crate::protocol::{
    codes, message_id_key, ClientFrame, FrameError, ResumeRequest, Resumed, ServerFrame, Typing,
    User, MAX_FRAME_BYTES, MAX_RESUME_PER_ROOM, TYPING_RESEND_MS,
};
use axum::{
    extract::{
        ws::{CloseFrame, Message, Utf8Bytes, WebSocket},
        Query, State, WebSocketUpgrade,
    },
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use futures::{SinkExt, StreamExt};
use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};
use tokio::sync::{mpsc, oneshot};

/// What the reader hands the writer besides the hub's frames.
enum Direct {
    /// A frame for this socket alone (errors, replays).
    Frame(Utf8Bytes),
    /// The replay is sent: start writing live frames, skipping those the
    /// replay already covered (room → last replayed id).
    Release(BTreeMap<String, String>),
}

/// How long a socket that asked to hold live frames waits for its
/// `resume` frame before it gets them anyway.
const RESUME_WAIT: Duration = Duration::from_secs(5);
/// How long a resume waits for the room subscriptions of a new socket
/// (cluster); then it replays anyway.
const SUBSCRIBE_WAIT: Duration = Duration::from_secs(5);

/// A ping every 15 s keeps proxies from closing idle sockets; a peer silent
/// for 45 s (no frame, no pong) is dropped, so a dead one goes within a minute.
const PING_EVERY: Duration = Duration::from_secs(15);
const IDLE_LIMIT: Duration = Duration::from_secs(45);
/// Most frames written per flush.
const BATCH: usize = 64;

pub mod close {
    pub const GOING_AWAY: u16 = 1001;
    pub const POLICY: u16 = 1008;
    pub const TOO_BIG: u16 = 1009;
    pub const TRY_AGAIN_LATER: u16 = 1013;
}

/// `GET /ws` query: `resume=1` promises a `resume` frame first; live
/// frames are held back until its replay has been sent.
#[derive(Debug, Default, serde::Deserialize)]
pub struct WsParams {
    #[serde(default)]
    resume: Option<String>,
}

pub async fn handler(
    State(state): State<AppState>,
    Query(params): Query<WsParams>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    if !super::http::origin_allowed(&headers, &state.config) {
        return (StatusCode::FORBIDDEN, "cross-origin WebSocket refused").into_response();
    }
    let Some(token) = session::token_from_headers(&headers) else {
        return (StatusCode::UNAUTHORIZED, "sign in first").into_response();
    };
    let user = match session::lookup(&state.store, &token, state.config.session_ttl).await {
        Ok(Some(user)) => user,
        Ok(None) => return (StatusCode::UNAUTHORIZED, "sign in first").into_response(),
        Err(_) => return (StatusCode::SERVICE_UNAVAILABLE, "store unavailable").into_response(),
    };
    let hold = matches!(params.resume.as_deref(), Some("1" | "true"));
    ws.max_message_size(4 * MAX_FRAME_BYTES)
        .max_frame_size(4 * MAX_FRAME_BYTES)
        .read_buffer_size(4 * 1024)
        .write_buffer_size(8 * 1024)
        .on_upgrade(move |socket| serve_socket(state, user, socket, hold))
}

async fn serve_socket(state: AppState, user: User, socket: WebSocket, hold: bool) {
    let link = state.hub.join(&user);
    let mut ready = Some(link.ready);
    let (sink, mut stream) = socket.split();
    let started = Instant::now();
    let last_seen = Arc::new(AtomicU64::new(0));
    let (close_tx, close_rx) = oneshot::channel::<(u16, &'static str)>();
    let (direct, direct_rx) = mpsc::channel::<Direct>(64);
    let writer = tokio::spawn(write_loop(
        sink,
        link.frames,
        direct_rx,
        hold,
        link.kicked.clone(),
        close_rx,
        state.shutdown.clone(),
        started,
        last_seen.clone(),
    ));

    let mut memory = SocketMemory {
        rooms: state
            .store
            .room_ids(user.id)
            .await
            .unwrap_or_default()
            .into_iter()
            .collect(),
        ..Default::default()
    };
    let mut holding = hold;
    let mut close_with = None;
    loop {
        let next = if holding {
            match tokio::time::timeout(RESUME_WAIT, stream.next()).await {
                Ok(next) => next,
                Err(_) => {
                    holding = false;
                    let _ = direct.send(Direct::Release(BTreeMap::new())).await;
                    continue;
                }
            }
        } else {
            stream.next().await
        };
        let Some(msg) = next else { break };
        last_seen.store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
        let replies = match msg {
            Ok(Message::Text(text)) => {
                if text.len() > MAX_FRAME_BYTES {
                    close_with = Some((close::TOO_BIG, "frame too large"));
                    break;
                }
                match serde_json::from_str::<ClientFrame>(text.as_str()) {
                    Ok(ClientFrame::Resume(request)) => {
                        // On a cluster: until the user's rooms are
                        // subscribed, live events could slip past both the
                        // subscription and this replay.
                        if let Some(ready) = ready.take() {
                            if tokio::time::timeout(SUBSCRIBE_WAIT, ready).await.is_err() {
                                tracing::warn!(user = user.id, "room subscriptions not ready");
                            }
                        }
                        let (frames, marks) =
                            resume(&state, &mut memory.rooms, &user, request).await;
                        for frame in frames {
                            if direct.send(Direct::Frame(frame)).await.is_err() {
                                break;
                            }
                        }
                        if holding {
                            holding = false;
                            let _ = direct.send(Direct::Release(marks)).await;
                        }
                        continue;
                    }
                    Ok(frame) => handle_frame(&state, &user, &mut memory, frame).await,
                    Err(_) => Some(ServerFrame::Error(explain_bad_frame(text.as_str()))),
                }
            }
            Ok(Message::Binary(_)) => Some(ServerFrame::Error(error(
                codes::MALFORMED,
                "Frames must be JSON text.",
                None,
            ))),
            Ok(Message::Close(_)) => break,
            Ok(_) => None,
            Err(e) => {
                let text = e.to_string();
                if text.contains("Space limit")
                    || text.contains("too long")
                    || text.contains("size")
                {
                    close_with = Some((close::TOO_BIG, "frame too large"));
                }
                break;
            }
        };
        if holding {
            // The first frame was not a resume: nothing to wait for.
            holding = false;
            let _ = direct.send(Direct::Release(BTreeMap::new())).await;
        }
        if let Some(frame) = replies {
            let _ = direct.send(Direct::Frame(encode(&frame))).await;
        }
    }
    state.hub.leave(user.id, link.id);
    if let Some(reason) = close_with {
        let _ = close_tx.send(reason);
        let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
    } else {
        writer.abort();
    }
}

fn encode(frame: &ServerFrame) -> Utf8Bytes {
    Utf8Bytes::from(serde_json::to_string(frame).unwrap_or_default())
}

/// Replays what the client missed in the rooms it names (its own rooms
/// only; others are ignored), then a `resumed` frame. Returns the frames
/// and, per room, the last replayed id.
async fn resume(
    state: &AppState,
    rooms: &mut HashSet<String>,
    user: &User,
    request: ResumeRequest,
) -> (Vec<Utf8Bytes>, BTreeMap<String, String>) {
    let mut wanted = Vec::new();
    for (room, after) in request.rooms.into_iter().take(1000) {
        if parse_cursor(Some(&after)).ok().flatten().is_none() {
            continue;
        }
        let member = rooms.contains(&room)
            || matches!(state.store.is_member(user.id, &room).await, Ok(true));
        if member {
            rooms.insert(room.clone());
            wanted.push((room, after));
        }
    }
    let mut done = Resumed::default();
    let mut frames = Vec::new();
    match state.store.replay(&wanted, MAX_RESUME_PER_ROOM).await {
        Ok(replays) => {
            for ((room, _), (messages, more)) in wanted.iter().zip(replays) {
                if let Some(last) = messages.last() {
                    done.rooms.insert(room.clone(), last.id.clone());
                }
                if more {
                    done.truncated.push(room.clone());
                }
                frames.extend(
                    messages
                        .into_iter()
                        .map(|m| encode(&ServerFrame::Message(m))),
                );
            }
        }
        Err(e) => frames.push(encode(&ServerFrame::Error(error(
            &e.code,
            "Could not replay missed messages; reload the history.",
            None,
        )))),
    }
    let marks = done.rooms.clone();
    frames.push(encode(&ServerFrame::Resumed(done)));
    (frames, marks)
}

fn error(code: &str, message: &str, nonce: Option<String>) -> FrameError {
    FrameError {
        code: code.to_string(),
        message: message.to_string(),
        nonce,
    }
}

/// What the reader remembers about its socket between frames.
#[derive(Default)]
struct SocketMemory {
    /// Rooms the user is known to belong to (checked once, then cached;
    /// room membership only grows).
    rooms: HashSet<String>,
    /// When this socket last announced typing, per room.
    typing: HashMap<String, Instant>,
}

/// Typing notices closer together than this are dropped (clients resend
/// every `TYPING_RESEND_MS`).
const TYPING_MIN_GAP: Duration = Duration::from_millis(TYPING_RESEND_MS / 2);

/// Checks that `user` belongs to `room` (cached per socket). The error
/// frame echoes `nonce`.
async fn ensure_member(
    state: &AppState,
    user: &User,
    memory: &mut SocketMemory,
    room: &str,
    nonce: Option<String>,
) -> Result<(), FrameError> {
    if memory.rooms.contains(room) {
        return Ok(());
    }
    match state.store.is_member(user.id, room).await {
        Ok(true) => {
            memory.rooms.insert(room.to_string());
            Ok(())
        }
        Ok(false) => Err(error(
            codes::FORBIDDEN,
            "You are not a member of this room.",
            nonce,
        )),
        Err(_) => Err(error(
            codes::UNAVAILABLE,
            "The store is unavailable; please retry.",
            nonce,
        )),
    }
}

/// Checks and executes one client frame; returns the frame for this socket
/// alone, if any (errors, or the original of a resent message).
async fn handle_frame(
    state: &AppState,
    user: &User,
    memory: &mut SocketMemory,
    frame: ClientFrame,
) -> Option<ServerFrame> {
    let result = match frame {
        ClientFrame::Resume(_) => Ok(None),
        ClientFrame::Message(send) => {
            match ensure_member(state, user, memory, &send.room_id, send.nonce.clone()).await {
                Err(e) => Err(e),
                Ok(()) => match state
                    .store
                    .send_message(user.id, &send.room_id, &send.message, send.nonce.as_deref())
                    .await
                {
                    Ok(SendOutcome::Stored(_)) => Ok(None),
                    Ok(SendOutcome::Duplicate(original)) => {
                        Ok(Some(ServerFrame::Message(original)))
                    }
                    Err(e) => Err(e),
                },
            }
        }
        ClientFrame::Read(mark) => {
            match ensure_member(state, user, memory, &mark.room_id, None).await {
                Err(e) => Err(e),
                Ok(()) if parse_cursor(Some(&mark.id)).ok().flatten().is_none() => {
                    Err(error(codes::BAD_REQUEST, "No such message id.", None))
                }
                // The answer is the `read` frame the script publishes.
                Ok(()) => match state
                    .store
                    .mark_read(user.id, &mark.room_id, &mark.id, true)
                    .await
                {
                    Ok(_) => Ok(None),
                    Err(e) => Err(error(&e.code, &e.message, None)),
                },
            }
        }
        ClientFrame::Typing(room) => {
            let now = Instant::now();
            let recent = memory
                .typing
                .get(&room.room_id)
                .is_some_and(|last| now.duration_since(*last) < TYPING_MIN_GAP);
            if recent {
                Ok(None)
            } else {
                match ensure_member(state, user, memory, &room.room_id, None).await {
                    Err(e) => Err(e),
                    Ok(()) => {
                        if memory.typing.len() > 64 {
                            memory.typing.clear();
                        }
                        memory.typing.insert(room.room_id.clone(), now);
                        let typing = Typing {
                            room_id: room.room_id.clone(),
                            user_id: user.id,
                            username: user.username.clone(),
                        };
                        // Best effort: a lost typing notice is harmless.
                        let _ = state
                            .store
                            .publish_room(&room.room_id, ServerFrame::Typing(typing))
                            .await;
                        Ok(None)
                    }
                }
            }
        }
        ClientFrame::Edit(edit) => {
            match ensure_member(state, user, memory, &edit.room_id, None).await {
                Err(e) => Err(e),
                Ok(()) => state
                    .store
                    .edit_message(user.id, &edit.room_id, &edit.id, Some(&edit.message))
                    .await
                    .map(|()| None),
            }
        }
        ClientFrame::Delete(target) => {
            match ensure_member(state, user, memory, &target.room_id, None).await {
                Err(e) => Err(e),
                Ok(()) => state
                    .store
                    .edit_message(user.id, &target.room_id, &target.id, None)
                    .await
                    .map(|()| None),
            }
        }
    };
    result.unwrap_or_else(|e| Some(ServerFrame::Error(e)))
}

/// Says precisely what is wrong with a frame that did not decode.
pub(crate) fn explain_bad_frame(text: &str) -> FrameError {
    let value: serde_json::Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(_) => return error(codes::MALFORMED, "The frame is not valid JSON.", None),
    };
    let nonce = value
        .pointer("/data/nonce")
        .and_then(|n| n.as_str())
        .filter(|n| n.len() <= crate::protocol::MAX_NONCE_LEN)
        .map(str::to_string);
    match value.get("type").and_then(|t| t.as_str()) {
        None => error(
            codes::MALFORMED,
            "The frame needs a string \"type\" and a \"data\" object.",
            None,
        ),
        Some("message") => error(
            codes::MALFORMED,
            "A message frame needs data.roomId and data.message as strings.",
            nonce,
        ),
        Some(kind @ ("read" | "typing" | "edit" | "delete" | "resume")) => {
            let needs = match kind {
                "read" => "data.roomId and data.id as strings",
                "typing" => "data.roomId as a string",
                "edit" => "data.roomId, data.id and data.message as strings",
                "delete" => "data.roomId and data.id as strings",
                _ => "data.rooms as an object of room id to message id",
            };
            error(
                codes::MALFORMED,
                &format!("A {kind} frame needs {needs}."),
                None,
            )
        }
        Some(other) => {
            let other: String = other.chars().take(32).collect();
            error(
                codes::UNKNOWN_TYPE,
                &format!("Unknown frame type {other:?}."),
                nonce,
            )
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn write_loop(
    mut sink: futures::stream::SplitSink<WebSocket, Message>,
    mut frames: mpsc::Receiver<Utf8Bytes>,
    mut direct: mpsc::Receiver<Direct>,
    mut holding: bool,
    kicked: Arc<tokio::sync::Notify>,
    mut close_rx: oneshot::Receiver<(u16, &'static str)>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
    started: Instant,
    last_seen: Arc<AtomicU64>,
) {
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    // After a replay: live frames already covered by it are skipped.
    let mut covered: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let (code, reason) = loop {
        tokio::select! {
            biased;
            _ = async { let _ = shutdown.wait_for(|down| *down).await; } => break (close::GOING_AWAY, "server restarting"),
            _ = kicked.notified() => break (close::TRY_AGAIN_LATER, "too slow; reconnect"),
            reason = &mut close_rx => match reason {
                Ok(r) => break r,
                Err(_) => return,
            },
            item = direct.recv() => match item {
                Some(Direct::Frame(frame)) => {
                    if sink.send(Message::Text(frame)).await.is_err() {
                        return;
                    }
                }
                Some(Direct::Release(marks)) => {
                    holding = false;
                    covered = marks.into_iter().map(|(room, id)| (room, message_id_key(&id))).collect();
                }
                None => return,
            },
            frame = frames.recv(), if !holding => {
                let Some(frame) = frame else { return };
                let mut batch = Some(frame);
                let mut n = 0;
                while let Some(frame) = batch.take() {
                    if covered.is_empty() || !already_replayed(&covered, &frame) {
                        if sink.feed(Message::Text(frame)).await.is_err() {
                            return;
                        }
                        n += 1;
                    }
                    if n < BATCH {
                        match frames.try_recv() {
                            Ok(next) => batch = Some(next),
                            // The backlog from before the replay is written.
                            Err(_) => covered.clear(),
                        }
                    }
                }
                if sink.flush().await.is_err() {
                    return;
                }
            }
            _ = ping.tick() => {
                let idle = started.elapsed().saturating_sub(Duration::from_millis(last_seen.load(Ordering::Relaxed)));
                if idle > IDLE_LIMIT {
                    break (close::POLICY, "idle");
                }
                if sink.send(Message::Ping(Default::default())).await.is_err() {
                    return;
                }
            }
        }
    };
    let _ = sink
        .send(Message::Close(Some(CloseFrame {
            code,
            reason: Utf8Bytes::from_static(reason),
        })))
        .await;
    let _ = sink.close().await;
}

/// Whether a live message frame is one the replay already delivered.
fn already_replayed(covered: &BTreeMap<String, (u64, u64)>, frame: &Utf8Bytes) -> bool {
    match serde_json::from_str::<ServerFrame>(frame.as_str()) {
        Ok(ServerFrame::Message(m)) => covered
            .get(&m.room_id)
            .is_some_and(|last| message_id_key(&m.id) <= *last),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_frames_are_explained() {
        assert_eq!(explain_bad_frame("{").code, codes::MALFORMED);
        assert_eq!(explain_bad_frame("[1]").code, codes::MALFORMED);
        let e = explain_bad_frame(r#"{"type":"dance","data":{"nonce":"n1"}}"#);
        assert_eq!(e.code, codes::UNKNOWN_TYPE);
        assert_eq!(e.nonce.as_deref(), Some("n1"));
        let e = explain_bad_frame(r#"{"type":"message","data":{"roomId":0,"nonce":"n2"}}"#);
        assert_eq!(e.code, codes::MALFORMED);
        assert_eq!(e.nonce.as_deref(), Some("n2"));
    }
}
