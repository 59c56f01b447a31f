//! Desktop notifications (the browser's Notification API), opt-in.
//!
//! The choice is remembered in `localStorage`; a notification is only shown
//! while the browser also grants the permission. The message text goes into
//! the notification's `body`, which browsers show as plain text.
//! Outside the browser (server rendering) everything here is "off".

use leptos::prelude::*;

/// Longest notification body, in characters.
#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
const BODY_CHARS: usize = 200;

#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
const STORAGE_KEY: &str = "redis-chat:notifications";

/// Whether this browser has the Notification API at all.
pub fn supported() -> bool {
    #[cfg(feature = "hydrate")]
    {
        web_sys::window().is_some_and(|w| {
            js_sys::Reflect::has(&w, &wasm_bindgen::JsValue::from_str("Notification"))
                .unwrap_or(false)
        })
    }
    #[cfg(not(feature = "hydrate"))]
    {
        false
    }
}

/// Whether the browser lets this site show notifications.
#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
fn granted() -> bool {
    #[cfg(feature = "hydrate")]
    {
        supported()
            && web_sys::Notification::permission() == web_sys::NotificationPermission::Granted
    }
    #[cfg(not(feature = "hydrate"))]
    {
        false
    }
}

/// The user switched notifications on (and the browser still allows them).
pub fn enabled() -> bool {
    #[cfg(feature = "hydrate")]
    {
        let stored = web_sys::window()
            .and_then(|w| w.local_storage().ok().flatten())
            .and_then(|s| s.get_item(STORAGE_KEY).ok().flatten());
        stored.as_deref() == Some("on") && granted()
    }
    #[cfg(not(feature = "hydrate"))]
    {
        false
    }
}

fn remember(on: bool) {
    #[cfg(feature = "hydrate")]
    {
        if let Some(storage) = web_sys::window().and_then(|w| w.local_storage().ok().flatten()) {
            let _ = storage.set_item(STORAGE_KEY, if on { "on" } else { "off" });
        }
    }
    #[cfg(not(feature = "hydrate"))]
    {
        let _ = on;
    }
}

/// Switches notifications off (remembered).
pub fn disable(state: RwSignal<bool>) {
    remember(false);
    state.set(false);
}

/// Asks the browser for the permission (a prompt, the first time) and
/// switches notifications on when it is granted. `on_denied` runs when it
/// is not.
pub fn enable(state: RwSignal<bool>, on_denied: impl Fn() + 'static) {
    #[cfg(feature = "hydrate")]
    {
        use wasm_bindgen::{closure::Closure, JsValue};
        if !supported() {
            on_denied();
            return;
        }
        if granted() {
            remember(true);
            state.set(true);
            return;
        }
        let Ok(promise) = web_sys::Notification::request_permission() else {
            on_denied();
            return;
        };
        let done = Closure::once(move |_: JsValue| {
            let ok = granted();
            remember(ok);
            state.set(ok);
            if !ok {
                on_denied();
            }
        });
        let _ = promise.then(&done);
        // The promise settles once; the closure lives until then.
        done.forget();
    }
    #[cfg(not(feature = "hydrate"))]
    {
        let _ = state;
        on_denied();
    }
}

/// Shows a notification; `tag` (the room) replaces the room's previous one.
pub fn show(title: &str, body: &str, tag: &str) {
    #[cfg(feature = "hydrate")]
    {
        if !granted() {
            return;
        }
        let mut text: String = body.chars().take(BODY_CHARS).collect();
        if body.chars().count() > BODY_CHARS {
            text.push('…');
        }
        let options = web_sys::NotificationOptions::new();
        options.set_body(&text);
        options.set_tag(tag);
        let _ = web_sys::Notification::new_with_options(title, &options);
    }
    #[cfg(not(feature = "hydrate"))]
    {
        let _ = (title, body, tag);
    }
}
