use super::ApiError;
use leptos::prelude::*;

/// `GET /api/demo_accounts`: the demo user names offered as a quick pick on
/// the sign-in page (empty when demo data is off).
#[server(endpoint = "demo_accounts", input = server_fn::codec::GetUrl)]
pub async fn demo_accounts() -> Result<Vec<String>, ApiError> {
    let state = crate::server::context::state()?;
    Ok(state.demo_accounts())
}
