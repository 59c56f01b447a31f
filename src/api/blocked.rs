use super::ApiError;
use crate::protocol::User;
use leptos::prelude::*;

/// `GET /api/blocked`: the users the signed-in user blocked, by name, as
/// `[{"id", "username"}]`.
#[server(endpoint = "blocked", input = server_fn::codec::GetUrl)]
pub async fn blocked() -> Result<Vec<User>, ApiError> {
    use crate::server::{blocks, context};
    let user = context::current_user().await?;
    let state = context::state()?;
    blocks::blocked_users(&state.store, user.id).await
}
