use leptos::prelude::*;

/// The 404 page. Sets the HTTP status during server rendering.
#[component]
pub fn NotFound() -> impl IntoView {
    #[cfg(feature = "ssr")]
    {
        if let Some(resp) = use_context::<leptos_axum::ResponseOptions>() {
            resp.set_status(http::StatusCode::NOT_FOUND);
        }
    }
    view! {
        <main class="not-found">
            <h1>"Page not found"</h1>
            <p>
                <a href="/">"Back to the chat"</a>
            </p>
        </main>
    }
}
