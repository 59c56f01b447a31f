//! The Redis a command works on: the server's own configuration
//! ([`Config::from_env`]), so `REDIS_URL` or, without it, the embedded
//! `redis-server` of `REDIS_DATA_DIR`.
//!
//! In embedded mode, when a running server's redis-server answers on the
//! data directory's socket, the command uses it; otherwise the command
//! starts one on that directory ([`EmbeddedRedis`]) and stops it cleanly
//! (SIGTERM: the AOF is flushed) when it is done. A server started while
//! a command holds the directory refuses to start; commands take
//! milliseconds.

use super::CliError;
use crate::server::{
    config::{Config, RedisSource},
    embedded_redis::{EmbeddedError, EmbeddedRedis},
    presence::Presence,
    redis_con::{self, Endpoints},
    store::Store,
};
use std::{sync::Arc, time::Duration};

/// What a command works with.
pub struct Ctx {
    pub store: Store,
    /// Read-only use (`online_flags`): its background work is stopped at
    /// once, so a command never counts as an instance.
    pub presence: Presence,
    embedded: Option<EmbeddedRedis>,
}

impl Ctx {
    /// Reads the configuration and connects.
    pub async fn open() -> Result<Self, CliError> {
        let config = Config::from_env()
            .map_err(|e| CliError::runtime(format!("configuration error: {e}")))?;
        let (endpoints, embedded) = match &config.redis {
            RedisSource::Embedded { data_dir, binary } => {
                match EmbeddedRedis::start(data_dir, binary).await {
                    Ok(redis) => (
                        Endpoints::new(&config.redis, Some(redis.url()), &config.redis_tls),
                        Some(redis),
                    ),
                    // A running server's redis-server answers there: use it.
                    Err(EmbeddedError::InUse(dir)) => (
                        Endpoints::new(
                            &config.redis,
                            Some(&format!(
                                "redis+unix://{}",
                                dir.join("redis.sock").display()
                            )),
                            &config.redis_tls,
                        ),
                        None,
                    ),
                    Err(e) => return Err(CliError::runtime(e.to_string())),
                }
            }
            other => (Endpoints::new(other, None, &config.redis_tls), None),
        };
        let timeouts = redis_con::Timeouts {
            connect: Duration::from_secs(5),
            response: Duration::from_secs(10),
        };
        match redis_con::connect(&endpoints, timeouts).await {
            Ok(con) => {
                let server_id: Arc<str> = format!("cli-{}", random_hex()).into();
                let mut store = Store::new(
                    con.clone(),
                    config.bcrypt_cost,
                    config.max_message_chars,
                    server_id.clone(),
                );
                store.history_max_per_room = config.history_max_per_room;
                store.nonce_ttl_secs = config.nonce_ttl.as_secs();
                store.history_max_age_ms = config.history_max_age_days * 86_400_000;
                let presence = Presence::spawn(con, server_id, config.presence_ttl);
                // The runtime has one thread and this task has not yielded
                // since the spawn, so the heartbeat stops before its first
                // beat: no presence keys are written for a command.
                presence.abandon();
                Ok(Self {
                    store,
                    presence,
                    embedded,
                })
            }
            Err(e) => {
                if let Some(redis) = embedded {
                    redis.stop().await;
                }
                let what = match config.redis {
                    RedisSource::Url(_) => "REDIS_URL",
                    RedisSource::Cluster(_) => "REDIS_CLUSTER_NODES",
                    RedisSource::Embedded { .. } => "the embedded redis-server",
                };
                Err(CliError::runtime(
                    config
                        .redis_tls
                        .explain(&e)
                        .unwrap_or_else(|| format!("cannot reach Redis ({what}): {e}")),
                ))
            }
        }
    }

    /// Disconnects, and stops the embedded Redis if this command started it.
    pub async fn close(self) {
        let Self {
            store,
            presence,
            embedded,
        } = self;
        drop((store, presence));
        if let Some(redis) = embedded {
            redis.stop().await;
        }
    }
}

fn random_hex() -> String {
    let mut bytes = [0u8; 6];
    let _ = getrandom::fill(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
