//! The user search ("Find people…") above the room list.

use super::avatar;
use super::state::Chat;
use crate::api::users;
use crate::protocol::DirectoryUser;
use leptos::prelude::*;
use leptos::task::spawn_local;
use std::time::Duration;

/// Wait after the last keystroke before asking the server.
const DEBOUNCE: Duration = Duration::from_millis(200);

#[component]
pub fn Directory(chat: Chat) -> impl IntoView {
    let query = RwSignal::new(String::new());
    let results = RwSignal::new(Vec::<DirectoryUser>::new());
    let searching = RwSignal::new(false);
    let error = RwSignal::new(None::<String>);
    // Bumped on every keystroke: only the latest search may show results.
    let generation = StoredValue::new(0u64);

    let clear = move || {
        generation.update_value(|g| *g += 1);
        query.set(String::new());
        results.set(Vec::new());
        searching.set(false);
        error.set(None);
    };

    let on_input = move |ev| {
        let q = event_target_value(&ev);
        query.set(q.clone());
        generation.update_value(|g| *g += 1);
        let gen = generation.get_value();
        let q = q.trim().to_string();
        if q.is_empty() {
            results.set(Vec::new());
            searching.set(false);
            error.set(None);
            return;
        }
        searching.set(true);
        set_timeout(
            move || {
                if generation.get_value() != gen {
                    return;
                }
                spawn_local(async move {
                    let answer = users(Some(q)).await;
                    if generation.get_value() != gen {
                        return;
                    }
                    searching.set(false);
                    match answer {
                        Ok(list) => {
                            chat.names.update(|n| {
                                for u in &list {
                                    n.insert(u.id, u.username.clone());
                                }
                            });
                            error.set(None);
                            results.set(list);
                        }
                        Err(e) => {
                            results.set(Vec::new());
                            error.set(Some(e.message));
                        }
                    }
                });
            },
            DEBOUNCE,
        );
    };

    let has_query = move || query.with(|q| !q.trim().is_empty());

    view! {
        <div class="directory">
            <input
                id="user-search"
                class="search-input"
                type="search"
                placeholder="Find people…"
                autocomplete="off"
                spellcheck="false"
                aria-label="Find people"
                prop:value=move || query.get()
                on:input=on_input
                on:keydown=move |ev| {
                    if ev.key() == "Escape" {
                        clear();
                    }
                }
            />
            <Show when=has_query>
                <div class="search-results" role="listbox">
                    {move || {
                        results
                            .get()
                            .into_iter()
                            .map(|u| {
                                let name = u.username.clone();
                                let online = u.online;
                                view! {
                                    <button
                                        type="button"
                                        class="search-result"
                                        data-user-id=u.id.to_string()
                                        on:click=move |_| {
                                            clear();
                                            chat.open_private(u.clone());
                                        }
                                    >
                                        {avatar(&name)}
                                        <span class="search-name">{name.clone()}</span>
                                        <span class="online-dot" class:online=online></span>
                                    </button>
                                }
                            })
                            .collect_view()
                    }}
                    {move || {
                        if let Some(e) = error.get() {
                            view! { <p class="search-note form-error">{e}</p> }.into_any()
                        } else if searching.get() && results.with(Vec::is_empty) {
                            view! { <p class="search-note">"Searching…"</p> }.into_any()
                        } else if !searching.get() && results.with(Vec::is_empty) {
                            view! { <p class="search-note">"No one found."</p> }.into_any()
                        } else {
                            ().into_any()
                        }
                    }}
                </div>
            </Show>
        </div>
    }
    .into_any()
}
