//! The server side (feature `ssr`).
//!
//! [`start`] wires everything together and is what `main` and the test
//! suites call: it connects to Redis (or starts the embedded one), runs
//! the start-up steps (user backfill, import of the original demo's
//! history, demo data), spawns the pub/sub hub and presence, and serves
//! the axum router until [`RunningServer::shutdown`].

pub mod blocks;
pub mod client_addr;
pub mod close_payload;
pub mod config;
pub mod context;
pub mod demo;
pub mod embedded_redis;
pub mod gap;
pub mod history;
pub mod http;
pub mod hub;
pub mod limits;
pub mod logging;
pub mod metrics;
pub mod metrics_endpoint;
pub mod outbox;
pub mod passwords;
pub mod presence;
pub mod private_room;
pub mod redis_con;
pub mod redis_tls;
pub mod resume;
pub mod revocation;
pub mod room_list;
pub mod room_order;
pub mod session;
pub mod shards;
pub mod site;
pub mod socket_session;
pub mod socket_task;
pub mod store;
pub mod subscriber;
pub mod typing_limit;
pub mod wire;
pub mod writers;
pub mod ws;

#[cfg(test)]
mod fuzz_tests;
#[cfg(test)]
mod wire_props;

use crate::api::ApiError;
use crate::protocol::{RoomSummary, User, UserId};
use config::{Config, RedisSource};
use embedded_redis::EmbeddedRedis;
use hub::Hub;
use leptos::config::LeptosOptions;
use presence::Presence;
pub use private_room::open_private_room;
use redis_con::Endpoints;
use std::{net::SocketAddr, sync::Arc, time::Duration};
use store::Store;
use tokio::sync::watch;

/// Everything a request handler needs; cloned into each request.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Store,
    pub hub: Hub,
    pub presence: Presence,
    pub leptos_options: LeptosOptions,
    /// The front end carried in the binary (`None`: served from `site_root`).
    pub site: Option<site::EmbeddedSite>,
    /// Becomes `true` when the server is shutting down.
    pub shutdown: watch::Receiver<bool>,
    /// Rendered history pages (see [`history`]).
    pub pages: Arc<history::PageCache>,
    /// Which user each recently seen session belongs to.
    pub known_sessions: Arc<session::KnownSessions>,
    /// The WebSocket tasks still running (shutdown waits for them).
    pub socket_tasks: socket_task::SocketTasks,
}

impl axum::extract::FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> Self {
        state.leptos_options.clone()
    }
}

impl AppState {
    /// Names offered as a quick pick on the sign-in page.
    pub fn demo_accounts(&self) -> Vec<String> {
        if self.config.demo_data {
            demo::DEMO_USERS.iter().map(|s| s.to_string()).collect()
        } else {
            vec![]
        }
    }

    /// Checks a sign-in attempt against the rate limits (which count it
    /// before any bcrypt work), then the password.
    pub async fn login(
        &self,
        username: &str,
        password: &str,
        ip: Option<std::net::IpAddr>,
    ) -> Result<User, ApiError> {
        let name = username.trim();
        passwords::check_length(password)?;
        limits::check_login(&self.store, name, ip).await?;
        let user = self.store.verify_login(name, password).await?;
        limits::login_succeeded(&self.store, name, ip).await?;
        Ok(user)
    }

    /// Opens the private room of `user` and `other` (idempotent), telling
    /// each member's sockets once with `show.room` when it is new to them.
    pub async fn open_private_room(
        &self,
        user: &User,
        other: UserId,
    ) -> Result<RoomSummary, ApiError> {
        open_private_room(&self.store, &self.presence, user, other).await
    }
}

/// Why the server could not start. `Display` is one line for the operator.
#[derive(Debug)]
pub enum StartError {
    Embedded(embedded_redis::EmbeddedError),
    Redis(String),
    /// A TLS failure that retrying will not fix: what to fix, in full.
    Tls(String),
    Bind(SocketAddr, std::io::Error),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Embedded(e) => e.fmt(f),
            Self::Redis(e) => write!(f, "cannot use Redis: {e}"),
            Self::Tls(line) => f.write_str(line),
            Self::Bind(addr, e) => write!(f, "cannot listen on {addr}: {e}"),
        }
    }
}

impl std::error::Error for StartError {}

/// A running server: its address, and how to stop it.
pub struct RunningServer {
    pub addr: SocketAddr,
    /// Where `/metrics` listens on its own (`METRICS_ADDR`), if it does.
    pub metrics_addr: Option<SocketAddr>,
    pub state: AppState,
    shutdown: watch::Sender<bool>,
    serve: tokio::task::JoinHandle<()>,
    embedded: Option<EmbeddedRedis>,
}

/// How long shutdown waits for socket tasks to finish their closing
/// handshakes (a peer that reads nothing could hold one for a minute).
const SOCKET_CLOSE_LIMIT: Duration = Duration::from_secs(5);

impl RunningServer {
    /// Graceful shutdown: stop accepting, close sockets with 1001, finish
    /// in-flight requests and (up to [`SOCKET_CLOSE_LIMIT`]) the sockets'
    /// closing handshakes, take this instance's users offline, stop the
    /// embedded redis-server.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        // axum's graceful shutdown does not see upgraded connections:
        // their tasks are counted apart.
        let (served, sockets_left) = tokio::join!(
            tokio::time::timeout(Duration::from_secs(10), self.serve),
            self.state.socket_tasks.wait_until_none(SOCKET_CLOSE_LIMIT),
        );
        if served.is_err() {
            tracing::warn!("in-flight requests did not finish within 10 s");
        }
        if sockets_left > 0 {
            tracing::warn!(
                sockets = sockets_left,
                "sockets still closing after {} s",
                SOCKET_CLOSE_LIMIT.as_secs()
            );
        }
        self.state.presence.withdraw().await;
        if let Some(redis) = self.embedded {
            redis.stop().await;
        }
    }

    /// Stops serving without any clean-up, as a crash would (tests).
    pub fn abort(self) {
        self.state.presence.abandon();
        self.serve.abort();
    }
}

fn random_server_id() -> String {
    let mut bytes = [0u8; 8];
    let _ = getrandom::fill(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Starts a server with `config`.
pub async fn start(config: Config) -> Result<RunningServer, StartError> {
    redis_tls::install_crypto_provider();
    let (endpoints, embedded) = match &config.redis {
        RedisSource::Embedded { data_dir, binary } => {
            let redis = EmbeddedRedis::start(data_dir, binary)
                .await
                .map_err(StartError::Embedded)?;
            tracing::info!(dir = %redis.dir().display(), "embedded redis-server started");
            (
                Endpoints::new(&config.redis, Some(redis.url()), &config.redis_tls),
                Some(redis),
            )
        }
        other => (Endpoints::new(other, None, &config.redis_tls), None),
    };
    if endpoints.urls.iter().any(|url| redis_tls::is_insecure(url)) {
        tracing::warn!("#insecure: the Redis server's TLS certificate is not verified");
    }
    let timeouts = redis_con::Timeouts {
        connect: Duration::from_secs(5),
        response: Duration::from_secs(5),
    };
    // Redis may come up after us (containers, a second instance started
    // beside the first): wait for it for a while, saying so, then give up.
    // A TLS failure (an untrusted certificate, a refused client
    // certificate) will not heal: it stops the start at once.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut delay = Duration::from_millis(100);
    let con = loop {
        match redis_con::connect(&endpoints, timeouts).await {
            Ok(con) => break con,
            Err(e) => {
                if let Some(line) = endpoints.tls.explain(&e) {
                    return Err(StartError::Tls(line));
                }
                if tokio::time::Instant::now() + delay >= deadline {
                    return Err(StartError::Redis(e.to_string()));
                }
                tracing::warn!(error = %e, "waiting for Redis");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
        }
    };
    if endpoints.cluster {
        tracing::info!(nodes = endpoints.urls.len(), "using a Redis Cluster");
    }

    let server_id: Arc<str> = random_server_id().into();
    let mut store = Store::new(
        con.clone(),
        config.bcrypt_cost,
        config.max_message_chars,
        server_id.clone(),
    );
    store.message_rate = config.message_rate;
    store.private_room_rate = config.private_room_rate;
    store.history_max_per_room = config.history_max_per_room;
    store.nonce_ttl_secs = config.nonce_ttl.as_secs();
    store.history_max_age_ms = config.history_max_age_days * 86_400_000;
    // Made now, so that the first sign-in of an unknown name takes no
    // longer than any other.
    let hasher = store.hasher().clone();
    tokio::spawn(async move { hasher.dummy_hash().await.map(|_| ()) });
    let startup = async {
        store.backfill_users().await?;
        store.import_legacy_history().await?;
        if config.demo_data_withheld {
            tracing::warn!(
                addr = %config.addr.ip(),
                "no demo accounts: ADDR is not a loopback address and DEMO_DATA is unset; \
                 set DEMO_DATA=true to have them (their password is published)"
            );
        }
        if config.demo_data && demo::ensure(&store).await? {
            tracing::info!("demo data created");
        }
        if !config.demo_data && !config.addr.ip().to_canonical().is_loopback() {
            // In the background: a bcrypt check per demo account.
            let store = store.clone();
            tokio::spawn(async move {
                let open = demo::with_published_password(&store).await;
                if !open.is_empty() {
                    tracing::warn!(
                        accounts = %open.join(", "),
                        "demo accounts sign in with the published password on an address \
                         reachable from elsewhere: change their passwords \
                         (`redis-chat user passwd NAME`)"
                    );
                }
            });
        }
        Ok::<_, redis::RedisError>(())
    };
    startup
        .await
        .map_err(|e| StartError::Redis(e.to_string()))?;

    // In the background: a database with many sessions must not hold up
    // the start.
    let indexing = store.clone();
    tokio::spawn(async move {
        match session::index_every_session(&indexing).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(sessions = n, "indexed the sessions of every user"),
            Err(e) => {
                tracing::warn!(error = %e, "could not index sessions; next start tries again")
            }
        }
    });

    let presence = Presence::spawn(con.clone(), server_id.clone(), config.presence_ttl);
    let hub = Hub::spawn(
        endpoints,
        store.clone(),
        timeouts,
        presence.clone(),
        config.max_sockets_per_user,
    )
    .map_err(|e| StartError::Redis(e.to_string()))?;

    let listener = tokio::net::TcpListener::bind(config.addr)
        .await
        .map_err(|e| StartError::Bind(config.addr, e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| StartError::Bind(config.addr, e))?;
    // The front end embedded in the binary, unless SITE_ROOT names a directory.
    let site = match &config.site_root {
        Some(_) => None,
        None => site::EmbeddedSite::installed(),
    };
    let leptos_options = LeptosOptions::builder()
        .output_name(site.as_ref().map_or("redis-chat", |s| s.output_name()))
        .site_root(config.site_root.as_deref().unwrap_or("target/site"))
        .site_pkg_dir("pkg")
        .site_addr(addr)
        .build();
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let pages = Arc::new(history::PageCache::new(config.history_cache_bytes));
    let state = AppState {
        pages,
        known_sessions: Arc::default(),
        socket_tasks: Default::default(),
        config: Arc::new(config),
        store,
        hub,
        presence,
        leptos_options,
        site,
        shutdown: shutdown_rx.clone(),
    };
    let metrics_addr = match state.config.metrics_addr {
        Some(at) => Some(
            metrics_endpoint::listen(at, state.clone())
                .await
                .map_err(|e| StartError::Bind(at, e))?,
        ),
        None => None,
    };
    let router = http::router(state.clone());
    let mut stop = shutdown_rx;
    let serve = tokio::spawn(async move {
        // `ChatListener` sets TCP_NODELAY and gives every request a handle
        // to its stream (`wire::Peer`), which the WebSocket upgrade keeps.
        let result = axum::serve(
            wire::ChatListener(listener),
            router.into_make_service_with_connect_info::<wire::Peer>(),
        )
        .with_graceful_shutdown(async move {
            let _ = stop.wait_for(|down| *down).await;
        })
        .await;
        if let Err(e) = result {
            tracing::error!(error = %e, "server error");
        }
    });
    Ok(RunningServer {
        addr,
        metrics_addr,
        state,
        shutdown: shutdown_tx,
        serve,
        embedded,
    })
}
