use super::ApiError;
use crate::protocol::RoomSummary;
use leptos::prelude::*;

/// `GET /api/rooms?limit=&before=`: the signed-in user's rooms, most recent
/// activity first; all of them, or with `limit` (1–500) one page, after the
/// room `before` (a room id from the previous page) when given. Parameters
/// are taken as text so that every bad value gets the same clear 400.
#[server(endpoint = "rooms", input = server_fn::codec::GetUrl)]
pub async fn rooms(
    #[server(default)] limit: Option<String>,
    #[server(default)] before: Option<String>,
) -> Result<Vec<RoomSummary>, ApiError> {
    use crate::server::{context, room_list, room_order::RoomPage};
    let user = context::current_user().await?;
    let page = RoomPage::parse(limit.as_deref(), before.as_deref())?;
    let state = context::state()?;
    room_list::rooms_of(&state.store, &user, &state.presence, &page).await
}
