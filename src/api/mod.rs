//! Server functions: the HTTP API under `/api`, callable from the WASM client
//! as plain async functions and from anything else as HTTP.
//!
//! One function per file. Paths are fixed with `endpoint = "..."` because
//! they are a public contract (`docs/PROTOCOL.md`). Request bodies are
//! form-urlencoded (or a query string for the GET functions); results and
//! errors are JSON. Bodies run only on the server: they call into
//! [`crate::server`], which is compiled out of the WASM build.

use crate::protocol::codes;
use leptos::server_fn::codec::JsonEncoding;
use leptos::server_fn::error::{FromServerFnError, ServerFnErrorErr};
use serde::{Deserialize, Serialize};

mod block;
mod blocked;
mod change_password;
mod demo_accounts;
mod login;
mod logout;
mod logout_all;
mod me;
mod messages;
mod private_room;
mod register;
mod rooms;
mod users;

pub use block::*;
pub use blocked::*;
pub use change_password::*;
pub use demo_accounts::*;
pub use login::*;
pub use logout::*;
pub use logout_all::*;
pub use me::*;
pub use messages::*;
pub use private_room::*;
pub use register::*;
pub use rooms::*;
pub use users::*;

/// Every server function fails with this: `{"code": "...", "message": "..."}`
/// and an HTTP status chosen from `code` (see [`ApiError::status`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    pub code: String,
    pub message: String,
}

impl ApiError {
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        Self {
            code: code.to_string(),
            message: message.into(),
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(codes::BAD_REQUEST, message)
    }
    pub fn unauthorized() -> Self {
        Self::new(codes::UNAUTHORIZED, "Please sign in.")
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(codes::FORBIDDEN, message)
    }
    pub fn unavailable() -> Self {
        Self::new(
            codes::UNAVAILABLE,
            "The chat store is unavailable; please try again shortly.",
        )
    }
    pub fn internal() -> Self {
        Self::new(codes::INTERNAL, "Something went wrong on the server.")
    }

    /// The HTTP status the server answers with for this error.
    pub fn status(&self) -> u16 {
        match self.code.as_str() {
            codes::BAD_REQUEST => 400,
            codes::UNAUTHORIZED => 401,
            codes::FORBIDDEN => 403,
            codes::NOT_FOUND => 404,
            codes::METHOD_NOT_ALLOWED => 405,
            codes::CONFLICT => 409,
            codes::TOO_LARGE => 413,
            codes::RATE_LIMITED => 429,
            codes::UNAVAILABLE => 503,
            _ => 500,
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ApiError {}

impl FromServerFnError for ApiError {
    type Encoder = JsonEncoding;

    fn from_server_fn_error(value: ServerFnErrorErr) -> Self {
        match value {
            // The request could not be decoded into the function's arguments.
            ServerFnErrorErr::Args(m) | ServerFnErrorErr::Deserialization(m) => {
                Self::bad_request(format!("Invalid request: {m}"))
            }
            // Client side: the server could not be reached.
            ServerFnErrorErr::Request(_) => Self::new(
                codes::UNAVAILABLE,
                "Cannot reach the server; check your connection.",
            ),
            ServerFnErrorErr::Response(m) if m.is_empty() => Self::internal(),
            other => Self::new(codes::INTERNAL, other.to_string()),
        }
    }
}
