//! Screens, one module per page.

pub mod account;
pub mod blocked_users;
pub mod chat;
pub mod login;
pub mod not_found;

use crate::api::{me, ApiError};
use crate::protocol::User;
use leptos::prelude::*;

/// The signed-in user, for pages that need one. Blocking: the response
/// waits for it, so that a signed-out visitor gets a real 302 to `/login`
/// (set here, before the headers go out, whatever the route's streaming
/// mode; pages add a `<Redirect>` for the browser side).
pub fn signed_in_user() -> Resource<Result<User, ApiError>> {
    Resource::new_blocking(
        || (),
        |_| async {
            let user = me().await;
            #[cfg(feature = "ssr")]
            if matches!(&user, Err(e) if e.code == crate::protocol::codes::UNAUTHORIZED) {
                leptos_axum::redirect("/login");
            }
            user
        },
    )
}

/// A form's error from the server, announced to screen readers.
#[component]
pub fn FormError(error: ApiError) -> impl IntoView {
    view! {
        <p class="form-error" role="alert">
            {error.message}
        </p>
    }
}
