//! The `redis-chat` binary: the server (`serve`, the default) and the
//! operator commands (`redis-chat --help`; see `src/cli/`).

use clap::Parser;

/// mimalloc instead of glibc's malloc: a profile of history pages showed
/// about a quarter of the server's CPU in malloc/free, much of it threads
/// waiting on glibc's arena locks (BENCHMARKS.md, "History").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use redis_chat::cli::{self, Cli};

fn main() -> std::process::ExitCode {
    cli::run(Cli::parse())
}
