//! Server-side sessions in Redis.
//!
//! The cookie holds a random 256-bit token; Redis holds only its SHA-256
//! (`session:{hash}` → `{id}:{username}`), so a copy of the database does
//! not contain usable sessions. The TTL slides on every use. Every
//! instance sees every session, so no sticky load balancing is needed.
//!
//! Ending a session ([`delete`], [`delete_all`]) also ends the WebSockets
//! opened with it, on every instance, before the call returns
//! (`revocation.rs`).

use super::redis_con::Op;
use super::store::{keys, next_reply, unavailable, Store};
use crate::api::ApiError;
use crate::protocol::{User, UserId};
use http::HeaderMap;
use redis::AsyncCommands;
use sha2::{Digest, Sha256};
use std::time::Duration;

/// The session cookie's name.
pub const COOKIE: &str = "rc_session";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A new random token (64 hex characters) from the OS RNG.
pub fn new_token() -> Result<String, ApiError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| {
        tracing::error!(error = %e, "no randomness for a session token");
        ApiError::internal()
    })?;
    Ok(hex(&bytes))
}

fn key_of(token: &str) -> String {
    SessionId::of_token(token).key()
}

/// A session, as the SHA-256 of its token: what its Redis key is named
/// after, and what a WebSocket remembers of the session it was opened
/// with (32 bytes, not the 72 of the key).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SessionId([u8; 32]);

impl SessionId {
    pub fn of_token(token: &str) -> Self {
        Self(Sha256::digest(token.as_bytes()).into())
    }

    /// The id in a session key (`session:{64 hex digits}`).
    pub fn of_key(key: &str) -> Option<Self> {
        Self::of_hex(key.strip_prefix("session:")?)
    }

    pub fn of_hex(digits: &str) -> Option<Self> {
        if digits.len() != 64 {
            return None;
        }
        let mut bytes = [0u8; 32];
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(digits.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(Self(bytes))
    }

    pub fn hex(&self) -> String {
        hex(&self.0)
    }

    /// The session's Redis key.
    pub fn key(&self) -> String {
        keys::session(&self.hex())
    }
}

/// `user:{id}:sessions`: the session keys of a user, for "sign out
/// everywhere" and password changes. It has no TTL of its own: sessions
/// slide, so any TTL given at sign-in could run out while a session in it
/// lives on (and sign-out everywhere would miss it). Members whose session
/// expired are harmless and pruned as the set grows, so it stays at most
/// a few dozen entries.
pub fn index_of(user: UserId) -> String {
    format!("user:{user}:sessions")
}

/// Stores a new session for `user` and returns its token.
pub async fn create(store: &Store, user: &User, ttl: Duration) -> Result<String, ApiError> {
    let token = new_token()?;
    let key = key_of(&token);
    // The session and the user's index are in different slots: a batch
    // (one pipeline on a single Redis). The session is usable once its own
    // key is written; the index only serves "sign out everywhere", and an
    // index entry without a session is pruned.
    let replies = store
        .con()
        .batch(vec![
            redis::Cmd::set_ex(
                &key,
                format!("{}:{}", user.id, user.username),
                ttl.as_secs(),
            )
            .into(),
            redis::Cmd::sadd(index_of(user.id), &key).into(),
            // Indexes written before sessions slid had a TTL: drop it.
            redis::cmd("PERSIST")
                .arg(index_of(user.id))
                .to_owned()
                .into(),
            redis::Cmd::scard(index_of(user.id)).into(),
        ])
        .await
        .map_err(unavailable)?;
    let count: usize = replies
        .last()
        .and_then(|v| redis::from_redis_value_ref(v).ok())
        .unwrap_or(0);
    if count > 64 {
        prune(store, user.id).await?;
    }
    Ok(token)
}

/// Marks that [`index_every_session`] has run on this database.
const INDEXED_MARKER: &str = "sessions:indexed";

/// Once per database: adds every live session to its user's index.
/// Versions before the index lost its TTL let indexes expire while their
/// sessions slid on, so "sign out everywhere" and password changes would
/// miss those sessions. Idempotent, so instances starting together may
/// both run it.
pub async fn index_every_session(store: &Store) -> Result<usize, redis::RedisError> {
    let mut con = store.con();
    if con.exists::<_, bool>(INDEXED_MARKER).await? {
        return Ok(0);
    }
    let keys = store.con().scan_keys("session:*", Some("string")).await?;
    let mut indexed = 0;
    for chunk in keys.chunks(500) {
        let values: Vec<Option<String>> = super::redis_con::from_values(
            store
                .con()
                .batch(chunk.iter().map(|k| redis::Cmd::get(k).into()).collect())
                .await?,
        )?;
        let adds: Vec<Op> = chunk
            .iter()
            .zip(values)
            .filter_map(|(key, value)| {
                let user = user_of(value)?;
                Some(redis::Cmd::sadd(index_of(user.id), key).into())
            })
            .collect();
        indexed += adds.len();
        if !adds.is_empty() {
            store.con().batch(adds).await?;
        }
    }
    let _: () = con.set(INDEXED_MARKER, 1).await?;
    Ok(indexed)
}

/// Drops index entries of expired sessions.
async fn prune(store: &Store, user: UserId) -> Result<(), ApiError> {
    let mut con = store.con();
    let keys: Vec<String> = con.smembers(index_of(user)).await.map_err(unavailable)?;
    // Sessions are spread over slots: a batch of EXISTS.
    let replies = store
        .con()
        .batch(keys.iter().map(|k| redis::Cmd::exists(k).into()).collect())
        .await
        .map_err(unavailable)?;
    let alive: Vec<bool> = crate::server::redis_con::from_values(replies).map_err(unavailable)?;
    let dead: Vec<&String> = keys
        .iter()
        .zip(alive)
        .filter(|(_, a)| !a)
        .map(|(k, _)| k)
        .collect();
    if !dead.is_empty() {
        let _: () = con.srem(index_of(user), dead).await.map_err(unavailable)?;
    }
    Ok(())
}

/// Ends every session of `user` except the one with token `keep`, and
/// the WebSockets opened with them.
pub async fn delete_all(store: &Store, user: UserId, keep: Option<&str>) -> Result<(), ApiError> {
    let keep = keep.map(SessionId::of_token);
    let keep_key = keep.map(|k| k.key());
    let mut con = store.con();
    let keys: Vec<String> = con.smembers(index_of(user)).await.map_err(unavailable)?;
    let doomed: Vec<&String> = keys
        .iter()
        .filter(|k| Some(*k) != keep_key.as_ref())
        .collect();
    if !doomed.is_empty() {
        // Sessions first, then the index: a failure half-way leaves index
        // entries without sessions (pruned later), never a live session
        // that the index forgot. On a cluster redis-rs splits the
        // multi-key DEL by slot.
        let mut del = redis::cmd("DEL");
        del.arg(&doomed);
        store
            .con()
            .in_order(vec![del, redis::Cmd::srem(index_of(user), &doomed)])
            .await
            .map_err(unavailable)?;
    }
    // Every socket of the user but those of `keep`, whether or not the
    // index knew its session.
    super::revocation::announce(store, user, super::revocation::Ended::AllBut(keep)).await
}

/// The Redis key of a well-formed token (64 hex digits), else `None`.
pub fn key_for(token: &str) -> Option<String> {
    (token.len() == 64 && token.bytes().all(|b| b.is_ascii_hexdigit())).then(|| key_of(token))
}

/// `GETEX` of a session key that slides its TTL, for a batch; read the
/// reply with [`user_of`].
pub fn renew_op(key: &str, ttl: Duration) -> Op {
    redis::cmd("GETEX")
        .arg(key)
        .arg("EX")
        .arg(ttl.as_secs())
        .to_owned()
        .into()
}

/// The user a session's value names (`{id}:{username}`).
pub fn user_of(value: Option<String>) -> Option<User> {
    let value = value?;
    let (id, username) = value.split_once(':')?;
    Some(User {
        id: id.parse().ok()?,
        username: username.to_string(),
    })
}

/// The user of a token, extending the session's lifetime.
pub async fn lookup(store: &Store, token: &str, ttl: Duration) -> Result<Option<User>, ApiError> {
    match key_for(token) {
        Some(key) => lookup_key(store, &key, ttl).await,
        None => Ok(None),
    }
}

/// [`lookup`] by the session's key (see [`key_for`]).
pub async fn lookup_key(store: &Store, key: &str, ttl: Duration) -> Result<Option<User>, ApiError> {
    let replies = store
        .con()
        .batch(vec![renew_op(key, ttl)])
        .await
        .map_err(unavailable)?;
    Ok(user_of(next_reply(&mut replies.into_iter())?))
}

/// Which user each recently seen session key belongs to. A token names
/// the same user for its whole life, so this is never stale in the way
/// that matters: it only lets a request put its session check in the same
/// round trip as the commands that need the user's id (the session itself
/// is still checked in Redis every time). Bounded: cleared when full.
#[derive(Default)]
pub struct KnownSessions {
    users: std::sync::Mutex<std::collections::HashMap<String, UserId>>,
}

impl KnownSessions {
    const CAPACITY: usize = 100_000;

    pub fn user(&self, key: &str) -> Option<UserId> {
        self.users.lock().ok()?.get(key).copied()
    }

    pub fn remember(&self, key: &str, user: UserId) {
        if let Ok(mut users) = self.users.lock() {
            if users.len() >= Self::CAPACITY {
                users.clear();
            }
            users.insert(key.to_string(), user);
        }
    }

    pub fn forget(&self, key: &str) {
        if let Ok(mut users) = self.users.lock() {
            users.remove(key);
        }
    }
}

/// Deletes a session (logout), and ends the WebSockets opened with it.
pub async fn delete(store: &Store, token: &str) -> Result<(), ApiError> {
    let id = SessionId::of_token(token);
    let key = id.key();
    let mut con = store.con();
    let value: Option<String> = redis::cmd("GETDEL")
        .arg(&key)
        .query_async(&mut con)
        .await
        .map_err(unavailable)?;
    if let Some(user) = value.and_then(|v| v.split_once(':')?.0.parse::<UserId>().ok()) {
        let _: () = con.srem(index_of(user), &key).await.map_err(unavailable)?;
        super::revocation::announce(store, user, super::revocation::Ended::Only(vec![id])).await?;
    }
    Ok(())
}

/// The session token in a request's `Cookie` headers, if any.
pub fn token_from_headers(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_string())
}

/// `Set-Cookie` for a new session: HttpOnly, SameSite=Lax, whole site.
pub fn set_cookie(token: &str, ttl: Duration, secure: bool) -> String {
    format!(
        "{COOKIE}={token}; Path=/; Max-Age={}; HttpOnly; SameSite=Lax{}",
        ttl.as_secs(),
        if secure { "; Secure" } else { "" }
    )
}

/// `Set-Cookie` that removes the session cookie.
pub fn clear_cookie(secure: bool) -> String {
    format!(
        "{COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax{}",
        if secure { "; Secure" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_hex() {
        let (a, b) = (new_token().unwrap(), new_token().unwrap());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
        assert!(key_of(&a).starts_with("session:"));
        assert!(!key_of(&a).contains(&a));
    }

    #[test]
    fn cookie_parsing() {
        let mut h = HeaderMap::new();
        h.insert(
            http::header::COOKIE,
            "a=1; rc_session=abc; b=2".parse().unwrap(),
        );
        assert_eq!(token_from_headers(&h).as_deref(), Some("abc"));
        assert_eq!(token_from_headers(&HeaderMap::new()), None);
        let c = set_cookie("t", Duration::from_secs(60), true);
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Lax") && c.ends_with("Secure"));
    }
}
