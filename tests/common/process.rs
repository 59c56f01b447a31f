//! The real `redis-chat` binary as a child process: a clean environment
//! (no `.env` nearby, no inherited REDIS_URL or RUST_LOG) plus the given
//! variables.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout};

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

async fn drain(mut lines: Lines<BufReader<ChildStdout>>) {
    while let Ok(Some(_)) = lines.next_line().await {}
}

/// A running `redis-chat` server (the default command).
pub struct ServerProcess {
    pub child: Child,
    /// Where it says it listens, e.g. `http://0.0.0.0:41234`.
    pub url: String,
    /// What it printed before that (its log: stdout), one entry per line.
    pub log: Vec<String>,
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
        // Later lines are read and dropped, so that a full pipe never
        // blocks the server.
        tokio::spawn(drain(stdout));
        Self { child, url, log }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.url.rsplit(':').next().unwrap().parse().unwrap()
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
