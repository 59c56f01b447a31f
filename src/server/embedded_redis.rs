//! The embedded default: when no `REDIS_URL` is given, the server starts its
//! own `redis-server` child and looks after it.
//!
//! The child listens only on a unix socket (mode 0700) inside the data
//! directory — no TCP port to collide with or to expose — and keeps an
//! append-only file (`appendfsync everysec`) there, so accepted messages
//! (all but at most the last second or two, see README's fault table)
//! survive a restart. If the child dies it is restarted with backoff; on
//! shutdown it gets SIGTERM (Redis then flushes the AOF and exits). If this
//! process dies first, the kernel sends the child SIGTERM
//! (`PR_SET_PDEATHSIG`), so no orphan keeps the data directory locked.
//!
//! The test suites use this same type to get a private Redis per test.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};
use tokio::{process::Child, sync::watch, task::JoinHandle};

/// Why the embedded Redis could not start. `Display` is one line meant for
/// an operator.
#[derive(Debug)]
pub enum EmbeddedError {
    NotInstalled(String),
    DataDir(PathBuf, std::io::Error),
    InUse(PathBuf),
    NotReady(String),
}

impl std::fmt::Display for EmbeddedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotInstalled(bin) => write!(
                f,
                "`{bin}` was not found: install Redis (e.g. `apt-get install redis-server`) or set REDIS_URL to an existing server"
            ),
            Self::DataDir(dir, e) => write!(f, "cannot use REDIS_DATA_DIR {}: {e}", dir.display()),
            Self::InUse(dir) => write!(
                f,
                "another redis-server is already running on REDIS_DATA_DIR {}; stop it or point REDIS_URL at it",
                dir.display()
            ),
            Self::NotReady(why) => write!(f, "the embedded redis-server did not start: {why}"),
        }
    }
}

impl std::error::Error for EmbeddedError {}

/// A supervised local `redis-server`.
pub struct EmbeddedRedis {
    url: String,
    dir: PathBuf,
    stop: watch::Sender<bool>,
    supervisor: JoinHandle<()>,
    pid: watch::Receiver<u32>,
}

impl EmbeddedRedis {
    /// Starts `binary` with its data in `data_dir` and waits until it answers PING.
    pub async fn start(data_dir: &Path, binary: &str) -> Result<Self, EmbeddedError> {
        let dir_err = |e| EmbeddedError::DataDir(data_dir.to_path_buf(), e);
        std::fs::create_dir_all(data_dir).map_err(dir_err)?;
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o700))
                .map_err(dir_err)?;
        }
        let dir = data_dir.canonicalize().map_err(dir_err)?;
        let socket = dir.join("redis.sock");
        // sun_path holds 108 bytes; refuse early with a clear message.
        if socket.as_os_str().len() > 100 {
            return Err(dir_err(std::io::Error::other(
                "path too long for a unix socket (keep it under 90 characters)",
            )));
        }
        let url = format!("redis+unix://{}", socket.display());
        if socket.exists() {
            if ping(&url, Duration::from_millis(500)).await {
                return Err(EmbeddedError::InUse(dir));
            }
            let _ = std::fs::remove_file(&socket);
        }

        let child = spawn(binary, &dir, &socket)?;
        let child = wait_ready(child, &url, &dir).await?;
        let (stop, stop_rx) = watch::channel(false);
        let (pid_tx, pid) = watch::channel(child.id().unwrap_or(0));
        let supervisor = tokio::spawn(supervise(
            child,
            binary.to_string(),
            dir.clone(),
            socket,
            url.clone(),
            stop_rx,
            pid_tx,
        ));
        Ok(Self {
            url,
            dir,
            stop,
            supervisor,
            pid,
        })
    }

    /// The URL to connect to (`redis+unix:///.../redis.sock`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The data directory (canonical path).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The pid of the current child (changes when it is restarted).
    pub fn pid(&self) -> u32 {
        *self.pid.borrow()
    }

    /// Stops the child with SIGTERM (so the AOF is flushed) and waits for it.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.supervisor.await;
    }
}

fn spawn(binary: &str, dir: &Path, socket: &Path) -> Result<Child, EmbeddedError> {
    let mut cmd = tokio::process::Command::new(binary);
    cmd.arg("--port")
        .arg("0")
        .arg("--unixsocket")
        .arg(socket)
        .arg("--unixsocketperm")
        .arg("700")
        .arg("--dir")
        .arg(dir)
        .arg("--appendonly")
        .arg("yes")
        .arg("--appendfsync")
        .arg("everysec")
        .arg("--save")
        .arg("")
        .arg("--daemonize")
        .arg("no")
        .arg("--logfile")
        .arg(dir.join("redis.log"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
    cmd.spawn().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => EmbeddedError::NotInstalled(binary.to_string()),
        _ => EmbeddedError::NotReady(format!("cannot run {binary}: {e}")),
    })
}

async fn ping(url: &str, timeout: Duration) -> bool {
    let attempt = async {
        let client = redis::Client::open(url).ok()?;
        let mut con = client.get_multiplexed_async_connection().await.ok()?;
        redis::cmd("PING")
            .query_async::<String>(&mut con)
            .await
            .ok()
    };
    matches!(tokio::time::timeout(timeout, attempt).await, Ok(Some(_)))
}

/// Waits up to 15 s for the child to answer PING; fails fast if it exits.
async fn wait_ready(mut child: Child, url: &str, dir: &Path) -> Result<Child, EmbeddedError> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let mut delay = Duration::from_millis(5);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(dir.join("redis.log")).unwrap_or_default();
            let last = log
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("");
            return Err(EmbeddedError::NotReady(format!(
                "exited with {status}: {last}"
            )));
        }
        if ping(url, Duration::from_millis(500)).await {
            return Ok(child);
        }
        if tokio::time::Instant::now() > deadline {
            let _ = child.start_kill();
            return Err(EmbeddedError::NotReady(
                "no answer to PING within 15 s".into(),
            ));
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(200));
    }
}

fn terminate(child: &Child) {
    if let Some(pid) = child.id() {
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe {
            libc::kill(pid as libc::pid_t, libc::SIGTERM);
        }
    }
}

async fn supervise(
    mut child: Child,
    binary: String,
    dir: PathBuf,
    socket: PathBuf,
    url: String,
    mut stop: watch::Receiver<bool>,
    pid: watch::Sender<u32>,
) {
    let mut backoff = Duration::from_millis(250);
    loop {
        tokio::select! {
            status = child.wait() => {
                tracing::error!(?status, "embedded redis-server exited; restarting in {backoff:?}");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.changed() => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                let _ = std::fs::remove_file(&socket);
                match spawn(&binary, &dir, &socket) {
                    Ok(new) => match wait_ready(new, &url, &dir).await {
                        Ok(new) => {
                            tracing::info!("embedded redis-server is back");
                            let _ = pid.send(new.id().unwrap_or(0));
                            child = new;
                            backoff = Duration::from_millis(250);
                        }
                        Err(e) => {
                            tracing::error!("{e}");
                            // Keep looping: `child` has exited, so `wait` returns at once.
                        }
                    },
                    Err(e) => tracing::error!("{e}"),
                }
            }
            _ = stop.changed() => {
                terminate(&child);
                if tokio::time::timeout(Duration::from_secs(10), child.wait()).await.is_err() {
                    tracing::warn!("redis-server ignored SIGTERM for 10 s; killing it");
                    let _ = child.kill().await;
                }
                return;
            }
        }
    }
}
