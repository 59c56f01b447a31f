use super::ApiError;
use crate::protocol::RoomSummary;
use leptos::prelude::*;

/// `GET /api/rooms`: the signed-in user's rooms, most recent activity first.
#[server(endpoint = "rooms", input = server_fn::codec::GetUrl)]
pub async fn rooms() -> Result<Vec<RoomSummary>, ApiError> {
    use crate::server::context;
    let user = context::current_user().await?;
    let state = context::state()?;
    state.store.rooms_of(&user, &state.presence).await
}
