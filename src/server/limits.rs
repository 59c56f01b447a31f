//! Rate limits, kept in Redis so that they hold across instances.
//!
//! Sign-in. Every attempt is counted before any bcrypt work, atomically
//! (one Lua script per step), so guesses sent in parallel see each other:
//! - per client address ([`LimitKey`]: an IPv4 address, an IPv6 /64), at
//!   most [`LOGIN_PER_ADDRESS`] attempts per 5 minutes, whatever the names;
//! - per account and address, [`FREE_FAILURES`] attempts, then each further
//!   one must wait twice as long as the last (1 s, 2 s, 4 s … up to 5
//!   minutes), for 15 minutes from the first. This is per address: someone
//!   else's wrong guesses never lock the owner out. Of any number of
//!   guesses sent at once from one address, at most [`FREE_FAILURES`] reach
//!   bcrypt. A right password clears that address's count for the account;
//! - per account from all addresses, past [`ACCOUNT_ATTEMPTS`] attempts in
//!   15 minutes the account takes one attempt per [`ACCOUNT_SPACING_MS`]:
//!   a guesser with many addresses is slowed to that, and once the guessing
//!   stops the owner waits at most that long (never for good).
//!
//! Registration: per client address, `REGISTER_RATE_LIMIT` (10 per hour);
//! every attempt counts, a taken name too (it tells that an account exists).
//!
//! Messages: per user and room, `MSG_RATE_LIMIT` (e.g. 30 per 10 s),
//! counted inside the send script itself (`store.rs`), so it costs no
//! extra round trip.

use super::client_addr::LimitKey;
use super::store::{unavailable, Store};
use crate::api::ApiError;
use crate::protocol::codes;
use redis::Script;
use std::net::IpAddr;
use std::sync::LazyLock;

pub const LOGIN_PER_ADDRESS: u64 = 60;
const ADDRESS_WINDOW_MS: u64 = 300_000;
pub const FREE_FAILURES: u64 = 5;
const ACCOUNT_WINDOW_MS: u64 = 900_000;
const MAX_DELAY_MS: u64 = 300_000;
pub const ACCOUNT_ATTEMPTS: u64 = 100;
pub const ACCOUNT_SPACING_MS: u64 = 1000;
/// Longer names belong to no account (see `Store::verify_login`).
const MAX_NAME_BYTES: usize = 64;

/// Counts an event in a fixed window (see `lua/window_count.lua`).
static WINDOW_COUNT: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/window_count.lua")));
/// Admits and counts an attempt for an account (`lua/login_attempt.lua`).
static LOGIN_ATTEMPT: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/login_attempt.lua")));
/// Clears an address's attempts after a right password
/// (`lua/login_success.lua`).
static LOGIN_SUCCESS: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/login_success.lua")));

/// An address in key names; requests without one share `unknown`.
fn address_label(ip: Option<IpAddr>) -> String {
    ip.map_or_else(|| "unknown".into(), |ip| LimitKey::of(ip).to_string())
}

fn address_key(ip: Option<IpAddr>) -> String {
    format!("ratelimit:login:addr:{}", address_label(ip))
}

fn register_key(ip: Option<IpAddr>) -> String {
    format!("ratelimit:register:addr:{}", address_label(ip))
}

/// The account's keys for one address, in one slot (`{name}` is a hash
/// tag): that address's count and wait, the account's count and wait.
fn account_keys(name: &str, ip: Option<IpAddr>) -> Option<[String; 4]> {
    if name.is_empty() || name.len() > MAX_NAME_BYTES {
        return None;
    }
    // Braces in the name would move the hash tag: escaped (and `%`, so
    // that two names never share keys).
    let tag = name
        .to_lowercase()
        .replace('%', "%25")
        .replace('{', "%7B")
        .replace('}', "%7D");
    let account = format!("ratelimit:login:{{{tag}}}");
    let here = format!("{account}:addr:{}", address_label(ip));
    let wait = format!("{here}:wait");
    Some([
        here,
        wait,
        format!("{account}:all"),
        format!("{account}:all:wait"),
    ])
}

fn too_many(wait_ms: u64, what: &str) -> ApiError {
    let secs = wait_ms.div_ceil(1000).max(1);
    let wait = if secs > 90 {
        format!("{} min", secs.div_ceil(60))
    } else {
        format!("{secs} s")
    };
    ApiError::new(
        codes::RATE_LIMITED,
        format!("Too many {what}; try again in {wait}."),
    )
}

/// One more event under `key` in a window of `window_ms`: how many there
/// were (this one included), and how long the window still runs.
async fn count_in_window(store: &Store, key: &str, window_ms: u64) -> Result<(u64, u64), ApiError> {
    let mut con = store.con();
    let (count, left): (u64, i64) = WINDOW_COUNT
        .key(key)
        .arg(window_ms)
        .invoke_async(&mut con)
        .await
        .map_err(unavailable)?;
    Ok((count, left.max(0) as u64))
}

/// Admits a sign-in attempt, counting it, or refuses it (429).
pub async fn check_login(store: &Store, name: &str, ip: Option<IpAddr>) -> Result<(), ApiError> {
    let (attempts, left) = count_in_window(store, &address_key(ip), ADDRESS_WINDOW_MS).await?;
    if attempts > LOGIN_PER_ADDRESS {
        return Err(too_many(left, "sign-in attempts from your address"));
    }
    let Some(keys) = account_keys(name, ip) else {
        return Ok(());
    };
    let mut con = store.con();
    let (verdict, wait): (u8, i64) = LOGIN_ATTEMPT
        .key(&keys[..])
        .arg(FREE_FAILURES)
        .arg(ACCOUNT_WINDOW_MS)
        .arg(MAX_DELAY_MS)
        .arg(ACCOUNT_ATTEMPTS)
        .arg(ACCOUNT_SPACING_MS)
        .invoke_async(&mut con)
        .await
        .map_err(unavailable)?;
    let wait = wait.max(0) as u64;
    match verdict {
        0 => Ok(()),
        1 => Err(too_many(
            wait,
            "sign-in attempts for this account from your address",
        )),
        _ => Err(too_many(wait, "sign-in attempts for this account")),
    }
}

/// A right password: this address's attempts for the account are
/// forgotten (other addresses' stay).
pub async fn login_succeeded(
    store: &Store,
    name: &str,
    ip: Option<IpAddr>,
) -> Result<(), ApiError> {
    let Some([here, wait, all, _]) = account_keys(name, ip) else {
        return Ok(());
    };
    let mut con = store.con();
    LOGIN_SUCCESS
        .key(here)
        .key(wait)
        .key(all)
        .invoke_async::<()>(&mut con)
        .await
        .map_err(unavailable)
}

/// Counts a registration from `ip` against `REGISTER_RATE_LIMIT`, or
/// refuses it (429).
pub async fn check_register(
    store: &Store,
    rate: MessageRate,
    ip: Option<IpAddr>,
) -> Result<(), ApiError> {
    if rate.count == 0 {
        return Ok(());
    }
    let (count, left) = count_in_window(store, &register_key(ip), rate.window_ms).await?;
    if count > u64::from(rate.count) {
        return Err(too_many(left, "new accounts from your address"));
    }
    Ok(())
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
    fn an_accounts_keys_share_one_hash_tag() {
        let ip = Some("2001:db8:1:2::9".parse().unwrap());
        let keys = account_keys("Joe", ip).unwrap();
        assert_eq!(keys[0], "ratelimit:login:{joe}:addr:2001:db8:1:2::/64");
        assert_eq!(keys[1], "ratelimit:login:{joe}:addr:2001:db8:1:2::/64:wait");
        assert_eq!(
            keys[2..],
            [
                "ratelimit:login:{joe}:all",
                "ratelimit:login:{joe}:all:wait"
            ]
        );
        for odd in ["}", "a}b", "{x", "%7B"] {
            let keys = account_keys(odd, None).unwrap();
            let tag = |k: &str| k[k.find('{').unwrap()..=k.find('}').unwrap()].to_string();
            assert!(keys.iter().all(|k| tag(k) == tag(&keys[0])), "{keys:?}");
            assert_eq!(keys[0].matches(['{', '}']).count(), 2, "{keys:?}");
        }
        assert_ne!(account_keys("{", None), account_keys("%7B", None));
        assert!(account_keys("", None).is_none());
        assert!(account_keys(&"x".repeat(65), None).is_none());
    }

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
