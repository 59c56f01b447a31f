//! The sign-in page (`/login`): sign in, create an account, or pick a demo
//! user. Both forms are plain HTML forms first, so they work without
//! JavaScript: the server answers a successful post with a redirect to `/`
//! and a failed one with a redirect back here carrying the error.

use super::FormError;
use crate::api::{demo_accounts, ApiError, Login, Register};
use crate::protocol::{User, MAX_PASSWORD_BYTES, MIN_PASSWORD_CHARS};
use leptos::html::Input;
use leptos::prelude::*;

/// The password of every demo account.
const DEMO_PASSWORD: &str = "password123";

#[component]
pub fn LoginPage() -> impl IntoView {
    let login = ServerAction::<Login>::new();
    let register = ServerAction::<Register>::new();
    let demo = Resource::new(|| (), |_| demo_accounts());

    let hydrated = RwSignal::new(false);
    Effect::new(move |_| hydrated.set(true));

    // Signed in with JavaScript: load the chat afresh.
    Effect::new(move |_| {
        let login_ok = login.value().with(|v| matches!(v, Some(Ok(_))));
        let register_ok = register.value().with(|v| matches!(v, Some(Ok(_))));
        if login_ok || register_ok {
            let _ = window().location().assign("/");
        }
    });

    let username = NodeRef::<Input>::new();
    let password = NodeRef::<Input>::new();
    let pick = move |name: String| {
        if let (Some(u), Some(p)) = (username.get_untracked(), password.get_untracked()) {
            u.set_value(&name);
            p.set_value(DEMO_PASSWORD);
            let _ = p.focus();
        }
    };

    view! {
        <main class="login-page" data-hydrated=move || hydrated.get().to_string()>
            <div class="login-card">
                <header class="login-brand">
                    <img src="/favicon.svg" alt="" width="48" height="48" />
                    <h1>"Redis chat"</h1>
                    <p class="tagline">"Real-time chat on Redis, written in Rust."</p>
                </header>

                <section class="auth-section" aria-labelledby="login-heading">
                    <h2 id="login-heading">"Sign in"</h2>
                    <ActionForm action=login attr:id="login-form" attr:class="auth-form">
                        <label class="field">
                            <span>"Username"</span>
                            <input
                                name="username"
                                type="text"
                                autocomplete="username"
                                autocapitalize="off"
                                spellcheck="false"
                                node_ref=username
                            />
                        </label>
                        <label class="field">
                            <span>"Password"</span>
                            <input
                                name="password"
                                type="password"
                                autocomplete="current-password"
                                node_ref=password
                            />
                        </label>
                        <SignInError value=login.value() />
                        <button
                            id="login-submit"
                            type="submit"
                            class="btn btn-primary"
                            disabled=move || login.pending().get()
                        >
                            "Sign in"
                        </button>
                    </ActionForm>

                    <div class="demo-users">
                        <p class="hint">"Demo password: " <code>{DEMO_PASSWORD}</code></p>
                        <Suspense fallback=|| ()>
                            {move || Suspend::new(async move {
                                demo.await
                                    .ok()
                                    .filter(|names| !names.is_empty())
                                    .map(|names| {
                                        view! {
                                            <p class="demo-label">"Try a demo user:"</p>
                                            <div class="demo-list">
                                                {names
                                                    .into_iter()
                                                    .map(|name| {
                                                        let value = name.clone();
                                                        view! {
                                                            <button
                                                                type="button"
                                                                class="demo-user"
                                                                on:click=move |_| pick(value.clone())
                                                            >
                                                                {name}
                                                            </button>
                                                        }
                                                    })
                                                    .collect_view()}
                                            </div>
                                        }
                                    })
                            })}
                        </Suspense>
                    </div>
                </section>

                <div class="divider">
                    <span>"or"</span>
                </div>

                <section class="auth-section" aria-labelledby="register-heading">
                    <h2 id="register-heading">"Create an account"</h2>
                    <ActionForm action=register attr:id="register-form" attr:class="auth-form">
                        <label class="field">
                            <span>"Username"</span>
                            <input
                                name="username"
                                type="text"
                                autocomplete="username"
                                autocapitalize="off"
                                spellcheck="false"
                            />
                        </label>
                        <label class="field">
                            <span>"Password"</span>
                            <input name="password" type="password" autocomplete="new-password" />
                        </label>
                        <PasswordRules />
                        <SignInError value=register.value() />
                        <button
                            id="register-submit"
                            type="submit"
                            class="btn btn-secondary"
                            disabled=move || register.pending().get()
                        >
                            "Create account"
                        </button>
                    </ActionForm>
                </section>
            </div>
        </main>
    }
    .into_any()
}

/// What a new password must be, under its field. No `maxlength`: it counts
/// UTF-16 units, not bytes, and would silently cut a pasted password; a
/// longer one gets the server's clear message instead.
#[component]
pub fn PasswordRules() -> impl IntoView {
    view! {
        <p class="hint">
            {format!(
                "At least {MIN_PASSWORD_CHARS} characters, at most {MAX_PASSWORD_BYTES} bytes \
                 (a letter with an accent takes 2, an emoji 4)."
            )}
        </p>
    }
}

/// The error of the last submission of a form, if it failed.
#[component]
fn SignInError(#[prop(into)] value: Signal<Option<Result<User, ApiError>>>) -> impl IntoView {
    move || {
        value.with(|v| match v {
            Some(Err(e)) => Some(view! { <FormError error=e.clone() /> }),
            _ => None,
        })
    }
}
