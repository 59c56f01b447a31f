use super::ApiError;
use crate::protocol::DirectoryUser;
use leptos::prelude::*;

/// `GET /api/users?q=..`: up to 20 users whose name starts with `q`
/// (case-insensitive), without the caller.
#[server(endpoint = "users", input = server_fn::codec::GetUrl)]
pub async fn users(#[server(default)] q: Option<String>) -> Result<Vec<DirectoryUser>, ApiError> {
    use crate::server::context;
    let user = context::current_user().await?;
    let state = context::state()?;
    state
        .store
        .search_users(q.as_deref().unwrap_or(""), user.id, &state.presence)
        .await
}
