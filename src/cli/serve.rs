//! `serve` (the default): read the configuration, start the server, stop
//! gracefully on SIGINT/SIGTERM.

use crate::server::{self, config::Config, logging};
use std::process::ExitCode;

pub fn run() -> ExitCode {
    // `.env` first: it may set LOG_FORMAT and RUST_LOG.
    let _ = dotenvy::dotenv();
    match logging::LogFormat::from_env() {
        Ok(format) => logging::init(format),
        Err(e) => return fail(&format!("configuration error: {e}")),
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&format!("cannot start the runtime: {e}")),
    };
    runtime.block_on(serve())
}

async fn serve() -> ExitCode {
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(e) => return fail(&format!("configuration error: {e}")),
    };
    let running = match server::start(config).await {
        Ok(running) => running,
        Err(e) => return fail(&e.to_string()),
    };
    // Listening for SIGTERM before saying so: a supervisor may stop us as
    // soon as it reads the line.
    let stop = shutdown_signal();
    println!("listening on http://{}", running.addr);
    tracing::info!(addr = %running.addr, "serving");

    stop.await;
    tracing::info!("shutting down");
    running.shutdown().await;
    ExitCode::SUCCESS
}

fn fail(message: &str) -> ExitCode {
    eprintln!("redis-chat: {message}");
    ExitCode::FAILURE
}

/// Registers for SIGINT and SIGTERM now; the future ends at the first.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
    async move {
        let ctrl_c = tokio::signal::ctrl_c();
        let mut term = match term {
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
}
