//! The chat screen (`/`): the room list on the left, the open conversation
//! on the right, one pane at a time on a phone.
//!
//! - [`state`]: the screen's state, loading, sending and live frames.
//! - [`rooms`]: the left pane (room list).
//! - [`room_pages`]: loading the room list a page at a time.
//! - [`directory`]: the user search above the room list.
//! - [`conversation`]: the right pane (history and composer).
//! - [`block`]: blocking the other member of a private room.
//! - [`text`]: safe rendering of message text.
//! - [`notify`]: opt-in desktop notifications.

mod block;
mod conversation;
mod directory;
mod notify;
mod room_pages;
mod rooms;
mod state;
pub mod text;

use crate::api::Logout;
use crate::protocol::{codes, User};
use conversation::Conversation;
use leptos::prelude::*;
use leptos_router::components::Redirect;
use rooms::RoomsPane;
use state::{tab_title, Chat};

/// The chat page: signed out, it sends the visitor to `/login`.
#[component]
pub fn ChatPage() -> impl IntoView {
    let me = crate::pages::signed_in_user();
    view! {
        <Suspense fallback=|| {
            view! {
                <div class="chat-page page-loading" data-hydrated="false">
                    <p class="loading-text">"Loading…"</p>
                </div>
            }
        }>
            {move || Suspend::new(async move {
                match me.await {
                    Ok(user) => view! { <ChatApp user /> }.into_any(),
                    Err(e) if e.code == codes::UNAUTHORIZED => {
                        view! {
                            <Redirect path="/login" />
                            <div class="chat-page page-loading" data-hydrated="false">
                                <p class="loading-text">
                                    "Please " <a href="/login">"sign in"</a> "."
                                </p>
                            </div>
                        }
                            .into_any()
                    }
                    Err(e) => view! { <ChatError message=e.message /> }.into_any(),
                }
            })}
        </Suspense>
    }
}

/// The page when `me()` failed for another reason than being signed out.
#[component]
fn ChatError(message: String) -> impl IntoView {
    let hydrated = RwSignal::new(false);
    Effect::new(move |_| hydrated.set(true));
    view! {
        <div class="chat-page page-error" data-hydrated=move || hydrated.get().to_string()>
            <div class="error-card">
                <h1>"Cannot load the chat"</h1>
                <p class="form-error">{message}</p>
                <p>
                    <a href="/">"Try again"</a>
                </p>
            </div>
        </div>
    }
}

/// The signed-in chat screen.
#[component]
fn ChatApp(user: User) -> impl IntoView {
    let chat = Chat::new(user.id, user.username.clone());
    let hydrated = RwSignal::new(false);
    Effect::new(move |_| {
        hydrated.set(true);
        untrack(move || chat.start());
    });
    on_cleanup(move || chat.stop());
    // A hidden tab reads nothing: unread counts grow, notifications show.
    let visibility = window_event_listener_untyped("visibilitychange", move |_| {
        chat.set_visible(!document().hidden());
    });
    on_cleanup(move || visibility.remove());
    // The tab title counts unread messages. Set in the browser only: a
    // reactive <Title> would be read by the server after rendering, when
    // its signals are gone.
    Effect::new(move |_| document().set_title(&tab_title(chat.total_unread())));
    // (Cleanups also run on the server, where there is no document.)
    #[cfg(feature = "hydrate")]
    on_cleanup(|| document().set_title(&tab_title(0)));

    let logout = ServerAction::<Logout>::new();
    Effect::new(move |_| {
        if let Some(Ok(())) = logout.value().get() {
            let _ = window().location().assign("/login");
        }
    });

    let conn = move || chat.conn.get();
    view! {
        <div
            id="chat-page"
            class="chat-page"
            class:show-conversation=move || chat.show_conversation.get()
            data-hydrated=move || hydrated.get().to_string()
        >
            <header class="app-header">
                <div class="brand">
                    <img src="/favicon.svg" alt="" width="28" height="28" />
                    <span class="brand-name">"Redis chat"</span>
                </div>
                <div id="conn-status" class="conn-status" data-state=move || conn().as_str()>
                    <span class="conn-dot"></span>
                    <span class="conn-label">{move || conn().label()}</span>
                </div>
                <div class="header-user">
                    <NotifyToggle chat />
                    {avatar(&user.username)}
                    <span id="current-user" class="current-user">
                        {user.username.clone()}
                    </span>
                    <a id="account-link" class="btn btn-ghost" href="/account">
                        "Account"
                    </a>
                    <ActionForm action=logout attr:class="logout-form">
                        <button id="logout" type="submit" class="btn btn-ghost">
                            "Sign out"
                        </button>
                    </ActionForm>
                </div>
            </header>
            <div class="panes">
                <RoomsPane chat />
                <Conversation chat />
            </div>
        </div>
    }
    .into_any()
}

/// The "Enable notifications" switch in the header (only where the
/// browser has notifications; rendered after hydration, so the server's
/// markup does not depend on the browser).
#[component]
fn NotifyToggle(chat: Chat) -> impl IntoView {
    let supported = RwSignal::new(false);
    Effect::new(move |_| supported.set(notify::supported()));
    let toggle = move |_| {
        if chat.notify_on.get_untracked() {
            notify::disable(chat.notify_on);
        } else {
            notify::enable(chat.notify_on, move || {
                chat.show_notice(
                    "Notifications are blocked in this browser's site settings.".into(),
                )
            });
        }
    };
    view! {
        <Show when=move || supported.get()>
            <button
                id="notify-toggle"
                type="button"
                class="btn btn-ghost notify-toggle"
                aria-pressed=move || chat.notify_on.get().to_string()
                on:click=toggle
            >
                {move || {
                    if chat.notify_on.get() { "Notifications on" } else { "Enable notifications" }
                }}
            </button>
        </Show>
    }
}

/// Up to two initials of a name, upper case ("Mary Ann" → "MA", "joe" → "J").
pub fn initials(name: &str) -> String {
    let mut words = name
        .split(|c: char| c.is_whitespace() || c == '_' || c == '-' || c == '.')
        .filter(|w| !w.is_empty());
    let first = words.next().and_then(|w| w.chars().next());
    let second = words.next().and_then(|w| w.chars().next());
    match (first, second) {
        (Some(a), Some(b)) => a.to_uppercase().chain(b.to_uppercase()).collect(),
        (Some(a), None) => a.to_uppercase().collect(),
        _ => "?".to_string(),
    }
}

/// A hue (0-359) that is the same for the same name.
pub fn hue(name: &str) -> u32 {
    name.bytes()
        .fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)))
        % 360
}

/// A round avatar with a person's initials on a color of their own.
pub fn avatar(name: &str) -> impl IntoView + use<> {
    avatar_with(name, initials(name))
}

/// A round avatar showing `label` on `name`'s color. The label is drawn by
/// CSS (`attr(data-initials)`), so it is not part of any element's text.
pub fn avatar_with(name: &str, label: String) -> impl IntoView + use<> {
    view! {
        <span
            class="avatar"
            style=format!("--avatar-hue: {}", hue(name))
            data-initials=label
            aria-hidden="true"
        ></span>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initials_of_names() {
        assert_eq!(initials("Mary"), "M");
        assert_eq!(initials("mary ann"), "MA");
        assert_eq!(initials("joe_bloggs"), "JB");
        assert_eq!(initials("  "), "?");
        assert_eq!(initials("élodie"), "É");
    }
}
