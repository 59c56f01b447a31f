use super::ApiError;
use crate::protocol::User;
use leptos::prelude::*;

/// `GET /api/me`: the signed-in user, or 401.
#[server(endpoint = "me", input = server_fn::codec::GetUrl)]
pub async fn me() -> Result<User, ApiError> {
    crate::server::context::current_user().await
}
