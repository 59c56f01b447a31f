//! Ending sessions everywhere at once.
//!
//! Signing out, "sign out everywhere" and a password change (on the web or
//! with `redis-chat user passwd`) delete session keys in Redis
//! (`session.rs`). That stops every new request, but a WebSocket opened
//! earlier would go on reading and writing. So the revoker then publishes
//! `sessions.ended` on [`CONTROL_CHANNEL`]; every instance's hub marks its
//! sockets of those sessions closed (close code 4001, sent at once) — from
//! then on nothing they send is stored — and pushes its server id to the
//! event's acknowledgement list. The revoker waits until every live
//! instance (presence's registry) has acknowledged, at most [`ACK_WAIT`],
//! so when "signed out" is answered no socket anywhere still writes with an
//! ended session.
//!
//! Two cases need no event: an expiring session, which each socket checks
//! itself when its session would run out (`ws.rs`), and an instance whose
//! subscriber was down when the event went out, which checks the sessions
//! of all its sockets when it subscribes again (`hub.rs`).

use super::presence::Presence;
use super::session::SessionId;
use super::store::{unavailable, Store};
use crate::api::ApiError;
use crate::protocol::{Control, SessionsEnded, UserId};
use redis::AsyncCommands;
use std::time::Duration;

/// The pub/sub channel of [`Control`] events between instances.
pub const CONTROL_CHANNEL: &str = "redis-chat:control";

/// How long a revoker waits for every instance to acknowledge.
pub const ACK_WAIT: Duration = Duration::from_secs(1);

/// How long an acknowledgement list lives (it is deleted once read).
const ACK_TTL_SECS: i64 = 30;

/// Which sessions of a user ended.
pub enum Ended {
    Only(Vec<SessionId>),
    /// Every session but this one (none: every session).
    AllBut(Option<SessionId>),
}

/// `revoked:{random}:acks`: where instances acknowledge one event.
fn ack_key() -> String {
    let mut bytes = [0u8; 12];
    let _ = getrandom::fill(&mut bytes);
    let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("revoked:{id}:acks")
}

/// Tells every instance that sessions of `user` ended and waits (at most
/// [`ACK_WAIT`]) until each live one has closed its sockets of them.
pub async fn announce(store: &Store, user: UserId, ended: Ended) -> Result<(), ApiError> {
    let ack = ack_key();
    let (sessions, all, keep) = match ended {
        Ended::Only(ids) => (ids.iter().map(SessionId::hex).collect(), false, None),
        Ended::AllBut(keep) => (vec![], true, keep.map(|k| k.hex())),
    };
    let event = Control::SessionsEnded(SessionsEnded {
        user,
        sessions,
        all,
        keep,
        ack: ack.clone(),
    });
    let payload = serde_json::to_string(&event).unwrap_or_default();
    let mut con = store.con();
    let expected = Presence::live_instances(&mut con)
        .await
        .map_err(unavailable)?;
    let _: () = con
        .publish(CONTROL_CHANNEL, payload)
        .await
        .map_err(unavailable)?;
    if expected == 0 {
        return Ok(());
    }
    // Acknowledgements take a millisecond or two: poll, quickly at first.
    let deadline = tokio::time::Instant::now() + ACK_WAIT;
    let mut pause = Duration::from_millis(1);
    loop {
        let acked: usize = con.llen(&ack).await.map_err(unavailable)?;
        if acked >= expected {
            break;
        }
        if tokio::time::Instant::now() + pause > deadline {
            tracing::warn!(
                user,
                acked,
                expected,
                "not every instance acknowledged ended sessions in time"
            );
            break;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(50));
    }
    let _: Result<(), _> = con.del(&ack).await;
    Ok(())
}

/// An instance's acknowledgement: its sockets of the event's sessions are
/// closed.
pub async fn acknowledge(store: &Store, ack: &str) {
    let mut con = store.con();
    let done: redis::RedisResult<()> = redis::pipe()
        .rpush(ack, store.server_id())
        .ignore()
        .expire(ack, ACK_TTL_SECS)
        .ignore()
        .query_async(&mut con)
        .await;
    if let Err(e) = done {
        tracing::warn!(error = %e, "could not acknowledge ended sessions");
    }
}

/// Which local sockets an event ends: those of `user` whose session it
/// names.
#[derive(Debug, Clone)]
pub struct Ending {
    pub user: UserId,
    pub sessions: Vec<SessionId>,
    pub all: bool,
    pub keep: Option<SessionId>,
}

impl Ending {
    pub fn of(event: &SessionsEnded) -> Self {
        Self {
            user: event.user,
            sessions: event
                .sessions
                .iter()
                .filter_map(|h| SessionId::of_hex(h))
                .collect(),
            all: event.all,
            keep: event.keep.as_deref().and_then(SessionId::of_hex),
        }
    }

    /// Whether a socket of `user` opened with `session` must close.
    pub fn ends(&self, user: UserId, session: &SessionId) -> bool {
        user == self.user
            && if self.all {
                self.keep.as_ref() != Some(session)
            } else {
                self.sessions.contains(session)
            }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ending_names_its_sockets() {
        let (a, b) = (SessionId::of_token("a"), SessionId::of_token("b"));
        let only = Ending::of(&SessionsEnded {
            user: 7,
            sessions: vec![a.hex()],
            all: false,
            keep: None,
            ack: String::new(),
        });
        assert!(only.ends(7, &a));
        assert!(!only.ends(7, &b));
        assert!(!only.ends(8, &a));
        let all_but_b = Ending::of(&SessionsEnded {
            user: 7,
            sessions: vec![],
            all: true,
            keep: Some(b.hex()),
            ack: String::new(),
        });
        assert!(all_but_b.ends(7, &a));
        assert!(!all_but_b.ends(7, &b));
        assert_eq!(SessionId::of_key(&a.key()), Some(a));
    }
}
