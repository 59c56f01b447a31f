//! `send --as NAME (--to NAME | --room ID) TEXT`.
//!
//! The message goes through [`Store::send_message`], the server's own send:
//! one Lua script stores it and publishes it on `MESSAGES`, so every
//! running instance delivers it live to the room's members. `--to` opens
//! the private room first as the server does (announced with `show.room`
//! to each member new to it). Operator sends are not rate-limited.
//!
//! [`Store::send_message`]: crate::server::store::Store::send_message

use super::{context::Ctx, find_user, CliError, Output, SendArgs};
use crate::protocol::{private_room_members, ChatMessage, GENERAL_ROOM_ID};
use crate::server::store::{clean_message, keys, SendOutcome};

pub async fn run(ctx: &Ctx, args: &SendArgs) -> Result<Output, CliError> {
    let from = find_user(ctx, &args.from).await?;
    let room = match (&args.target.to, &args.target.room) {
        (Some(to), _) => {
            let to = find_user(ctx, to).await?;
            if to.id == from.id {
                return Err(CliError::invalid(format!(
                    "{} cannot send a private message to themselves",
                    from.username
                )));
            }
            crate::server::open_private_room(&ctx.store, &ctx.presence, &from, to.id)
                .await?
                .id
        }
        (None, Some(room)) => {
            let room = room.trim();
            if !ctx.store.is_member(from.id, room).await? {
                return Err(if room_exists(ctx, room).await? {
                    CliError::invalid(format!("{} is not a member of room {room}", from.username))
                } else {
                    CliError::not_found(format!("no such room: {room:?}"))
                });
            }
            room.to_string()
        }
        (None, None) => unreachable!("clap requires --to or --room"),
    };
    let text = args.text.join(" ");
    let id = match ctx.store.send_message(from.id, &room, &text, None).await? {
        SendOutcome::Stored(id) => id,
        SendOutcome::Duplicate(m) => m.id,
    };
    let date_ms = crate::protocol::message_id_key(&id).0 as i64;
    let message = ChatMessage {
        id: id.clone(),
        room_id: room,
        from: from.id,
        date: date_ms / 1000,
        date_ms,
        message: clean_message(&text),
        nonce: None,
        edited_ms: None,
        deleted: false,
    };
    Ok(Output::new(id, &message))
}

/// General; a private room either member has; a room with a name or
/// messages.
async fn room_exists(ctx: &Ctx, room: &str) -> Result<bool, CliError> {
    if room == GENERAL_ROOM_ID {
        return Ok(true);
    }
    if room.is_empty() || room.len() > 64 {
        return Ok(false);
    }
    // Each pair of keys is in two slots on a cluster: batches.
    let con = ctx.store.con();
    let checks = match private_room_members(room) {
        Some((a, b)) => vec![
            redis::Cmd::sismember(keys::user_rooms(a), room).into(),
            redis::Cmd::sismember(keys::user_rooms(b), room).into(),
        ],
        None => vec![
            redis::Cmd::exists(keys::room_name(room)).into(),
            redis::Cmd::exists(keys::room_stream(room)).into(),
        ],
    };
    let (x, y): (bool, bool) = crate::server::redis_con::from_values(con.batch(checks).await?)?;
    Ok(x || y)
}
