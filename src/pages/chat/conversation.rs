//! The right pane: the open room's history and the composer.

use super::state::{hhmm, typing_label, Chat, Delivery, UiMessage};
use super::text::render_text;
use super::{avatar, avatar_with};
use crate::protocol::{DEFAULT_MAX_MESSAGE_CHARS, GENERAL_ROOM_ID};
use leptos::html::Textarea;
use leptos::prelude::*;

/// Scrolled this close (px) to the top, the page before is loaded.
const LOAD_OLDER_AT: i32 = 80;

#[component]
pub fn Conversation(chat: Chat) -> impl IntoView {
    let title = move || {
        chat.active_room().map(|r| r.name).unwrap_or_else(|| {
            if chat.active.with(|a| a == GENERAL_ROOM_ID) {
                "General".to_string()
            } else {
                String::new()
            }
        })
    };
    let subtitle = move || match chat.active_room() {
        Some(r) if r.other_user_id.is_some() => {
            if r.online == Some(true) {
                "Online"
            } else {
                "Offline"
            }
        }
        _ => "Everyone is here",
    };
    let header_avatar = move || {
        let name = title();
        if chat.active.with(|a| a == GENERAL_ROOM_ID) {
            avatar_with(&name, "#".to_string()).into_any()
        } else {
            avatar(&name).into_any()
        }
    };

    let on_scroll = move |_| {
        let Some(el) = chat.scroller.get_untracked() else {
            return;
        };
        if chat.new_pill.get_untracked() && chat.at_bottom() {
            chat.new_pill.set(false);
            chat.send_read();
        }
        if el.scroll_top() < LOAD_OLDER_AT {
            chat.load_older();
        }
    };

    view! {
        <section id="conversation" class="conversation" aria-label="Conversation">
            <header class="conv-header">
                <button
                    id="back-to-rooms"
                    type="button"
                    class="back-button"
                    aria-label="Back to rooms"
                    on:click=move |_| chat.show_conversation.set(false)
                >
                    "‹"
                </button>
                {header_avatar}
                <div class="conv-title">
                    <h2 id="room-title">{title}</h2>
                    <span class="conv-subtitle">{subtitle}</span>
                </div>
                <super::block::BlockControl chat />
            </header>
            <div class="messages-wrap">
                <div id="messages" class="messages" node_ref=chat.scroller on:scroll=on_scroll>
                    <Show when=move || chat.loading_older.get()>
                        <div class="messages-older">"Loading earlier messages…"</div>
                    </Show>
                    {move || {
                        if chat.loading.get() {
                            view! { <div class="messages-state messages-loading">"Loading messages…"</div> }
                                .into_any()
                        } else if let Some(err) = chat.history_error.get() {
                            view! { <div class="messages-state form-error">{err}</div> }.into_any()
                        } else if chat.messages.with(Vec::is_empty) {
                            view! {
                                <div class="messages-state messages-empty">
                                    "No messages yet — say hi!"
                                </div>
                            }
                                .into_any()
                        } else {
                            ().into_any()
                        }
                    }}
                    <For each=move || chat.messages.get() key=|m| m.key.clone() let:message>
                        <MessageRow chat message />
                    </For>
                </div>
                <Show when=move || chat.new_pill.get()>
                    <button
                        id="new-messages-pill"
                        type="button"
                        class="new-messages-pill"
                        on:click=move |_| {
                            chat.scroll_to_bottom();
                            chat.send_read();
                        }
                    >
                        "New messages ↓"
                    </button>
                </Show>
            </div>
            <TypingLine chat />
            <Composer chat />
        </section>
    }
    .into_any()
}

#[component]
fn MessageRow(chat: Chat, message: UiMessage) -> impl IntoView {
    let UiMessage {
        key,
        id,
        from,
        text,
        edited,
        deleted,
        time_ms,
        delivery,
        ..
    } = message;
    let own = from == chat.me_id;
    let editing = RwSignal::new(false);
    let pending = {
        let d = delivery.clone();
        move || d.with(|d| *d == Delivery::Pending)
    };
    let failed = {
        let d = delivery.clone();
        move || d.with(|d| matches!(d, Delivery::Failed(_)))
    };
    let data_id = {
        let id = id.clone();
        move || id.with(|id| (!id.is_empty()).then(|| id.clone()))
    };
    let divider = {
        let key = key.clone();
        move || {
            chat.divider_key
                .with(|k| k.as_deref() == Some(key.as_str()))
        }
    };
    let seen = {
        let key = key.clone();
        move || chat.seen_key.with(|k| k.as_deref() == Some(key.as_str()))
    };
    let status = {
        let key = key.clone();
        move || match delivery.get() {
            Delivery::Failed(reason) => {
                let key = key.clone();
                view! {
                    <div class="message-status">
                        <span class="message-error">{reason}</span>
                        <button type="button" class="retry" on:click=move |_| chat.retry(&key)>
                            "Retry"
                        </button>
                    </div>
                }
                .into_any()
            }
            Delivery::Pending => view! { <div class="message-status">"Sending…"</div> }.into_any(),
            Delivery::Sent => ().into_any(),
        }
    };
    let is_deleted = {
        let deleted = deleted.clone();
        move || deleted.get()
    };
    // Actions only on our own stored messages that still exist.
    let can_act = {
        let id = id.clone();
        let deleted = deleted.clone();
        move || own && !deleted.get() && !editing.get() && id.with(|id| !id.is_empty())
    };
    let body = {
        let text = text.clone();
        let id = id.clone();
        move || {
            if deleted.get() {
                view! { <div class="message-text message-deleted">"message deleted"</div> }
                    .into_any()
            } else if editing.get() {
                let id = id.get_untracked();
                view! { <EditBox chat id text=text.get_untracked() editing /> }.into_any()
            } else {
                view! { <div class="message-text">{text.with(|t| render_text(t))}</div> }.into_any()
            }
        }
    };
    // A stored id never changes again: copyable for the action buttons.
    let stored_id = StoredValue::new(id.get_untracked());
    Effect::new(move |_| stored_id.set_value(id.get()));
    view! {
        <Show when=divider>
            <div class="unread-divider" role="separator">
                <span>"New messages"</span>
            </div>
        </Show>
        <div
            class="message"
            class:own=own
            class:pending=pending
            class:failed=failed
            class:deleted=is_deleted
            data-id=data_id
        >
            {(!own).then_some(move || avatar(&chat.name_of(from)))}
            <div class="bubble">
                <div class="message-meta">
                    <span class="message-from">{move || chat.name_of(from)}</span>
                    <span class="message-time">{move || hhmm(time_ms.get())}</span>
                    <Show when=move || edited.get()>
                        <span class="message-edited">"(edited)"</span>
                    </Show>
                </div>
                {body}
                {status}
            </div>
            <Show when=can_act.clone()>
                <div class="message-actions">
                    <button
                        type="button"
                        class="message-action edit"
                        on:click=move |_| editing.set(true)
                    >
                        "Edit"
                    </button>
                    <button
                        type="button"
                        class="message-action delete"
                        on:click=move |_| chat.delete(stored_id.get_value())
                    >
                        "Delete"
                    </button>
                </div>
            </Show>
        </div>
        <Show when=seen>
            <div class="message-seen">"Seen"</div>
        </Show>
    }
    .into_any()
}

/// Inline editing of an own message: Enter saves, Escape cancels, an
/// unchanged or empty text changes nothing.
#[component]
fn EditBox(chat: Chat, id: String, text: String, editing: RwSignal<bool>) -> impl IntoView {
    let input = NodeRef::<Textarea>::new();
    let draft = RwSignal::new(text.clone());
    // Focus the box once it is in the page, caret at the end.
    Effect::new(move |_| {
        if let Some(el) = input.get() {
            let _ = el.focus();
            let len = el.value().len() as u32;
            let _ = el.set_selection_range(len, len);
        }
    });
    let save = move || {
        let new = draft.get_untracked();
        if !new.trim().is_empty() && new.trim() != text.trim() {
            chat.edit(id.clone(), &new);
        }
        editing.set(false);
    };
    let save_on_click = save.clone();
    view! {
        <div class="edit-box">
            <textarea
                class="edit-input"
                aria-label="Edit message"
                rows="1"
                maxlength=DEFAULT_MAX_MESSAGE_CHARS.to_string()
                node_ref=input
                prop:value=move || draft.get()
                on:input=move |ev| draft.set(event_target_value(&ev))
                on:keydown=move |ev| {
                    if ev.key() == "Enter" && !ev.shift_key() && !ev.is_composing() {
                        ev.prevent_default();
                        save();
                    } else if ev.key() == "Escape" {
                        ev.prevent_default();
                        editing.set(false);
                    }
                }
            ></textarea>
            <div class="edit-buttons">
                <button type="button" class="edit-save" on:click=move |_| save_on_click()>
                    "Save"
                </button>
                <button type="button" class="edit-cancel" on:click=move |_| editing.set(false)>
                    "Cancel"
                </button>
            </div>
        </div>
    }
}

/// "Mary is typing…" under the open conversation.
#[component]
fn TypingLine(chat: Chat) -> impl IntoView {
    let label = move || typing_label(&chat.typing_names());
    view! {
        <div id="typing" class="typing-line" aria-live="polite">
            {label}
        </div>
    }
}

#[component]
fn Composer(chat: Chat) -> impl IntoView {
    let draft = RwSignal::new(String::new());
    let send = move || {
        let text = draft.get_untracked();
        if text.trim().is_empty() {
            return;
        }
        chat.send(&text);
        draft.set(String::new());
    };
    view! {
        <div class="composer-wrap">
            {move || chat.notice.get().map(|n| view! { <p class="composer-notice form-error">{n}</p> })}
            <form
                class="composer"
                on:submit=move |ev| {
                    ev.prevent_default();
                    send();
                }
            >
                <textarea
                    id="composer"
                    rows="1"
                    placeholder="Write a message…"
                    aria-label="Message"
                    maxlength=DEFAULT_MAX_MESSAGE_CHARS.to_string()
                    prop:value=move || draft.get()
                    on:input=move |ev| {
                        let text = event_target_value(&ev);
                        chat.typing_input(&text);
                        draft.set(text);
                    }
                    on:keydown=move |ev| {
                        if ev.key() == "Enter" && !ev.shift_key() && !ev.is_composing() {
                            ev.prevent_default();
                            send();
                        }
                    }
                ></textarea>
                <button id="send" type="submit" class="btn btn-primary">
                    "Send"
                </button>
            </form>
        </div>
    }
    .into_any()
}
