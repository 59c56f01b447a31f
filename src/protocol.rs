//! The wire contract, shared by the server and the WASM client.
//!
//! Every JSON shape that crosses the network lives here exactly once: server
//! function results, WebSocket frames in both directions, and the pub/sub
//! envelope that instances exchange through Redis. `docs/PROTOCOL.md` is the
//! prose version of this file; keep the two in step.
//!
//! Field names follow the original Redis chat demo (`roomId`, `from`, `date`)
//! so its clients and data stay readable.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A user id: `INCR total_users`, as in the original demo.
pub type UserId = u64;

/// The id of the shared room every user belongs to.
pub const GENERAL_ROOM_ID: &str = "0";

/// Longest accepted message, in characters after trimming (the server's
/// default; `MAX_MESSAGE_CHARS` can change it).
pub const DEFAULT_MAX_MESSAGE_CHARS: usize = 4000;
/// Shortest accepted password, in characters.
pub const MIN_PASSWORD_CHARS: usize = 8;
/// Longest accepted password, in bytes of UTF-8: bcrypt ignores every
/// byte after the 72nd, so a longer one would only seem stronger.
pub const MAX_PASSWORD_BYTES: usize = 72;
/// What the server answers (400) to a longer password, everywhere.
pub const PASSWORD_TOO_LONG: &str = "Passwords are at most 72 bytes.";
/// Longest accepted client nonce, in bytes.
pub const MAX_NONCE_LEN: usize = 64;
/// Largest accepted WebSocket frame from a client; bigger closes with 1009.
pub const MAX_FRAME_BYTES: usize = 16 * 1024;
/// Default and largest page size of `GET /api/messages`.
pub const DEFAULT_PAGE_SIZE: usize = 50;
pub const MAX_PAGE_SIZE: usize = 100;

/// A signed-in user as the API reports it (`/api/me`, `/api/login`, ...).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: UserId,
    pub username: String,
}

/// A user found in the directory (`GET /api/users`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectoryUser {
    pub id: UserId,
    pub username: String,
    pub online: bool,
}

/// One stored chat message. `id` is the server-assigned id (a Redis stream
/// entry id such as `1700000000000-0`): unique and increasing within a room.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub id: String,
    #[serde(rename = "roomId")]
    pub room_id: String,
    /// The sender's user id, always set by the server.
    pub from: UserId,
    /// Unix seconds, set by the server (as in the original demo).
    pub date: i64,
    /// Unix milliseconds, the same instant with more precision.
    #[serde(rename = "dateMs", default)]
    pub date_ms: i64,
    pub message: String,
    /// The sender's client nonce, echoed so its tab can match the pending copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// Unix milliseconds of the last edit or of the deletion; absent for a
    /// message never changed.
    #[serde(rename = "editedMs", default, skip_serializing_if = "Option::is_none")]
    pub edited_ms: Option<i64>,
    /// The sender deleted it: `message` is then empty.
    #[serde(default, skip_serializing_if = "is_false")]
    pub deleted: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// A room as listed by `GET /api/rooms` and announced by `show.room`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomSummary {
    pub id: String,
    /// "General", or the other user's name for a private room.
    pub name: String,
    /// The other member of a private room.
    #[serde(
        rename = "otherUserId",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub other_user_id: Option<UserId>,
    /// Whether the other member of a private room is online.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub online: Option<bool>,
    #[serde(
        rename = "lastMessage",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub last_message: Option<ChatMessage>,
    /// Messages from others after `lastRead`, counted up to
    /// [`MAX_UNREAD_COUNT`] (which means "that many or more").
    #[serde(default)]
    pub unread: u32,
    /// The id of the last message this user has read in the room.
    #[serde(rename = "lastRead", default, skip_serializing_if = "Option::is_none")]
    pub last_read: Option<String>,
    /// Private rooms: the id of the last message the other member has read
    /// (for "Seen").
    #[serde(rename = "peerRead", default, skip_serializing_if = "Option::is_none")]
    pub peer_read: Option<String>,
}

/// Unread counts stop at this number; the UI shows it as "99+".
pub const MAX_UNREAD_COUNT: u32 = 100;

/// One page of history, oldest first. `next` is the cursor for the page
/// before this one (`before=next`), or `None` at the first message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessagePage {
    pub messages: Vec<ChatMessage>,
    pub next: Option<String>,
}

/// Client -> server WebSocket frames: `{"type": ..., "data": {...}}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum ClientFrame {
    #[serde(rename = "message")]
    Message(SendMessage),
    /// After a reconnect: "the last message I have of each room is ...".
    /// The server answers with every later message of those rooms, oldest
    /// first, then `resumed`.
    #[serde(rename = "resume")]
    Resume(ResumeRequest),
    /// "I have read everything up to this message." Marks only move
    /// forward; the server answers every socket of the user (and the other
    /// member of a private room) with a `read` frame.
    #[serde(rename = "read")]
    Read(ReadMark),
    /// "I am typing in this room." Send at most every few seconds while
    /// typing; nothing is stored.
    #[serde(rename = "typing")]
    Typing(RoomRef),
    /// Replace the text of one of your own messages.
    #[serde(rename = "edit")]
    Edit(EditMessage),
    /// Delete one of your own messages.
    #[serde(rename = "delete")]
    Delete(MessageRef),
}

/// `{"roomId": ...}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomRef {
    #[serde(rename = "roomId")]
    pub room_id: String,
}

/// One message of one room: `{"roomId": ..., "id": ...}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageRef {
    #[serde(rename = "roomId")]
    pub room_id: String,
    pub id: String,
}

/// A new text for a message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EditMessage {
    #[serde(rename = "roomId")]
    pub room_id: String,
    pub id: String,
    pub message: String,
}

/// A read mark. From a client, `userId` is ignored (the server knows who
/// reads); from the server it says whose mark moved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadMark {
    #[serde(rename = "roomId")]
    pub room_id: String,
    /// The id of the last message read.
    pub id: String,
    #[serde(rename = "userId", default)]
    pub user_id: UserId,
}

/// Someone is typing in a room (ephemeral: shown for a few seconds).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Typing {
    #[serde(rename = "roomId")]
    pub room_id: String,
    #[serde(rename = "userId")]
    pub user_id: UserId,
    pub username: String,
}

/// How long a `typing` frame counts, in milliseconds; clients send one at
/// most every [`TYPING_RESEND_MS`] while the user keeps typing.
pub const TYPING_SHOW_MS: u64 = 5000;
pub const TYPING_RESEND_MS: u64 = 3000;

/// Room id → id of the last message the client has of that room.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResumeRequest {
    pub rooms: BTreeMap<String, String>,
}

/// Most messages replayed per room by one resume; a room with more is
/// listed in [`Resumed::truncated`] and should be reloaded from history.
pub const MAX_RESUME_PER_ROOM: usize = 500;
/// Most messages replayed by one resume over all its rooms; rooms past it
/// are listed in [`Resumed::truncated`] too.
pub const MAX_RESUME_TOTAL: usize = 2000;
/// Most rooms one resume looks at (the rest are ignored).
pub const MAX_RESUME_ROOMS: usize = 1000;

/// What a client may say about a new message. Sender and time are not here:
/// the server decides them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendMessage {
    #[serde(rename = "roomId")]
    pub room_id: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
}

/// Server -> client WebSocket frames: `{"type": ..., "data": {...}}`.
///
/// The same shapes travel between instances inside an [`Envelope`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum ServerFrame {
    #[serde(rename = "message")]
    Message(ChatMessage),
    #[serde(rename = "error")]
    Error(FrameError),
    #[serde(rename = "user.connected")]
    UserConnected(User),
    #[serde(rename = "user.disconnected")]
    UserDisconnected(User),
    #[serde(rename = "show.room")]
    ShowRoom(RoomSummary),
    #[serde(rename = "resumed")]
    Resumed(Resumed),
    /// A message was edited or deleted: the whole message as it now is.
    #[serde(rename = "message.updated")]
    MessageUpdated(ChatMessage),
    /// A read mark moved (the user's own, from any of their tabs, or the
    /// other member's in a private room).
    #[serde(rename = "read")]
    Read(ReadMark),
    #[serde(rename = "typing")]
    Typing(Typing),
}

/// Ends the replay of a `resume`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resumed {
    /// Room id → last message id now delivered (rooms with news only).
    pub rooms: BTreeMap<String, String>,
    /// Rooms with more than [`MAX_RESUME_PER_ROOM`] missed messages, or
    /// past [`MAX_RESUME_TOTAL`] for the whole resume: only the oldest (or
    /// none) were replayed; reload their history.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub truncated: Vec<String>,
}

/// Orders message ids (`<ms>-<seq>`) numerically; malformed ids sort first.
pub fn message_id_key(id: &str) -> (u64, u64) {
    let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
    (ms.parse().unwrap_or(0), seq.parse().unwrap_or(0))
}

/// Why a client frame was refused. `nonce` echoes the refused message's nonce.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrameError {
    pub code: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
}

/// Error codes used in [`FrameError`] and [`crate::api::ApiError`].
pub mod codes {
    pub const BAD_REQUEST: &str = "bad_request";
    pub const UNAUTHORIZED: &str = "unauthorized";
    pub const FORBIDDEN: &str = "forbidden";
    pub const NOT_FOUND: &str = "not_found";
    pub const CONFLICT: &str = "conflict";
    pub const UNAVAILABLE: &str = "unavailable";
    pub const INTERNAL: &str = "internal";
    pub const MALFORMED: &str = "malformed";
    pub const UNKNOWN_TYPE: &str = "unknown_type";
    pub const TOO_LONG: &str = "too_long";
    pub const EMPTY: &str = "empty";
    pub const RATE_LIMITED: &str = "rate_limited";
    pub const TOO_LARGE: &str = "too_large";
    pub const METHOD_NOT_ALLOWED: &str = "method_not_allowed";

    /// Every code, for counting them (the metrics label a refusal by code).
    pub const ALL: [&str; 14] = [
        BAD_REQUEST,
        UNAUTHORIZED,
        FORBIDDEN,
        NOT_FOUND,
        CONFLICT,
        UNAVAILABLE,
        INTERNAL,
        MALFORMED,
        UNKNOWN_TYPE,
        TOO_LONG,
        EMPTY,
        RATE_LIMITED,
        TOO_LARGE,
        METHOD_NOT_ALLOWED,
    ];
}

/// What instances publish on the Redis channel `MESSAGES`: the original
/// demo's `{"serverId","type","data"}` shape, where `type`/`data` are a
/// [`ServerFrame`]. `to` optionally narrows delivery to some users (used for
/// `show.room`); absent means "the members of the room in `data`".
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Envelope {
    #[serde(rename = "serverId")]
    pub server_id: String,
    #[serde(flatten)]
    pub frame: ServerFrame,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub to: Vec<UserId>,
}

/// WebSocket close codes of this application (RFC 6455 §7.4.2 leaves
/// 4000–4999 to applications). A client must not reconnect by itself after
/// either: the first means "sign in again", the second "another tab took
/// this one's place".
pub mod close_codes {
    /// The session the socket was opened with ended (sign-out, sign-out
    /// everywhere, password change, expiry).
    pub const SESSION_ENDED: u16 = 4001;
    /// The user opened more sockets than the server allows; this was the
    /// oldest.
    pub const TOO_MANY_SOCKETS: u16 = 4002;
}

/// What instances tell each other on the control channel (never sent to a
/// browser): `{"type": ..., "data": {...}}` like every other frame.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum Control {
    /// Sessions ended: every instance closes the sockets opened with them
    /// (close code [`close_codes::SESSION_ENDED`]) and acknowledges.
    #[serde(rename = "sessions.ended")]
    SessionsEnded(SessionsEnded),
}

/// Which sessions of one user ended, and where to acknowledge.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionsEnded {
    pub user: UserId,
    /// The ended sessions, as the hex SHA-256 of their tokens (the part of
    /// the session key after `session:`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sessions: Vec<String>,
    /// Every session of the user ended, except `keep` when set.
    #[serde(default, skip_serializing_if = "is_false")]
    pub all: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep: Option<String>,
    /// The list each instance pushes its server id to once its sockets of
    /// these sessions can no longer write.
    pub ack: String,
}

/// The two members of a private room id `"{min}:{max}"`, or `None` for a
/// room that is not private (General).
pub fn private_room_members(room_id: &str) -> Option<(UserId, UserId)> {
    let (a, b) = room_id.split_once(':')?;
    let (a, b) = (a.parse().ok()?, b.parse().ok()?);
    (a < b).then_some((a, b))
}

/// The id of the private room between two users: `"{min}:{max}"`.
pub fn private_room_id(a: UserId, b: UserId) -> String {
    format!("{}:{}", a.min(b), a.max(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_frame_matches_the_documented_shape() {
        let f: ClientFrame = serde_json::from_str(
            r#"{"type":"message","data":{"roomId":"0","message":"hi","nonce":"c-1"}}"#,
        )
        .unwrap();
        assert_eq!(
            f,
            ClientFrame::Message(SendMessage {
                room_id: "0".into(),
                message: "hi".into(),
                nonce: Some("c-1".into())
            })
        );
    }

    #[test]
    fn server_frames_serialise_with_dotted_types() {
        let f = ServerFrame::UserConnected(User {
            id: 3,
            username: "Mary".into(),
        });
        assert_eq!(
            serde_json::to_string(&f).unwrap(),
            r#"{"type":"user.connected","data":{"id":3,"username":"Mary"}}"#
        );
    }

    #[test]
    fn envelope_keeps_the_original_shape() {
        let e = Envelope {
            server_id: "s1".into(),
            frame: ServerFrame::Error(FrameError {
                code: "x".into(),
                message: "y".into(),
                nonce: None,
            }),
            to: vec![],
        };
        let v: serde_json::Value = serde_json::to_value(&e).unwrap();
        assert_eq!(v["serverId"], "s1");
        assert_eq!(v["type"], "error");
        assert_eq!(v["data"]["code"], "x");
        let back: Envelope = serde_json::from_value(v).unwrap();
        assert_eq!(back.frame, e.frame);
    }

    #[test]
    fn resume_frames() {
        let f: ClientFrame =
            serde_json::from_str(r#"{"type":"resume","data":{"rooms":{"0":"5-1"}}}"#).unwrap();
        let ClientFrame::Resume(r) = f else {
            panic!("not a resume")
        };
        assert_eq!(r.rooms["0"], "5-1");
        assert!(message_id_key("10-0") > message_id_key("9-5"));
        assert!(message_id_key("10-10") > message_id_key("10-9"));
    }

    #[test]
    fn private_room_ids() {
        assert_eq!(private_room_id(7, 2), "2:7");
        assert_eq!(private_room_members("2:7"), Some((2, 7)));
        assert_eq!(private_room_members("7:2"), None);
        assert_eq!(private_room_members("0"), None);
        assert_eq!(private_room_members("a:b"), None);
    }
}
