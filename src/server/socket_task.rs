//! The life of a socket task, however it ends.
//!
//! [`SocketTasks`] counts the live socket tasks, so that shutdown can wait
//! for their close frames before it takes presence down and stops Redis.
//! A task counts from the upgrade on ([`TaskToken`]); once it has joined
//! the hub it holds a [`SocketGuard`] instead. Dropping the guard — at the
//! task's normal end, or while a panic unwinds it — takes the socket out
//! of the hub (and so out of presence, when it was the user's last one
//! here) and ends its outbox, so the hub's writers stop writing to and
//! pinging it. After a panic it also sends close 1011 when it can without
//! waiting. Tokio catches the panic; the hub and the other sockets never
//! see it (the outbox's lock recovers from poisoning, and the guard runs
//! after the unwinding has released it).

use super::hub::Hub;
use super::outbox::Outbox;
use super::session::SessionId;
use super::wire;
use super::ws::close;
use crate::protocol::{User, UserId};
use std::{sync::Arc, time::Duration};
use tokio::sync::{oneshot, watch};

/// How many socket tasks are alive (cheap to clone).
#[derive(Clone)]
pub struct SocketTasks(Arc<watch::Sender<usize>>);

impl Default for SocketTasks {
    fn default() -> Self {
        Self(Arc::new(watch::Sender::new(0)))
    }
}

impl SocketTasks {
    /// A socket task starts; it counts until the token is dropped.
    pub fn start(&self) -> TaskToken {
        self.0.send_modify(|n| *n += 1);
        TaskToken(self.0.clone())
    }

    /// Socket tasks alive now.
    pub fn live(&self) -> usize {
        *self.0.borrow()
    }

    /// Waits until no socket task is left, at most `limit`; returns how
    /// many are still alive.
    pub async fn wait_until_none(&self, limit: Duration) -> usize {
        let mut live = self.0.subscribe();
        let _ = tokio::time::timeout(limit, live.wait_for(|n| *n == 0)).await;
        self.live()
    }
}

/// One live socket task, counted in [`SocketTasks`] until dropped.
pub struct TaskToken(Arc<watch::Sender<usize>>);

impl Drop for TaskToken {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n -= 1);
    }
}

/// A socket's membership of the hub, owned by its task; see the module
/// documentation for what dropping it does.
pub struct SocketGuard {
    hub: Hub,
    user: UserId,
    socket: u64,
    out: Arc<Outbox>,
    in_hub: bool,
    _task: TaskToken,
}

impl SocketGuard {
    /// Joins the hub with `out`, for a socket opened with `session`. Also returns the hub's `ready` signal
    /// ([`super::hub::SocketLink::ready`]).
    pub fn join(
        hub: &Hub,
        user: &User,
        session: SessionId,
        out: Arc<Outbox>,
        task: TaskToken,
    ) -> (Self, oneshot::Receiver<()>) {
        let link = hub.join(user, session, out.clone());
        let guard = Self {
            hub: hub.clone(),
            user: user.id,
            socket: link.id,
            out,
            in_hub: true,
            _task: task,
        };
        (guard, link.ready)
    }

    /// Leaves the hub now, before the closing handshake, so that the
    /// socket stops counting at once; dropping the guard then ends the task.
    pub fn leave(&mut self) {
        if std::mem::take(&mut self.in_hub) {
            self.hub.leave(self.user, self.socket);
        }
    }
}

impl Drop for SocketGuard {
    fn drop(&mut self) {
        let last = if std::thread::panicking() {
            tracing::error!(
                user = self.user,
                socket = self.socket,
                "a socket task panicked; closing it with 1011"
            );
            Some(wire::close_frame(close::INTERNAL_ERROR, "internal error"))
        } else {
            None
        };
        self.out.end(last);
        self.leave();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_wait_for_socket_tasks_is_bounded() {
        let tasks = SocketTasks::default();
        let stuck = tasks.start();
        let done = tasks.start();
        assert_eq!(tasks.live(), 2);
        drop(done);
        let started = std::time::Instant::now();
        assert_eq!(tasks.wait_until_none(Duration::from_millis(50)).await, 1);
        assert!(started.elapsed() >= Duration::from_millis(50));
        let ends = tokio::spawn(async move { drop(stuck) });
        assert_eq!(tasks.wait_until_none(Duration::from_secs(10)).await, 0);
        ends.await.unwrap();
    }
}
