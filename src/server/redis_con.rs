//! One connection type for a single Redis and for a Redis Cluster.
//!
//! [`RedisCon`] implements `redis::aio::ConnectionLike` by delegation, so
//! `AsyncCommands`, pipelines and scripts work on both. What differs is
//! what a cluster forbids:
//!
//! - A pipeline (atomic or not) must stay within one hash slot: redis-rs
//!   sends the whole pipeline to the node of its first key. Operations that
//!   span slots go through [`RedisCon::batch`] (independent reads and
//!   writes) or [`RedisCon::in_order`] (writes whose order matters).
//! - A Lua script's KEYS must share a slot. Every script here keeps to one
//!   room (`room:{ROOM}:…`) or to `{online_users}`.
//! - `SCAN` covers one node: [`RedisCon::scan_keys`] scans every primary.
//! - Scripts: `ScriptInvocation::invoke_async` sends `EVALSHA` to the key's
//!   node and on `NOSCRIPT` loads the script there (redis-rs routes
//!   `SCRIPT LOAD` to every primary) and retries, so a node that restarted
//!   with an empty script cache costs one extra round trip, not an error.
//!   Within a single-slot pipeline, `load_script` travels with the
//!   `EVALSHA` to the same node.
//!
//! `PUBLISH` works unchanged: a cluster propagates it to every node over the
//! cluster bus, so the hub's one `SUBSCRIBE` on any node sees every event.

use super::config::RedisSource;
use super::redis_tls::RedisTls;
use redis::{
    aio::{ConnectionLike, ConnectionManager},
    cluster_async::ClusterConnection,
    cluster_routing::{RoutingInfo, SingleNodeRoutingInfo},
    Cmd, RedisFuture, RedisResult, Script, ScriptInvocation, Value,
};
use std::time::Duration;

/// The shared multiplexed connection (cheap to clone).
#[derive(Clone)]
pub enum RedisCon {
    /// One Redis (or a proxy that looks like one), reconnecting by itself.
    Single(ConnectionManager),
    /// A Redis Cluster: commands are routed by slot, `MOVED`/`ASK` are
    /// followed and the slot map is refreshed by redis-rs.
    Cluster(ClusterConnection),
}

/// A round trip, timed for the metrics (`redis_command_seconds`).
fn timed<'a, T: Send + 'a>(call: RedisFuture<'a, T>) -> RedisFuture<'a, T> {
    Box::pin(async move {
        let started = std::time::Instant::now();
        let result = call.await;
        super::metrics::get().redis_round_trip(started.elapsed(), result.is_ok());
        result
    })
}

impl ConnectionLike for RedisCon {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        timed(match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        timed(match self {
            Self::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        })
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

/// One operation of a [`RedisCon::batch`]: a command, or a script call.
pub enum Op {
    Cmd(Cmd),
    Script(&'static Script, ScriptInvocation<'static>),
}

impl From<Cmd> for Op {
    fn from(cmd: Cmd) -> Self {
        Self::Cmd(cmd)
    }
}

/// Replies of a batch as one value (a tuple or a `Vec`).
pub fn from_values<T: redis::FromRedisValue>(values: Vec<Value>) -> RedisResult<T> {
    Ok(redis::from_redis_value(Value::Array(values))?)
}

/// Where Redis is: its URLs (one, or a cluster's seed nodes) and the TLS
/// certificates for `rediss://` ones. Every connection of the server and
/// the command line is made from it.
#[derive(Clone, Debug)]
pub struct Endpoints {
    pub urls: Vec<String>,
    pub cluster: bool,
    pub tls: RedisTls,
}

impl Endpoints {
    /// The endpoints of a configured source (`embedded_url`: where the
    /// embedded redis-server listens, when it is the source).
    pub fn new(source: &RedisSource, embedded_url: Option<&str>, tls: &RedisTls) -> Self {
        let urls = match source {
            RedisSource::Url(url) => vec![url.clone()],
            RedisSource::Cluster(nodes) => nodes.clone(),
            RedisSource::Embedded { .. } => embedded_url.map(str::to_string).into_iter().collect(),
        };
        Self {
            urls,
            cluster: matches!(source, RedisSource::Cluster(_)),
            tls: tls.clone(),
        }
    }

    /// A cluster client builder with the shared settings.
    fn cluster_builder(&self, t: Timeouts) -> redis::cluster::ClusterClientBuilder {
        self.tls
            .cluster(&self.urls)
            .connection_timeout(t.connect)
            .response_timeout(t.response)
            .retries(3)
            .max_retry_wait(1000)
    }
}

/// Timeouts of the shared connection.
#[derive(Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    pub response: Duration,
}

/// Connects once (no waiting for Redis to come up: callers retry).
pub async fn connect(to: &Endpoints, t: Timeouts) -> RedisResult<RedisCon> {
    if to.cluster {
        let client = to.cluster_builder(t).build()?;
        Ok(RedisCon::Cluster(client.get_async_connection().await?))
    } else {
        let url = to.urls.first().map(String::as_str).unwrap_or_default();
        let client = to.tls.client(url)?;
        // One plain attempt first: the manager retries a failed connect
        // six times with backoff (about 8 s) before it reports, and a TLS
        // failure that no retry heals should stop the start at once.
        let probe = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(t.connect))
            .set_response_timeout(Some(t.response));
        drop(
            client
                .get_multiplexed_async_connection_with_config(&probe)
                .await?,
        );
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(t.connect))
            .set_response_timeout(Some(t.response))
            .set_max_delay(Duration::from_secs(2));
        Ok(RedisCon::Single(
            ConnectionManager::new_with_config(client, config).await?,
        ))
    }
}

/// The cluster connection of the sharded subscriptions: RESP3, every
/// shard-channel message pushed to `pushes`. redis-rs subscribes again by
/// itself after a reconnect, a failover or `MOVED`.
pub async fn sharded_subscriber(
    to: &Endpoints,
    t: Timeouts,
    pushes: tokio::sync::mpsc::UnboundedSender<redis::PushInfo>,
) -> RedisResult<ClusterConnection> {
    to.cluster_builder(t)
        .use_protocol(redis::ProtocolVersion::RESP3)
        .push_sender(pushes)
        .build()?
        .get_async_connection()
        .await
}

impl RedisCon {
    pub fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster(_))
    }

    /// Runs independent operations that may touch different slots and
    /// returns one reply per operation. On a single Redis: one pipelined
    /// round trip (scripts loaded first, a no-op when cached). On a
    /// cluster: all at once, each routed to its slot's node (the cluster
    /// connection multiplexes them, so this is about one round trip per
    /// node involved). Not atomic in either case: callers only batch
    /// operations that are correct in any order.
    pub async fn batch(&self, ops: Vec<Op>) -> RedisResult<Vec<Value>> {
        if ops.is_empty() {
            return Ok(vec![]);
        }
        let started = std::time::Instant::now();
        let result = self.batch_untimed(ops).await;
        super::metrics::get().redis_round_trip(started.elapsed(), result.is_ok());
        result
    }

    async fn batch_untimed(&self, ops: Vec<Op>) -> RedisResult<Vec<Value>> {
        match self {
            Self::Single(c) => {
                let mut pipe = redis::pipe();
                let mut loaded: Vec<&str> = Vec::new();
                for op in &ops {
                    if let Op::Script(script, _) = op {
                        if !loaded.contains(&script.get_hash()) {
                            loaded.push(script.get_hash());
                            pipe.load_script(script).ignore();
                        }
                    }
                }
                for op in &ops {
                    match op {
                        Op::Cmd(cmd) => pipe.add_command(cmd.clone()),
                        Op::Script(_, invocation) => pipe.invoke_script(invocation),
                    };
                }
                pipe.query_async(&mut c.clone()).await
            }
            Self::Cluster(c) => {
                let calls = ops.into_iter().map(|op| {
                    let mut con = c.clone();
                    async move {
                        match op {
                            Op::Cmd(cmd) => cmd.query_async::<Value>(&mut con).await,
                            Op::Script(_, invocation) => invocation.invoke_async(&mut con).await,
                        }
                    }
                });
                futures::future::try_join_all(calls).await
            }
        }
    }

    /// Runs writes in the given order. On a single Redis they are one
    /// `MULTI`/`EXEC`. On a cluster they span slots, so they run one after
    /// another and stop at the first error: callers order them so that
    /// every prefix leaves the data consistent (see each caller).
    pub async fn in_order(&self, cmds: Vec<Cmd>) -> RedisResult<()> {
        match self {
            Self::Single(c) => {
                let mut pipe = redis::pipe();
                pipe.atomic();
                for cmd in cmds {
                    pipe.add_command(cmd).ignore();
                }
                pipe.query_async::<()>(&mut c.clone()).await
            }
            Self::Cluster(c) => {
                let mut con = c.clone();
                for cmd in cmds {
                    cmd.query_async::<()>(&mut con).await?;
                }
                Ok(())
            }
        }
    }

    /// Every key matching `pattern` (and of type `kind`, if given): on a
    /// cluster, on every primary.
    pub async fn scan_keys(&self, pattern: &str, kind: Option<&str>) -> RedisResult<Vec<String>> {
        let scan = |cursor: u64| {
            let mut cmd = redis::cmd("SCAN");
            cmd.arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(1000);
            if let Some(kind) = kind {
                cmd.arg("TYPE").arg(kind);
            }
            cmd
        };
        let mut keys = Vec::new();
        match self {
            Self::Single(c) => {
                let mut con = c.clone();
                let mut cursor = 0u64;
                loop {
                    let (next, batch): (u64, Vec<String>) =
                        scan(cursor).query_async(&mut con).await?;
                    keys.extend(batch);
                    if next == 0 {
                        break;
                    }
                    cursor = next;
                }
            }
            Self::Cluster(c) => {
                let mut con = c.clone();
                for (host, port) in self.primaries().await? {
                    let mut cursor = 0u64;
                    loop {
                        let reply = con
                            .route_command(
                                scan(cursor),
                                RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                                    host: host.clone(),
                                    port,
                                }),
                            )
                            .await?;
                        let (next, batch): (u64, Vec<String>) = redis::from_redis_value(reply)?;
                        keys.extend(batch);
                        if next == 0 {
                            break;
                        }
                        cursor = next;
                    }
                }
            }
        }
        Ok(keys)
    }

    /// The cluster's reachable primaries, `(host, port)`, from
    /// `CLUSTER NODES` (empty for a single Redis).
    pub async fn primaries(&self) -> RedisResult<Vec<(String, u16)>> {
        let Self::Cluster(c) = self else {
            return Ok(vec![]);
        };
        Ok(parse_primaries(&cluster_nodes(c).await?))
    }

    /// Whether Redis answers: `PING`, and on a cluster a `PING` to every
    /// primary that serves slots (redis-rs's own `PING` fan-out skips a
    /// primary it has lost, and the others answering is not enough: the
    /// lost one's rooms are down).
    pub async fn ping_all(&self) -> RedisResult<()> {
        match self {
            Self::Single(c) => {
                let _: String = redis::cmd("PING").query_async(&mut c.clone()).await?;
            }
            Self::Cluster(c) => {
                let pings = parse_serving_primaries(&cluster_nodes(c).await?)
                    .into_iter()
                    .map(|(host, port)| {
                        let mut con = c.clone();
                        async move {
                            con.route_command(
                                redis::cmd("PING"),
                                RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                                    host,
                                    port,
                                }),
                            )
                            .await
                        }
                    });
                futures::future::try_join_all(pings).await?;
            }
        }
        Ok(())
    }
}

/// `CLUSTER NODES` as some node of the cluster sees it.
async fn cluster_nodes(c: &ClusterConnection) -> RedisResult<String> {
    redis::cmd("CLUSTER")
        .arg("NODES")
        .query_async(&mut c.clone())
        .await
}

/// `seed` (a node URL, with its scheme, user, password and options) for
/// another node: how the subscriber reaches primaries that were not listed.
pub fn url_for_node(seed: &str, host: &str, port: u16) -> Option<String> {
    let (scheme, rest) = seed.split_once("://")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let user = match authority.rfind('@') {
        Some(i) => &authority[..=i],
        None => "",
    };
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    Some(format!("{scheme}://{user}{host}:{port}{path}"))
}

/// Where the subscriber may connect: the configured nodes, then every
/// primary the cluster reports (so that listing one node is enough to
/// survive its failure).
pub async fn subscriber_candidates(seeds: &[String], con: &RedisCon) -> Vec<String> {
    let mut all: Vec<String> = seeds.to_vec();
    if let (Some(seed), Ok(primaries)) = (seeds.first(), con.primaries().await) {
        for (host, port) in primaries {
            if let Some(url) = url_for_node(seed, &host, port) {
                if !all.contains(&url) {
                    all.push(url);
                }
            }
        }
    }
    all
}

/// `(host, port)` of every primary not flagged failing in a
/// `CLUSTER NODES` reply.
pub fn parse_primaries(text: &str) -> Vec<(String, u16)> {
    masters(text)
        .filter(|m| !m.failed)
        .map(|m| (m.host, m.port))
        .collect()
}

/// The primaries that serve slots, `(host, port)`, from `CLUSTER NODES`
/// text, including those flagged as failing: while one of them is down,
/// its slots are unavailable. (A failed primary whose slots went to a
/// promoted replica lists no slots and is not included.)
pub fn parse_serving_primaries(text: &str) -> Vec<(String, u16)> {
    masters(text)
        .filter(|m| m.serves_slots)
        .map(|m| (m.host, m.port))
        .collect()
}

struct Master {
    host: String,
    port: u16,
    failed: bool,
    serves_slots: bool,
}

/// The primaries of `CLUSTER NODES` text that have an address. A line is
/// `id ip:port@cport[,hostname] flags master ping pong epoch link slot…`.
fn masters(text: &str) -> impl Iterator<Item = Master> + '_ {
    text.lines().filter_map(|line| {
        let mut fields = line.split_whitespace();
        let _id = fields.next()?;
        let addr = fields.next()?;
        let flags: Vec<&str> = fields.next()?.split(',').collect();
        if !flags.contains(&"master") {
            return None;
        }
        let addr = addr.split('@').next()?;
        let (host, port) = addr.rsplit_once(':')?;
        let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
        Some(Master {
            host: host.to_string(),
            port,
            failed: flags.iter().any(|f| f.starts_with("fail")),
            // After master, ping-sent, pong-recv, config-epoch, link-state.
            serves_slots: fields.nth(5).is_some(),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_urls_keep_credentials_and_options() {
        assert_eq!(
            url_for_node("rediss://u:p@10.0.0.1:7000/?protocol=3", "10.0.0.2", 7001).as_deref(),
            Some("rediss://u:p@10.0.0.2:7001/?protocol=3")
        );
        assert_eq!(
            url_for_node("redis://h:1", "::1", 7002).as_deref(),
            Some("redis://[::1]:7002")
        );
        assert_eq!(url_for_node("nonsense", "h", 1), None);
    }

    #[test]
    fn primaries_from_cluster_nodes() {
        let text = "\
a1 127.0.0.1:7001@17001 myself,master - 0 0 1 connected 0-5460
b2 127.0.0.1:7002@17002 master - 0 0 2 connected 5461-10922
c3 127.0.0.1:7003@17003 master,fail - 0 0 3 disconnected 10923-16383
d4 127.0.0.1:7004@17004 slave b2 0 0 2 connected
e5 :0@0 master,noaddr - 0 0 0 disconnected
";
        assert_eq!(
            parse_primaries(text),
            vec![("127.0.0.1".into(), 7001), ("127.0.0.1".into(), 7002)]
        );
        // For health, the failing primary still holds its slots; a failed
        // one whose slots moved does not count.
        let moved = format!("{text}f6 127.0.0.1:7005@17005 master,fail - 0 0 1 disconnected\n");
        assert_eq!(
            parse_serving_primaries(&moved),
            vec![
                ("127.0.0.1".into(), 7001),
                ("127.0.0.1".into(), 7002),
                ("127.0.0.1".into(), 7003)
            ]
        );
    }
}
