use super::ApiError;
use crate::protocol::User;
use leptos::prelude::*;

/// `POST /api/login`: check the password and start a new session.
///
/// 401 with one message for an unknown user and a wrong password alike;
/// 429 when attempts come too fast (see `server::limits`).
#[server(endpoint = "login")]
pub async fn login(username: String, password: String) -> Result<User, ApiError> {
    use crate::server::context;
    let state = context::state()?;
    let ip = context::client_ip(&state);
    let user = state.login(&username, &password, ip).await;
    let outcome = match &user {
        Ok(_) => "ok",
        Err(e) if e.code == crate::protocol::codes::RATE_LIMITED => "limited",
        Err(e) if e.code == crate::protocol::codes::UNAUTHORIZED => "failed",
        Err(_) => "error",
    };
    crate::server::metrics::get().sign_in(outcome);
    let user = user?;
    context::start_session(&state, &user).await?;
    Ok(user)
}
