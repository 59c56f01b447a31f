//! What an operator watches (`GET /metrics`, OpenMetrics text, which
//! Prometheus scrapes): one registry per process, built on first use.
//!
//! Counters on hot paths are plain atomics resolved once (no label lookup
//! per event): a delivery walk adds its frame count once, the fan-out
//! latency is one observation per batch and writer, not per socket. Gauges
//! (sockets, users, bcrypt queue) are read from the server when scraped.
//!
//! The endpoint is never public by accident: it answers only on
//! `METRICS_ADDR` (a listener of its own, default off) or, on the main
//! port, to `Authorization: Bearer <METRICS_TOKEN>`; otherwise `/metrics`
//! is 404 (see `http.rs`). The names are listed in README ("Metrics").

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::LazyLock;
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Outcome {
    pub result: &'static str,
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Kind {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpRequest {
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Route {
    pub route: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Every metric of the process.
pub struct Metrics {
    registry: Registry,
    messages: Family<Outcome, Counter>,
    pub messages_accepted: Counter,
    pub frames_delivered: Counter,
    pub fanout_seconds: Histogram,
    pub slow_socket_closes: Counter,
    pub redis_command_seconds: Histogram,
    pub redis_errors: Counter,
    pub pubsub_reconnects: Counter,
    replayed: Family<Kind, Counter>,
    history: Family<Kind, Counter>,
    sign_ins: Family<Kind, Counter>,
    http_requests: Family<HttpRequest, Counter>,
    http_seconds: HistogramFamily<Route>,
    pub sockets_open: Gauge,
    pub users_online: Gauge,
    pub bcrypt_queue: Gauge,
    pub shard_rooms: Gauge,
}

/// Latency buckets from 0.25 ms to about 4 s.
fn latency() -> Histogram {
    Histogram::new(exponential_buckets(0.000_25, 2.0, 15))
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process's metrics.
pub fn get() -> &'static Metrics {
    &METRICS
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("redis_chat");
        let messages = Family::<Outcome, Counter>::default();
        registry.register(
            "messages",
            "Messages sent on sockets: accepted (stored) or refused, by error code",
            messages.clone(),
        );
        let messages_accepted = messages
            .get_or_create(&Outcome {
                result: "accepted",
                reason: "",
            })
            .clone();
        let frames_delivered = Counter::default();
        registry.register(
            "frames_delivered",
            "Live frames written to sockets (one per socket)",
            frames_delivered.clone(),
        );
        let fanout_seconds = latency();
        registry.register(
            "fanout_seconds",
            "From a message's id time (when Redis stored and published it) to its last socket written, per batch and writer",
            fanout_seconds.clone(),
        );
        let slow_socket_closes = Counter::default();
        registry.register(
            "slow_socket_closes",
            "Sockets closed with 1013 for not keeping up",
            slow_socket_closes.clone(),
        );
        let redis_command_seconds = latency();
        registry.register(
            "redis_command_seconds",
            "Redis round trips of the shared connection (a command, a script call or a batch)",
            redis_command_seconds.clone(),
        );
        let redis_errors = Counter::default();
        registry.register(
            "redis_errors",
            "Redis round trips that failed",
            redis_errors.clone(),
        );
        let pubsub_reconnects = Counter::default();
        registry.register(
            "pubsub_reconnects",
            "Times the pub/sub subscription came back after it was lost",
            pubsub_reconnects.clone(),
        );
        let replayed = Family::<Kind, Counter>::default();
        registry.register(
            "replayed_messages",
            "Messages read back from the streams: by a socket's resume, or by the hub catching up after a lost subscription",
            replayed.clone(),
        );
        let history = Family::<Kind, Counter>::default();
        registry.register(
            "history_requests",
            "History pages served, from the page cache (hit) or read from Redis (miss)",
            history.clone(),
        );
        let sign_ins = Family::<Kind, Counter>::default();
        registry.register(
            "sign_ins",
            "Sign-in attempts: ok, failed (wrong name or password), limited (429) or error (Redis or bcrypt unavailable)",
            sign_ins.clone(),
        );
        let http_requests = Family::<HttpRequest, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests by route and status",
            http_requests.clone(),
        );
        let http_seconds: HistogramFamily<Route> = Family::new_with_constructor(latency);
        registry.register(
            "http_request_seconds",
            "HTTP request latency by route",
            http_seconds.clone(),
        );
        let gauge = |registry: &mut Registry, name: &str, help: &str| {
            let g = Gauge::default();
            registry.register(name, help, g.clone());
            g
        };
        Self {
            sockets_open: gauge(&mut registry, "sockets_open", "Open WebSockets"),
            users_online: gauge(
                &mut registry,
                "users_online",
                "Signed-in users with a socket open on this instance",
            ),
            bcrypt_queue: gauge(
                &mut registry,
                "bcrypt_queue_depth",
                "Password hashes and checks waiting for or holding a bcrypt slot",
            ),
            shard_rooms: gauge(
                &mut registry,
                "shard_rooms",
                "Rooms whose shard channel this instance subscribes to (cluster)",
            ),
            registry,
            messages,
            messages_accepted,
            frames_delivered,
            fanout_seconds,
            slow_socket_closes,
            redis_command_seconds,
            redis_errors,
            pubsub_reconnects,
            replayed,
            history,
            sign_ins,
            http_requests,
            http_seconds,
        }
    }

    /// A message refused, by its error code (one of `codes::ALL`).
    pub fn message_refused(&self, code: &str) {
        let reason = crate::protocol::codes::ALL
            .into_iter()
            .find(|c| *c == code)
            .unwrap_or("other");
        self.messages
            .get_or_create(&Outcome {
                result: "refused",
                reason,
            })
            .inc();
    }

    /// Messages replayed by a resume (`resume`) or a catch-up (`catch_up`).
    pub fn replayed(&self, kind: &'static str, count: u64) {
        if count > 0 {
            self.replayed.get_or_create(&Kind { kind }).inc_by(count);
        }
    }

    /// A history page, from the cache or not.
    pub fn history_request(&self, cache_hit: bool) {
        let kind = if cache_hit { "hit" } else { "miss" };
        self.history.get_or_create(&Kind { kind }).inc();
    }

    /// A sign-in: `ok`, `failed` or `limited`.
    pub fn sign_in(&self, kind: &'static str) {
        self.sign_ins.get_or_create(&Kind { kind }).inc();
    }

    /// One Redis round trip.
    pub fn redis_round_trip(&self, took: Duration, ok: bool) {
        self.redis_command_seconds.observe(took.as_secs_f64());
        if !ok {
            self.redis_errors.inc();
        }
    }

    /// One HTTP request (`route`: the matched route, never a raw path).
    pub fn http_request(&self, route: &str, status: u16, took: Duration) {
        self.http_requests
            .get_or_create(&HttpRequest {
                route: route.to_string(),
                status,
            })
            .inc();
        self.http_seconds
            .get_or_create(&Route {
                route: route.to_string(),
            })
            .observe(took.as_secs_f64());
    }

    /// The text a scrape gets.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Whether a `METRICS_TOKEN` is presented (compared in constant time).
pub fn token_matches(header: Option<&str>, token: &str) -> bool {
    let Some(given) = header.and_then(|h| h.strip_prefix("Bearer ")) else {
        return false;
    };
    let (a, b) = (given.trim().as_bytes(), token.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_must_match_exactly() {
        assert!(token_matches(Some("Bearer s3cret"), "s3cret"));
        assert!(!token_matches(Some("Bearer s3cre"), "s3cret"));
        assert!(!token_matches(Some("Bearer s3cretX"), "s3cret"));
        assert!(!token_matches(Some("s3cret"), "s3cret"));
        assert!(!token_matches(None, "s3cret"));
    }

    #[test]
    fn renders_openmetrics_text_with_the_prefix() {
        let m = Metrics::new();
        m.messages_accepted.inc();
        m.message_refused("rate_limited");
        m.sign_in("ok");
        let text = m.render();
        assert!(
            text.contains("redis_chat_messages_total{result=\"accepted\",reason=\"\"} 1"),
            "{text}"
        );
        assert!(text
            .contains("redis_chat_messages_total{result=\"refused\",reason=\"rate_limited\"} 1"));
        assert!(text.contains("redis_chat_sign_ins_total{kind=\"ok\"} 1"));
        assert!(text.ends_with("# EOF\n"));
    }
}
