//! `GET /api/messages`: paging back through a room's history, the busiest
//! read of the API, in one Redis round trip per page.
//!
//! A page "the `limit` messages before id X" never gains or loses messages
//! once X exists. Only an edit or a deletion changes what it shows (and
//! retention trimming removes its oldest messages). So the rendered JSON of
//! every page with a cursor is kept in memory ([`PageCache`]), stamped with
//! the room's generation (`room:{R}:generation`, bumped by every edit,
//! deletion and import). Each request then sends one pipelined batch:
//!
//! 1. `GETEX` of the session: is it valid (and its TTL slides),
//! 2. `SISMEMBER`: is the user in the room,
//! 3. `GET` of the room's generation: is the cached page still current,
//! 4. only without a cached page, the page itself (`XREVRANGE`, `EXISTS`
//!    of the room's edits; an edited room adds an `HMGET`).
//!
//! Step 2 needs the session's user id before the session is read; a token
//! names the same user for its whole life, so [`session::KnownSessions`] remembers
//! it, and only the first request with a token looks the session up
//! first. Identity and membership are thus checked in Redis on every
//! request: the cache only saves reading and rendering the page, and only
//! while Redis says the page is unchanged. A page cut by retention can be
//! served for at most [`PAGE_TTL`] after the trim.
//!
//! This is a plain axum middleware in front of the `messages` server
//! function (same path, same answers; the server function keeps the typed client
//! for the WASM app and runs [`page_json`] too): the server-function layer
//! costs more than the page itself once the page comes from memory.

use super::redis_con::Op;
use super::session;
use super::store::{
    generation_of, next_reply, not_a_member, parse_cursor, parse_limit, unavailable, valid_room_id,
    Store,
};
use super::AppState;
use crate::api::ApiError;
use axum::{
    body::Bytes,
    extract::{Query, Request, State},
    http::{header, HeaderMap, HeaderValue, Method, Uri},
    middleware::Next,
    response::{IntoResponse, Response},
};
use serde::Deserialize;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The longest a cached page is served: bounds how long messages removed
/// by retention trimming can still appear in an old page.
pub const PAGE_TTL: Duration = Duration::from_secs(60);

/// The query of `/api/messages`, taken as text so that every bad value
/// gets the same clear 400 (see [`parse_limit`], [`parse_cursor`]).
#[derive(Debug, Default, Deserialize)]
pub struct PageQuery {
    pub room_id: Option<String>,
    pub before: Option<String>,
    pub limit: Option<String>,
}

/// Middleware answering `GET /api/messages` before the router (where
/// the server function's route has the same path); everything else goes
/// on.
pub async fn fast_path(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if req.method() == Method::GET && req.uri().path() == "/api/messages" {
        handler(&state, req.headers(), req.uri()).await
    } else {
        next.run(req).await
    }
}

/// `GET /api/messages`.
async fn handler(state: &AppState, headers: &HeaderMap, uri: &Uri) -> Response {
    let query = match Query::<PageQuery>::try_from_uri(uri) {
        Ok(Query(query)) => query,
        Err(e) => return error(ApiError::bad_request(format!("Invalid request: {e}"))),
    };
    let token = session::token_from_headers(headers);
    match page_json(state, token.as_deref(), query).await {
        Ok(body) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body,
        )
            .into_response(),
        Err(e) => error(e),
    }
}

fn error(e: ApiError) -> Response {
    super::http::api_error_response(e)
}

/// One page as JSON ([`crate::protocol::MessagePage`]), with every check:
/// 400 for a missing room (before anything else) or, for a signed-in user,
/// a bad `limit` or `before`; 401 without a valid session; 403 for a room
/// the user is not in; 503 when Redis fails.
pub async fn page_json(
    state: &AppState,
    token: Option<&str>,
    query: PageQuery,
) -> Result<Bytes, ApiError> {
    let room = query
        .room_id
        .ok_or_else(|| ApiError::bad_request("Invalid request: missing field `room_id`"))?;
    let key = token
        .and_then(session::key_for)
        .ok_or_else(ApiError::unauthorized)?;
    let ttl = state.config.session_ttl;
    let params = parse_limit(query.limit.as_deref())
        .and_then(|limit| Ok((limit, parse_cursor(query.before.as_deref())?)));
    let user = match state.known_sessions.user(&key) {
        Some(user) if params.is_ok() && valid_room_id(&room) => user,
        _ => {
            // A new token, or an answer that is not a page: the session
            // decides between 401 and the error.
            let user = session::lookup_key(&state.store, &key, ttl)
                .await?
                .ok_or_else(ApiError::unauthorized)?;
            state.known_sessions.remember(&key, user.id);
            if !valid_room_id(&room) {
                return Err(not_a_member());
            }
            user.id
        }
    };
    let (limit, before) = params?;

    let cache_key = before
        .as_deref()
        .map(|before| PageCache::key(&room, before, limit));
    let cached = cache_key.as_deref().and_then(|k| state.pages.get(k));
    // On one Redis a pipeline runs in order, so the generation is read
    // before the page and a page is never stamped newer than it is. A
    // cluster gives no order across a batch: there the page is read after.
    let read_now = cached.is_none() && !state.store.sharded();
    let mut ops: Vec<Op> = vec![
        session::renew_op(&key, ttl),
        Store::membership_op(user, &room),
        Store::generation_op(&room),
    ];
    if read_now {
        ops.extend(Store::page_ops(&room, before.as_deref(), limit));
    }
    let replies = state.store.con().batch(ops).await.map_err(unavailable)?;
    let mut replies = replies.into_iter();
    if session::user_of(next_reply(&mut replies)?).map(|u| u.id) != Some(user) {
        state.known_sessions.forget(&key);
        return Err(ApiError::unauthorized());
    }
    if !next_reply::<bool>(&mut replies)? {
        return Err(not_a_member());
    }
    let generation = generation_of(&mut replies)?;
    if let Some(page) = cached.filter(|p| p.generation == generation) {
        super::metrics::get().history_request(true);
        return Ok(page.body);
    }
    super::metrics::get().history_request(false);
    let page = if read_now {
        state.store.finish_page(&room, limit, &mut replies).await?
    } else {
        state
            .store
            .read_page(&room, before.as_deref(), limit)
            .await?
    };
    let body = Bytes::from(serde_json::to_vec(&page).map_err(|e| {
        tracing::error!(error = %e, "a history page did not serialise");
        ApiError::internal()
    })?);
    if let Some(key) = cache_key {
        state.pages.put(key, generation, body.clone());
    }
    Ok(body)
}

/// Rendered history pages, by room, cursor and size; at most `budget`
/// bytes, the oldest entry going first.
pub struct PageCache {
    budget: usize,
    pages: Mutex<Pages>,
}

#[derive(Default)]
struct Pages {
    by_key: HashMap<String, CachedPage>,
    /// Keys in the order they were first stored, for eviction.
    order: VecDeque<String>,
    bytes: usize,
}

#[derive(Clone)]
pub struct CachedPage {
    pub generation: u64,
    pub body: Bytes,
    stored: Instant,
}

impl PageCache {
    /// A cache of at most `budget` bytes of pages; 0 keeps nothing.
    pub fn new(budget: usize) -> Self {
        Self {
            budget,
            pages: Mutex::new(Pages::default()),
        }
    }

    /// The key of a page: a cursor is `<ms>-<seq>` and a limit digits, so
    /// the room (which may hold `:`) goes last and the key is unambiguous.
    pub fn key(room: &str, before: &str, limit: usize) -> String {
        format!("{limit}:{before}:{room}")
    }

    /// The page stored under `key`, unless it is older than [`PAGE_TTL`].
    pub fn get(&self, key: &str) -> Option<CachedPage> {
        if self.budget == 0 {
            return None;
        }
        let pages = self.pages.lock().ok()?;
        pages
            .by_key
            .get(key)
            .filter(|p| p.stored.elapsed() < PAGE_TTL)
            .cloned()
    }

    /// Stores (or replaces) a page, evicting the oldest to stay in budget.
    pub fn put(&self, key: String, generation: u64, body: Bytes) {
        if body.len() > self.budget {
            return;
        }
        let Ok(mut pages) = self.pages.lock() else {
            return;
        };
        let size = body.len();
        let page = CachedPage {
            generation,
            body,
            stored: Instant::now(),
        };
        match pages.by_key.insert(key.clone(), page) {
            Some(old) => pages.bytes -= old.body.len(),
            None => pages.order.push_back(key),
        }
        pages.bytes += size;
        while pages.bytes > self.budget {
            let Some(oldest) = pages.order.pop_front() else {
                break;
            };
            if let Some(gone) = pages.by_key.remove(&oldest) {
                pages.bytes -= gone.body.len();
            }
        }
    }

    /// Bytes of pages held.
    pub fn bytes(&self) -> usize {
        self.pages.lock().map(|p| p.bytes).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(n: usize) -> Bytes {
        Bytes::from(vec![b'x'; n])
    }

    #[test]
    fn pages_stay_within_budget_oldest_first() {
        let cache = PageCache::new(250);
        cache.put(PageCache::key("0", "1-0", 50), 0, body(100));
        cache.put(PageCache::key("0", "2-0", 50), 0, body(100));
        assert_eq!(cache.bytes(), 200);
        cache.put(PageCache::key("0", "3-0", 50), 0, body(100));
        assert_eq!(cache.bytes(), 200);
        assert!(cache.get(&PageCache::key("0", "1-0", 50)).is_none());
        assert!(cache.get(&PageCache::key("0", "3-0", 50)).is_some());
        // Replacing a page (a new generation) keeps the count right.
        cache.put(PageCache::key("0", "3-0", 50), 7, body(50));
        assert_eq!(cache.bytes(), 150);
        let page = cache.get(&PageCache::key("0", "3-0", 50)).unwrap();
        assert_eq!((page.generation, page.body.len()), (7, 50));
        // Too big for the budget at all, and a cache of 0: nothing kept.
        cache.put(PageCache::key("0", "4-0", 50), 0, body(251));
        assert!(cache.get(&PageCache::key("0", "4-0", 50)).is_none());
        let off = PageCache::new(0);
        off.put(PageCache::key("0", "1-0", 50), 0, body(1));
        assert!(off.get(&PageCache::key("0", "1-0", 50)).is_none());
    }

    #[test]
    fn keys_do_not_collide_across_rooms_and_sizes() {
        assert_ne!(
            PageCache::key("1:2", "5-0", 50),
            PageCache::key("1", "5-0", 50)
        );
        assert_ne!(
            PageCache::key("0", "5-0", 50),
            PageCache::key("0", "5-0", 5)
        );
    }
}
