//! The Redis store: the keys of users, rooms and messages are named here
//! (`mod keys`); the other keys are those of sessions (`session.rs`),
//! sign-in limits (`limits.rs`), presence (`presence.rs`) and demo data
//! (`demo.rs`). `docs/DATA_MODEL.md` lists every one.
//!
//! The data model keeps the original Redis chat demo's keys so its data
//! stays usable (see `docs/DATA_MODEL.md`):
//!
//! | key | type | what |
//! |---|---|---|
//! | `total_users` | string | INCR gives new user ids |
//! | `user:{id}` | hash | `username`, `password` (bcrypt) |
//! | `username:{name}` | string | `user:{id}` |
//! | `user:{id}:rooms` | set | room ids the user belongs to |
//! | `room:{id}:name` | string | display name of a public room ("General") |
//! | `room:{id}` | zset | the demo's history of a room (read once by the import) |
//! | `online_users` | set | ids of users with an open socket |
//!
//! and adds its own:
//!
//! | key | type | what |
//! |---|---|---|
//! | `username_ci:{lowercase name}` | string | user id; makes names unique case-insensitively (claimed with SET NX) |
//! | `users_by_name` | zset | `lowercase name \0 id`, score 0: prefix search with ZRANGEBYLEX |
//! | `room:{ROOM}:stream` | stream | messages; the entry id is the message id (braces: a cluster hash tag) |
//! | `room:{ROOM}:nonce:{user}:{nonce}` | string | message id of a client nonce, `NONCE_TTL_SECS` (24 h): idempotent sends |
//! | `room:{ROOM}:imported` | string | set once the demo's sorted-set history was copied in |
//! | `room:{ROOM}:rate:{user}` | string | messages and edits in the current rate window (TTL: the window) |
//! | `room:{ROOM}:read` | hash | user id → id of the last message they read |
//! | `room:{ROOM}:edits` | hash | message id → JSON of its edit or deletion |
//! | `room:{ROOM}:generation` | string | counter bumped by every edit, deletion or import: keys the history page cache |
//! | `session:{sha256(token)}` | string | `{id}:{username}`, sliding TTL |
//!
//! The demo kept history in a sorted set `room:{id}` scored by date, where
//! identical texts collapse and paging by offset shifts under inserts. Here
//! a Redis Stream per room gives every message its own increasing id, and
//! paging by id (`XREVRANGE (cursor - COUNT n`) is O(log N + n) and stable.

use super::passwords::validate_password;
use super::redis_con::{from_values, Op, RedisCon};
use crate::api::ApiError;
use crate::protocol::MAX_PASSWORD_BYTES;
use crate::protocol::{
    codes, private_room_members, ChatMessage, DirectoryUser, Envelope, FrameError, MessagePage,
    RoomSummary, ServerFrame, User, UserId, DEFAULT_PAGE_SIZE, GENERAL_ROOM_ID, MAX_NONCE_LEN,
    MAX_PAGE_SIZE,
};
use redis::{AsyncCommands, Script};
use std::sync::{Arc, LazyLock};

/// The pub/sub channel every instance publishes to and subscribes to (the
/// original demo's name).
pub const CHANNEL: &str = "MESSAGES";

pub mod keys {
    use crate::protocol::UserId;

    pub const TOTAL_USERS: &str = "total_users";
    pub const ONLINE_USERS: &str = "online_users";
    pub const USERS_BY_NAME: &str = "users_by_name";

    pub fn user(id: UserId) -> String {
        format!("user:{id}")
    }
    pub fn username(name: &str) -> String {
        format!("username:{name}")
    }
    pub fn username_ci(name: &str) -> String {
        format!("username_ci:{}", name.to_lowercase())
    }
    pub fn user_rooms(id: UserId) -> String {
        format!("user:{id}:rooms")
    }
    pub fn room_name(room: &str) -> String {
        format!("room:{room}:name")
    }
    /// The original demo's sorted-set history of a room.
    pub fn legacy_room(room: &str) -> String {
        format!("room:{room}")
    }
    pub fn room_stream(room: &str) -> String {
        format!("room:{{{room}}}:stream")
    }
    pub fn room_imported(room: &str) -> String {
        format!("room:{{{room}}}:imported")
    }
    pub fn nonce(room: &str, user: UserId, nonce: &str) -> String {
        format!("room:{{{room}}}:nonce:{user}:{nonce}")
    }
    pub fn message_rate(room: &str, user: UserId) -> String {
        format!("room:{{{room}}}:rate:{user}")
    }
    /// Read marks of a room: user id → id of the last message they read.
    pub fn room_read(room: &str) -> String {
        format!("room:{{{room}}}:read")
    }
    /// The id of a room's newest message, written with it (`lua/send.lua`):
    /// the room list orders rooms by it without reading their streams.
    pub fn room_last(room: &str) -> String {
        format!("room:{{{room}}}:last")
    }
    /// Edits and deletions of a room's messages: message id → JSON
    /// `{"message","editedMs"}` or `{"deleted":true,"editedMs"}`.
    pub fn room_edits(room: &str) -> String {
        format!("room:{{{room}}}:edits")
    }
    /// A counter bumped by every change to messages already stored (an
    /// edit, a deletion, an import of older history): a history page
    /// cached at one generation is served only while it is unchanged.
    pub fn room_generation(room: &str) -> String {
        format!("room:{{{room}}}:generation")
    }
    /// A room's shard channel on a cluster (sharded pub/sub): in the
    /// room's slot, so the room's scripts can `SPUBLISH` to it.
    pub fn room_events(room: &str) -> String {
        format!("room:{{{room}}}:events")
    }
    pub fn session(token_hash: &str) -> String {
        format!("session:{token_hash}")
    }
}

/// Logs a Redis failure and turns it into the client-facing 503.
pub fn unavailable(e: redis::RedisError) -> ApiError {
    tracing::warn!(error = %e, "redis command failed");
    ApiError::unavailable()
}

/// Stores a message and publishes it in one round trip (see `lua/send.lua`).
static SEND_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/send.lua")));

/// Copies the demo's sorted-set history of one room into its stream, once
/// (see `lua/import.lua`).
static IMPORT_SCRIPT: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/import.lua")));

/// Moves a read mark forward and announces it (see `lua/read.lua`).
static READ_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/read.lua")));
/// A range of messages with their edits (see `lua/page.lua`).
static PAGE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/page.lua")));
/// Edits or deletes a message (see `lua/edit.lua`).
static EDIT_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/edit.lua")));

/// An edit or deletion as stored in `room:{ROOM}:edits`.
#[derive(serde::Deserialize)]
struct StoredEdit {
    #[serde(default)]
    message: Option<String>,
    #[serde(rename = "editedMs", default)]
    edited_ms: i64,
    #[serde(default)]
    deleted: bool,
}

/// Applies a stored edit (JSON from the edits hash) to a message.
pub(super) fn apply_edit(message: &mut ChatMessage, edit: Option<&str>) {
    let Some(edit) = edit.and_then(|e| serde_json::from_str::<StoredEdit>(e).ok()) else {
        return;
    };
    message.edited_ms = Some(edit.edited_ms);
    if edit.deleted {
        message.deleted = true;
        message.message.clear();
    } else if let Some(text) = edit.message {
        message.message = text;
    }
}

/// What `lua/page.lua` returns: entries, and their edits (empty when the
/// room has none).
type RawPage = (Vec<RawEntry>, Vec<Option<String>>);

fn page_messages(room: &str, (entries, edits): RawPage) -> Vec<ChatMessage> {
    let mut edits = edits.into_iter();
    entries
        .into_iter()
        .filter_map(|e| {
            let edit = edits.next().flatten();
            let mut m = entry_to_message(room, e)?;
            apply_edit(&mut m, edit.as_deref());
            Some(m)
        })
        .collect()
}

/// An invocation of `lua/page.lua`.
fn page_invocation(
    room: &str,
    direction: &str,
    from: &str,
    to: &str,
    count: usize,
) -> redis::ScriptInvocation<'static> {
    let mut invocation = PAGE_SCRIPT.key(keys::room_stream(room));
    invocation
        .key(keys::room_edits(room))
        .arg(direction)
        .arg(from)
        .arg(to)
        .arg(count);
    invocation
}

/// What happened to a sent message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    /// Stored and published; the pub/sub echo delivers it.
    Stored(String),
    /// The nonce was used before: this is the message stored then, as it
    /// is now (edited, or deleted). It was not published again, so the
    /// sender gets it directly.
    Duplicate(ChatMessage),
}

#[derive(Clone)]
pub struct Store {
    con: RedisCon,
    hasher: super::passwords::Hasher,
    pub max_message_chars: usize,
    pub message_rate: super::limits::MessageRate,
    /// `PRIVATE_ROOM_RATE_LIMIT`: new private rooms a user may open per
    /// window (the command line's operator sends are not limited).
    pub private_room_rate: super::limits::MessageRate,
    /// `HISTORY_MAX_PER_ROOM`: messages kept per room (0 = all).
    pub history_max_per_room: u64,
    /// `NONCE_TTL_SECS`: how long a nonce remembers its message, so that a
    /// resend after a reconnect is stored once.
    pub nonce_ttl_secs: u64,
    /// `HISTORY_MAX_AGE_DAYS` in ms: older messages are trimmed (0 = none).
    pub history_max_age_ms: u64,
    server_id: Arc<str>,
    /// Room events go to per-room shard channels (`SPUBLISH`), not to
    /// [`CHANNEL`]: on a cluster.
    sharded: bool,
}

impl Store {
    pub fn new(
        con: RedisCon,
        bcrypt_cost: u32,
        max_message_chars: usize,
        server_id: Arc<str>,
    ) -> Self {
        Self {
            sharded: con.is_cluster(),
            con,
            hasher: super::passwords::Hasher::new(bcrypt_cost),
            max_message_chars,
            message_rate: super::limits::MessageRate::UNLIMITED,
            private_room_rate: super::limits::MessageRate::UNLIMITED,
            history_max_per_room: 0,
            nonce_ttl_secs: 24 * 3600,
            history_max_age_ms: 0,
            server_id,
        }
    }

    /// bcrypt at the configured cost.
    pub fn hasher(&self) -> &super::passwords::Hasher {
        &self.hasher
    }

    /// A handle to the shared multiplexed connection (cheap to clone).
    pub fn con(&self) -> RedisCon {
        self.con.clone()
    }

    pub fn server_id(&self) -> &str {
        &self.server_id
    }

    /// Whether room events use sharded pub/sub (on a cluster).
    pub fn sharded(&self) -> bool {
        self.sharded
    }

    /// The channel a room's events are published on: [`CHANNEL`] on one
    /// Redis, the room's shard channel on a cluster.
    pub fn room_channel(&self, room: &str) -> String {
        if self.sharded {
            keys::room_events(room)
        } else {
            CHANNEL.to_string()
        }
    }

    /// Whether rooms lose old messages (by count or by age).
    fn trims(&self) -> bool {
        self.history_max_per_room > 0 || self.history_max_age_ms > 0
    }

    /// `PUBLISH`, or `SPUBLISH` (to a room's shard channel) on a cluster.
    pub fn publish_command(&self) -> &'static str {
        if self.sharded {
            "SPUBLISH"
        } else {
            "PUBLISH"
        }
    }

    // ----- accounts ------------------------------------------------------

    /// Creates a user. Name uniqueness is decided by one `SET NX` on the
    /// lowercase name, so two concurrent registrations cannot both win.
    pub async fn register(&self, username: &str, password: &str) -> Result<User, ApiError> {
        let username = validate_username(username)?;
        validate_password(password)?;
        let mut con = self.con();

        let claim = keys::username_ci(&username);
        let claimed: bool = redis::cmd("SET")
            .arg(&claim)
            .arg("pending")
            .arg("NX")
            .arg("EX")
            .arg(60)
            .query_async::<Option<String>>(&mut con)
            .await
            .map_err(unavailable)?
            .is_some();
        if !claimed {
            return Err(taken());
        }
        // A name written by the original demo has no claim key yet (the
        // start-up backfill adds it; this covers a race with that).
        let legacy: bool = con
            .exists(keys::username(&username))
            .await
            .map_err(unavailable)?;
        if legacy {
            let _: Result<(), _> = con.del(&claim).await;
            return Err(taken());
        }

        let hash = match self.hasher.hash(password).await {
            Ok(hash) => hash,
            Err(e) => {
                // Refused (the bcrypt queue is full: 503) or failed: the
                // name is free again at once, for the retry the answer
                // asks for, not taken for the claim's 60 s.
                let _: Result<(), _> = con.del(&claim).await;
                return Err(e);
            }
        };
        let id: UserId = con.incr(keys::TOTAL_USERS, 1).await.map_err(unavailable)?;
        // One MULTI on a single Redis. On a cluster these keys are in
        // different slots, so they are written one by one, in an order
        // where every prefix is safe (the claim above already serialises
        // registrations of this name): first the user's own keys, which
        // nothing points to yet; then `username:x`, after which the user
        // can sign in by exact name and the name counts as taken; the
        // index; last the claim's final value, which drops its 60 s
        // expiry. A registration cut short after `username:x` is
        // completed by the start-up backfill.
        self.con
            .in_order(vec![
                redis::Cmd::hset_multiple(
                    keys::user(id),
                    &[("username", username.as_str()), ("password", hash.as_str())],
                ),
                redis::Cmd::sadd(keys::user_rooms(id), GENERAL_ROOM_ID),
                redis::Cmd::set(keys::username(&username), keys::user(id)),
                redis::Cmd::zadd(keys::USERS_BY_NAME, name_index_entry(&username, id), 0),
                redis::Cmd::set(&claim, id),
            ])
            .await
            .map_err(unavailable)?;
        // A newcomer starts with General read: its past is history, not news.
        self.mark_read(id, GENERAL_ROOM_ID, "+", false).await?;
        Ok(User { id, username })
    }

    /// Checks a password. Unknown users and wrong passwords get the same
    /// error and take about the same time.
    pub async fn verify_login(&self, username: &str, password: &str) -> Result<User, ApiError> {
        let wrong = || ApiError::new(codes::UNAUTHORIZED, "Wrong username or password.");
        let found =
            if username.is_empty() || username.len() > 64 || password.len() > MAX_PASSWORD_BYTES {
                None
            } else {
                self.find_user_id(username).await?
            };
        let (user, hash) = match found {
            Some(id) => {
                let mut con = self.con();
                let (name, hash): (Option<String>, Option<String>) = redis::cmd("HMGET")
                    .arg(keys::user(id))
                    .arg("username")
                    .arg("password")
                    .query_async(&mut con)
                    .await
                    .map_err(unavailable)?;
                match (name, hash) {
                    (Some(username), Some(hash)) => (Some(User { id, username }), Some(hash)),
                    _ => (None, None),
                }
            }
            None => (None, None),
        };
        let ok = self.hasher.verify(password, hash).await?;
        match user {
            Some(user) if ok => Ok(user),
            _ => Err(wrong()),
        }
    }

    /// Sets a new password (checked against the rules, hashed off the
    /// async workers).
    pub async fn set_password(&self, user: UserId, password: &str) -> Result<(), ApiError> {
        validate_password(password)?;
        let hash = self.hasher.hash(password).await?;
        let mut con = self.con();
        con.hset::<_, _, _, ()>(keys::user(user), "password", hash)
            .await
            .map_err(unavailable)
    }

    /// The id of a user by name: case-insensitively through the claim key,
    /// then exactly through the demo's `username:{name}`.
    pub async fn find_user_id(&self, username: &str) -> Result<Option<UserId>, ApiError> {
        // Two slots on a cluster: a batch, not a pipeline.
        let replies = self
            .con
            .batch(vec![
                redis::Cmd::get(keys::username_ci(username)).into(),
                redis::Cmd::get(keys::username(username)).into(),
            ])
            .await
            .map_err(unavailable)?;
        let (ci, exact): (Option<String>, Option<String>) =
            from_values(replies).map_err(unavailable)?;
        Ok(ci
            .and_then(|v| v.parse().ok())
            .or_else(|| exact.and_then(|v| v.strip_prefix("user:")?.parse().ok())))
    }

    pub async fn username_of(&self, id: UserId) -> Result<Option<String>, ApiError> {
        let mut con = self.con();
        con.hget(keys::user(id), "username")
            .await
            .map_err(unavailable)
    }

    /// The names of `ids` (`None` for an id that is no user), in one
    /// batch: every user hash is in its own slot.
    pub async fn usernames(&self, ids: &[UserId]) -> Result<Vec<Option<String>>, ApiError> {
        from_values(
            self.con
                .batch(
                    ids.iter()
                        .map(|id| redis::Cmd::hget(keys::user(*id), "username").into())
                        .collect(),
                )
                .await
                .map_err(unavailable)?,
        )
        .map_err(unavailable)
    }

    /// Up to 20 users whose name starts with `prefix` (case-insensitive).
    pub async fn search_users(
        &self,
        prefix: &str,
        exclude: UserId,
        presence: &super::presence::Presence,
    ) -> Result<Vec<DirectoryUser>, ApiError> {
        let prefix = prefix.trim().to_lowercase();
        if prefix.len() > 64 {
            return Err(ApiError::bad_request("The search text is too long."));
        }
        let mut con = self.con();
        let (min, max) = if prefix.is_empty() {
            ("-".to_string(), "+".to_string())
        } else {
            (format!("[{prefix}"), format!("[{prefix}\u{10FFFF}"))
        };
        let entries: Vec<String> = redis::cmd("ZRANGEBYLEX")
            .arg(keys::USERS_BY_NAME)
            .arg(min)
            .arg(max)
            .arg("LIMIT")
            .arg(0)
            .arg(21)
            .query_async(&mut con)
            .await
            .map_err(unavailable)?;
        let ids: Vec<UserId> = entries
            .iter()
            .filter_map(|e| e.rsplit('\0').next()?.parse().ok())
            .filter(|id| *id != exclude)
            .take(20)
            .collect();
        if ids.is_empty() {
            return Ok(vec![]);
        }
        let names = self.usernames(&ids).await?;
        let online = presence.online_flags(&ids).await?;
        Ok(ids
            .into_iter()
            .zip(names)
            .zip(online)
            .filter_map(|((id, name), online)| {
                Some(DirectoryUser {
                    id,
                    username: name?,
                    online,
                })
            })
            .collect())
    }

    /// Start-up: gives users written by the original demo the keys this
    /// version adds (case-insensitive claim, name index). Safe to repeat.
    pub async fn backfill_users(&self) -> Result<usize, redis::RedisError> {
        let mut con = self.con();
        let total: Option<u64> = con.get(keys::TOTAL_USERS).await?;
        let indexed: u64 = con.zcard(keys::USERS_BY_NAME).await?;
        if total.unwrap_or(0) <= indexed {
            return Ok(0);
        }
        let names = self.con.scan_keys("username:*", None).await?;
        let mut fixed = 0;
        for key in names {
            let Some(name) = key.strip_prefix("username:") else {
                continue;
            };
            let value: Option<String> = con.get(&key).await?;
            let Some(id) = value.and_then(|v| v.strip_prefix("user:")?.parse::<UserId>().ok())
            else {
                continue;
            };
            // Each write is idempotent, so any order and any repeat is fine.
            let mut claim = redis::cmd("SET");
            claim.arg(keys::username_ci(name)).arg(id).arg("NX");
            self.con
                .in_order(vec![
                    claim,
                    redis::Cmd::sadd(keys::user_rooms(id), GENERAL_ROOM_ID),
                    redis::Cmd::zadd(keys::USERS_BY_NAME, name_index_entry(name, id), 0),
                ])
                .await?;
            fixed += 1;
        }
        Ok(fixed)
    }

    // ----- rooms -----------------------------------------------------------

    /// Whether `user` belongs to `room`.
    pub async fn is_member(&self, user: UserId, room: &str) -> Result<bool, ApiError> {
        if !valid_room_id(room) {
            return Ok(false);
        }
        let mut con = self.con();
        con.sismember(keys::user_rooms(user), room)
            .await
            .map_err(unavailable)
    }

    /// All room ids of a user.
    pub async fn room_ids(&self, user: UserId) -> Result<Vec<String>, redis::RedisError> {
        let mut con = self.con();
        con.smembers(keys::user_rooms(user)).await
    }

    /// Adds the private room of `a` and `b` to both users' room sets.
    /// Returns which of the two did not have it yet (so each is told once).
    pub async fn create_private_room(
        &self,
        a: UserId,
        b: UserId,
    ) -> Result<(String, bool, bool), ApiError> {
        let room = crate::protocol::private_room_id(a, b);
        // Two slots on a cluster. Each SADD is idempotent and says whether
        // it was new, so no transaction is needed: a repeat (or a retry
        // after one of the two failed) completes the room, and each member
        // is reported new exactly once.
        let replies = self
            .con
            .batch(vec![
                redis::Cmd::sadd(keys::user_rooms(a), &room).into(),
                redis::Cmd::sadd(keys::user_rooms(b), &room).into(),
            ])
            .await
            .map_err(unavailable)?;
        let (new_a, new_b): (bool, bool) = from_values(replies).map_err(unavailable)?;
        Ok((room, new_a, new_b))
    }

    /// One room as `user` sees it (unread count, read marks, last message);
    /// `name` and `online` are left for the caller.
    pub async fn room_line(
        &self,
        user: UserId,
        room: &str,
        other: Option<UserId>,
    ) -> Result<RoomSummary, ApiError> {
        super::room_list::room_line(self, user, room, other).await
    }

    /// The last message of a room (as edited), if any.
    pub async fn last_message(&self, room: &str) -> Result<Option<ChatMessage>, ApiError> {
        let mut con = self.con();
        let page: RawPage = page_invocation(room, "rev", "+", "-", 1)
            .invoke_async(&mut con)
            .await
            .map_err(unavailable)?;
        Ok(page_messages(room, page).into_iter().next())
    }

    // ----- messages ----------------------------------------------------------

    /// One page of history for `user`: the newest `limit` messages strictly
    /// older than `before`, oldest first, with their edits. The membership
    /// check and the page (`lua/page.lua`: `XREVRANGE ... COUNT limit+1`
    /// and the edits) go in one pipelined round trip; the page is only
    /// returned to a member (403 otherwise).
    pub async fn history(
        &self,
        user: UserId,
        room: &str,
        before: Option<String>,
        limit: usize,
    ) -> Result<MessagePage, ApiError> {
        if !valid_room_id(room) {
            return Err(not_a_member());
        }
        // The user's room set and the room are in different slots: a batch.
        let mut ops = vec![Self::membership_op(user, room)];
        ops.extend(Self::page_ops(room, before.as_deref(), limit));
        let mut replies = self.con.batch(ops).await.map_err(unavailable)?.into_iter();
        let member: bool = next_reply(&mut replies)?;
        if !member {
            return Err(not_a_member());
        }
        self.finish_page(room, limit, &mut replies).await
    }

    /// `SISMEMBER` of `room` in `user`'s rooms, for a batch.
    pub fn membership_op(user: UserId, room: &str) -> Op {
        redis::Cmd::sismember(keys::user_rooms(user), room).into()
    }

    /// `GET` of the room's generation (see [`keys::room_generation`]), for
    /// a batch; read it with [`generation_of`].
    pub fn generation_op(room: &str) -> Op {
        redis::Cmd::get(keys::room_generation(room)).into()
    }

    /// The two commands that read a page of `room` (finish it with
    /// [`Store::finish_page`]): the newest `limit + 1` entries older than
    /// `before`, and whether the room has edits at all. Plain `XREVRANGE`
    /// rather than `lua/page.lua`: a script that reads 51 entries into Lua
    /// and back costs Redis several times more, and most rooms have no
    /// edits (then this is the only round trip).
    pub fn page_ops(room: &str, before: Option<&str>, limit: usize) -> [Op; 2] {
        let end = match before {
            Some(cursor) => format!("({cursor}"),
            None => "+".to_string(),
        };
        [
            redis::cmd("XREVRANGE")
                .arg(keys::room_stream(room))
                .arg(&end)
                .arg("-")
                .arg("COUNT")
                .arg(limit + 1)
                .to_owned()
                .into(),
            redis::Cmd::exists(keys::room_edits(room)).into(),
        ]
    }

    /// Reads the page's entries from the replies of [`Store::page_ops`]
    /// and, in a room with edits, their edits in a second round trip.
    pub async fn finish_page(
        &self,
        room: &str,
        limit: usize,
        replies: &mut impl Iterator<Item = redis::Value>,
    ) -> Result<MessagePage, ApiError> {
        let entries: Vec<RawEntry> = next_reply(replies)?;
        let edited: bool = next_reply(replies)?;
        let edits: Vec<Option<String>> = if edited && !entries.is_empty() {
            let ids: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
            let mut con = self.con();
            redis::cmd("HMGET")
                .arg(keys::room_edits(room))
                .arg(&ids)
                .query_async(&mut con)
                .await
                .map_err(unavailable)?
        } else {
            vec![]
        };
        let mut messages = page_messages(room, (entries, edits));
        let more = messages.len() > limit;
        messages.truncate(limit);
        let next = if more {
            messages.last().map(|m| m.id.clone())
        } else {
            None
        };
        messages.reverse();
        Ok(MessagePage { messages, next })
    }

    /// Reads a page without any check (the caller has checked membership).
    pub async fn read_page(
        &self,
        room: &str,
        before: Option<&str>,
        limit: usize,
    ) -> Result<MessagePage, ApiError> {
        let replies = self
            .con
            .batch(Self::page_ops(room, before, limit).into())
            .await
            .map_err(unavailable)?;
        self.finish_page(room, limit, &mut replies.into_iter())
            .await
    }

    /// Messages after `after` (exclusive) in each room, oldest first and as
    /// edited, at most `limit` per room; one pipelined round trip. The flag
    /// says the room had more.
    pub async fn replay(
        &self,
        rooms: &[(String, String)],
        limit: usize,
    ) -> Result<Vec<(Vec<ChatMessage>, bool)>, ApiError> {
        if rooms.is_empty() {
            return Ok(vec![]);
        }
        let ops = rooms
            .iter()
            .map(|(room, after)| {
                Op::Script(
                    &PAGE_SCRIPT,
                    page_invocation(room, "fwd", &format!("({after}"), "+", limit + 1),
                )
            })
            .collect();
        let replies: Vec<RawPage> =
            from_values(self.con.batch(ops).await.map_err(unavailable)?).map_err(unavailable)?;
        Ok(rooms
            .iter()
            .zip(replies)
            .map(|((room, _), page)| {
                let mut messages = page_messages(room, page);
                let more = messages.len() > limit;
                messages.truncate(limit);
                (messages, more)
            })
            .collect())
    }

    /// Moves `user`'s read mark in `room` forward to `id` (`"+"`: the newest
    /// message), clamped to the newest message; never back. When it moved
    /// and `announce` is set, the user's sockets and the other member of a
    /// private room get a `read` frame. Returns the new mark, if it moved.
    pub async fn mark_read(
        &self,
        user: UserId,
        room: &str,
        id: &str,
        announce: bool,
    ) -> Result<Option<String>, ApiError> {
        let partner = private_room_members(room)
            .map(|(a, b)| if a == user { b } else { a })
            .map(|p| p.to_string())
            .unwrap_or_default();
        let mut con = self.con();
        READ_SCRIPT
            .key(keys::room_read(room))
            .key(keys::room_stream(room))
            .arg(user)
            .arg(id)
            .arg(self.room_channel(room))
            .arg(self.server_id.as_ref())
            .arg(room)
            .arg(partner)
            .arg(if announce { "1" } else { "0" })
            .arg(self.publish_command())
            .invoke_async(&mut con)
            .await
            .map_err(unavailable)
    }

    /// Replaces the text of `user`'s message `id` in `room` (`None`: deletes
    /// it) and publishes `message.updated` to the room, in one script. The
    /// caller has checked membership. Errors are frames for the sender.
    pub async fn edit_message(
        &self,
        user: UserId,
        room: &str,
        id: &str,
        text: Option<&str>,
    ) -> Result<(), FrameError> {
        let frame_error = |code: &str, message: String| FrameError {
            code: code.to_string(),
            message,
            nonce: None,
        };
        if parse_cursor(Some(id)).ok().flatten().is_none() {
            return Err(frame_error(
                codes::BAD_REQUEST,
                "No such message id.".into(),
            ));
        }
        let text = match text {
            Some(text) => self
                .checked_text(text)
                .map_err(|(code, message)| frame_error(code, message))?,
            None => String::new(),
        };
        let mut con = self.con();
        let reply: Vec<i64> = EDIT_SCRIPT
            .key(keys::room_stream(room))
            .key(keys::room_edits(room))
            .key(keys::message_rate(room, user))
            .key(keys::room_generation(room))
            .key(super::blocks::room_blocked(room))
            .arg(id)
            .arg(user)
            .arg(&text)
            .arg(if text.is_empty() { "1" } else { "0" })
            .arg(self.room_channel(room))
            .arg(self.server_id.as_ref())
            .arg(room)
            .arg(self.message_rate.count)
            .arg(self.message_rate.window_ms)
            .arg(self.publish_command())
            .arg(if self.trims() { "1" } else { "0" })
            .invoke_async(&mut con)
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "edit failed");
                frame_error(
                    codes::UNAVAILABLE,
                    "The change could not be stored; please retry.".into(),
                )
            })?;
        match reply.as_slice() {
            [1, ..] => Ok(()),
            [3] => Err(frame_error(
                codes::FORBIDDEN,
                "You can only change your own messages.".into(),
            )),
            [4] => Err(frame_error(
                codes::FORBIDDEN,
                "Messages in a blocked conversation cannot be edited.".into(),
            )),
            [2, ms] => Err(frame_error(
                codes::RATE_LIMITED,
                format!(
                    "You are sending too fast; wait {} s.",
                    (*ms.max(&1) as u64).div_ceil(1000)
                ),
            )),
            _ => Err(frame_error(codes::NOT_FOUND, "No such message.".into())),
        }
    }

    /// Publishes an event of `room` (typing notices: nothing is stored) to
    /// the instances with sockets of its members: on the room's shard
    /// channel on a cluster, else on [`CHANNEL`].
    pub async fn publish_room(&self, room: &str, frame: ServerFrame) -> Result<(), ApiError> {
        let envelope = Envelope {
            server_id: self.server_id.to_string(),
            frame,
            to: vec![],
        };
        let payload = serde_json::to_string(&envelope).unwrap_or_default();
        let mut con = self.con();
        redis::cmd(self.publish_command())
            .arg(self.room_channel(room))
            .arg(payload)
            .query_async::<()>(&mut con)
            .await
            .map_err(unavailable)
    }

    /// Publishes an event to every instance on [`CHANNEL`] (`show.room`).
    pub async fn publish(&self, frame: ServerFrame, to: Vec<UserId>) -> Result<(), ApiError> {
        let envelope = Envelope {
            server_id: self.server_id.to_string(),
            frame,
            to,
        };
        let payload = serde_json::to_string(&envelope).unwrap_or_default();
        let mut con = self.con();
        redis::cmd("PUBLISH")
            .arg(CHANNEL)
            .arg(payload)
            .query_async::<()>(&mut con)
            .await
            .map_err(unavailable)
    }

    /// Cleans a message text and checks its length: the text to store, or
    /// an error code and message.
    fn checked_text(&self, text: &str) -> Result<String, (&'static str, String)> {
        let text = clean_message(text);
        let chars = text.chars().count();
        if chars == 0 {
            return Err((codes::EMPTY, "The message is empty.".into()));
        }
        if chars > self.max_message_chars {
            return Err((
                codes::TOO_LONG,
                format!(
                    "The message is {chars} characters long; the limit is {}.",
                    self.max_message_chars
                ),
            ));
        }
        Ok(text)
    }

    /// Stores and publishes a message from `from` (already checked to be a
    /// member). The text is cleaned and checked here; errors are frames
    /// for the sender.
    pub async fn send_message(
        &self,
        from: UserId,
        room: &str,
        text: &str,
        nonce: Option<&str>,
    ) -> Result<SendOutcome, FrameError> {
        let frame_error = |code: &str, message: String| FrameError {
            code: code.to_string(),
            message,
            nonce: nonce.map(str::to_string),
        };
        let nonce = nonce.unwrap_or("");
        if nonce.len() > MAX_NONCE_LEN || nonce.chars().any(char::is_control) {
            return Err(frame_error(
                codes::BAD_REQUEST,
                format!("The nonce must be at most {MAX_NONCE_LEN} printable characters."),
            ));
        }
        let text = self
            .checked_text(text)
            .map_err(|(code, message)| frame_error(code, message))?;
        let mut con = self.con();
        let (fresh, id): (u8, String) = SEND_SCRIPT
            .key(keys::room_stream(room))
            .key(keys::nonce(room, from, nonce))
            .key(keys::message_rate(room, from))
            .key(super::blocks::room_blocked(room))
            .key(keys::room_last(room))
            .arg(from)
            .arg(&text)
            .arg(self.server_id.as_ref())
            .arg(room)
            .arg(nonce)
            .arg(self.nonce_ttl_secs)
            .arg(self.room_channel(room))
            .arg(self.message_rate.count)
            .arg(self.message_rate.window_ms)
            .arg(self.publish_command())
            .arg(self.history_max_per_room)
            .arg(self.history_max_age_ms)
            .invoke_async(&mut con)
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "send failed");
                frame_error(
                    codes::UNAVAILABLE,
                    "The message could not be stored; please retry.".into(),
                )
            })?;
        match fresh {
            1 => return Ok(SendOutcome::Stored(id)),
            2 => {
                let secs = id.parse::<u64>().unwrap_or(1000).div_ceil(1000).max(1);
                return Err(frame_error(
                    codes::RATE_LIMITED,
                    format!("You are sending too fast; wait {secs} s."),
                ));
            }
            3 => {
                let message = if id == "me" {
                    super::blocks::blocked_by_me_message()
                } else {
                    super::blocks::blocked_by_them_message()
                };
                return Err(frame_error(codes::FORBIDDEN, message.into()));
            }
            _ => {}
        }
        // The message as it is now: a resend must not bring back the
        // text of a message edited or deleted since.
        let page: RawPage = page_invocation(room, "fwd", &id, &id, 1)
            .invoke_async(&mut con)
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "reading a resent message failed");
                frame_error(
                    codes::UNAVAILABLE,
                    "The store is unavailable; please retry.".into(),
                )
            })?;
        let mut message = page_messages(room, page)
            .into_iter()
            .next()
            .ok_or_else(|| {
                frame_error(
                    codes::NOT_FOUND,
                    "This message was stored but is no longer kept in the room's history.".into(),
                )
            })?;
        message.nonce = Some(nonce.to_string());
        Ok(SendOutcome::Duplicate(message))
    }

    /// Start-up: copies every room's history written by the original demo
    /// (sorted set `room:{id}`) into its stream, once per room. The set is
    /// read first, then one script per room writes the stream and the
    /// marker (the two keys are in different cluster slots). A room already
    /// imported costs one `EXISTS`.
    pub async fn import_legacy_history(&self) -> Result<usize, redis::RedisError> {
        let mut con = self.con();
        let rooms = self.con.scan_keys("room:*", Some("zset")).await?;
        let mut imported = 0;
        for key in rooms {
            let Some(room) = key.strip_prefix("room:") else {
                continue;
            };
            if room.contains('{') {
                continue;
            }
            if con.exists::<_, bool>(keys::room_imported(room)).await? {
                continue;
            }
            let items: Vec<String> = redis::cmd("ZRANGE")
                .arg(keys::legacy_room(room))
                .arg(0)
                .arg(-1)
                .arg("WITHSCORES")
                .query_async(&mut con)
                .await?;
            let n: usize = IMPORT_SCRIPT
                .key(keys::room_stream(room))
                .key(keys::room_imported(room))
                .key(keys::room_generation(room))
                .arg(items)
                .invoke_async(&mut con)
                .await?;
            if n > 0 {
                tracing::info!(room, messages = n, "imported the demo's history");
            }
            imported += n;
        }
        Ok(imported)
    }
}

/// A stream entry as XRANGE returns it: id and flat field/value list.
pub(super) type RawEntry = (String, Vec<String>);

pub(super) fn entry_to_message(room: &str, (id, fields): RawEntry) -> Option<ChatMessage> {
    let mut from = None;
    let mut message = None;
    for pair in fields.chunks(2) {
        if let [k, v] = pair {
            match k.as_str() {
                "from" => from = v.parse().ok(),
                "message" => message = Some(v.clone()),
                _ => {}
            }
        }
    }
    let date_ms: i64 = id.split('-').next()?.parse().ok()?;
    Some(ChatMessage {
        id,
        room_id: room.to_string(),
        from: from.unwrap_or(0),
        date: date_ms / 1000,
        date_ms,
        message: message?,
        nonce: None,
        edited_ms: None,
        deleted: false,
    })
}

/// The next reply of a batch as `T`; a missing or mistyped reply is the
/// store misbehaving (503), not the client's fault.
pub fn next_reply<T: redis::FromRedisValue>(
    replies: &mut impl Iterator<Item = redis::Value>,
) -> Result<T, ApiError> {
    let value = replies.next().unwrap_or(redis::Value::Nil);
    redis::from_redis_value(value).map_err(|e| unavailable(e.into()))
}

/// The generation from the reply of [`Store::generation_op`] (0 before the
/// first change).
pub fn generation_of(replies: &mut impl Iterator<Item = redis::Value>) -> Result<u64, ApiError> {
    Ok(next_reply::<Option<u64>>(replies)?.unwrap_or(0))
}

/// Room ids are short; anything else is no room the user can be in.
pub fn valid_room_id(room: &str) -> bool {
    !room.is_empty() && room.len() <= 64
}

pub fn not_a_member() -> ApiError {
    ApiError::forbidden("You are not a member of this room.")
}

fn taken() -> ApiError {
    ApiError::new(codes::CONFLICT, "That username is taken.")
}

fn name_index_entry(name: &str, id: UserId) -> String {
    format!("{}\0{id}", name.to_lowercase())
}

/// Username rules: 3-32 characters of ASCII letters, digits, `_ . -`.
pub fn validate_username(name: &str) -> Result<String, ApiError> {
    let name = name.trim();
    let len = name.chars().count();
    if !(3..=32).contains(&len) {
        return Err(ApiError::bad_request(
            "The username must be 3 to 32 characters long.",
        ));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    {
        return Err(ApiError::bad_request(
            "The username may contain only letters, digits, '_', '.' and '-'.",
        ));
    }
    Ok(name.to_string())
}

/// Normalises line ends, drops control characters other than newline and
/// tab, and trims.
pub fn clean_message(text: &str) -> String {
    text.replace("\r\n", "\n")
        .chars()
        .filter(|c| !c.is_control() || *c == '\n' || *c == '\t')
        .collect::<String>()
        .trim()
        .to_string()
}

/// `limit` of `/api/messages`: 1-100, default 50.
pub fn parse_limit(raw: Option<&str>) -> Result<usize, ApiError> {
    match raw.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(DEFAULT_PAGE_SIZE),
        Some(s) => match s.parse::<usize>() {
            Ok(n) if (1..=MAX_PAGE_SIZE).contains(&n) => Ok(n),
            _ => Err(ApiError::bad_request(format!(
                "limit must be a number from 1 to {MAX_PAGE_SIZE}."
            ))),
        },
    }
}

/// `before` of `/api/messages`: a message id (`<ms>-<seq>`) or absent.
pub fn parse_cursor(raw: Option<&str>) -> Result<Option<String>, ApiError> {
    match raw.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) => {
            let valid = s.split_once('-').is_some_and(|(ms, seq)| {
                !ms.is_empty()
                    && !seq.is_empty()
                    && ms.len() <= 20
                    && seq.len() <= 20
                    && ms.parse::<u64>().is_ok()
                    && seq.parse::<u64>().is_ok()
            });
            if valid {
                Ok(Some(s.to_string()))
            } else {
                Err(ApiError::bad_request(
                    "before must be a message id from a previous page.",
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        assert!(validate_username("Mary").is_ok());
        assert_eq!(validate_username("  a.b-c_d ").unwrap(), "a.b-c_d");
        assert!(validate_username("ab").is_err());
        assert!(validate_username(&"x".repeat(33)).is_err());
        assert!(validate_username("a b c").is_err());
        assert!(validate_username("<script>").is_err());
    }

    #[test]
    fn cleaning_keeps_newlines_and_drops_controls() {
        assert_eq!(clean_message("  hi\r\nthere\u{7}\0 "), "hi\nthere");
        assert_eq!(clean_message("\n\t \n"), "");
    }

    #[test]
    fn limits_and_cursors() {
        assert_eq!(parse_limit(None).unwrap(), 50);
        assert_eq!(parse_limit(Some("100")).unwrap(), 100);
        for bad in ["0", "101", "-1", "x", "1e3"] {
            assert_eq!(parse_limit(Some(bad)).unwrap_err().status(), 400, "{bad}");
        }
        assert_eq!(parse_cursor(Some("")).unwrap(), None);
        assert_eq!(
            parse_cursor(Some("1700000000000-3")).unwrap().as_deref(),
            Some("1700000000000-3")
        );
        for bad in ["x", "1-", "-1", "1-2-3", "+", "(1-0", "1 -0"] {
            assert!(parse_cursor(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn entries_become_messages() {
        let m = entry_to_message(
            "0",
            (
                "1700000000123-0".into(),
                vec!["from".into(), "2".into(), "message".into(), "hi".into()],
            ),
        )
        .unwrap();
        assert_eq!(m.from, 2);
        assert_eq!(m.date, 1_700_000_000);
        assert_eq!(m.date_ms, 1_700_000_000_123);
    }
}
