use super::ApiError;
use crate::protocol::User;
use leptos::prelude::*;

/// `POST /api/register`: create an account and sign it in.
///
/// 400 for an invalid name or password (the message says which rule), 409
/// when the name is taken (case-insensitive).
#[server(endpoint = "register")]
pub async fn register(username: String, password: String) -> Result<User, ApiError> {
    use crate::server::context;
    let state = context::state()?;
    let user = state.store.register(&username, &password).await?;
    context::start_session(&state, &user).await?;
    Ok(user)
}
