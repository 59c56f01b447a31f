//! The right pane: the open room's history and the composer.

use super::state::{hhmm, Chat, Delivery, UiMessage};
use super::text::render_text;
use super::{avatar, avatar_with};
use crate::protocol::{DEFAULT_MAX_MESSAGE_CHARS, GENERAL_ROOM_ID};
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
            chat.mark_active_seen();
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
                            chat.mark_active_seen();
                        }
                    >
                        "New messages ↓"
                    </button>
                </Show>
            </div>
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
        time_ms,
        delivery,
        ..
    } = message;
    let own = from == chat.me_id;
    let pending = {
        let d = delivery.clone();
        move || d.with(|d| *d == Delivery::Pending)
    };
    let failed = {
        let d = delivery.clone();
        move || d.with(|d| matches!(d, Delivery::Failed(_)))
    };
    let data_id = move || id.with(|id| (!id.is_empty()).then(|| id.clone()));
    let status = move || match delivery.get() {
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
    };
    view! {
        <div
            class="message"
            class:own=own
            class:pending=pending
            class:failed=failed
            data-id=data_id
        >
            {(!own).then_some(move || avatar(&chat.name_of(from)))}
            <div class="bubble">
                <div class="message-meta">
                    <span class="message-from">{move || chat.name_of(from)}</span>
                    <span class="message-time">{move || hhmm(time_ms.get())}</span>
                </div>
                <div class="message-text">{render_text(&text)}</div>
                {status}
            </div>
        </div>
    }
    .into_any()
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
                    on:input=move |ev| draft.set(event_target_value(&ev))
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
