//! Passwords: the rules, and bcrypt.
//!
//! bcrypt is deliberately slow (about 0.3 s of CPU at cost 12 here). It
//! runs on the blocking pool, never on the async workers, and at most on
//! all cores but one at a time ([`SLOTS`]), so message delivery always
//! keeps a core. Hashing (registration, a password change, `redis-chat
//! user add/passwd`) may take at most half of those slots, and at most one
//! hash per slot waits for one: registrations, which anyone can send, can
//! then never take more than half of the capacity that sign-ins need. When
//! too many requests queue up, the newest get a clear 503 instead of
//! waiting for minutes.

use crate::api::ApiError;
use crate::protocol::{codes, MAX_PASSWORD_BYTES, MIN_PASSWORD_CHARS, PASSWORD_TOO_LONG};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use tokio::sync::{OnceCell, Semaphore};

/// Password rules: at least 8 characters, at most 72 bytes of UTF-8.
pub fn validate_password(password: &str) -> Result<(), ApiError> {
    check_length(password)?;
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(ApiError::bad_request(format!(
            "The password must be at least {MIN_PASSWORD_CHARS} characters long."
        )));
    }
    Ok(())
}

/// Only the upper bound, for sign-in: a longer password can match no
/// hash, and saying so is clearer than "wrong password" (older versions
/// accepted up to 128 characters, of which bcrypt kept the first 72
/// bytes).
pub fn check_length(password: &str) -> Result<(), ApiError> {
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(ApiError::bad_request(PASSWORD_TOO_LONG));
    }
    Ok(())
}

/// bcrypt at the configured cost, and the hash unknown users are checked
/// against (made once, at that cost, so that an unknown name takes as long
/// as a wrong password).
#[derive(Clone)]
pub struct Hasher {
    cost: u32,
    dummy: Arc<OnceCell<String>>,
}

impl Hasher {
    pub fn new(cost: u32) -> Self {
        Self {
            cost,
            dummy: Arc::default(),
        }
    }

    /// A new hash of `password`.
    pub async fn hash(&self, password: &str) -> Result<String, ApiError> {
        let (password, cost) = (password.to_string(), self.cost);
        with_bcrypt(Work::Hash, move || bcrypt::hash(password, cost))
            .await?
            .map_err(|e| {
                tracing::error!(error = %e, "bcrypt hash failed");
                ApiError::internal()
            })
    }

    /// Whether `password` matches `hash`; with no hash (an unknown user) it
    /// is checked against the dummy hash and is never right.
    pub async fn verify(&self, password: &str, hash: Option<String>) -> Result<bool, ApiError> {
        let (known, hash) = match hash {
            Some(hash) => (true, hash),
            None => (false, self.dummy_hash().await?.to_string()),
        };
        let password = password.to_string();
        let ok = with_bcrypt(Work::Verify, move || {
            bcrypt::verify(password, &hash).unwrap_or(false)
        })
        .await?;
        Ok(known && ok)
    }

    /// The hash of a random string at the configured cost, made on first
    /// use (`server::start` asks for it at once, so no sign-in waits).
    pub async fn dummy_hash(&self) -> Result<&str, ApiError> {
        let cost = self.cost;
        self.dummy
            .get_or_try_init(|| async move {
                // Nobody's password, and not guessable from the code.
                let mut bytes = [0u8; 16];
                let _ = getrandom::fill(&mut bytes);
                let secret: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
                with_bcrypt(Work::Hash, move || bcrypt::hash(secret, cost))
                    .await?
                    .map_err(|e| {
                        tracing::error!(error = %e, "bcrypt hash failed");
                        ApiError::internal()
                    })
            })
            .await
            .map(String::as_str)
    }
}

/// All bcrypt work at once: every core but one.
static SLOTS: LazyLock<usize> = LazyLock::new(|| {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    cores.saturating_sub(1).max(1)
});
static ANY: LazyLock<Semaphore> = LazyLock::new(|| Semaphore::new(*SLOTS));
/// Hashes at once: half of the slots, at least one. A hash takes one of
/// these before it queues for a slot, so at most this many hashes are
/// ever running or queued in [`ANY`] (with one slot: every other one).
static HASHING: LazyLock<Semaphore> = LazyLock::new(|| Semaphore::new((*SLOTS / 2).max(1)));

/// Requests waiting for bcrypt, per kind, and how many may.
static WAITING_VERIFY: AtomicUsize = AtomicUsize::new(0);
static WAITING_HASH: AtomicUsize = AtomicUsize::new(0);
const MAX_WAITING_VERIFY: usize = 64;
const MAX_WAITING_HASH: usize = 16;

/// Password checks and hashes waiting for a bcrypt slot or holding one.
pub fn bcrypt_depth() -> usize {
    let busy = SLOTS.saturating_sub(ANY.available_permits());
    WAITING_VERIFY.load(Ordering::Relaxed) + WAITING_HASH.load(Ordering::Relaxed) + busy
}

#[derive(Clone, Copy)]
enum Work {
    Verify,
    Hash,
}

async fn with_bcrypt<T: Send + 'static>(
    kind: Work,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    let (waiting, most) = match kind {
        Work::Verify => (&WAITING_VERIFY, MAX_WAITING_VERIFY),
        Work::Hash => (&WAITING_HASH, MAX_WAITING_HASH),
    };
    if waiting.fetch_add(1, Ordering::Relaxed) >= most {
        waiting.fetch_sub(1, Ordering::Relaxed);
        return Err(ApiError::new(
            codes::UNAVAILABLE,
            "The server is busy signing people in; try again in a few seconds.",
        ));
    }
    let permits = async {
        let hashing = match kind {
            Work::Hash => Some(HASHING.acquire().await?),
            Work::Verify => None,
        };
        Ok::<_, tokio::sync::AcquireError>((hashing, ANY.acquire().await?))
    }
    .await;
    waiting.fetch_sub(1, Ordering::Relaxed);
    let _permits = permits.map_err(|_| ApiError::internal())?;
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|_| ApiError::internal())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords() {
        assert!(validate_password("password123").is_ok());
        let short = validate_password("short").unwrap_err();
        assert!(short.message.contains("at least 8"), "{short:?}");
        // Length counts characters at the bottom and bytes at the top.
        assert!(validate_password(&"é".repeat(8)).is_ok());
        assert!(validate_password(&"x".repeat(72)).is_ok());
        assert!(validate_password(&"é".repeat(36)).is_ok());
        for long in [
            "x".repeat(73),
            format!("{}x", "é".repeat(36)),
            "€".repeat(25),
        ] {
            let e = validate_password(&long).unwrap_err();
            assert_eq!((e.status(), e.message.as_str()), (400, PASSWORD_TOO_LONG));
            assert_eq!(check_length(&long).unwrap_err(), e);
        }
        assert!(check_length("").is_ok());
    }

    fn cost_of(hash: &str) -> u32 {
        // `$2b$CC$<salt and hash>`
        hash.split('$').nth(2).unwrap().parse().unwrap()
    }

    #[tokio::test]
    async fn the_dummy_hash_has_the_configured_cost() {
        for cost in [4, 6] {
            let hasher = Hasher::new(cost);
            let dummy = hasher.dummy_hash().await.unwrap().to_string();
            assert_eq!(cost_of(&dummy), cost, "{dummy}");
            assert!(bcrypt::verify("x", &dummy).is_ok());
            // Made once.
            assert_eq!(hasher.dummy_hash().await.unwrap(), dummy);
            assert!(!hasher.verify("anything", None).await.unwrap());
            let real = hasher.hash("password123").await.unwrap();
            assert_eq!(cost_of(&real), cost);
            assert!(hasher.verify("password123", Some(real)).await.unwrap());
        }
    }
}
