//! The `redis-chat` binary: the server (`serve`, the default) and the
//! operator commands (`redis-chat --help`; see `src/cli/`).

use clap::Parser;

/// mimalloc instead of glibc's malloc: a profile of history pages showed
/// about a quarter of the server's CPU in malloc/free, much of it threads
/// waiting on glibc's arena locks (BENCHMARKS.md, "History").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use redis_chat::cli::{self, Cli};
use redis_chat::server::site::{self, Asset};

/// The front end as `cargo leptos build --release --precompress` left it in
/// `target/site` (with `.br` and `.gz` copies): inside the executable in a
/// release build, read from that directory in a debug one. Built without a
/// site, the binary serves `SITE_ROOT` (or `target/site`) from disk.
#[derive(rust_embed::Embed)]
#[folder = "target/site"]
#[allow_missing = true]
struct Site;

fn site_file(path: &str) -> Option<Asset> {
    Site::get(path).map(|file| Asset {
        sha256: file.metadata.sha256_hash(),
        mime: file.metadata.mimetype().to_string().into(),
        data: file.data,
    })
}

fn main() -> std::process::ExitCode {
    site::install(site_file);
    cli::run(Cli::parse())
}
