//! # redis-chat
//!
//! A real-time browser chat on Redis, in one Rust crate compiled twice: once
//! as the server binary (feature `ssr`) and once as the WASM front end
//! (feature `hydrate`).
//!
//! ## Where a message goes
//!
//! ```text
//!  browser (WASM, src/client/)             server (src/server/)                     Redis
//!  ─────────────────────────               ───────────────────                      ─────
//!  composer ──{"type":"message"}──▶ /ws ── ws.rs: session, membership, limits
//!                                          store.rs: send_message ──── one EVAL ──▶ XADD room:{id}:stream
//!                                                                                   + PUBLISH MESSAGES
//!                                          hub.rs: the one SUBSCRIBE per process ◀── MESSAGES
//!  every member's sockets ◀──frame── hub: index user → sockets, frame serialised
//!                                     and framed once, written to each socket
//!                                     (outbox.rs), bounded backlog if slow
//! ```
//!
//! Three files hold the path: [`protocol`] (the wire types, shared with the
//! WASM client), `server::hub` (fan-out) and `server::store` (Redis).
//!
//! ## Modules
//! - [`protocol`]: every JSON shape on the wire, one definition for both sides.
//! - [`api`]: server functions (`/api/...`): accounts, rooms, history, users.
//! - [`app`] and [`pages`]: the Leptos UI, server-rendered then hydrated.
//! - `client` (hydrate only): the browser's WebSocket connection.
//! - `server` (ssr only): configuration, the embedded `redis-server`
//!   supervisor, the Redis store, sessions, the pub/sub hub, the WebSocket
//!   endpoint, presence, demo data and the axum router.
//! - `cli` (ssr only): the binary's command line: `serve` (the default) and
//!   the operator commands (users, send, inbox, contacts, demo data).

// Leptos view types nest deeply.
#![recursion_limit = "256"]

pub mod api;
pub mod app;
pub mod pages;
pub mod protocol;

#[cfg(feature = "hydrate")]
pub mod client;

#[cfg(feature = "ssr")]
pub mod server;

#[cfg(feature = "ssr")]
pub mod cli;

/// The WASM entry point: hydrate the server-rendered page.
#[cfg(feature = "hydrate")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_body(app::App);
}
