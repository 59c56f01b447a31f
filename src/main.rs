//! The `redis-chat` binary: read the configuration, start the server,
//! stop gracefully on SIGINT/SIGTERM.

use redis_chat::server::{self, config::Config};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();

    let config = match Config::from_env() {
        Ok(config) => config,
        Err(e) => fail(&format!("configuration error: {e}")),
    };
    let running = match server::start(config).await {
        Ok(running) => running,
        Err(e) => fail(&e.to_string()),
    };
    println!("listening on http://{}", running.addr);
    tracing::info!(addr = %running.addr, "serving");

    shutdown_signal().await;
    tracing::info!("shutting down");
    running.shutdown().await;
}

fn fail(message: &str) -> ! {
    eprintln!("redis-chat: {message}");
    std::process::exit(1);
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = ctrl_c.await;
            return;
        }
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
}
