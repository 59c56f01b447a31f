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

use super::{session, AppState};
use crate::protocol::{codes, ClientFrame, FrameError, ServerFrame, User, MAX_FRAME_BYTES};
use axum::{
    extract::{
        ws::{CloseFrame, Message, Utf8Bytes, WebSocket},
        State, WebSocketUpgrade,
    },
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use futures::{SinkExt, StreamExt};
use std::{
    collections::HashSet,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};
use tokio::sync::oneshot;

const PING_EVERY: Duration = Duration::from_secs(25);
const IDLE_LIMIT: Duration = Duration::from_secs(60);
/// Most frames written per flush.
const BATCH: usize = 64;

pub mod close {
    pub const GOING_AWAY: u16 = 1001;
    pub const POLICY: u16 = 1008;
    pub const TOO_BIG: u16 = 1009;
    pub const TRY_AGAIN_LATER: u16 = 1013;
}

pub async fn handler(
    State(state): State<AppState>,
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
    ws.max_message_size(4 * MAX_FRAME_BYTES)
        .max_frame_size(4 * MAX_FRAME_BYTES)
        .read_buffer_size(4 * 1024)
        .write_buffer_size(8 * 1024)
        .on_upgrade(move |socket| serve_socket(state, user, socket))
}

async fn serve_socket(state: AppState, user: User, socket: WebSocket) {
    let link = state.hub.join(&user);
    let (sink, mut stream) = socket.split();
    let started = Instant::now();
    let last_seen = Arc::new(AtomicU64::new(0));
    let (close_tx, close_rx) = oneshot::channel::<(u16, &'static str)>();
    let writer = tokio::spawn(write_loop(
        sink,
        link.frames,
        link.kicked.clone(),
        close_rx,
        state.shutdown.clone(),
        started,
        last_seen.clone(),
    ));

    let mut rooms: HashSet<String> = state
        .store
        .room_ids(user.id)
        .await
        .unwrap_or_default()
        .into_iter()
        .collect();
    let mut close_with = None;
    while let Some(msg) = stream.next().await {
        last_seen.store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
        let reply = match msg {
            Ok(Message::Text(text)) => {
                if text.len() > MAX_FRAME_BYTES {
                    close_with = Some((close::TOO_BIG, "frame too large"));
                    break;
                }
                handle_frame(&state, &user, &mut rooms, text.as_str()).await
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
        if let Some(frame) = reply {
            if let Ok(text) = serde_json::to_string(&frame) {
                let _ = link.direct.try_send(Utf8Bytes::from(text));
            }
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

fn error(code: &str, message: &str, nonce: Option<String>) -> FrameError {
    FrameError {
        code: code.to_string(),
        message: message.to_string(),
        nonce,
    }
}

/// Checks and executes one client frame; returns the frame for this socket
/// alone, if any (errors, or the original of a resent message).
async fn handle_frame(
    state: &AppState,
    user: &User,
    rooms: &mut HashSet<String>,
    text: &str,
) -> Option<ServerFrame> {
    let frame = match serde_json::from_str::<ClientFrame>(text) {
        Ok(frame) => frame,
        Err(_) => return Some(ServerFrame::Error(explain_bad_frame(text))),
    };
    match frame {
        ClientFrame::Message(send) => {
            if !rooms.contains(&send.room_id) {
                match state.store.is_member(user.id, &send.room_id).await {
                    Ok(true) => {
                        rooms.insert(send.room_id.clone());
                    }
                    Ok(false) => {
                        return Some(ServerFrame::Error(error(
                            codes::FORBIDDEN,
                            "You are not a member of this room.",
                            send.nonce,
                        )))
                    }
                    Err(_) => {
                        return Some(ServerFrame::Error(error(
                            codes::UNAVAILABLE,
                            "The message could not be stored; please retry.",
                            send.nonce,
                        )))
                    }
                }
            }
            match state
                .store
                .send_message(user.id, &send.room_id, &send.message, send.nonce.as_deref())
                .await
            {
                Ok(super::store::SendOutcome::Stored(_)) => None,
                Ok(super::store::SendOutcome::Duplicate(original)) => {
                    Some(ServerFrame::Message(original))
                }
                Err(e) => Some(ServerFrame::Error(e)),
            }
        }
    }
}

/// Says precisely what is wrong with a frame that did not decode.
fn explain_bad_frame(text: &str) -> FrameError {
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

async fn write_loop(
    mut sink: futures::stream::SplitSink<WebSocket, Message>,
    mut frames: tokio::sync::mpsc::Receiver<Utf8Bytes>,
    kicked: Arc<tokio::sync::Notify>,
    mut close_rx: oneshot::Receiver<(u16, &'static str)>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
    started: Instant,
    last_seen: Arc<AtomicU64>,
) {
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    let (code, reason) = loop {
        tokio::select! {
            biased;
            _ = async { let _ = shutdown.wait_for(|down| *down).await; } => break (close::GOING_AWAY, "server restarting"),
            _ = kicked.notified() => break (close::TRY_AGAIN_LATER, "too slow; reconnect"),
            reason = &mut close_rx => match reason {
                Ok(r) => break r,
                Err(_) => return,
            },
            frame = frames.recv() => {
                let Some(frame) = frame else { return };
                if sink.feed(Message::Text(frame)).await.is_err() {
                    return;
                }
                let mut n = 1;
                while n < BATCH {
                    match frames.try_recv() {
                        Ok(frame) => {
                            if sink.feed(Message::Text(frame)).await.is_err() {
                                return;
                            }
                            n += 1;
                        }
                        Err(_) => break,
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
