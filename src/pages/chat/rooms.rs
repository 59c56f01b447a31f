//! The left pane: user search and the room list, newest activity first.

use super::directory::Directory;
use super::state::{hhmm, message_ms, unread_label, Chat, RoomEntry};
use super::{avatar, avatar_with};
use crate::protocol::GENERAL_ROOM_ID;
use leptos::prelude::*;

/// Longest room preview, in characters.
const PREVIEW_CHARS: usize = 60;

#[component]
pub fn RoomsPane(chat: Chat) -> impl IntoView {
    view! {
        <aside id="rooms" class="rooms-pane" aria-label="Rooms">
            <Directory chat />
            <ul class="room-list">
                // Keyed by what a row shows, so a changed room is redrawn.
                <For
                    each=move || chat.rooms.get()
                    key=|e| {
                        (
                            e.summary.id.clone(),
                            e.summary.name.clone(),
                            e
                                .summary
                                .last_message
                                .as_ref()
                                .map(|m| (m.id.clone(), m.edited_ms, m.deleted)),
                            e.summary.online,
                            e.unread,
                        )
                    }
                    let:entry
                >
                    <RoomRow chat entry />
                </For>
            </ul>
            {move || {
                chat.rooms_paging
                    .more
                    .get()
                    .then(|| {
                        view! {
                            <button
                                type="button"
                                class="more-rooms"
                                disabled=move || chat.rooms_paging.loading.get()
                                on:click=move |_| chat.load_more_rooms()
                            >
                                {move || {
                                    if chat.rooms_paging.loading.get() {
                                        "Loading rooms…"
                                    } else {
                                        "Show more rooms"
                                    }
                                }}
                            </button>
                        }
                    })
            }}
            {move || {
                if let Some(err) = chat.rooms_error.get() {
                    view! { <p class="pane-note form-error">{err}</p> }.into_any()
                } else if !chat.rooms_loaded.get() {
                    view! { <p class="pane-note">"Loading rooms…"</p> }.into_any()
                } else {
                    ().into_any()
                }
            }}
        </aside>
    }
    .into_any()
}

#[component]
fn RoomRow(chat: Chat, entry: RoomEntry) -> impl IntoView {
    let RoomEntry { summary, unread } = entry;
    let id = summary.id.clone();
    let is_active = {
        let id = id.clone();
        move || chat.active.with(|a| *a == id)
    };
    let open = {
        let id = id.clone();
        move || chat.open_room(id.clone())
    };
    let open_on_key = open.clone();
    let general = summary.id == GENERAL_ROOM_ID;
    let private = summary.other_user_id.is_some();
    let online = summary.online == Some(true);
    let deleted = summary.last_message.as_ref().is_some_and(|m| m.deleted);
    let preview = summary
        .last_message
        .as_ref()
        .map(|m| {
            if m.deleted {
                "Message deleted".to_string()
            } else {
                preview(&m.message)
            }
        })
        .unwrap_or_default();
    let time = summary
        .last_message
        .as_ref()
        .map(|m| hhmm(message_ms(m)))
        .unwrap_or_default();
    let icon = if general {
        avatar_with(&summary.name, "#".to_string()).into_any()
    } else {
        avatar(&summary.name).into_any()
    };
    let has_unread = unread > 0;
    let unread_title = format!("{} unread", unread_label(unread));
    view! {
        <li
            class="room"
            class:active=is_active
            class:unread=has_unread
            data-room-id=id
            data-unread=unread.to_string()
            tabindex="0"
            role="button"
            on:click=move |_| open()
            on:keydown=move |ev| {
                if ev.key() == "Enter" || ev.key() == " " {
                    ev.prevent_default();
                    open_on_key();
                }
            }
        >
            <span class="room-icon">
                {icon}
                // Private rooms: a dot on the avatar, as messengers do.
                {(private && has_unread)
                    .then(|| view! { <span class="unread-dot" title=unread_title.clone()></span> })}
            </span>
            <div class="room-body">
                <div class="room-top">
                    <span class="room-name">{summary.name.clone()}</span>
                    {private
                        .then(|| {
                            view! {
                                <span
                                    class="online-dot"
                                    class:online=online
                                    title=if online { "Online" } else { "Offline" }
                                ></span>
                            }
                        })}
                    <span class="room-time">{time}</span>
                </div>
                <div class="room-bottom">
                    <div class="room-preview" class:deleted=deleted>
                        {preview}
                    </div>
                    {has_unread
                        .then(|| {
                            view! {
                                <span class="unread-badge" title=unread_title>
                                    {unread_label(unread)}
                                </span>
                            }
                        })}
                </div>
            </div>
        </li>
    }
    .into_any()
}

/// The first line-ish of a message, shortened to [`PREVIEW_CHARS`].
fn preview(text: &str) -> String {
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > PREVIEW_CHARS {
        let cut: String = flat.chars().take(PREVIEW_CHARS - 1).collect();
        format!("{}…", cut.trim_end())
    } else {
        flat
    }
}

#[cfg(test)]
mod tests {
    use super::preview;

    #[test]
    fn previews_are_short_and_flat() {
        assert_eq!(preview("hi\nthere"), "hi there");
        let long = "é".repeat(100);
        let p = preview(&long);
        assert_eq!(p.chars().count(), super::PREVIEW_CHARS);
        assert!(p.ends_with('…'));
    }
}
