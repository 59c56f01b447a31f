//! A private 3-master Redis Cluster per test: three `redis-server
//! --cluster-enabled yes` on free loopback ports (never 6379) with AOF in a
//! temp dir, joined with `redis-cli --cluster create`. Readiness is polled
//! (`CLUSTER INFO` says `cluster_state:ok` on every node), never slept for.
//! Every process is killed on drop (and by the kernel if the test process
//! dies: `PR_SET_PDEATHSIG`).

use super::eventually_within;
use super::tls::ServerTls;
use redis_chat::server::redis_tls::RedisTls;
use std::{
    os::unix::process::CommandExt,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

/// How long a cluster may take to agree (after a node restarts, a few
/// seconds).
pub const CLUSTER_WAIT: Duration = Duration::from_secs(60);

pub struct TestCluster {
    pub ports: Vec<u16>,
    nodes: Vec<Option<Child>>,
    tls: Option<ServerTls>,
    pub dir: tempfile::TempDir,
}

/// A free loopback port whose cluster bus port (+10000) is free too.
fn free_port_pair(taken: &[u16]) -> u16 {
    loop {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        if port > 55_000 || port == 6379 || taken.contains(&port) {
            continue;
        }
        if std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

impl TestCluster {
    pub async fn start() -> Self {
        Self::start_with(None).await
    }

    /// A cluster that speaks only TLS, to clients and on its bus.
    pub async fn start_tls(tls: ServerTls) -> Self {
        Self::start_with(Some(tls)).await
    }

    async fn start_with(tls: Option<ServerTls>) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("rc-cluster-")
            .tempdir_in("/tmp")
            .unwrap();
        let mut ports = Vec::new();
        for _ in 0..3 {
            let p = free_port_pair(&ports);
            ports.push(p);
        }
        let mut cluster = Self {
            nodes: ports.iter().map(|_| None).collect(),
            ports,
            tls,
            dir,
        };
        for i in 0..3 {
            cluster.spawn(i);
        }
        for i in 0..3 {
            cluster.wait_answers(i).await;
        }
        let addrs: Vec<String> = cluster
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let out = tokio::process::Command::new("redis-cli")
            .args(cluster.tls.iter().flat_map(|t| t.cli_args.iter()))
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .arg("--cluster-yes")
            .stdin(Stdio::null())
            .output()
            .await
            .expect("redis-cli must be installed for the cluster tests");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        cluster.wait_ok().await;
        cluster
    }

    fn node_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(self.ports[i].to_string())
    }

    fn spawn(&mut self, i: usize) {
        self.nodes[i] = Some(spawn_redis(
            self.ports[i],
            &self.node_dir(i),
            true,
            self.tls.as_ref(),
        ));
    }

    /// `redis://…`, or `rediss://…` for a TLS cluster.
    pub fn url(&self, i: usize) -> String {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://127.0.0.1:{}", self.ports[i])
    }

    /// What the harness's connections use: nothing, or for a TLS cluster
    /// the CA and the client certificate.
    pub fn client_tls(&self) -> RedisTls {
        self.tls
            .as_ref()
            .map(|t| t.harness.clone())
            .unwrap_or_default()
    }

    /// `REDIS_CLUSTER_NODES` for this cluster: `host:port`, or
    /// `rediss://` URLs for a TLS cluster.
    pub fn nodes_setting(&self) -> String {
        (0..self.ports.len())
            .map(|i| match self.tls {
                Some(_) => self.url(i),
                None => format!("127.0.0.1:{}", self.ports[i]),
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    /// A plain connection to node `i` (not cluster-aware).
    pub async fn node_con(
        &self,
        i: usize,
    ) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
        self.client_tls()
            .client(&self.url(i))?
            .get_multiplexed_async_connection()
            .await
    }

    /// A cluster-aware connection (follows MOVED).
    pub async fn con(&self) -> redis::cluster_async::ClusterConnection {
        let urls: Vec<String> = (0..3).map(|i| self.url(i)).collect();
        self.client_tls()
            .cluster(&urls)
            .build()
            .unwrap()
            .get_async_connection()
            .await
            .unwrap()
    }

    async fn wait_answers(&self, i: usize) {
        wait_ping(self.url(i), &self.client_tls()).await;
    }

    /// Waits until every node says `cluster_state:ok` with all slots served.
    pub async fn wait_ok(&self) {
        eventually_within("cluster_state:ok on every node", CLUSTER_WAIT, || async {
            for i in 0..self.ports.len() {
                let Ok(mut c) = self.node_con(i).await else {
                    return false;
                };
                let Ok(info) = redis::cmd("CLUSTER")
                    .arg("INFO")
                    .query_async::<String>(&mut c)
                    .await
                else {
                    return false;
                };
                if !info.contains("cluster_state:ok") || !info.contains("cluster_slots_ok:16384") {
                    return false;
                }
            }
            true
        })
        .await;
    }

    /// The index of the node serving `key`'s slot.
    pub async fn node_of(&self, key: &str) -> usize {
        let mut c = self.node_con(0).await.unwrap();
        let slot: u16 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query_async(&mut c)
            .await
            .unwrap();
        let slots: Vec<(u16, u16, Vec<redis::Value>)> = redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query_async::<Vec<redis::Value>>(&mut c)
            .await
            .unwrap()
            .into_iter()
            .map(|v| {
                let mut parts: Vec<redis::Value> = redis::from_redis_value(v).unwrap();
                let start: u16 = redis::from_redis_value(parts.remove(0)).unwrap();
                let end: u16 = redis::from_redis_value(parts.remove(0)).unwrap();
                (start, end, parts)
            })
            .collect();
        for (start, end, nodes) in slots {
            if (start..=end).contains(&slot) {
                let master: Vec<redis::Value> = redis::from_redis_value(nodes[0].clone()).unwrap();
                let port: u16 = redis::from_redis_value(master[1].clone()).unwrap();
                return self.ports.iter().position(|p| *p == port).unwrap();
            }
        }
        panic!("no node serves slot {slot}");
    }

    /// Moves the slot of `key` from its node to node `to` as
    /// `redis-cli --cluster reshard` does: IMPORTING/MIGRATING, `MIGRATE`
    /// of every key, then `SETSLOT … NODE` on every node.
    pub async fn move_slot_of(&self, key: &str, to: usize) {
        let from = self.node_of(key).await;
        assert_ne!(from, to, "the slot is already there");
        let mut cons = Vec::new();
        let mut ids = Vec::new();
        for i in 0..self.ports.len() {
            let mut c = self.node_con(i).await.unwrap();
            let id: String = redis::cmd("CLUSTER")
                .arg("MYID")
                .query_async(&mut c)
                .await
                .unwrap();
            cons.push(c);
            ids.push(id);
        }
        let slot: u16 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query_async(&mut cons[0])
            .await
            .unwrap();
        let setslot = |state: &str, id: &str| {
            let mut cmd = redis::cmd("CLUSTER");
            cmd.arg("SETSLOT").arg(slot).arg(state).arg(id);
            cmd
        };
        let _: () = setslot("IMPORTING", &ids[from])
            .query_async(&mut cons[to])
            .await
            .unwrap();
        let _: () = setslot("MIGRATING", &ids[to])
            .query_async(&mut cons[from])
            .await
            .unwrap();
        loop {
            let keys: Vec<String> = redis::cmd("CLUSTER")
                .arg("GETKEYSINSLOT")
                .arg(slot)
                .arg(100)
                .query_async(&mut cons[from])
                .await
                .unwrap();
            if keys.is_empty() {
                break;
            }
            let _: () = redis::cmd("MIGRATE")
                .arg("127.0.0.1")
                .arg(self.ports[to])
                .arg("")
                .arg(0)
                .arg(5000)
                .arg("KEYS")
                .arg(&keys)
                .query_async(&mut cons[from])
                .await
                .unwrap();
        }
        for i in [to, from]
            .into_iter()
            .chain((0..self.ports.len()).filter(|i| *i != to && *i != from))
        {
            let _: () = setslot("NODE", &ids[to])
                .query_async(&mut cons[i])
                .await
                .unwrap();
        }
        self.wait_ok().await;
    }

    /// Kills node `i` at once (SIGKILL: no shutdown, no final AOF rewrite).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts node `i` again on its port and directory (its AOF and
    /// nodes.conf), and waits until the whole cluster is ok again.
    pub async fn restart(&mut self, i: usize) {
        self.spawn(i);
        self.wait_answers(i).await;
        self.wait_ok().await;
    }
}

/// A `redis-server` on loopback port `port` with AOF in `dir`; with
/// `cluster`, as a cluster node; with `tls`, speaking only TLS. Killed by the kernel with the test
/// process (`PR_SET_PDEATHSIG`).
fn spawn_redis(port: u16, dir: &std::path::Path, cluster: bool, tls: Option<&ServerTls>) -> Child {
    std::fs::create_dir_all(dir).unwrap();
    let mut cmd = Command::new("redis-server");
    match tls {
        Some(tls) => cmd.args(tls.args(port, cluster)),
        None => cmd.arg("--port").arg(port.to_string()),
    };
    cmd.args(["--bind", "127.0.0.1"])
        .args(["--appendonly", "yes"])
        .args(["--save", ""])
        .arg("--dir")
        .arg(dir)
        .arg("--logfile")
        .arg(dir.join("redis.log"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if cluster {
        cmd.args(["--cluster-enabled", "yes"])
            .args(["--cluster-config-file", "nodes.conf"])
            .args(["--cluster-node-timeout", "3000"])
            // The other shards keep serving while one master is down.
            .args(["--cluster-require-full-coverage", "no"])
            // A reply only after the write is fsynced. With `everysec`
            // Redis postpones the write (up to 2 s) while a background
            // fsync lags, yet still replies, so a SIGKILL can lose
            // acknowledged writes on a busy disk: seen here.
            .args(["--appendfsync", "always"]);
    }
    // SAFETY: prctl is async-signal-safe; nothing else runs in the child.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    cmd.spawn().expect("redis-server must be installed")
}

/// Waits until the Redis at `url` answers PING (over TLS with `tls`).
async fn wait_ping(url: String, tls: &RedisTls) {
    eventually_within(&format!("{url} answers PING"), CLUSTER_WAIT, || {
        let client = tls.client(&url);
        async move {
            let Ok(client) = client else {
                return false;
            };
            match client.get_multiplexed_async_connection().await {
                Ok(mut c) => redis::cmd("PING")
                    .query_async::<String>(&mut c)
                    .await
                    .is_ok(),
                Err(_) => false,
            }
        }
    })
    .await;
}

/// A single (non-cluster) Redis on a loopback TCP port: the source of a
/// `redis-cli --cluster import`, or a TLS server.
pub struct PlainRedis {
    pub port: u16,
    tls: Option<ServerTls>,
    child: Child,
    _dir: tempfile::TempDir,
}

impl PlainRedis {
    pub async fn start() -> Self {
        Self::start_with(None).await
    }

    /// A Redis that speaks only TLS.
    pub async fn start_tls(tls: ServerTls) -> Self {
        Self::start_with(Some(tls)).await
    }

    async fn start_with(tls: Option<ServerTls>) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("rc-plain-")
            .tempdir_in("/tmp")
            .unwrap();
        let port = free_port_pair(&[]);
        let child = spawn_redis(port, dir.path(), false, tls.as_ref());
        let redis = Self {
            port,
            tls,
            child,
            _dir: dir,
        };
        wait_ping(redis.url(), &redis.client_tls()).await;
        redis
    }

    /// What the harness's connections use: nothing, or for a TLS server
    /// the CA and the client certificate.
    pub fn client_tls(&self) -> RedisTls {
        self.tls
            .as_ref()
            .map(|t| t.harness.clone())
            .unwrap_or_default()
    }

    /// `redis://…`, or `rediss://…` for a TLS server.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }
}

impl Drop for PlainRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}
