//! Rate limits, kept in Redis so that they hold across instances.
//!
//! - Sign-in: per client address, at most [`LOGIN_PER_ADDRESS`] attempts per
//!   5 minutes; per username, after [`FREE_FAILURES`] wrong passwords in 15
//!   minutes each further attempt must wait twice as long as the last
//!   (1 s, 2 s, 4 s … up to 5 minutes). A success clears the username's count.
//! - Messages: per user and room, `MSG_RATE_LIMIT` (e.g. 30 per 10 s),
//!   counted inside the send script itself (`store.rs`), so it costs no
//!   extra round trip.

use super::store::{unavailable, Store};
use crate::api::ApiError;
use redis::AsyncCommands;
use std::net::IpAddr;

pub const LOGIN_PER_ADDRESS: u64 = 60;
const ADDRESS_WINDOW_SECS: i64 = 300;
pub const FREE_FAILURES: u64 = 5;
const FAILURE_WINDOW_SECS: i64 = 900;
const MAX_DELAY_MS: u64 = 300_000;

fn failures_key(name: &str) -> String {
    format!("ratelimit:login:fail:{}", name.to_lowercase())
}
fn blocked_key(name: &str) -> String {
    format!("ratelimit:login:wait:{}", name.to_lowercase())
}
fn address_key(ip: IpAddr) -> String {
    format!("ratelimit:login:addr:{ip}")
}

fn too_many(wait_ms: u64, what: &str) -> ApiError {
    let secs = wait_ms.div_ceil(1000).max(1);
    ApiError::new(
        "rate_limited",
        format!("Too many sign-in attempts {what}; try again in {secs} s."),
    )
}

/// Refuses a sign-in attempt that comes too soon (429), counting it.
pub async fn check_login(store: &Store, name: &str, ip: Option<IpAddr>) -> Result<(), ApiError> {
    // The username's block and the address counter are in different
    // slots: two requests at once (the address one is a single-slot
    // pipeline, so EXPIRE NX always follows its INCR).
    let con = store.con();
    let blocked = async {
        let mut con = con.clone();
        con.pttl::<_, i64>(blocked_key(name)).await
    };
    let address = async {
        let Some(ip) = ip else {
            return Ok(None);
        };
        let mut con = con.clone();
        redis::pipe()
            .incr(address_key(ip), 1)
            .cmd("EXPIRE")
            .arg(address_key(ip))
            .arg(ADDRESS_WINDOW_SECS)
            .arg("NX")
            .ignore()
            .pttl(address_key(ip))
            .query_async::<(i64, i64)>(&mut con)
            .await
            .map(Some)
    };
    let (blocked, address) = tokio::try_join!(blocked, address).map_err(unavailable)?;
    if let Some((attempts, ttl)) = address {
        if attempts as u64 > LOGIN_PER_ADDRESS {
            return Err(too_many(ttl.max(0) as u64, "from your address"));
        }
    }
    if blocked > 0 {
        return Err(too_many(blocked as u64, "for this account"));
    }
    Ok(())
}

/// A wrong password: past the free failures, the next attempt must wait.
pub async fn login_failed(store: &Store, name: &str) -> Result<(), ApiError> {
    let mut con = store.con();
    let (failures,): (u64,) = redis::pipe()
        .incr(failures_key(name), 1)
        .cmd("EXPIRE")
        .arg(failures_key(name))
        .arg(FAILURE_WINDOW_SECS)
        .arg("NX")
        .ignore()
        .query_async(&mut con)
        .await
        .map_err(unavailable)?;
    if failures >= FREE_FAILURES {
        let delay = 1000u64
            .saturating_mul(1 << (failures - FREE_FAILURES).min(20))
            .min(MAX_DELAY_MS);
        let _: () = con
            .pset_ex(blocked_key(name), 1, delay)
            .await
            .map_err(unavailable)?;
    }
    Ok(())
}

/// A successful sign-in clears the username's failures.
pub async fn login_succeeded(store: &Store, name: &str) -> Result<(), ApiError> {
    let mut con = store.con();
    // Two slots on a cluster; redis-rs splits the DEL by slot.
    con.del::<_, ()>(&[failures_key(name), blocked_key(name)])
        .await
        .map_err(unavailable)
}

/// `MSG_RATE_LIMIT`: `count/seconds`, or `0` for no limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MessageRate {
    pub count: u32,
    pub window_ms: u64,
}

impl MessageRate {
    pub const UNLIMITED: Self = Self {
        count: 0,
        window_ms: 1000,
    };

    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        if text == "0" {
            return Some(Self::UNLIMITED);
        }
        let (count, secs) = text.split_once('/')?;
        let (count, secs): (u32, u64) = (count.trim().parse().ok()?, secs.trim().parse().ok()?);
        (count > 0 && (1..=3600).contains(&secs)).then_some(Self {
            count,
            window_ms: secs * 1000,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_rates() {
        assert_eq!(
            MessageRate::parse("30/10"),
            Some(MessageRate {
                count: 30,
                window_ms: 10_000
            })
        );
        assert_eq!(MessageRate::parse("0"), Some(MessageRate::UNLIMITED));
        for bad in ["", "x", "0/10", "5/0", "5/99999", "-1/5"] {
            assert_eq!(MessageRate::parse(bad), None, "{bad}");
        }
    }
}
