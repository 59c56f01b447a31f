//! What server functions need from the request: the app state, the
//! signed-in user, and the session cookie.

use super::{session, AppState};
use crate::api::ApiError;
use crate::protocol::User;
use http::{header::SET_COOKIE, request::Parts, HeaderValue};
use leptos::prelude::*;
use leptos_axum::ResponseOptions;

/// The shared state, provided as context by the router.
pub fn state() -> Result<AppState, ApiError> {
    use_context::<AppState>().ok_or_else(|| {
        tracing::error!("AppState missing from the Leptos context");
        ApiError::internal()
    })
}

fn request_token() -> Option<String> {
    use_context::<Parts>().and_then(|parts| session::token_from_headers(&parts.headers))
}

/// The client's address: the peer, or who the trusted proxies in front of
/// it say the client is (`TRUST_PROXY`, see [`super::client_addr`]).
/// Every per-address limit takes it from here.
pub fn client_ip(state: &AppState) -> Option<std::net::IpAddr> {
    let parts = use_context::<Parts>()?;
    let peer = parts
        .extensions
        .get::<axum::extract::ConnectInfo<super::wire::Peer>>()?
        .0
        .addr
        .ip();
    Some(state.config.trust_proxy.client(peer, &parts.headers))
}

/// The request's session token, if any.
pub fn session_token() -> Option<String> {
    request_token()
}

/// The signed-in user, or 401.
pub async fn current_user() -> Result<User, ApiError> {
    let state = state()?;
    let token = request_token().ok_or_else(ApiError::unauthorized)?;
    session::lookup(&state.store, &token, state.config.session_ttl)
        .await?
        .ok_or_else(ApiError::unauthorized)
}

fn set_cookie_header(value: String) {
    if let (Some(resp), Ok(value)) = (
        use_context::<ResponseOptions>(),
        HeaderValue::from_str(&value),
    ) {
        resp.append_header(SET_COOKIE, value);
    }
}

/// Signs `user` in: a new session (any session id the browser brought is
/// discarded, so a planted id is never promoted), the cookie, and a
/// redirect to the chat for plain form posts.
pub async fn start_session(state: &AppState, user: &User) -> Result<(), ApiError> {
    if let Some(old) = request_token() {
        session::delete(&state.store, &old).await?;
    }
    let token = session::create(&state.store, user, state.config.session_ttl).await?;
    set_cookie_header(session::set_cookie(
        &token,
        state.config.session_ttl,
        state.config.cookie_secure,
    ));
    leptos_axum::redirect("/");
    Ok(())
}

/// Signs out: deletes the session and clears the cookie.
pub async fn end_session(state: &AppState) -> Result<(), ApiError> {
    if let Some(token) = request_token() {
        session::delete(&state.store, &token).await?;
    }
    set_cookie_header(session::clear_cookie(state.config.cookie_secure));
    leptos_axum::redirect("/login");
    Ok(())
}
