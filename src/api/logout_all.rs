use super::ApiError;
use leptos::prelude::*;

/// `POST /api/logout_all`: ends every session of the signed-in user, this
/// one included ("sign out everywhere").
#[server(endpoint = "logout_all")]
pub async fn logout_all() -> Result<(), ApiError> {
    use crate::server::{context, session};
    let user = context::current_user().await?;
    let state = context::state()?;
    session::delete_all(&state.store, user.id, None).await?;
    context::end_session(&state).await
}
