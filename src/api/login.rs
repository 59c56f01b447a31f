use super::ApiError;
use crate::protocol::User;
use leptos::prelude::*;

/// `POST /api/login`: check the password and start a new session.
///
/// 401 with one message for an unknown user and a wrong password alike.
#[server(endpoint = "login")]
pub async fn login(username: String, password: String) -> Result<User, ApiError> {
    use crate::server::context;
    let state = context::state()?;
    let user = state.store.verify_login(&username, &password).await?;
    context::start_session(&state, &user).await?;
    Ok(user)
}
