//! Runs the real `redis-chat` binary's commands as an operator would
//! (through [`super::process::command`]): a clean environment, its exit
//! code and its output. A serving binary is a
//! [`super::process::ServerProcess`].

use super::TestRedis;
use redis_chat::protocol::User;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use tokio::io::AsyncWriteExt;

/// How to run `redis-chat`: a clean environment (no `.env` nearby, no
/// inherited REDIS_URL or RUST_LOG) plus these variables.
pub struct Cli {
    pub env: Vec<(&'static str, String)>,
    pub dir: PathBuf,
}

pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    pub fn ok(self) -> Self {
        assert_eq!(
            self.code, 0,
            "exit {}; stdout {:?}; stderr {:?}",
            self.code, self.stdout, self.stderr
        );
        self
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.stdout))
    }

    /// A failure: this exit code, one line on stderr, nothing on stdout.
    pub fn failed(self, code: i32, says: &str) -> Self {
        assert_eq!(
            self.code, code,
            "stdout {:?}; stderr {:?}",
            self.stdout, self.stderr
        );
        if code != 2 {
            assert_eq!(self.stderr.lines().count(), 1, "{:?}", self.stderr);
            assert!(self.stderr.starts_with("redis-chat: "), "{:?}", self.stderr);
            assert!(self.stdout.is_empty(), "{:?}", self.stdout);
        }
        assert!(
            self.stderr.to_lowercase().contains(&says.to_lowercase()),
            "{says:?} not in {:?}",
            self.stderr
        );
        self
    }
}

impl Cli {
    pub fn url(redis: &TestRedis) -> Self {
        Self {
            env: vec![("REDIS_URL", redis.url()), ("BCRYPT_COST", "4".into())],
            dir: redis.dir.path().to_path_buf(),
        }
    }

    pub fn embedded(data_dir: &Path, cwd: &Path) -> Self {
        Self {
            env: vec![
                ("REDIS_DATA_DIR", data_dir.display().to_string()),
                ("BCRYPT_COST", "4".into()),
            ],
            dir: cwd.to_path_buf(),
        }
    }

    pub fn command(&self, args: &[&str]) -> tokio::process::Command {
        super::process::command(args, &self.env, &self.dir)
    }

    pub async fn run(&self, args: &[&str]) -> Out {
        let out = self.command(args).output().await.unwrap();
        finish(out)
    }

    pub async fn run_with_stdin(&self, args: &[&str], stdin: &str) -> Out {
        let mut child = self.command(args).stdin(Stdio::piped()).spawn().unwrap();
        let mut input = child.stdin.take().unwrap();
        input.write_all(stdin.as_bytes()).await.unwrap();
        drop(input);
        finish(child.wait_with_output().await.unwrap())
    }

    pub async fn add_user(&self, name: &str) -> User {
        let out = self
            .run_with_stdin(
                &["user", "add", name, "--password-stdin", "--json"],
                "password123\n",
            )
            .await
            .ok();
        serde_json::from_value(out.json()).unwrap()
    }

    pub async fn send(&self, from: &str, to: &str, text: &str) -> String {
        let out = self
            .run(&["send", "--as", from, "--to", to, text])
            .await
            .ok();
        out.stdout.trim().to_string()
    }
}

fn finish(out: std::process::Output) -> Out {
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}
