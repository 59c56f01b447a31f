use super::ApiError;
use crate::protocol::MessagePage;
use leptos::prelude::*;

/// `GET /api/messages?room_id=..&before=..&limit=..`: one page of history.
///
/// The newest `limit` (1-100, default 50) messages older than the cursor
/// `before` (the newest when absent), oldest first; `next` is the cursor of
/// the page before. 400 for bad parameters, 403 for a room the user is not
/// a member of. Parameters are taken as text so that every bad value gets
/// the same clear 400.
#[server(endpoint = "messages", input = server_fn::codec::GetUrl)]
pub async fn messages(
    room_id: String,
    #[server(default)] before: Option<String>,
    #[server(default)] limit: Option<String>,
) -> Result<MessagePage, ApiError> {
    use crate::server::context;
    let user = context::current_user().await?;
    let state = context::state()?;
    let limit = crate::server::store::parse_limit(limit.as_deref())?;
    let before = crate::server::store::parse_cursor(before.as_deref())?;
    state.store.history(user.id, &room_id, before, limit).await
}
