//! "Blocked users" on the account page: the users the signed-in user
//! blocked, each with an Unblock button. Rendered on the server and
//! unblocked with a server-function form, so it works without JavaScript
//! too (the server redirects back here).

use super::FormError;
use crate::api::{blocked, Unblock};
use crate::protocol::User;
use leptos::prelude::*;

#[component]
pub fn BlockedUsers() -> impl IntoView {
    let unblock = ServerAction::<Unblock>::new();
    // Read again after every unblock.
    let list = Resource::new(move || unblock.version().get(), |_| blocked());
    let error = move || match unblock.value().get() {
        Some(Err(e)) => Some(view! { <FormError error=e /> }),
        _ => None,
    };
    view! {
        <section class="auth-section" aria-labelledby="blocked-heading">
            <h2 id="blocked-heading">"Blocked users"</h2>
            <p class="hint">
                "A blocked user cannot open a conversation with you or send you messages; you cannot send to them either."
            </p>
            {error}
            <Suspense fallback=|| view! { <p class="hint">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match list.await {
                        Ok(users) if users.is_empty() => {
                            view! { <p id="blocked-empty" class="hint">"You have not blocked anyone."</p> }
                                .into_any()
                        }
                        Ok(users) => {
                            view! {
                                <ul id="blocked-list" class="blocked-list">
                                    {users
                                        .into_iter()
                                        .map(|user| view! { <BlockedRow user unblock /> })
                                        .collect_view()}
                                </ul>
                            }
                                .into_any()
                        }
                        Err(e) => view! { <FormError error=e /> }.into_any(),
                    }
                })}
            </Suspense>
        </section>
    }
}

/// One blocked user: the name (as text) and its Unblock form.
#[component]
fn BlockedRow(user: User, unblock: ServerAction<Unblock>) -> impl IntoView {
    let label = format!("Unblock {}", user.username);
    view! {
        <li class="blocked-user" data-user-id=user.id.to_string()>
            <span class="blocked-name">{user.username}</span>
            <ActionForm action=unblock attr:class="unblock-form">
                <input type="hidden" name="user_id" value=user.id.to_string() />
                <button
                    type="submit"
                    class="btn btn-secondary unblock"
                    aria-label=label
                    disabled=move || unblock.pending().get()
                >
                    "Unblock"
                </button>
            </ActionForm>
        </li>
    }
}
