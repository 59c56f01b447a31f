//! `user add`, `user passwd`, `users`.

use super::{context::Ctx, find_user, password, CliError, Output};
use crate::protocol::{DirectoryUser, User, UserId};
use crate::server::{session, store::keys};
use redis::AsyncCommands;

/// `user add NAME`: registration's rules and code ([`Store::register`]).
///
/// [`Store::register`]: crate::server::store::Store::register
pub async fn add(ctx: &Ctx, name: &str, password: &str) -> Result<Output, CliError> {
    let user = ctx.store.register(name, password).await?;
    Ok(Output::new(
        format!("created user {} (id {})", user.username, user.id),
        &user,
    ))
}

/// `user passwd NAME`: a new password, and every session of the user ends.
pub async fn passwd(ctx: &Ctx, name: &str, from_stdin: bool) -> Result<Output, CliError> {
    let user = find_user(ctx, name).await?;
    let password = password::read(from_stdin).await?;
    ctx.store.set_password(user.id, &password).await?;
    session::delete_all(&ctx.store, user.id, None).await?;
    Ok(Output::new(
        format!(
            "password of {} (id {}) changed; their sessions are ended",
            user.username, user.id
        ),
        &user,
    ))
}

/// `users`: every user by id (users of the original demo included), with
/// the online flag.
pub async fn list(ctx: &Ctx) -> Result<Output, CliError> {
    let mut con = ctx.store.con();
    let total: Option<UserId> = con.get(keys::TOTAL_USERS).await?;
    let mut users = Vec::new();
    let ids: Vec<UserId> = (1..=total.unwrap_or(0)).collect();
    for chunk in ids.chunks(500) {
        let replies = ctx
            .store
            .con()
            .batch(
                chunk
                    .iter()
                    .map(|id| redis::Cmd::hget(keys::user(*id), "username").into())
                    .collect(),
            )
            .await?;
        let names: Vec<Option<String>> = crate::server::redis_con::from_values(replies)?;
        let found: Vec<User> = chunk
            .iter()
            .zip(names)
            .filter_map(|(id, name)| {
                Some(User {
                    id: *id,
                    username: name?,
                })
            })
            .collect();
        let ids: Vec<UserId> = found.iter().map(|u| u.id).collect();
        let online = ctx.presence.online_flags(&ids).await?;
        users.extend(
            found
                .into_iter()
                .zip(online)
                .map(|(u, online)| DirectoryUser {
                    id: u.id,
                    username: u.username,
                    online,
                }),
        );
    }
    let width = users.iter().map(|u| u.username.len()).max().unwrap_or(4);
    let mut text = format!("{:>6}  {:<width$}  ONLINE\n", "ID", "NAME");
    for u in &users {
        text.push_str(&format!(
            "{:>6}  {:<width$}  {}\n",
            u.id,
            u.username,
            if u.online { "yes" } else { "no" }
        ));
    }
    Ok(Output::new(text, &users))
}
