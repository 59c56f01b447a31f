//! `loadgen rooms`: `GET /api/rooms` for a user in thousands of private
//! rooms (issue 15).
//!
//! One account is registered through the API; its rooms are seeded
//! directly in Redis (as `history` seeds its room), because opening 5,000
//! rooms through `/api/private_room` would hit `PRIVATE_ROOM_RATE_LIMIT`
//! and take minutes: for each room a partner user (`user:{id}` with a
//! name, no password: nobody can sign in as it), both room sets, and one
//! message in the room's stream. Then `--connections` keep-alive
//! connections of that user request `/api/rooms` one at a time each (the
//! whole list, or with `--limit` its first page, as the browser asks):
//! latency p50/p99, requests/s, response size, server CPU per request.

use super::{http_load, page_load_line, round3, sign_up_all, Common, Ctx, Res};
use clap::Args;
use serde_json::json;
use std::time::Instant;

#[derive(Args, Clone)]
pub struct RoomsArgs {
    #[command(flatten)]
    pub common: Common,
    /// Redis of the server under test, to seed the rooms (never a shared one).
    #[arg(long)]
    redis_url: String,
    /// Private rooms of the measured user (each with one message).
    #[arg(long, default_value_t = 5_000)]
    rooms: u64,
    /// Keep-alive HTTP connections of that user.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Ask for the first page of this many rooms (`?limit=`), not the whole list.
    #[arg(long)]
    limit: Option<usize>,
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
}

/// Gives `user` `count` private rooms with new partner users, one message
/// each (pipelines of 500 rooms). Returns the seconds it took.
async fn seed_rooms(url: &str, user: u64, count: u64, run: &str) -> Res<f64> {
    use redis_chat::server::store::keys;
    let mut con = super::seeding_connection(url).await?;
    let started = Instant::now();
    // Ids of their own, after every user the server has made.
    let last: u64 = redis::cmd("INCRBY")
        .arg(keys::TOTAL_USERS)
        .arg(count)
        .query_async(&mut con)
        .await
        .map_err(|e| e.to_string())?;
    let first = last - count + 1;
    const BATCH: u64 = 500;
    let mut next = first;
    while next <= last {
        let end = (next + BATCH - 1).min(last);
        let mut pipe = redis::pipe();
        for partner in next..=end {
            let room = redis_chat::protocol::private_room_id(user, partner);
            pipe.hset(
                keys::user(partner),
                "username",
                format!("lg{run}-p{partner}"),
            )
            .ignore()
            .sadd(keys::user_rooms(partner), &room)
            .ignore()
            .sadd(keys::user_rooms(user), &room)
            .ignore()
            .cmd("XADD")
            .arg(keys::room_stream(&room))
            .arg("*")
            .arg("from")
            .arg(partner)
            .arg("message")
            .arg(format!("hello from partner {partner}"))
            .ignore();
        }
        pipe.query_async::<()>(&mut con)
            .await
            .map_err(|e| e.to_string())?;
        next = end + 1;
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!("  seeded {count} rooms in {secs:.1} s");
    Ok(secs)
}

pub async fn rooms(ctx: &Ctx, a: RoomsArgs) -> Res<()> {
    let c = a.connections.max(1);
    eprintln!(
        "rooms: one user in {} private rooms, GET /api/rooms over {c} connection(s), {} s (run {})",
        a.rooms, a.duration, ctx.run
    );
    let (accounts, _) = sign_up_all(ctx, vec![ctx.user(0)]).await?;
    let me = &accounts[0];
    let seed_secs = seed_rooms(&a.redis_url, me.id, a.rooms, &ctx.run).await?;
    let cookies = vec![Some(me.cookie.clone()); c];
    let path = match a.limit {
        Some(limit) => format!("/api/rooms?limit={limit}"),
        None => "/api/rooms".to_string(),
    };
    let (hist, counters, s0, s1) =
        http_load(ctx, cookies, a.warmup, a.duration, move |_| path.clone()).await;
    let line = json!({
        "scenario": "rooms",
        "rooms": a.rooms + 1,
        "connections": c,
        "limit": a.limit,
        "seed_s": round3(seed_secs),
        "duration_s": a.duration,
    });
    ctx.emit(page_load_line(line, a.duration, &hist, &counters, &s0, &s1));
    Ok(())
}
