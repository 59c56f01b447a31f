//! The process's one pub/sub connection: `MESSAGES` (events for sockets)
//! and the control channel (events for instances), fed to the hub.
//!
//! It reconnects by itself after any loss (network, Redis restart,
//! `CLIENT KILL TYPE pubsub`, Redis dropping a subscriber that fell behind
//! its output buffer limit) and pings the connection so that a silently
//! dead link is noticed. After each (re)subscription it tells the hub the
//! Redis time at which the subscription was up ([`Feed::Subscribed`]):
//! whatever was published before a loss and after it is in the room
//! streams, and the hub catches up from there (`gap.rs`).
//!
//! The feed to the hub is bounded ([`FEED_QUEUE`]): when the hub and its
//! writers cannot keep up, this task waits, and the backlog stays in
//! Redis's output buffer for this client, which Redis bounds
//! (`client-output-buffer-limit pubsub`, 32 MB by default) by closing the
//! connection — a loss like any other, caught up from the streams.

use super::redis_con::{self, Endpoints, RedisCon};
use super::revocation::CONTROL_CHANNEL;
use super::store::CHANNEL;
use futures::StreamExt;
use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};
use tokio::sync::mpsc;

/// Payloads waiting for the hub.
pub const FEED_QUEUE: usize = 4096;

/// What the subscriber hands the hub, in the order it happened.
pub enum Feed {
    /// A payload from `MESSAGES`.
    Event(Vec<u8>),
    /// A payload from the control channel.
    Control(Vec<u8>),
    /// Subscribed (again): everything published from Redis time `at_ms`
    /// on arrives here.
    Subscribed { at_ms: u64 },
}

/// Redis's clock, in ms (a subscription's start, in the same clock as the
/// stream ids).
async fn redis_time_ms(con: &RedisCon) -> Option<u64> {
    let mut con = con.clone();
    let (secs, micros): (u64, u64) = redis::cmd("TIME").query_async(&mut con).await.ok()?;
    Some(secs * 1000 + micros / 1000)
}

/// Keeps one SUBSCRIBE connection up, forever. On a cluster it moves on to
/// the next node after a loss: the configured ones, then every primary the
/// cluster reports (refreshed after each full round).
pub async fn subscribe_forever(
    endpoints: Endpoints,
    con: RedisCon,
    feed: mpsc::Sender<Feed>,
    subscribed: Arc<AtomicBool>,
) {
    let mut backoff = Duration::from_millis(100);
    // Every subscription after the first is a reconnect (metrics).
    let mut subscribed_before = false;
    let mut candidates = endpoints.urls.clone();
    let mut next = 0usize;
    loop {
        if next >= candidates.len() {
            next = 0;
            if con.is_cluster() {
                candidates = redis_con::subscriber_candidates(&endpoints.urls, &con).await;
            }
        }
        let Some(url) = candidates.get(next) else {
            tracing::error!("no Redis to subscribe to");
            return;
        };
        next += 1;
        let client = match endpoints.tls.client(url) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "bad subscriber URL");
                continue;
            }
        };
        let connect = tokio::time::timeout(Duration::from_secs(5), client.get_async_pubsub());
        match connect.await.unwrap_or_else(|_| {
            Err(redis::RedisError::from(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "connect timed out",
            )))
        }) {
            Ok(mut pubsub) => match pubsub.subscribe(&[CHANNEL, CONTROL_CHANNEL]).await {
                Ok(()) => {
                    let Some(at_ms) = redis_time_ms(&con).await else {
                        tracing::warn!("cannot read Redis's clock; resubscribing");
                        tokio::time::sleep(backoff).await;
                        continue;
                    };
                    if feed.send(Feed::Subscribed { at_ms }).await.is_err() {
                        return;
                    }
                    subscribed.store(true, Ordering::Relaxed);
                    if subscribed_before {
                        super::metrics::get().pubsub_reconnects.inc();
                    }
                    subscribed_before = true;
                    backoff = Duration::from_millis(100);
                    tracing::info!(channel = CHANNEL, "subscribed");
                    let (mut sink, mut stream) = pubsub.split();
                    let mut watchdog = tokio::time::interval(Duration::from_secs(10));
                    watchdog.tick().await;
                    loop {
                        tokio::select! {
                            msg = stream.next() => match msg {
                                Some(msg) => {
                                    let payload = msg.get_payload_bytes().to_vec();
                                    let item = if msg.get_channel_name() == CONTROL_CHANNEL {
                                        Feed::Control(payload)
                                    } else {
                                        Feed::Event(payload)
                                    };
                                    if feed.send(item).await.is_err() {
                                        return;
                                    }
                                }
                                None => break,
                            },
                            _ = watchdog.tick() => {
                                // In subscribed mode PING answers ["pong", ""]: any reply will do.
                                let ping = sink.ping::<redis::Value>();
                                if !matches!(tokio::time::timeout(Duration::from_secs(5), ping).await, Ok(Ok(_))) {
                                    break;
                                }
                            }
                        }
                    }
                    subscribed.store(false, Ordering::Relaxed);
                    tracing::warn!("pub/sub connection lost; resubscribing");
                    // Straight on to the next node of a cluster; a single
                    // Redis is retried after the backoff.
                    if con.is_cluster() {
                        continue;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "SUBSCRIBE failed"),
            },
            Err(e) => tracing::warn!(error = %e, "cannot open the pub/sub connection"),
        }
        if feed.is_closed() {
            return;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}
