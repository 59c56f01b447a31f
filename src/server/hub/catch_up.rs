//! The hub's part in catching up after a lost subscription (`gap.rs`):
//! holding live events while the room streams are read, then delivering
//! what was missed before them.

use super::events::room_targets;
use super::{About, Command, Held, Routing};
use crate::protocol::{ServerFrame, UserId};
use crate::server::gap::CaughtUp;
use crate::server::revocation::Ending;
use crate::server::session::SessionId;
use crate::server::wire;
use crate::server::writers::{EndJob, Targets, ToWriter};
use crate::server::ws::close;
use std::sync::{atomic::AtomicUsize, Arc};

impl Routing {
    /// The subscription is up (again): after a loss, hold live events and
    /// catch up.
    pub(super) fn subscribed(&mut self, at_ms: u64) {
        if let Some(held) = &mut self.held {
            // Lost again during a catch-up: one more after this one.
            held.again_at = Some(at_ms);
            return;
        }
        let users: Vec<UserId> = self.local.keys().copied().collect();
        let sessions: Vec<SessionId> = self
            .local
            .values()
            .flatten()
            .map(|(_, session)| *session)
            .collect();
        let Some(plan) = self
            .gaps
            .subscribed(at_ms, users, sessions, !self.store.sharded())
        else {
            return;
        };
        tracing::info!("subscription back: catching up from the room streams");
        self.held = Some(Held {
            at_ms,
            events: Vec::new(),
            again_at: None,
        });
        let (store, commands) = (self.store.clone(), self.commands.clone());
        tokio::spawn(async move {
            let done = match plan.run(store).await {
                Ok(done) => Some(done),
                Err(e) => {
                    tracing::warn!(error = %e, "catch-up failed; every socket resumes");
                    None
                }
            };
            let _ = commands.send(Command::CaughtUp(done));
        });
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
        tracing::info!(
            rooms = done.rooms.len(),
            messages = missed,
            ended_sessions = done.ended.len(),
            "caught up"
        );
        if !batch.is_empty() {
            let batch = Arc::new(batch);
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
        for session in &done.ended {
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
