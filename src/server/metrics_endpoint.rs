//! `GET /metrics`: the process's metrics (`metrics.rs`) with the gauges
//! read from the server at scrape time. On the main port only with
//! `Authorization: Bearer <METRICS_TOKEN>` (404 when no token is set, 401
//! for a wrong one); on `METRICS_ADDR` to anyone who reaches that address.

use super::{metrics, passwords, AppState};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{routing::get, Router};
use std::net::SocketAddr;

const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The scrape itself.
fn scrape(state: &AppState) -> Response {
    let m = metrics::get();
    m.sockets_open.set(state.hub.local_sockets() as i64);
    m.users_online.set(state.hub.local_users() as i64);
    m.shard_rooms.set(state.hub.shard_rooms() as i64);
    m.bcrypt_queue.set(passwords::bcrypt_depth() as i64);
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], m.render()).into_response()
}

/// `/metrics` on the main port: behind `METRICS_TOKEN`.
pub async fn with_token(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Some(token) = state.config.metrics_token.as_deref() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if !metrics::token_matches(given, token) {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
        )
            .into_response();
    }
    scrape(&state)
}

/// Serves `/metrics` on `METRICS_ADDR` until shutdown; returns the address
/// it listens on.
pub async fn listen(addr: SocketAddr, state: AppState) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let mut stop = state.shutdown.clone();
    let router = Router::new()
        .route(
            "/metrics",
            get(|State(state): State<AppState>| async move { scrape(&state) }),
        )
        .with_state(state);
    tokio::spawn(async move {
        let served = axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = stop.wait_for(|down| *down).await;
            })
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "metrics listener failed");
        }
    });
    Ok(bound)
}
