//! The per-user limit on typing notices (`TYPING_RATE_LIMIT`).
//!
//! Each socket already drops notices closer than half the resend interval
//! per room (`ws.rs`); this bounds what one user can make the server
//! publish over all their rooms and sockets, on every instance, with one
//! counter per user in Redis (`ratelimit:typing:{user}`, expiring with its
//! window). A notice over the limit is dropped: typing is best effort.

use super::limits::MessageRate;
use super::store::Store;
use crate::protocol::UserId;

fn key(user: UserId) -> String {
    format!("ratelimit:typing:{user}")
}

/// Counts a typing notice of `user`; `false` when it is over the limit
/// (or Redis cannot say: nothing is published then either).
pub async fn allowed(store: &Store, user: UserId, rate: MessageRate) -> bool {
    if rate.count == 0 {
        return true;
    }
    let mut con = store.con();
    let counted: redis::RedisResult<(u64,)> = redis::pipe()
        .incr(key(user), 1)
        .cmd("PEXPIRE")
        .arg(key(user))
        .arg(rate.window_ms)
        .arg("NX")
        .ignore()
        .query_async(&mut con)
        .await;
    matches!(counted, Ok((n,)) if n <= u64::from(rate.count))
}
