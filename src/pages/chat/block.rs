//! "Block" in the header of a private room. Once blocked, the header says
//! so and where to undo it (the account page): the server refuses the
//! room's messages both ways until then.

use super::state::Chat;
use crate::api::{block, blocked};
use crate::protocol::UserId;
use leptos::prelude::*;
use leptos::task::spawn_local;

#[component]
pub fn BlockControl(chat: Chat) -> impl IntoView {
    // The ids the user blocked: read once in the browser, then kept here.
    let blocked_ids = RwSignal::new(Vec::<UserId>::new());
    Effect::new(move |_| {
        spawn_local(async move {
            if let Ok(users) = blocked().await {
                blocked_ids.set(users.into_iter().map(|u| u.id).collect());
            }
        });
    });
    let other = move || {
        chat.active_room()
            .and_then(|r| r.other_user_id.map(|id| (id, r.name)))
    };
    let is_blocked = move || other().is_some_and(|(id, _)| blocked_ids.with(|b| b.contains(&id)));
    let busy = RwSignal::new(false);
    let on_block = move |_| {
        let Some((id, name)) = other() else {
            return;
        };
        let question = format!(
            "Block {name}? Neither of you can send messages in this conversation until you unblock them on your account page."
        );
        if !window().confirm_with_message(&question).unwrap_or(false) {
            return;
        }
        busy.set(true);
        spawn_local(async move {
            match block(id.to_string()).await {
                Ok(()) => blocked_ids.update(|b| b.push(id)),
                Err(e) => chat.show_notice(e.message),
            }
            busy.set(false);
        });
    };
    view! {
        <Show when=move || other().is_some()>
            <Show
                when=is_blocked
                fallback=move || {
                    view! {
                        <button
                            id="block-user"
                            type="button"
                            class="btn btn-ghost block-user"
                            disabled=move || busy.get()
                            on:click=on_block
                        >
                            "Block"
                        </button>
                    }
                }
            >
                <p id="blocked-note" class="blocked-note" role="status">
                    "You blocked this user; messages are off both ways. "
                    <a href="/account">"Unblock on your account page"</a>
                </p>
            </Show>
        </Show>
    }
}
