//! `inbox NAME` and `contacts NAME`.
//!
//! The inbox is what was written *to* NAME: messages from others in NAME's
//! private rooms. General is not addressed to anyone, so it is left out
//! unless `--general` asks for it. Messages are read with
//! [`Store::history`] (the same reads as the browser's history, edits and
//! deletions applied); deleted messages are not listed. A message is seen
//! when NAME's read mark of its room (`room:{ROOM}:read`) is at or after
//! it.
//!
//! [`Store::history`]: crate::server::store::Store::history

use super::{context::Ctx, find_user, one_line, utc, CliError, InboxArgs, Output};
use crate::protocol::{
    message_id_key, private_room_members, ChatMessage, User, UserId, GENERAL_ROOM_ID,
};
use crate::server::store::keys;
use serde::Serialize;
use std::collections::HashMap;

/// One inbox line: the message, its sender's name, and whether NAME has
/// read it.
#[derive(Serialize)]
pub struct InboxMessage {
    #[serde(flatten)]
    pub message: ChatMessage,
    #[serde(rename = "fromName")]
    pub from_name: String,
    pub seen: bool,
}

#[derive(Serialize)]
struct Inbox<'a> {
    user: &'a User,
    messages: Vec<InboxMessage>,
}

/// History is read this many messages at a time.
const PAGE: usize = 100;

pub async fn inbox(ctx: &Ctx, args: &InboxArgs) -> Result<Output, CliError> {
    let user = find_user(ctx, &args.name).await?;
    let limit = usize::from(args.limit);
    let mut rooms: Vec<String> = ctx
        .store
        .room_ids(user.id)
        .await?
        .into_iter()
        .filter(|r| private_room_members(r).is_some() || (args.general && r == GENERAL_ROOM_ID))
        .collect();
    rooms.sort();

    // The newest `limit` messages from others in each room; together they
    // hold the newest `limit` overall.
    let mut messages = Vec::new();
    for room in &rooms {
        let mut picked = 0;
        let mut before = None;
        loop {
            let page = ctx.store.history(user.id, room, before, PAGE).await?;
            for m in page.messages.into_iter().rev() {
                if m.from != user.id && !m.deleted && picked < limit {
                    messages.push(m);
                    picked += 1;
                }
            }
            if picked >= limit || page.next.is_none() {
                break;
            }
            before = page.next;
        }
    }
    messages.sort_by(|a, b| {
        message_id_key(&b.id)
            .cmp(&message_id_key(&a.id))
            .then_with(|| a.room_id.cmp(&b.room_id))
    });
    messages.truncate(limit);

    let marks = read_marks(ctx, user.id, &rooms).await?;
    let mut names: HashMap<UserId, String> = HashMap::new();
    let mut items = Vec::with_capacity(messages.len());
    for message in messages {
        let from_name = match names.get(&message.from) {
            Some(n) => n.clone(),
            None => {
                let n = ctx
                    .store
                    .username_of(message.from)
                    .await?
                    .unwrap_or_else(|| format!("User #{}", message.from));
                names.insert(message.from, n.clone());
                n
            }
        };
        let seen = marks
            .get(&message.room_id)
            .is_some_and(|mark| message_id_key(&message.id) <= message_id_key(mark));
        items.push(InboxMessage {
            message,
            from_name,
            seen,
        });
    }

    let mut text = String::new();
    if items.is_empty() {
        text.push_str(&format!("no messages for {}\n", user.username));
    }
    for i in &items {
        let m = &i.message;
        let place = if m.room_id == GENERAL_ROOM_ID {
            " in General"
        } else {
            ""
        };
        text.push_str(&format!(
            "{}  {}  {}{place}: {}{}\n",
            if i.seen { "seen" } else { "NEW " },
            utc(m.date_ms),
            i.from_name,
            one_line(&m.message),
            if m.edited_ms.is_some() {
                " (edited)"
            } else {
                ""
            },
        ));
    }
    Ok(Output::new(
        text,
        Inbox {
            user: &user,
            messages: items,
        },
    ))
}

/// The user's read mark of each room (rooms without one are left out).
async fn read_marks(
    ctx: &Ctx,
    user: UserId,
    rooms: &[String],
) -> Result<HashMap<String, String>, CliError> {
    if rooms.is_empty() {
        return Ok(HashMap::new());
    }
    // One slot per room: a batch (one pipeline on a single Redis).
    let replies = ctx
        .store
        .con()
        .batch(
            rooms
                .iter()
                .map(|room| redis::Cmd::hget(keys::room_read(room), user).into())
                .collect(),
        )
        .await?;
    let marks: Vec<Option<String>> = crate::server::redis_con::from_values(replies)?;
    Ok(rooms
        .iter()
        .zip(marks)
        .filter_map(|(room, mark)| Some((room.clone(), mark?)))
        .collect())
}

/// A user NAME has a private room with.
#[derive(Serialize)]
pub struct Contact {
    #[serde(flatten)]
    pub user: crate::protocol::DirectoryUser,
    #[serde(rename = "roomId")]
    pub room_id: String,
}

pub async fn contacts(ctx: &Ctx, name: &str) -> Result<Output, CliError> {
    let user = find_user(ctx, name).await?;
    let rooms = ctx.store.room_ids(user.id).await?;
    let mut found = Vec::new();
    for room in rooms {
        let Some((a, b)) = private_room_members(&room) else {
            continue;
        };
        let other = if a == user.id { b } else { a };
        if let Some(username) = ctx.store.username_of(other).await? {
            found.push((other, username, room));
        }
    }
    found.sort_by_key(|a| a.1.to_lowercase());
    let ids: Vec<UserId> = found.iter().map(|f| f.0).collect();
    let online = ctx.presence.online_flags(&ids).await?;
    let contacts: Vec<Contact> = found
        .into_iter()
        .zip(online)
        .map(|((id, username, room_id), online)| Contact {
            user: crate::protocol::DirectoryUser {
                id,
                username,
                online,
            },
            room_id,
        })
        .collect();
    let width = contacts
        .iter()
        .map(|c| c.user.username.len())
        .max()
        .unwrap_or(4);
    let mut text = String::new();
    if contacts.is_empty() {
        text.push_str(&format!("{} has no private rooms\n", user.username));
    } else {
        text.push_str(&format!("{:>6}  {:<width$}  ONLINE  ROOM\n", "ID", "NAME"));
    }
    for c in &contacts {
        text.push_str(&format!(
            "{:>6}  {:<width$}  {:<6}  {}\n",
            c.user.id,
            c.user.username,
            if c.user.online { "yes" } else { "no" },
            c.room_id
        ));
    }
    Ok(Output::new(text, &contacts))
}
