use super::ApiError;
use crate::protocol::RoomSummary;
use leptos::prelude::*;

/// `POST /api/private_room` (`user_id`): open (or create, idempotently) the
/// private room with another user. The other user's sockets are told with
/// `show.room`.
#[server(endpoint = "private_room")]
pub async fn private_room(user_id: String) -> Result<RoomSummary, ApiError> {
    use crate::server::context;
    let user = context::current_user().await?;
    let state = context::state()?;
    let other: crate::protocol::UserId = user_id
        .trim()
        .parse()
        .map_err(|_| ApiError::bad_request("user_id must be a user id."))?;
    state.open_private_room(&user, other).await
}
