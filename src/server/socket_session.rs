//! The session a WebSocket was opened with, for as long as the socket
//! lives.
//!
//! A socket outlives the request that opened it, so it keeps its session
//! alive and watches it end: activity on the socket slides the session's
//! TTL like any request does (at most every [`SocketSession::renew_every`],
//! not on every frame), and when the session would expire the socket asks
//! Redis whether it did — another tab's requests may have renewed it — and
//! closes with 4001 if so. Sign-out and password changes end sockets
//! through the hub instead (`revocation.rs`).

use super::session::{self, SessionId};
use super::store::Store;
use std::time::Duration;
use tokio::time::Instant;

/// How soon to look again when Redis could not say (an outage does not
/// end sessions).
const RETRY_AFTER: Duration = Duration::from_secs(5);

pub struct SocketSession {
    pub id: SessionId,
    ttl: Duration,
    /// When the session expires unless renewed.
    expires: Instant,
    renewed: Instant,
}

impl SocketSession {
    /// The session of a socket just opened (its TTL was just renewed).
    pub fn new(id: SessionId, ttl: Duration) -> Self {
        let now = Instant::now();
        Self {
            id,
            ttl,
            expires: now + ttl,
            renewed: now,
        }
    }

    /// When to look whether the session still exists.
    pub fn expires(&self) -> Instant {
        self.expires
    }

    /// The socket's activity renews its session this often at most: an
    /// eighth of the TTL, between a second and an hour.
    fn renew_every(&self) -> Duration {
        (self.ttl / 8).clamp(Duration::from_secs(1), Duration::from_secs(3600))
    }

    /// Whether the session still exists; moves [`Self::expires`] to its
    /// remaining lifetime.
    pub async fn alive(&mut self, store: &Store) -> bool {
        let mut con = store.con();
        let ttl: Result<i64, _> = redis::cmd("PTTL")
            .arg(self.id.key())
            .query_async(&mut con)
            .await;
        match ttl {
            // -2: no such key.
            Ok(-2) => false,
            // -1 (no expiry, set by hand): look again after a whole TTL.
            Ok(ms) if ms < 0 => {
                self.expires = Instant::now() + self.ttl;
                true
            }
            Ok(ms) => {
                self.expires = Instant::now() + Duration::from_millis(ms as u64);
                true
            }
            Err(e) => {
                tracing::debug!(error = %e, "cannot check a socket's session");
                self.expires = Instant::now() + RETRY_AFTER;
                true
            }
        }
    }

    /// The user is active on the socket: renews the session now and then.
    /// `false` when the session is gone (or expired).
    pub async fn touch(&mut self, store: &Store) -> bool {
        let now = Instant::now();
        if now >= self.expires {
            return self.alive(store).await;
        }
        if now.duration_since(self.renewed) < self.renew_every() {
            return true;
        }
        match session::lookup_key(store, &self.id.key(), self.ttl).await {
            Ok(Some(_)) => {
                self.renewed = now;
                self.expires = now + self.ttl;
                true
            }
            Ok(None) => false,
            // Redis is down: the frame's own store call will say so.
            Err(_) => true,
        }
    }
}
