use super::ApiError;
use leptos::prelude::*;

/// `POST /api/logout`: delete the session server-side and clear the cookie.
/// Succeeds when already signed out.
#[server(endpoint = "logout")]
pub async fn logout() -> Result<(), ApiError> {
    use crate::server::context;
    let state = context::state()?;
    context::end_session(&state).await
}
