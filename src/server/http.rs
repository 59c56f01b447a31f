//! The axum router and the middleware every request passes through.

use super::{ws, AppState};
use crate::api::ApiError;
use crate::app::{shell, App};
use crate::protocol::codes;
use axum::{
    body::Body,
    extract::{Request, State},
    http::{header, HeaderMap, HeaderValue, Method, StatusCode},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::get,
    Json, Router,
};
use leptos::prelude::provide_context;
use leptos_axum::{generate_route_list, LeptosRoutes};
use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

/// Largest request body accepted by `/api` (server function arguments).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

pub fn router(state: AppState) -> Router {
    let routes = generate_route_list(App);
    let context_state = state.clone();
    let options = state.leptos_options.clone();
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(super::metrics_endpoint::with_token))
        .route("/ws", get(ws::handler))
        // Every server function gets its own route here, with its method
        // (`api_guard` answers any other path and method under `/api`).
        .leptos_routes_with_context(
            &state,
            routes,
            move || provide_context(context_state.clone()),
            move || shell(options.clone()),
        )
        .fallback(site_or_app)
        .layer(middleware::from_fn_with_state(state.clone(), api_guard))
        // The hot read path, answered before the server-function layer.
        .layer(middleware::from_fn_with_state(
            state.clone(),
            super::history::fast_path,
        ))
        .layer(middleware::from_fn(security_headers))
        .layer(middleware::from_fn(log_request))
        // A bug in one handler answers 500 and is logged; the process and
        // every other connection go on.
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            panic_response,
        ))
        .with_state(state)
}

/// Anything no route took: a file of the embedded front end, else a file
/// under `site_root` or the app's own 404 page.
async fn site_or_app(State(state): State<AppState>, req: Request) -> Response {
    if let Some(site) = &state.site {
        if let Some(answer) = site.respond(req.method(), req.uri().path(), req.headers()) {
            return answer;
        }
    }
    let uri = req.uri().clone();
    leptos_axum::file_and_error_handler::<AppState, _>(shell)(uri, State(state), req).await
}

fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let what = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("unknown");
    tracing::error!(panic = what, "a request handler panicked");
    json_error(StatusCode::INTERNAL_SERVER_ERROR, ApiError::internal())
}

/// `GET /healthz`: 200 when Redis answers (on a cluster: every primary
/// that serves slots), and says whether the pub/sub subscription is up;
/// 503 otherwise.
/// `GET /healthz`, liveness: 200 while the process serves HTTP, whatever
/// Redis does (restarting the process would not bring Redis back). The
/// body says how the subscription stands, without asking Redis.
async fn healthz(State(state): State<AppState>) -> Response {
    let body = serde_json::json!({
        "status": "ok",
        "pubsub": state.hub.is_subscribed(),
        "sockets": state.hub.local_sockets(),
        "shardRooms": state.hub.shard_rooms(),
    });
    (StatusCode::OK, Json(body)).into_response()
}

/// `GET /readyz`, readiness: 200 only when Redis answers (every primary of
/// a cluster, within 2 s), the pub/sub subscription is up and the server
/// is not shutting down; else 503, with the reason in the body. A load
/// balancer sends new clients only to ready instances.
async fn readyz(State(state): State<AppState>) -> Response {
    let con = state.store.con();
    let redis_up = matches!(
        tokio::time::timeout(Duration::from_secs(2), con.ping_all()).await,
        Ok(Ok(()))
    );
    let subscribed = state.hub.is_subscribed();
    let shutting_down = *state.shutdown.borrow();
    let ready = redis_up && subscribed && !shutting_down;
    let body = serde_json::json!({
        "status": if ready { "ok" } else { "unavailable" },
        "redis": redis_up,
        "pubsub": subscribed,
        "shuttingDown": shutting_down,
        "sockets": state.hub.local_sockets(),
        "shardRooms": state.hub.shard_rooms(),
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// Whether a request's `Origin` (if any) is this site or an allowed one.
/// Requests without `Origin` come from non-browser clients or same-origin
/// navigations; `Sec-Fetch-Site: cross-site` is refused either way.
pub fn origin_allowed(headers: &HeaderMap, config: &super::config::Config) -> bool {
    if headers
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes() == b"cross-site")
    {
        return false;
    }
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let origin = origin.trim_end_matches('/');
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let own = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .is_some_and(|rest| !host.is_empty() && rest.eq_ignore_ascii_case(host));
    own || config.allowed_origins.iter().any(|o| o == origin)
}

fn json_error(status: StatusCode, error: ApiError) -> Response {
    (status, Json(error)).into_response()
}

/// An API error as the server functions answer it: the JSON body and the
/// status its code stands for.
pub fn api_error_response(error: ApiError) -> Response {
    let status = StatusCode::from_u16(error.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_error(status, error)
}

/// The methods of every server function, by path, from the registry that
/// `leptos_routes_with_context` routes them by.
static SERVER_FN_METHODS: LazyLock<HashMap<&'static str, Vec<Method>>> = LazyLock::new(|| {
    let mut paths: HashMap<&'static str, Vec<Method>> = HashMap::new();
    for (path, method) in leptos::server_fn::axum::server_fn_paths() {
        paths.entry(path).or_default().push(method);
    }
    paths
});

/// The answer for a request under `/api` that no server function takes:
/// 404 for a path that is none, 405 (with `Allow`) for a method it does
/// not take (`HEAD` goes with `GET`). `None`: the request is for a server
/// function.
fn not_a_server_fn(method: &Method, path: &str) -> Option<Response> {
    let Some(methods) = SERVER_FN_METHODS.get(path) else {
        let shown: String = path.chars().take(100).collect();
        return Some(api_error_response(ApiError::new(
            codes::NOT_FOUND,
            format!("There is no API endpoint at {shown}."),
        )));
    };
    let takes = |m: &Method| m == method || (*m == Method::GET && method == Method::HEAD);
    if methods.iter().any(takes) {
        return None;
    }
    let mut allow: Vec<&str> = methods.iter().map(Method::as_str).collect();
    if methods.contains(&Method::GET) {
        allow.push("HEAD");
    }
    let allow = allow.join(", ");
    let mut response = api_error_response(ApiError::new(
        codes::METHOD_NOT_ALLOWED,
        format!("{path} takes {allow}, not {method}."),
    ));
    if let Ok(value) = HeaderValue::from_str(&allow) {
        response.headers_mut().insert(header::ALLOW, value);
    }
    Some(response)
}

/// For `/api`: refuses cross-site state changes (CSRF), paths and methods
/// of no server function, and oversized bodies, and gives server function
/// errors their HTTP status.
async fn api_guard(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if !(path == "/api" || path.starts_with("/api/")) {
        return next.run(req).await;
    }
    let changes_state = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if changes_state && !origin_allowed(req.headers(), &state.config) {
        return json_error(
            StatusCode::FORBIDDEN,
            ApiError::forbidden("Cross-site requests are not allowed."),
        );
    }
    if let Some(refusal) = not_a_server_fn(req.method(), path) {
        return refusal;
    }
    if req.method() == Method::HEAD {
        // Server functions know GET only; hyper still sends no body, as it
        // remembers the request's method itself.
        *req.method_mut() = Method::GET;
    }
    let too_big = ApiError::new(codes::TOO_LARGE, "The request body is too large.");
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES) {
        return json_error(StatusCode::PAYLOAD_TOO_LARGE, too_big);
    }
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY_BYTES).await else {
        return json_error(StatusCode::PAYLOAD_TOO_LARGE, too_big);
    };
    let response = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;

    // Server functions answer every error with 500; the code in the JSON
    // body says which status it really is. Redirects (no-JS forms) stay.
    if response.status() != StatusCode::INTERNAL_SERVER_ERROR
        || !response.headers().contains_key("serverfnerror")
    {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .unwrap_or_default();
    if let Ok(error) = serde_json::from_slice::<ApiError>(&bytes) {
        parts.status = StatusCode::from_u16(error.status()).unwrap_or(parts.status);
    }
    Response::from_parts(parts, Body::from(bytes))
}

async fn security_headers(req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    let headers = response.headers_mut();
    for (name, value) in [
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "same-origin"),
        ("x-frame-options", "DENY"),
        (
            "content-security-policy",
            "frame-ancestors 'none'; object-src 'none'; base-uri 'self'; form-action 'self'",
        ),
    ] {
        headers
            .entry(name)
            .or_insert(HeaderValue::from_static(value));
    }
    response
}

/// One log line per request: method, path, status, latency.
async fn log_request(req: Request, next: Next) -> Response {
    use tracing::Instrument;
    let started = Instant::now();
    let method = req.method().clone();
    // The path only: a query string may hold what a user searched for.
    let path = req.uri().path().to_string();
    let rid = super::logging::next_id();
    let span = tracing::info_span!("http", rid = %rid);
    async move {
        let mut response = next.run(req).await;
        let status = response.status().as_u16();
        super::metrics::get().http_request(&route_label(&path, status), status, started.elapsed());
        tracing::info!(
            %method,
            path,
            status = response.status().as_u16(),
            micros = started.elapsed().as_micros() as u64,
            "request"
        );
        if let Ok(value) = HeaderValue::from_str(&rid) {
            response.headers_mut().insert("x-request-id", value);
        }
        response
    }
    .instrument(span)
    .await
}

/// The route a request counts under in the metrics: a fixed set of names,
/// never a raw path (which anyone could vary without end).
fn route_label(path: &str, status: u16) -> String {
    match path {
        "/" | "/login" | "/account" | "/ws" | "/healthz" | "/readyz" | "/metrics" => path.into(),
        _ if path.starts_with("/pkg/") => "/pkg".into(),
        // Every server function has a route; an unknown one is a 404.
        _ if path.starts_with("/api/") && status != 404 && path.len() <= 40 => path.into(),
        _ if path.starts_with("/api/") => "/api/unknown".into(),
        _ => "other".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::config::Config;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn metrics_count_requests_under_a_fixed_set_of_route_names() {
        let table = [
            ("/", 200, "/"),
            ("/login", 200, "/login"),
            ("/ws", 101, "/ws"),
            ("/readyz", 503, "/readyz"),
            ("/pkg/redis-chat.0123456789abcdef.wasm", 200, "/pkg"),
            ("/api/rooms", 200, "/api/rooms"),
            ("/api/rooms", 401, "/api/rooms"),
            ("/api/no-such-function", 404, "/api/unknown"),
            (
                "/api/a-very-long-made-up-path-that-is-no-function",
                405,
                "/api/unknown",
            ),
            ("/favicon.svg", 200, "other"),
            ("/some/page/12345", 404, "other"),
        ];
        for (path, status, label) in table {
            assert_eq!(route_label(path, status), label, "{path} {status}");
        }
    }

    #[test]
    fn paths_and_methods_of_no_server_function() {
        assert!(not_a_server_fn(&Method::POST, "/api/login").is_none());
        assert!(not_a_server_fn(&Method::GET, "/api/me").is_none());
        assert!(not_a_server_fn(&Method::HEAD, "/api/me").is_none());
        for path in ["/api/nope", "/api", "/api/", "/api/me/", "/api/LOGIN"] {
            let r = not_a_server_fn(&Method::POST, path).expect(path);
            assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
        }
        for (method, path, allow) in [
            (Method::GET, "/api/login", "POST"),
            (Method::HEAD, "/api/logout", "POST"),
            (Method::POST, "/api/me", "GET, HEAD"),
            (Method::OPTIONS, "/api/messages", "GET, HEAD"),
        ] {
            let r = not_a_server_fn(&method, path).expect(path);
            assert_eq!(
                r.status(),
                StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path}"
            );
            assert_eq!(r.headers()[header::ALLOW], allow, "{method} {path}");
        }
    }

    #[test]
    fn origins() {
        let mut c = Config::for_tests("redis://x");
        let host = ("host", "chat.example:3000");
        assert!(origin_allowed(&headers(&[host]), &c));
        assert!(origin_allowed(
            &headers(&[host, ("origin", "http://chat.example:3000")]),
            &c
        ));
        assert!(!origin_allowed(
            &headers(&[host, ("origin", "https://evil.example")]),
            &c
        ));
        assert!(!origin_allowed(
            &headers(&[host, ("sec-fetch-site", "cross-site")]),
            &c
        ));
        c.allowed_origins = vec!["https://app.example".into()];
        assert!(origin_allowed(
            &headers(&[host, ("origin", "https://app.example")]),
            &c
        ));
    }
}
