//! Settings, read once at start-up from the environment (and an optional
//! `.env` file). Every setting is listed with its default in `.env.sample`
//! and in the README's configuration table.

use super::redis_tls::{self, RedisTls};
use std::{net::SocketAddr, path::PathBuf, time::Duration};

/// Where Redis comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RedisSource {
    /// `REDIS_URL`: an external server (`redis://`, `rediss://`, `redis+unix://`).
    Url(String),
    /// `REDIS_CLUSTER_NODES`: seed nodes of a Redis Cluster, as URLs
    /// (`redis://host:port`, `rediss://user:pass@host:port`).
    Cluster(Vec<String>),
    /// No `REDIS_URL`: start and supervise a local `redis-server`.
    Embedded { data_dir: PathBuf, binary: String },
}

#[derive(Clone, Debug)]
pub struct Config {
    pub addr: SocketAddr,
    /// A directory to serve the front end from (`SITE_ROOT`); `None`: the
    /// one embedded in the binary, else `target/site`.
    pub site_root: Option<String>,
    pub redis: RedisSource,
    /// Create the demo users (whose password is published) and messages in
    /// an empty database, and offer them on the sign-in page. `DEMO_DATA`,
    /// or when it is unset: only on a loopback `ADDR`.
    /// Certificates for `rediss://` (`REDIS_CA_CERT`, `REDIS_CLIENT_CERT`,
    /// `REDIS_CLIENT_KEY`), read at start-up.
    pub redis_tls: RedisTls,
    pub demo_data: bool,
    /// There is no demo data only because `DEMO_DATA` is unset and `ADDR`
    /// is not a loopback address (the server says so once at start).
    pub demo_data_withheld: bool,
    pub bcrypt_cost: u32,
    pub session_ttl: Duration,
    pub cookie_secure: bool,
    /// Origins besides the site's own that may open `/ws` and post to `/api`.
    pub allowed_origins: Vec<String>,
    pub max_message_chars: usize,
    /// How long an instance's presence survives without its heartbeat.
    pub presence_ttl: Duration,
    /// Messages per user and room per window.
    pub message_rate: super::limits::MessageRate,
    /// The proxies whose `X-Forwarded-For` entries are believed.
    pub trust_proxy: super::client_addr::TrustProxy,
    /// Registrations per client address (IPv6: per /64) per window.
    pub register_rate: super::limits::MessageRate,
    /// Messages kept per room (about: `XADD … MAXLEN ~`); 0 keeps all.
    pub history_max_per_room: u64,
    /// Bytes of rendered history pages kept in memory (0 turns the cache off).
    pub history_cache_bytes: usize,
    /// How long a client nonce remembers its message (idempotent resends).
    pub nonce_ttl: Duration,
    /// Messages older than this many days are removed as new ones arrive
    /// (`XTRIM … MINID`); 0 keeps them.
    pub history_max_age_days: u64,
    /// Open WebSockets per user on one instance; a newer one closes the
    /// oldest.
    pub max_sockets_per_user: usize,
    /// Typing notices per user (all rooms, all sockets).
    pub typing_rate: super::limits::MessageRate,
    /// New private rooms a user may open per window (reopening is free).
    pub private_room_rate: super::limits::MessageRate,
    /// `/metrics` on a listener of its own (`METRICS_ADDR`, e.g.
    /// `127.0.0.1:9100`); off when unset.
    pub metrics_addr: Option<SocketAddr>,
    /// A bearer token that opens `/metrics` on the main port
    /// (`METRICS_TOKEN`, at least 16 characters); closed when unset.
    pub metrics_token: Option<String>,
}

/// `TYPING_RATE_LIMIT` unless set: clients send one notice every 3 s per
/// room while typing, so this leaves room for several rooms at once.
const DEFAULT_TYPING_RATE: &str = "20/10";
/// `PRIVATE_ROOM_RATE_LIMIT` unless set: plenty for people, too few for a
/// script that opens rooms with everyone in the directory.
const DEFAULT_PRIVATE_ROOM_RATE: &str = "30/3600";

/// `REGISTER_RATE_LIMIT` unless set: enough for a family behind one
/// address, too few to fill a database with accounts.
const DEFAULT_REGISTER_RATE: &str = "10/3600";

/// A setting that could not be understood; the message names it.
#[derive(Debug)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Defaults for tests: loopback on a free port, an external Redis.
    pub fn for_tests(redis_url: &str) -> Self {
        Self {
            addr: "127.0.0.1:0".parse().expect("literal address"),
            site_root: Some("target/site".into()),
            redis: RedisSource::Url(redis_url.into()),
            redis_tls: RedisTls::default(),
            demo_data: false,
            demo_data_withheld: false,
            bcrypt_cost: 4,
            session_ttl: Duration::from_secs(3600),
            cookie_secure: false,
            allowed_origins: vec![],
            max_message_chars: crate::protocol::DEFAULT_MAX_MESSAGE_CHARS,
            presence_ttl: Duration::from_secs(30),
            message_rate: super::limits::MessageRate::UNLIMITED,
            trust_proxy: super::client_addr::TrustProxy::None,
            register_rate: super::limits::MessageRate::UNLIMITED,
            history_max_per_room: 0,
            history_cache_bytes: 32 << 20,
            nonce_ttl: Duration::from_secs(24 * 3600),
            history_max_age_days: 0,
            max_sockets_per_user: 20,
            typing_rate: super::limits::MessageRate::parse(DEFAULT_TYPING_RATE)
                .expect("valid default"),
            // Tests open many rooms; the limit's own tests set it.
            private_room_rate: super::limits::MessageRate::UNLIMITED,
            metrics_addr: None,
            metrics_token: None,
        }
    }

    /// Reads `.env` (if present) and then the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        let _ = dotenvy::dotenv();
        Self::from_lookup(|k| std::env::var(k).ok().filter(|v| !v.trim().is_empty()))
    }

    /// Builds the configuration from any key lookup (the environment, or a
    /// map in unit tests).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        fn parse<T: std::str::FromStr>(
            get: &impl Fn(&str) -> Option<String>,
            key: &str,
            default: T,
        ) -> Result<T, ConfigError> {
            match get(key) {
                None => Ok(default),
                Some(v) => v
                    .trim()
                    .parse()
                    .map_err(|_| ConfigError(format!("{key}={v:?} is not valid"))),
            }
        }
        fn flag(
            get: &impl Fn(&str) -> Option<String>,
            key: &str,
            default: bool,
        ) -> Result<bool, ConfigError> {
            match get(key).map(|v| v.trim().to_ascii_lowercase()) {
                None => Ok(default),
                Some(v) if ["1", "true", "yes", "on"].contains(&v.as_str()) => Ok(true),
                Some(v) if ["0", "false", "no", "off"].contains(&v.as_str()) => Ok(false),
                Some(v) => Err(ConfigError(format!("{key}={v:?} must be true or false"))),
            }
        }

        let host = get("ADDR").unwrap_or_else(|| "127.0.0.1".into());
        let port: u16 = parse(&get, "PORT", 3000)?;
        let addr: SocketAddr = format!("{host}:{port}")
            .parse()
            .or_else(|_| format!("[{host}]:{port}").parse())
            .map_err(|_| ConfigError(format!("ADDR={host:?} is not an IP address")))?;

        // Demo accounts have a published password: unless asked for, only
        // where no one else can reach them.
        let reachable_from_elsewhere = !addr.ip().to_canonical().is_loopback();
        let demo_data = flag(&get, "DEMO_DATA", !reachable_from_elsewhere)?;
        let demo_data_withheld = get("DEMO_DATA").is_none() && reachable_from_elsewhere;

        let redis = match (get("REDIS_URL"), get("REDIS_CLUSTER_NODES")) {
            (Some(_), Some(_)) => {
                return Err(ConfigError(
                    "REDIS_URL and REDIS_CLUSTER_NODES are both set; set one".into(),
                ))
            }
            (None, Some(nodes)) => RedisSource::Cluster(parse_cluster_nodes(&nodes)?),
            (Some(url), None) => {
                let scheme = url.split("://").next().unwrap_or_default();
                if !["redis", "rediss", "redis+unix", "unix"].contains(&scheme) {
                    return Err(ConfigError(format!(
                        "REDIS_URL must start with redis://, rediss:// or redis+unix:// (got {scheme:?})"
                    )));
                }
                RedisSource::Url(url)
            }
            (None, None) => RedisSource::Embedded {
                data_dir: get("REDIS_DATA_DIR")
                    .unwrap_or_else(|| "./data/redis".into())
                    .into(),
                binary: get("REDIS_SERVER_BIN").unwrap_or_else(|| "redis-server".into()),
            },
        };

        let redis_tls = RedisTls::load(
            get("REDIS_CA_CERT").map(PathBuf::from).as_deref(),
            get("REDIS_CLIENT_CERT").map(PathBuf::from).as_deref(),
            get("REDIS_CLIENT_KEY").map(PathBuf::from).as_deref(),
        )?;
        if redis_tls.is_set() {
            check_tls_is_used(&redis)?;
        }

        let bcrypt_cost: u32 = parse(&get, "BCRYPT_COST", 12)?;
        if !(4..=31).contains(&bcrypt_cost) {
            return Err(ConfigError("BCRYPT_COST must be between 4 and 31".into()));
        }
        let session_ttl_secs: u64 = parse(&get, "SESSION_TTL_SECS", 30 * 24 * 3600)?;
        if session_ttl_secs < 60 {
            return Err(ConfigError("SESSION_TTL_SECS must be at least 60".into()));
        }
        let max_message_chars: usize = parse(
            &get,
            "MAX_MESSAGE_CHARS",
            crate::protocol::DEFAULT_MAX_MESSAGE_CHARS,
        )?;
        if max_message_chars == 0 || max_message_chars > 8000 {
            return Err(ConfigError("MAX_MESSAGE_CHARS must be 1 to 8000".into()));
        }

        let presence_ttl_secs: u64 = parse(&get, "PRESENCE_TTL_SECS", 30)?;
        if !(3..=3600).contains(&presence_ttl_secs) {
            return Err(ConfigError("PRESENCE_TTL_SECS must be 3 to 3600".into()));
        }

        let nonce_ttl_secs: u64 = parse(&get, "NONCE_TTL_SECS", 24 * 3600)?;
        if !(60..=30 * 24 * 3600).contains(&nonce_ttl_secs) {
            return Err(ConfigError(
                "NONCE_TTL_SECS must be 60 to 2592000 (30 days)".into(),
            ));
        }

        let history_max_age_days: u64 = parse(&get, "HISTORY_MAX_AGE_DAYS", 0)?;
        if history_max_age_days > 36_500 {
            return Err(ConfigError(
                "HISTORY_MAX_AGE_DAYS must be 0 (keep all) to 36500".into(),
            ));
        }

        let max_sockets_per_user: usize = parse(&get, "MAX_SOCKETS_PER_USER", 20)?;
        if !(1..=1000).contains(&max_sockets_per_user) {
            return Err(ConfigError("MAX_SOCKETS_PER_USER must be 1 to 1000".into()));
        }
        let typing_rate = match get("TYPING_RATE_LIMIT") {
            None => super::limits::MessageRate::parse(DEFAULT_TYPING_RATE).expect("valid default"),
            Some(v) => super::limits::MessageRate::parse(&v).ok_or_else(|| {
                ConfigError(format!(
                    "TYPING_RATE_LIMIT={v:?} must be COUNT/SECONDS (e.g. 20/10) or 0"
                ))
            })?,
        };

        let private_room_rate = match get("PRIVATE_ROOM_RATE_LIMIT") {
            None => {
                super::limits::MessageRate::parse(DEFAULT_PRIVATE_ROOM_RATE).expect("valid default")
            }
            Some(v) => super::limits::MessageRate::parse(&v).ok_or_else(|| {
                ConfigError(format!(
                    "PRIVATE_ROOM_RATE_LIMIT={v:?} must be COUNT/SECONDS (e.g. 30/3600) or 0"
                ))
            })?,
        };

        let register_rate = match get("REGISTER_RATE_LIMIT") {
            None => {
                super::limits::MessageRate::parse(DEFAULT_REGISTER_RATE).expect("valid default")
            }
            Some(v) => super::limits::MessageRate::parse(&v).ok_or_else(|| {
                ConfigError(format!(
                    "REGISTER_RATE_LIMIT={v:?} must be COUNT/SECONDS (e.g. 10/3600) or 0"
                ))
            })?,
        };

        let message_rate = match get("MSG_RATE_LIMIT") {
            None => super::limits::MessageRate::parse("30/10").expect("valid default"),
            Some(v) => super::limits::MessageRate::parse(&v).ok_or_else(|| {
                ConfigError(format!(
                    "MSG_RATE_LIMIT={v:?} must be COUNT/SECONDS (e.g. 30/10) or 0"
                ))
            })?,
        };

        let metrics_addr = match get("METRICS_ADDR") {
            None => None,
            Some(v) => Some(v.trim().parse::<SocketAddr>().map_err(|_| {
                ConfigError(format!(
                    "METRICS_ADDR={v:?} must be an address and port, e.g. 127.0.0.1:9100"
                ))
            })?),
        };
        let metrics_token = get("METRICS_TOKEN").map(|t| t.trim().to_string());
        if metrics_token.as_ref().is_some_and(|t| t.len() < 16) {
            return Err(ConfigError(
                "METRICS_TOKEN must be at least 16 characters".into(),
            ));
        }

        Ok(Self {
            addr,
            metrics_addr,
            metrics_token,
            site_root: get("SITE_ROOT"),
            redis,
            demo_data,
            demo_data_withheld,
            redis_tls,
            bcrypt_cost,
            session_ttl: Duration::from_secs(session_ttl_secs),
            cookie_secure: flag(&get, "COOKIE_SECURE", false)?,
            allowed_origins: get("ALLOWED_ORIGINS")
                .map(|v| {
                    v.split(',')
                        .map(|s| s.trim().trim_end_matches('/').to_string())
                        .filter(|s| !s.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
            max_message_chars,
            presence_ttl: Duration::from_secs(presence_ttl_secs),
            message_rate,
            trust_proxy: get("TRUST_PROXY")
                .map(|v| super::client_addr::TrustProxy::parse(&v))
                .transpose()?
                .unwrap_or_default(),
            register_rate,
            history_max_per_room: parse(&get, "HISTORY_MAX_PER_ROOM", 0)?,
            history_cache_bytes: parse::<usize>(&get, "HISTORY_CACHE_MB", 32)?
                .checked_mul(1 << 20)
                .ok_or_else(|| ConfigError("HISTORY_CACHE_MB is too large".into()))?,
            nonce_ttl: Duration::from_secs(nonce_ttl_secs),
            history_max_age_days,
            max_sockets_per_user,
            typing_rate,
            private_room_rate,
        })
    }
}

/// TLS settings without a `rediss://` URL would silently do nothing.
fn check_tls_is_used(redis: &RedisSource) -> Result<(), ConfigError> {
    let (uses_tls, what) = match redis {
        RedisSource::Url(url) => (redis_tls::uses_tls(url), "REDIS_URL is not rediss://"),
        RedisSource::Cluster(nodes) => (
            nodes.iter().any(|url| redis_tls::uses_tls(url)),
            "no node of REDIS_CLUSTER_NODES is rediss://",
        ),
        RedisSource::Embedded { .. } => {
            (false, "the embedded redis-server (no REDIS_URL) has no TLS")
        }
    };
    if uses_tls {
        Ok(())
    } else {
        Err(ConfigError(format!(
            "REDIS_CA_CERT, REDIS_CLIENT_CERT and REDIS_CLIENT_KEY are for TLS, but {what}"
        )))
    }
}

/// `REDIS_CLUSTER_NODES`: comma-separated `host:port` (plain TCP) or
/// `redis://` / `rediss://` URLs (with user and password when needed).
/// Any reachable node is enough to find the others; list several so that
/// start-up survives one being down.
fn parse_cluster_nodes(value: &str) -> Result<Vec<String>, ConfigError> {
    let bad = |what: &str| {
        ConfigError(format!(
            "REDIS_CLUSTER_NODES={value:?}: {what} (expected host:port or redis://host:port, comma-separated)"
        ))
    };
    let mut nodes = Vec::new();
    for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let url = if item.contains("://") {
            let scheme = item.split("://").next().unwrap_or_default();
            if !["redis", "rediss"].contains(&scheme) {
                return Err(bad(&format!("{scheme}:// is not redis:// or rediss://")));
            }
            item.to_string()
        } else {
            let (host, port) = item
                .rsplit_once(':')
                .ok_or_else(|| bad(&format!("{item:?} has no port")))?;
            if host.is_empty() || port.parse::<u16>().map_or(true, |p| p == 0) {
                return Err(bad(&format!("{item:?} is not host:port")));
            }
            format!("redis://{item}")
        };
        nodes.push(url);
    }
    if nodes.is_empty() {
        return Err(bad("no node"));
    }
    Ok(nodes)
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
