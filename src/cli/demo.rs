//! `demo-data`: the server's demo data step ([`demo::ensure`]), on demand.
//! Idempotent: the data is written once; a database with users of its own
//! is left as it is.

use super::{context::Ctx, CliError, Output};
use crate::server::demo;

pub async fn run(ctx: &Ctx) -> Result<Output, CliError> {
    let created = demo::ensure(&ctx.store).await?;
    let text = if created {
        format!(
            "demo data created: users {} with password {}",
            demo::DEMO_USERS.join(", "),
            demo::DEMO_PASSWORD
        )
    } else {
        "nothing to do: the demo data exists, or the database has users of its own".to_string()
    };
    Ok(Output::new(
        text,
        serde_json::json!({ "created": created, "users": demo::DEMO_USERS }),
    ))
}
