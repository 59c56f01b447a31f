//! `GET /ws`: the WebSocket endpoint.
//!
//! The upgrade needs a valid session cookie (401) and, when the browser
//! sends an `Origin`, the site's own origin or one of `ALLOWED_ORIGINS`
//! (403) — so another site cannot open a socket with the user's cookie.
//!
//! Each socket is one task ([`serve_socket`]). It reads and checks what the
//! client sends (`store.rs` stores and publishes it) and writes out its
//! socket's backlog when the kernel could not take a frame at once. Live
//! frames do not pass through it: the hub writes them (`outbox.rs`). It
//! closes with the right code (1001 shutdown, 1002 protocol error, 1007
//! bad text, 1008 idle, 1009 too big, 1011 after a panic, 1013 too slow).

use super::outbox::{Outbox, Status};
use super::resume::{self, encode};
use super::session::{self, SessionId};
use super::socket_session::SocketSession;
use super::socket_task::{SocketGuard, TaskToken};
use super::store::{parse_cursor, SendOutcome};
use super::wire::{self, FrameReader, Incoming, Peer, ReadError};
use super::{metrics, typing_limit, AppState};
use crate::protocol::{
    codes, message_id_key, ClientFrame, FrameError, ServerFrame, Typing, User, MAX_FRAME_BYTES,
    TYPING_RESEND_MS,
};
use axum::{
    body::Body,
    extract::{ConnectInfo, Query, Request, State},
    http::{header, HeaderMap, Method, StatusCode},
    response::{IntoResponse, Response},
};
use hyper_util::rt::TokioIo;
use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::Arc,
    time::{Duration, Instant},
};
use tokio::{io::AsyncReadExt, net::TcpStream};
use tracing::Instrument;

/// How long a socket that asked to hold live frames waits for its
/// `resume` frame before it gets them anyway.
const RESUME_WAIT: Duration = Duration::from_secs(5);
/// How long a resume waits for the room subscriptions of a new socket
/// (cluster); then it replays anyway.
const SUBSCRIBE_WAIT: Duration = Duration::from_secs(5);
/// A socket's own frames (replies, replays) wait while more than this is
/// unwritten, so a replay to a peer that does not read cannot grow memory.
const DIRECT_HIGH_WATER: usize = 256 * 1024;
/// How long the socket waits for its peer to take a replay.
const WRITE_WAIT: Duration = Duration::from_secs(10);
/// How long a closing socket waits for its peer to take the close frame (a
/// peer dropped for being slow reads what its kernel buffers hold first;
/// memory stays bounded meanwhile), then for the peer's own close.
const CLOSE_WRITE_WAIT: Duration = Duration::from_secs(60);
const CLOSE_WAIT: Duration = Duration::from_secs(2);

pub mod close {
    pub use crate::protocol::close_codes::{SESSION_ENDED, TOO_MANY_SOCKETS};
    pub const NORMAL: u16 = 1000;
    pub const GOING_AWAY: u16 = 1001;
    pub const PROTOCOL: u16 = 1002;
    pub const BAD_DATA: u16 = 1007;
    pub const POLICY: u16 = 1008;
    pub const TOO_BIG: u16 = 1009;
    pub const INTERNAL_ERROR: u16 = 1011;
    /// The server lost events for this socket: reconnect and resume.
    pub const SERVICE_RESTART: u16 = 1012;
    pub const TRY_AGAIN_LATER: u16 = 1013;
}

/// `GET /ws` query: `resume=1` promises a `resume` frame first; live
/// frames are held back until its replay has been sent.
#[derive(Debug, Default, serde::Deserialize)]
pub struct WsParams {
    #[serde(default)]
    resume: Option<String>,
}

/// Checks the upgrade request (RFC 6455 §4.2.1) and answers with its
/// `Sec-WebSocket-Accept`, or says what is wrong.
fn check_upgrade(
    method: &Method,
    headers: &HeaderMap,
) -> Result<String, (StatusCode, &'static str)> {
    let has_token = |name: header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    if method != Method::GET {
        return Err((
            StatusCode::METHOD_NOT_ALLOWED,
            "a WebSocket upgrade is a GET",
        ));
    }
    if !has_token(header::CONNECTION, "upgrade") || !has_token(header::UPGRADE, "websocket") {
        return Err((
            StatusCode::UPGRADE_REQUIRED,
            "this endpoint only speaks WebSocket",
        ));
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|v| v.as_bytes() != b"13")
    {
        return Err((StatusCode::BAD_REQUEST, "Sec-WebSocket-Version must be 13"));
    }
    let key = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .map(|k| k.as_bytes())
        .filter(|k| wire::key_is_valid(k))
        .ok_or((
            StatusCode::BAD_REQUEST,
            "Sec-WebSocket-Key must be 16 bytes in base64",
        ))?;
    Ok(wire::accept_key(key))
}

pub async fn handler(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    Query(params): Query<WsParams>,
    mut request: Request,
) -> Response {
    let headers = request.headers();
    let accept = match check_upgrade(request.method(), headers) {
        Ok(accept) => accept,
        Err(refusal) => return refusal.into_response(),
    };
    if !super::http::origin_allowed(headers, &state.config) {
        return (StatusCode::FORBIDDEN, "cross-origin WebSocket refused").into_response();
    }
    let Some(token) = session::token_from_headers(headers) else {
        return (StatusCode::UNAUTHORIZED, "sign in first").into_response();
    };
    let user = match session::lookup(&state.store, &token, state.config.session_ttl).await {
        Ok(Some(user)) => user,
        Ok(None) => return (StatusCode::UNAUTHORIZED, "sign in first").into_response(),
        Err(_) => return (StatusCode::SERVICE_UNAVAILABLE, "store unavailable").into_response(),
    };
    let hold = matches!(params.resume.as_deref(), Some("1" | "true"));
    let session = SocketSession::new(SessionId::of_token(&token), state.config.session_ttl);
    let upgrade = hyper::upgrade::on(&mut request);
    let task = state.socket_tasks.start();
    // Every line of this socket's life carries its connection id.
    let span = tracing::info_span!("ws", conn = %super::logging::next_id(), user = user.id);
    tokio::spawn(
        async move {
            match upgrade.await {
                Ok(upgraded) => {
                    tracing::debug!("socket open");
                    let io = TokioIo::new(upgraded);
                    serve_socket(state, user, session, peer.stream, io, hold, task).await
                }
                Err(e) => tracing::debug!(error = %e, "WebSocket upgrade failed"),
            }
        }
        .instrument(span),
    );
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, "websocket")
        .header(header::SEC_WEBSOCKET_ACCEPT, accept)
        .body(Body::empty())
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// How a socket's life ended.
enum End {
    /// The connection is gone: nothing more to send.
    Gone,
    /// Send a close frame with this code, then end.
    Close(u16, &'static str),
}

/// One WebSocket, from the upgrade to the close. Reads from `io` (hyper's
/// upgraded connection, which may hold bytes it read ahead); writes go to
/// `stream` directly, through the [`Outbox`] the hub also writes to.
/// However it ends, its [`SocketGuard`] takes it out of the hub.
async fn serve_socket(
    state: AppState,
    user: User,
    mut session: SocketSession,
    stream: Arc<TcpStream>,
    mut io: TokioIo<hyper::upgrade::Upgraded>,
    hold: bool,
    task: TaskToken,
) {
    let out = Outbox::new(stream, hold);
    let (mut guard, ready) = SocketGuard::join(&state.hub, &user, session.id, out.clone(), task);
    let expiry = tokio::time::sleep_until(session.expires());
    tokio::pin!(expiry);
    let mut ready = Some(ready);
    let mut reader = FrameReader::new(MAX_FRAME_BYTES);
    let mut shutdown = state.shutdown.clone();
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
    let mut holding = hold.then(|| tokio::time::Instant::now() + RESUME_WAIT);
    let end = loop {
        match out.status() {
            Status::Broken => break End::Gone,
            Status::Closing(code, reason) => break End::Close(code, reason),
            Status::Open => {}
        }
        let backlog = out.has_backlog();
        let incoming = tokio::select! {
            biased;
            _ = shutdown.wait_for(|down| *down) => break End::Close(close::GOING_AWAY, "server restarting"),
            _ = out.woken() => continue,
            writable = out.stream().writable(), if backlog => {
                if writable.is_err() || out.flush().is_err() {
                    break End::Gone;
                }
                continue;
            }
            _ = tokio::time::sleep_until(holding.unwrap_or_else(tokio::time::Instant::now)), if holding.is_some() => {
                holding = None;
                out.release(|_| false);
                continue;
            }
            _ = &mut expiry => None,
            incoming = reader.next(&mut io) => Some(incoming),
        };
        let Some(incoming) = incoming else {
            // The session would have expired by now, unless renewed elsewhere.
            if !session.alive(&state.store).await {
                break session_ended();
            }
            expiry.as_mut().reset(session.expires());
            continue;
        };
        out.heard();
        let text = match incoming {
            Ok(Incoming::Text(text)) => text,
            Ok(Incoming::Binary) => {
                reply(
                    &out,
                    &ServerFrame::Error(error(codes::MALFORMED, "Frames must be JSON text.", None)),
                );
                continue;
            }
            Ok(Incoming::Ping(payload)) => {
                out.direct(wire::encode_frame(wire::opcode::PONG, &payload));
                continue;
            }
            Ok(Incoming::Pong) => continue,
            // Echo the peer's code (RFC 6455 §5.5.1); the reader has checked it.
            Ok(Incoming::Close(code)) => break End::Close(code.unwrap_or(close::NORMAL), ""),
            Err(ReadError::Gone) => break End::Gone,
            Err(ReadError::TooBig) => break End::Close(close::TOO_BIG, "frame too large"),
            Err(ReadError::BadText) => break End::Close(close::BAD_DATA, "text must be UTF-8"),
            Err(ReadError::Protocol(why)) => break End::Close(close::PROTOCOL, why),
        };
        // Activity keeps the session alive; an ended one ends the socket
        // before anything it sent is looked at.
        if !session.touch(&state.store).await {
            break session_ended();
        }
        expiry.as_mut().reset(session.expires());
        match serde_json::from_str::<ClientFrame>(&text) {
            Ok(ClientFrame::Resume(request)) => {
                // On a cluster: until the user's rooms are subscribed, live
                // events could slip past both the subscription and this replay.
                if let Some(ready) = ready.take() {
                    if tokio::time::timeout(SUBSCRIBE_WAIT, ready).await.is_err() {
                        tracing::warn!(user = user.id, "room subscriptions not ready");
                    }
                }
                let marks = match memory.resumes.take() {
                    Ok(()) => {
                        Box::pin(resume::replay(
                            &state,
                            &mut memory.rooms,
                            &user,
                            request,
                            &out,
                        ))
                        .await
                    }
                    Err(wait) => {
                        reply(&out, &resume::too_many(wait));
                        BTreeMap::new()
                    }
                };
                if holding.take().is_some() {
                    let covered: BTreeMap<String, (u64, u64)> = marks
                        .into_iter()
                        .map(|(room, id)| (room, message_id_key(&id)))
                        .collect();
                    out.release(|json| already_replayed(&covered, json));
                }
            }
            decoded => {
                if holding.take().is_some() {
                    // The first frame was not a resume: nothing to wait for.
                    out.release(|_| false);
                }
                let answer = match decoded {
                    Ok(frame) => {
                        Box::pin(handle_frame(&state, &user, &out, &mut memory, frame)).await
                    }
                    Err(_) => Some(ServerFrame::Error(explain_bad_frame(&text))),
                };
                if let Some(frame) = answer {
                    reply(&out, &frame);
                }
            }
        }
        if out.backlog_bytes() > DIRECT_HIGH_WATER && !out.drain(WRITE_WAIT).await {
            metrics::get().slow_socket_closes.inc();
            out.close(close::TRY_AGAIN_LATER, "too slow; reconnect");
        }
    };
    guard.leave();
    match &end {
        End::Gone => tracing::debug!("socket closed: connection gone"),
        End::Close(code, reason) => tracing::debug!(code, reason, "socket closed"),
    }
    if let End::Close(code, reason) = end {
        // The closing handshake: our close frame after the frame being
        // written, FIN, then read until the peer closes too, so that its
        // unread bytes cannot turn our close into a reset.
        out.finish_with(wire::close_frame(code, reason), code, reason);
        if out.drain(CLOSE_WRITE_WAIT).await {
            let _ = wire::shutdown_write(out.stream());
            let mut scratch = vec![0u8; 1024];
            let _ = tokio::time::timeout(CLOSE_WAIT, async {
                while matches!(io.read(&mut scratch).await, Ok(n) if n > 0) {}
            })
            .await;
        }
    }
}

/// The session this socket was opened with has ended (4001).
fn session_ended() -> End {
    End::Close(close::SESSION_ENDED, "session ended")
}

fn reply(out: &Outbox, frame: &ServerFrame) {
    out.direct(encode(frame));
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
    resumes: resume::ResumeBudget,
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
    out: &Outbox,
    memory: &mut SocketMemory,
    frame: ClientFrame,
) -> Option<ServerFrame> {
    // Closing (its session ended, or the hub dropped it): nothing more it
    // sends counts. The hub requests the close before an instance
    // acknowledges a sign-out, so this holds for anything sent after one.
    if out.status() != Status::Open {
        return None;
    }
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
                    Ok(SendOutcome::Stored(_)) => {
                        metrics::get().messages_accepted.inc();
                        Ok(None)
                    }
                    Ok(SendOutcome::Duplicate(original)) => {
                        Ok(Some(ServerFrame::Message(original)))
                    }
                    Err(e) => Err(e),
                },
            }
            .inspect_err(|e| metrics::get().message_refused(&e.code))
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
                        // Best effort: a lost typing notice is harmless. A
                        // blocked private room drops it (in the same step).
                        if typing_limit::allowed(&state.store, user.id, state.config.typing_rate)
                            .await
                        {
                            let _ = super::blocks::publish_typing(&state.store, typing).await;
                        }
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

/// Whether a live frame (its JSON) is a message the replay already delivered.
fn already_replayed(covered: &BTreeMap<String, (u64, u64)>, json: &[u8]) -> bool {
    match serde_json::from_slice::<ServerFrame>(json) {
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
