//! The hub's part in catching up after a lost subscription (`gap.rs`):
//! holding live events while the room streams are read, then delivering
//! what was missed before them.

use super::events::room_targets;
use super::{About, Command, Held, Routing};
use crate::protocol::{ServerFrame, UserId};
use crate::server::gap::{self, CaughtUp};
use crate::server::revocation::Ending;
use crate::server::session::SessionId;
use crate::server::wire;
use crate::server::writers::{Delivery, EndJob, Targets, ToWriter};
use crate::server::ws::close;
use std::sync::{atomic::AtomicUsize, Arc};
use std::time::Duration;
use tokio::time::Instant;

/// Pauses before each try of a catch-up: one that fails (Redis answers the
/// subscription but not yet the reads) is tried again twice before every
/// socket is asked to resume instead.
const CATCH_UP_RETRIES: [Duration; 3] = [
    Duration::ZERO,
    Duration::from_millis(250),
    Duration::from_secs(1),
];

/// How long the sessions of open sockets are checked again while Redis
/// cannot answer (a cluster node that is down).
const CHECK_SESSIONS_FOR: Duration = Duration::from_secs(300);

impl Routing {
    /// The subscription is up (again): after a loss, check the sessions of
    /// the local sockets and (on a single Redis) hold live events and catch
    /// up the messages.
    pub(super) fn subscribed(&mut self, at_ms: u64) {
        if let Some(held) = &mut self.held {
            // Lost again during a catch-up: one more after this one.
            held.again_at = Some(at_ms);
            self.check_sessions();
            return;
        }
        let users: Vec<UserId> = self.local.keys().copied().collect();
        let Some(plan) = self.gaps.subscribed(at_ms, users) else {
            return;
        };
        self.check_sessions();
        if self.store.sharded() {
            // Room events come from the shard channels (`shards.rs`).
            return;
        }
        tracing::info!("subscription back: catching up from the room streams");
        self.held = Some(Held {
            at_ms,
            events: Vec::new(),
            again_at: None,
        });
        let (store, commands) = (self.store.clone(), self.commands.clone());
        tokio::spawn(async move {
            let mut done = None;
            for (attempt, pause) in CATCH_UP_RETRIES.iter().enumerate() {
                tokio::time::sleep(*pause).await;
                match plan.run(&store).await {
                    Ok(caught) => {
                        done = Some(caught);
                        break;
                    }
                    Err(e) => tracing::warn!(error = %e, attempt, "catch-up failed"),
                }
            }
            if done.is_none() {
                tracing::warn!("catch-up given up; every socket resumes");
            }
            let _ = commands.send(Command::CaughtUp(done));
        });
    }

    /// Looks (in the background, retrying while Redis cannot say) for the
    /// sessions of local sockets that ended while the subscription was
    /// down; their sockets close with 4001 ([`Command::SessionsEnded`]).
    fn check_sessions(&self) {
        let sessions: Vec<SessionId> = self
            .local
            .values()
            .flatten()
            .map(|(_, session)| *session)
            .collect();
        if sessions.is_empty() {
            return;
        }
        let (store, commands) = (self.store.clone(), self.commands.clone());
        tokio::spawn(async move {
            let started = Instant::now();
            let mut pause = Duration::from_millis(250);
            loop {
                match gap::ended_sessions(&store, &sessions).await {
                    Ok(ended) => {
                        let _ = commands.send(Command::SessionsEnded(ended));
                        return;
                    }
                    Err(e) if started.elapsed() < CHECK_SESSIONS_FOR && !commands.is_closed() => {
                        tracing::debug!(error = %e, "sessions not checked yet");
                    }
                    Err(e) => {
                        // Each socket still looks at its session when it
                        // would expire (`socket_session.rs`).
                        tracing::warn!(error = %e, "sessions of open sockets not checked");
                        return;
                    }
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
            }
        });
    }

    /// Ends the local sockets of sessions found gone after a loss.
    pub(super) async fn sessions_ended(&mut self, ended: Vec<SessionId>) {
        if !ended.is_empty() {
            tracing::info!(sessions = ended.len(), "sessions ended during the loss");
        }
        for session in &ended {
            for (user, sockets) in &self.local {
                if sockets.iter().any(|(_, s)| s == session) {
                    let job = Arc::new(EndJob {
                        ending: Ending {
                            user: *user,
                            sessions: vec![*session],
                            all: false,
                            keep: None,
                        },
                        writers_left: AtomicUsize::new(self.writers.len()),
                        ack: None,
                    });
                    self.to_all_writers(|| ToWriter::End(job.clone())).await;
                }
            }
        }
    }

    /// Delivers what a catch-up found, then the live events held meanwhile
    /// (without the messages the catch-up already delivered).
    pub(super) async fn caught_up(&mut self, done: Option<CaughtUp>) {
        let Some(held) = self.held.take() else {
            return;
        };
        let Some(done) = done else {
            let again_at = held.again_at;
            self.abandon(held).await;
            if let Some(at_ms) = again_at {
                self.subscribed(at_ms);
            }
            return;
        };
        let mut batch = Vec::new();
        for (room, messages, _) in &done.rooms {
            let Some(targets) = room_targets(room) else {
                continue;
            };
            for m in messages {
                if let Ok(text) = serde_json::to_string(&ServerFrame::Message(m.clone())) {
                    batch.push((wire::text_frame(&text), targets.clone()));
                }
            }
        }
        let missed: usize = done.rooms.iter().map(|(_, m, _)| m.len()).sum();
        tracing::info!(rooms = done.rooms.len(), messages = missed, "caught up");
        crate::server::metrics::get().replayed("catch_up", missed as u64);
        if !batch.is_empty() {
            let batch = Arc::new(Delivery::replayed(batch));
            self.to_all_writers(|| ToWriter::Deliver(batch.clone()))
                .await;
        }
        // Rooms with more than a replay may carry: their members resume
        // (which says what to reload).
        for (room, _, truncated) in &done.rooms {
            if *truncated {
                self.close_members(room, close::SERVICE_RESTART, "missed messages; resume")
                    .await;
            }
        }
        // What was held follows, without what the catch-up delivered (and
        // so does any late live copy of it).
        self.gaps.caught_up(&done);
        self.route(held.events).await;
        if let Some(at_ms) = held.again_at {
            self.subscribed(at_ms);
        }
    }

    /// Gives a catch-up up: every local socket reconnects and resumes (its
    /// own replay fills its gap), and the catch-up state starts over from
    /// the new subscription, with what was held counted as delivered (the
    /// resumes cover it).
    pub(super) async fn abandon(&mut self, held: Held) {
        self.gaps.restart(held.at_ms);
        for event in &held.events {
            if let About::Message { room, id } = &event.about {
                self.gaps.fresh(room, id);
            }
        }
        self.to_all_writers(|| {
            ToWriter::CloseAll(close::SERVICE_RESTART, "missed messages; resume")
        })
        .await;
    }

    /// Closes the local sockets of a room's members.
    pub(super) async fn close_members(&self, room: &str, code: u16, reason: &'static str) {
        match room_targets(room) {
            Some(Targets::Everyone) => {
                self.to_all_writers(|| ToWriter::CloseAll(code, reason))
                    .await
            }
            Some(Targets::Users(users)) => {
                for user in users {
                    for (id, _) in self.local.get(&user).into_iter().flatten() {
                        let _ = self
                            .writer_of(*id)
                            .send(ToWriter::Close(user, *id, code, reason))
                            .await;
                    }
                }
            }
            None => {}
        }
    }
}
