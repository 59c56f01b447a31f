//! Who is online, across tabs and instances.
//!
//! The hub reports a user's *local* transitions (first socket opened on this
//! instance, last one closed). Each instance keeps its online users in a
//! hash `{online_users}:inst:{server}` (user → name) and a shared hash
//! `{online_users}:count` counts on how many instances each user is. A Lua
//! script moves a user in or out of the original demo's `online_users` set
//! and publishes `user.connected` / `user.disconnected` only when that
//! count crosses zero, so a second tab or a second instance announces
//! nothing. Transitions go only to the user's private-room partners, the
//! only users whose screens show that presence; the directory and the room
//! list read `online_users` when they load.
//!
//! An instance that dies cannot clean up, so each one refreshes a heartbeat
//! key `{online_users}:alive:{server}` (TTL `PRESENCE_TTL_SECS`, 30 s by
//! default) three times per TTL, and every
//! instance reaps the sets of instances whose heartbeat has expired. All
//! keys share the hash tag `{online_users}` (the slot of `online_users`), so
//! each script stays within one cluster slot.

use super::redis_con::RedisCon;
use super::store::{keys, unavailable, CHANNEL};
use crate::api::ApiError;
use crate::protocol::{private_room_members, User, UserId};
use redis::AsyncCommands;
use redis::Script;
use std::{
    sync::{Arc, LazyLock},
    time::Duration,
};
use tokio::sync::mpsc;

const COUNTS: &str = "{online_users}:count";
const INSTANCES: &str = "{online_users}:instances";

fn instance_key(server: &str) -> String {
    format!("{{online_users}}:inst:{server}")
}
fn alive_key(server: &str) -> String {
    format!("{{online_users}}:alive:{server}")
}

/// KEYS: instance hash, counts, online_users. ARGV: user, name, channel,
/// server id, partners (a JSON array of user ids; `[]` publishes nothing).
static ONLINE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 1 then
  if redis.call('HINCRBY', KEYS[2], ARGV[1], 1) == 1 then
    redis.call('SADD', KEYS[3], ARGV[1])
    if ARGV[5] ~= '[]' then
      redis.call('PUBLISH', ARGV[3], cjson.encode({serverId = ARGV[4], type = 'user.connected',
        data = {id = tonumber(ARGV[1]), username = ARGV[2]}, to = cjson.decode(ARGV[5])}))
    end
    return 1
  end
end
return 0
"#,
    )
});

/// KEYS: instance hash, counts, online_users. ARGV: user, channel, server
/// id, partners (as for ONLINE).
static OFFLINE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local name = redis.call('HGET', KEYS[1], ARGV[1])
if not name then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
if redis.call('HINCRBY', KEYS[2], ARGV[1], -1) <= 0 then
  redis.call('HDEL', KEYS[2], ARGV[1])
  redis.call('SREM', KEYS[3], ARGV[1])
  if ARGV[4] ~= '[]' then
    redis.call('PUBLISH', ARGV[2], cjson.encode({serverId = ARGV[3], type = 'user.disconnected',
      data = {id = tonumber(ARGV[1]), username = name}, to = cjson.decode(ARGV[4])}))
  end
  return 1
end
return 0
"#,
    )
});

enum Transition {
    Online(User),
    Offline(UserId),
}

/// Handle to presence (cheap to clone).
#[derive(Clone)]
pub struct Presence {
    con: RedisCon,
    server_id: Arc<str>,
    transitions: mpsc::UnboundedSender<Transition>,
    /// Heartbeat lifetime; the heartbeat is refreshed three times per TTL.
    ttl: Duration,
    halted: Arc<std::sync::atomic::AtomicBool>,
}

impl Presence {
    /// Starts the transition worker and the heartbeat/reaper.
    pub fn spawn(con: RedisCon, server_id: Arc<str>, ttl: Duration) -> Self {
        let (transitions, rx) = mpsc::unbounded_channel();
        let presence = Self {
            con,
            server_id,
            transitions,
            ttl,
            halted: Default::default(),
        };
        tokio::spawn(presence.clone().apply_transitions(rx));
        tokio::spawn(presence.clone().heartbeat());
        presence
    }

    /// The user's first socket on this instance opened.
    pub fn local_online(&self, user: User) {
        let _ = self.transitions.send(Transition::Online(user));
    }

    /// The user's last socket on this instance closed.
    pub fn local_offline(&self, user: UserId) {
        let _ = self.transitions.send(Transition::Offline(user));
    }

    /// For each id, whether that user is online anywhere.
    pub async fn online_flags(&self, ids: &[UserId]) -> Result<Vec<bool>, ApiError> {
        if ids.is_empty() {
            return Ok(vec![]);
        }
        let mut con = self.con.clone();
        let flags: Vec<bool> = redis::cmd("SMISMEMBER")
            .arg(keys::ONLINE_USERS)
            .arg(ids)
            .query_async(&mut con)
            .await
            .map_err(unavailable)?;
        Ok(flags)
    }

    /// Takes this instance's users offline (graceful shutdown).
    pub async fn withdraw(&self) {
        let mut con = self.con.clone();
        if let Err(e) = self.reap(&mut con, &self.server_id, true).await {
            tracing::warn!(error = %e, "could not withdraw presence");
        }
    }

    /// Applies transitions in order, one at a time, retrying while Redis is
    /// down so that no transition is lost.
    async fn apply_transitions(self, mut rx: mpsc::UnboundedReceiver<Transition>) {
        let mut con = self.con.clone();
        let inst = instance_key(&self.server_id);
        while let Some(t) = rx.recv().await {
            if self.halted.load(std::sync::atomic::Ordering::Relaxed) {
                return;
            }
            let mut delay = Duration::from_millis(100);
            loop {
                let id = match &t {
                    Transition::Online(user) => user.id,
                    Transition::Offline(id) => *id,
                };
                let result = match self.partners(&mut con, id).await {
                    Err(e) => Err(e),
                    Ok(partners) => match &t {
                        Transition::Online(user) => {
                            ONLINE
                                .key(&inst)
                                .key(COUNTS)
                                .key(keys::ONLINE_USERS)
                                .arg(user.id)
                                .arg(&user.username)
                                .arg(CHANNEL)
                                .arg(self.server_id.as_ref())
                                .arg(&partners)
                                .invoke_async::<i64>(&mut con)
                                .await
                        }
                        Transition::Offline(id) => {
                            OFFLINE
                                .key(&inst)
                                .key(COUNTS)
                                .key(keys::ONLINE_USERS)
                                .arg(*id)
                                .arg(CHANNEL)
                                .arg(self.server_id.as_ref())
                                .arg(&partners)
                                .invoke_async::<i64>(&mut con)
                                .await
                        }
                    },
                };
                match result {
                    Ok(_) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "presence update failed; retrying");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(5));
                    }
                }
            }
        }
    }

    /// Who hears about `user` coming and going: the other members of
    /// their private rooms (the only places the UI shows presence), as a
    /// JSON array. Announcing to everyone would cost O(N²) frames when N
    /// users connect.
    async fn partners(
        &self,
        con: &mut RedisCon,
        user: UserId,
    ) -> Result<String, redis::RedisError> {
        let rooms: Vec<String> = con.smembers(keys::user_rooms(user)).await?;
        let ids: Vec<UserId> = rooms
            .iter()
            .filter_map(|r| private_room_members(r))
            .map(|(a, b)| if a == user { b } else { a })
            .collect();
        Ok(serde_json::to_string(&ids).unwrap_or_else(|_| "[]".into()))
    }

    async fn heartbeat(self) {
        let mut con = self.con.clone();
        let mut tick = tokio::time::interval(self.ttl / 3);
        loop {
            tick.tick().await;
            if self.transitions.is_closed()
                || self.halted.load(std::sync::atomic::Ordering::Relaxed)
            {
                return;
            }
            let beat: Result<(), _> = redis::pipe()
                .cmd("SET")
                .arg(alive_key(&self.server_id))
                .arg(1)
                .arg("PX")
                .arg(self.ttl.as_millis() as u64)
                .ignore()
                .sadd(INSTANCES, self.server_id.as_ref())
                .ignore()
                .query_async(&mut con)
                .await;
            if let Err(e) = beat {
                tracing::debug!(error = %e, "presence heartbeat failed");
                continue;
            }
            let instances: Vec<String> = match redis::cmd("SMEMBERS")
                .arg(INSTANCES)
                .query_async(&mut con)
                .await
            {
                Ok(v) => v,
                Err(_) => continue,
            };
            for server in instances.iter().filter(|s| **s != *self.server_id) {
                match self.reap(&mut con, server, false).await {
                    Ok(n) if n > 0 => {
                        tracing::info!(server, users = n, "reaped a dead instance's presence")
                    }
                    Ok(_) => {}
                    Err(e) => tracing::debug!(error = %e, "reaping failed"),
                }
            }
        }
    }

    /// Takes every user of instance `server` offline: a dead one (its
    /// heartbeat expired) or, with `force`, this one at shutdown. Each user
    /// goes through the OFFLINE script, so concurrent reapers decrement
    /// each user once and partners hear of it once.
    async fn reap(
        &self,
        con: &mut RedisCon,
        server: &str,
        force: bool,
    ) -> Result<i64, redis::RedisError> {
        if !force && con.exists::<_, bool>(alive_key(server)).await? {
            return Ok(0);
        }
        let inst = instance_key(server);
        let users: Vec<String> = con.hkeys(&inst).await?;
        let mut gone = 0;
        for uid in &users {
            let Ok(id) = uid.parse::<UserId>() else {
                continue;
            };
            let partners = self.partners(con, id).await?;
            gone += OFFLINE
                .key(&inst)
                .key(COUNTS)
                .key(keys::ONLINE_USERS)
                .arg(id)
                .arg(CHANNEL)
                .arg(self.server_id.as_ref())
                .arg(&partners)
                .invoke_async::<i64>(con)
                .await?;
        }
        redis::pipe()
            .srem(INSTANCES, server)
            .ignore()
            .del(alive_key(server))
            .ignore()
            .query_async::<()>(con)
            .await?;
        Ok(gone)
    }

    /// How many instances are alive (their heartbeat has not expired):
    /// how many acknowledge a control event (`revocation.rs`).
    pub async fn live_instances(con: &mut RedisCon) -> Result<usize, redis::RedisError> {
        let servers: Vec<String> = con.smembers(INSTANCES).await?;
        if servers.is_empty() {
            return Ok(0);
        }
        // One slot ({online_users}): one pipeline.
        let mut pipe = redis::pipe();
        for server in &servers {
            pipe.exists(alive_key(server));
        }
        let alive: Vec<bool> = pipe.query_async(con).await?;
        Ok(alive.into_iter().filter(|a| *a).count())
    }

    /// Stops all presence work without any clean-up, as a crash would
    /// (tests of the reaper).
    pub fn abandon(&self) {
        self.halted
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
}
