use super::ApiError;
use leptos::prelude::*;

/// `POST /api/change_password` (`current_password`, `new_password`):
/// changes the password and signs out every other session of the user.
/// 403 for a wrong current password, 400 for an invalid new one.
#[server(endpoint = "change_password")]
pub async fn change_password(
    current_password: String,
    new_password: String,
) -> Result<(), ApiError> {
    use crate::server::{context, session};
    let user = context::current_user().await?;
    let state = context::state()?;
    state
        .login(
            &user.username,
            &current_password,
            context::client_ip(&state),
        )
        .await
        .map_err(|e| match e.code.as_str() {
            crate::protocol::codes::UNAUTHORIZED => {
                ApiError::forbidden("The current password is wrong.")
            }
            _ => e,
        })?;
    state.store.set_password(user.id, &new_password).await?;
    session::delete_all(&state.store, user.id, context::session_token().as_deref()).await
}
