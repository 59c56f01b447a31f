use super::ApiError;
use leptos::prelude::*;

/// `POST /api/block` (`user_id`): the signed-in user blocks another. The
/// blocked user can no longer open a private room with them, nor send,
/// edit or type in the one they have; neither can the blocker, until they
/// unblock. Idempotent. 400 for a bad id or oneself, 404 for no such user.
#[server(endpoint = "block")]
pub async fn block(user_id: String) -> Result<(), ApiError> {
    use crate::server::{blocks, context};
    let user = context::current_user().await?;
    let state = context::state()?;
    let other = blocks::parse_user_id(&user_id)?;
    blocks::block(&state.store, &user, other).await
}

/// `POST /api/unblock` (`user_id`): undoes [`block`]; everything works
/// again at once. Idempotent (unblocking someone not blocked is no error).
#[server(endpoint = "unblock")]
pub async fn unblock(user_id: String) -> Result<(), ApiError> {
    use crate::server::{blocks, context};
    let user = context::current_user().await?;
    let state = context::state()?;
    let other = blocks::parse_user_id(&user_id)?;
    blocks::unblock(&state.store, &user, other).await
}
