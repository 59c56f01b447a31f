//! The `redis-chat` binary: the server (`serve`, the default) and the
//! operator commands (`redis-chat --help`; see `src/cli/`).

use clap::Parser;
use redis_chat::cli::{self, Cli};

fn main() -> std::process::ExitCode {
    cli::run(Cli::parse())
}
