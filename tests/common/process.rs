//! The real `redis-chat` binary as a child process: a clean environment
//! (no `.env` nearby, no inherited REDIS_URL or RUST_LOG) plus the given
//! variables.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout};
use tokio::sync::mpsc;

/// `redis-chat ARGS` in `dir` with only `PATH` and `env` set; stdin closed,
/// stdout and stderr piped; killed if dropped.
pub fn command(args: &[&str], env: &[(&str, String)], dir: &Path) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_redis-chat"));
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().map(|(k, v)| (k, v)))
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Reads the rest of the log, so that a full pipe never blocks the
/// server, and hands it to [`ServerProcess::wait_line`].
async fn forward(mut lines: Lines<BufReader<ChildStdout>>, to: mpsc::UnboundedSender<String>) {
    while let Ok(Some(line)) = lines.next_line().await {
        let _ = to.send(line);
    }
}

/// A running `redis-chat` server (the default command).
pub struct ServerProcess {
    pub child: Child,
    /// Where it says it listens, e.g. `http://0.0.0.0:41234`.
    pub url: String,
    /// What it printed before that (its log: stdout), one entry per line.
    pub log: Vec<String>,
    later: mpsc::UnboundedReceiver<String>,
}

impl ServerProcess {
    /// Starts the server and waits (30 s at most) until it listens.
    pub async fn start(env: &[(&str, String)], dir: &Path) -> Self {
        let mut child = command(&[], env, dir).spawn().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut log = Vec::new();
        let url = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                let Some(line) = stdout.next_line().await.unwrap() else {
                    panic!("the server exited before listening; it printed {log:#?}");
                };
                if let Some(url) = line.strip_prefix("listening on ") {
                    return url.to_string();
                }
                log.push(line);
            }
        })
        .await
        .expect("the server says where it listens");
        let (to, later) = mpsc::unbounded_channel();
        tokio::spawn(forward(stdout, to));
        Self {
            child,
            url,
            log,
            later,
        }
    }

    /// Waits (at most 10 s) until `/readyz` answers 200: Redis answers and
    /// the subscription is up.
    pub async fn wait_ready(&self) {
        let url = format!("{}/readyz", self.url);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let status = reqwest::get(&url).await.map(|r| r.status().as_u16());
            if status.as_ref().is_ok_and(|s| *s == 200) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{url} is not 200 after 10 s: {status:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The first log line, printed before listening or within 30 s after,
    /// for which `wanted` holds.
    pub async fn wait_line(&mut self, wanted: impl Fn(&str) -> bool) -> String {
        if let Some(line) = self.log.iter().find(|l| wanted(l)) {
            return line.clone();
        }
        tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                let line = self.later.recv().await.expect("the server's log ended");
                self.log.push(line.clone());
                if wanted(&line) {
                    return line;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no such log line in {:#?}", self.log))
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.url.rsplit(':').next().unwrap().parse().unwrap()
    }

    /// SIGTERM, then everything it printed (after the exit).
    pub async fn stop_with_log(mut self) -> Vec<String> {
        // SAFETY: kill(2) on our own child.
        unsafe {
            libc::kill(self.child.id().unwrap() as i32, libc::SIGTERM);
        }
        self.child.wait().await.unwrap();
        while let Some(line) = self.later.recv().await {
            self.log.push(line);
        }
        self.log
    }

    /// SIGTERM, then its exit code.
    pub async fn stop(mut self) -> Option<i32> {
        // SAFETY: kill(2) on our own child.
        unsafe {
            libc::kill(self.child.id().unwrap() as i32, libc::SIGTERM);
        }
        self.child.wait().await.unwrap().code()
    }
}
