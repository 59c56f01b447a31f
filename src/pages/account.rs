//! The account page (`/account`): change the password, sign out
//! everywhere, unblock users. All are server-function forms, so they also work without
//! JavaScript (the server redirects back here, or to `/login`).

use super::FormError;
use crate::api::{ChangePassword, LogoutAll};
use crate::protocol::{codes, User, MIN_PASSWORD_CHARS};
use leptos::html::{Form, Input};
use leptos::prelude::*;
use leptos_router::components::Redirect;

/// The page: signed out, it sends the visitor to `/login`.
#[component]
pub fn AccountPage() -> impl IntoView {
    let me = super::signed_in_user();
    view! {
        <main class="login-page account-page">
            <Suspense fallback=|| view! { <p class="loading-text">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match me.await {
                        Ok(user) => view! { <Account user /> }.into_any(),
                        Err(e) if e.code == codes::UNAUTHORIZED => {
                            view! {
                                <Redirect path="/login" />
                                <p>"Please " <a href="/login">"sign in"</a> "."</p>
                            }
                                .into_any()
                        }
                        Err(e) => {
                            view! {
                                <div class="login-card">
                                    <p class="form-error">{e.message}</p>
                                    <a href="/">"Back to the chat"</a>
                                </div>
                            }
                                .into_any()
                        }
                    }
                })}
            </Suspense>
        </main>
    }
}

#[component]
fn Account(user: User) -> impl IntoView {
    let hydrated = RwSignal::new(false);
    Effect::new(move |_| hydrated.set(true));
    view! {
        <div class="login-card account-card" data-hydrated=move || hydrated.get().to_string()>
            <header class="account-header">
                <a id="back-to-chat" href="/" class="btn btn-ghost">
                    "‹ Chat"
                </a>
                <h1>"Account"</h1>
                <p class="tagline">
                    "Signed in as " <strong id="account-user">{user.username}</strong>
                </p>
            </header>
            <PasswordForm />
            <div class="divider">
                <span>"or"</span>
            </div>
            <SignOutEverywhere />
            <div class="divider">
                <span>"and"</span>
            </div>
            <super::blocked_users::BlockedUsers />
        </div>
    }
}

/// Current, new and repeated password. The repeat is checked in the
/// browser only (the server takes the two passwords); a mismatch blocks the
/// form through the input's validity, so nothing is sent.
#[component]
fn PasswordForm() -> impl IntoView {
    let change = ServerAction::<ChangePassword>::new();
    let form = NodeRef::<Form>::new();
    let new_password = RwSignal::new(String::new());
    let confirm = RwSignal::new(String::new());
    let confirm_input = NodeRef::<Input>::new();
    let mismatch = move || {
        let c = confirm.get();
        !c.is_empty() && new_password.with(|n| *n != c)
    };
    Effect::new(move |_| {
        let message = if mismatch() {
            "The new passwords do not match."
        } else {
            ""
        };
        if let Some(el) = confirm_input.get() {
            el.set_custom_validity(message);
        }
    });
    // Changed: empty the form, so the passwords do not linger on screen.
    Effect::new(move |_| {
        if change.value().with(|v| matches!(v, Some(Ok(())))) {
            if let Some(f) = form.get_untracked() {
                f.reset();
            }
            new_password.set(String::new());
            confirm.set(String::new());
        }
    });
    let result = move || match change.value().get() {
        Some(Ok(())) => Some(
            view! {
                <p id="password-ok" class="form-ok" role="status">
                    "Password changed. Your other sessions were signed out."
                </p>
            }
            .into_any(),
        ),
        Some(Err(e)) => Some(view! { <FormError error=e /> }.into_any()),
        None => None,
    };
    view! {
        <section class="auth-section" aria-labelledby="password-heading">
            <h2 id="password-heading">"Change password"</h2>
            <ActionForm action=change node_ref=form attr:id="password-form" attr:class="auth-form">
                <label class="field">
                    <span>"Current password"</span>
                    <input
                        name="current_password"
                        type="password"
                        autocomplete="current-password"
                        required
                    />
                </label>
                <label class="field">
                    <span>"New password"</span>
                    <input
                        name="new_password"
                        type="password"
                        autocomplete="new-password"
                        minlength=MIN_PASSWORD_CHARS.to_string()
                        required
                        on:input=move |ev| new_password.set(event_target_value(&ev))
                    />
                </label>
                <super::login::PasswordRules />
                <label class="field">
                    <span>"Repeat the new password"</span>
                    <input
                        name="confirm_password"
                        type="password"
                        autocomplete="new-password"
                        required
                        node_ref=confirm_input
                        on:input=move |ev| confirm.set(event_target_value(&ev))
                    />
                </label>
                <Show when=mismatch>
                    <p id="password-mismatch" class="form-error" role="alert">
                        "The new passwords do not match."
                    </p>
                </Show>
                {result}
                <button
                    id="password-submit"
                    type="submit"
                    class="btn btn-primary"
                    disabled=move || change.pending().get()
                >
                    "Change password"
                </button>
            </ActionForm>
        </section>
    }
}

/// Ends every session of the user, this one included, then `/login`.
#[component]
fn SignOutEverywhere() -> impl IntoView {
    let logout_all = ServerAction::<LogoutAll>::new();
    Effect::new(move |_| {
        if let Some(Ok(())) = logout_all.value().get() {
            let _ = window().location().assign("/login");
        }
    });
    let error = move || match logout_all.value().get() {
        Some(Err(e)) => Some(view! { <FormError error=e /> }),
        _ => None,
    };
    view! {
        <section class="auth-section" aria-labelledby="sessions-heading">
            <h2 id="sessions-heading">"Sessions"</h2>
            <p class="hint">"Signs you out on every device and browser, this one included."</p>
            <ActionForm action=logout_all attr:id="logout-all-form" attr:class="auth-form">
                {error}
                <button
                    id="logout-all"
                    type="submit"
                    class="btn btn-secondary"
                    disabled=move || logout_all.pending().get()
                >
                    "Sign out everywhere"
                </button>
            </ActionForm>
        </section>
    }
}
