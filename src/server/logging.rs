//! The server's log: human-readable lines by default, one JSON object per
//! line with `LOG_FORMAT=json` (timestamp, level, target, message, fields,
//! and the ids of the request or WebSocket the line belongs to), for a log
//! shipper. `RUST_LOG` picks the levels (default `info`).
//!
//! What is never logged: passwords, session cookies or tokens, and message
//! texts. Requests are logged by method, path (no query string: a search
//! term is the user's business) and status; frames by type. Each HTTP
//! request gets an id (`rid`, also sent back as `X-Request-Id`) and each
//! WebSocket a connection id (`conn`), so the lines of one can be found
//! (`tests/logs.rs` checks both).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use tracing_subscriber::EnvFilter;

/// The log's line format (`LOG_FORMAT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl LogFormat {
    /// `LOG_FORMAT`: `text` (or unset) or `json`.
    pub fn from_env() -> Result<Self, String> {
        match std::env::var("LOG_FORMAT").ok().as_deref().map(str::trim) {
            None | Some("") | Some("text") => Ok(Self::Text),
            Some("json") => Ok(Self::Json),
            Some(other) => Err(format!("LOG_FORMAT must be text or json, not {other:?}")),
        }
    }
}

/// Installs the log for the server process.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(true)
            .init(),
    }
}

/// A new id for a request or a connection: this process's random prefix
/// and a counter (`3fa2c1-17`), unique across instances in practice.
pub fn next_id() -> String {
    static PREFIX: OnceLock<String> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let prefix = PREFIX.get_or_init(|| {
        let mut bytes = [0u8; 3];
        let _ = getrandom::fill(&mut bytes);
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    });
    format!("{prefix}-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_with_one_prefix_per_process() {
        let a = next_id();
        let b = next_id();
        assert_ne!(a, b);
        assert_eq!(a.split('-').next(), b.split('-').next());
    }
}
