use super::ApiError;
use crate::protocol::User;
use leptos::prelude::*;

/// `POST /api/register`: create an account and sign it in.
///
/// 400 for an invalid name or password (the message says which rule), 409
/// when the name is taken (case-insensitive), 429 past `REGISTER_RATE_LIMIT`
/// registrations from the client's address.
#[server(endpoint = "register")]
pub async fn register(username: String, password: String) -> Result<User, ApiError> {
    use crate::server::{context, limits};
    let state = context::state()?;
    let ip = context::client_ip(&state);
    limits::check_register(&state.store, state.config.register_rate, ip).await?;
    let user = state.store.register(&username, &password).await?;
    context::start_session(&state, &user).await?;
    Ok(user)
}
