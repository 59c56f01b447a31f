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
///
/// Over HTTP this path is answered by `server::history::handler` (one
/// Redis round trip and a page cache, without the server-function layer);
/// both run `server::history::page_json`, so the answers are the same.
#[server(endpoint = "messages", input = server_fn::codec::GetUrl)]
pub async fn messages(
    room_id: String,
    #[server(default)] before: Option<String>,
    #[server(default)] limit: Option<String>,
) -> Result<MessagePage, ApiError> {
    use crate::server::{context, history};
    let state = context::state()?;
    let query = history::PageQuery {
        room_id: Some(room_id),
        before,
        limit,
    };
    let json = history::page_json(&state, context::session_token().as_deref(), query).await?;
    serde_json::from_slice(&json).map_err(|_| ApiError::internal())
}
