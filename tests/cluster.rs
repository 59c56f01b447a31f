//! redis-chat on a Redis Cluster: a private 3-master cluster per test
//! (`common::cluster`), two app instances on it, over real HTTP and
//! WebSockets.

mod common;
use common::cluster::{TestCluster, CLUSTER_WAIT};
use common::*;
use redis::AsyncCommands;
use redis_chat::protocol::{MessagePage, ServerFrame};
use serde_json::json;

/// [`eventually`] with room for a cluster to agree after a node restarts.
async fn poll_long<F, Fut>(what: &str, check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    eventually_within(what, CLUSTER_WAIT, check).await
}

/// Waits until the instance's pub/sub subscription is up (`/healthz`).
async fn subscribed(c: &Client) {
    let mut c = c.clone();
    poll_long("the instance is subscribed", || {
        let mut c = c.clone();
        async move { c.get("/healthz").await.body["pubsub"] == json!(true) }
    })
    .await;
    c.cookie = None;
}

/// How many instances subscribe to a room's shard channel (on its node).
async fn shard_subscribers(cluster: &TestCluster, room: &str) -> u64 {
    let channel = format!("room:{{{room}}}:events");
    let node = cluster.node_of(&channel).await;
    let Ok(mut c) = cluster.node_con(node).await else {
        return 0;
    };
    let r: (String, u64) = redis::cmd("PUBSUB")
        .arg("SHARDNUMSUB")
        .arg(&channel)
        .query_async(&mut c)
        .await
        .unwrap_or_default();
    r.1
}

/// Waits until `n` instances subscribe to the room's shard channel.
async fn shard_subscribed(cluster: &TestCluster, room: &str, n: u64) {
    poll_long(&format!("{n} subscribers of room {room}"), || async move {
        shard_subscribers(cluster, room).await == n
    })
    .await;
}

#[tokio::test]
async fn two_instances_on_a_cluster_serve_accounts_rooms_history_presence_and_resume() {
    let cluster = TestCluster::start().await;
    let one = serve(cluster_config(&cluster)).await;
    let two = serve(cluster_config(&cluster)).await;

    // Accounts: registered on one instance, signed in on the other.
    let mut a = Client::new(&one);
    let alice = a.register("alice").await;
    let mut b = Client::new(&two);
    let bob = b.register("bob").await;
    let mut dup = Client::new(&two);
    let taken = dup
        .post(
            "/api/register",
            &[("username", "ALICE"), ("password", "password123")],
        )
        .await;
    assert_eq!(taken.status, 409, "names are unique across slots too");
    let mut a2 = Client::new(&two);
    assert_eq!(a2.login("Alice", "password123").await.status, 200);
    assert_eq!(a2.get("/api/me").await.body["id"], json!(alice.id));
    // The session made on instance two works on instance one.
    a2.base = a.base.clone();
    assert_eq!(a2.get("/api/me").await.status, 200);

    subscribed(&a).await;
    subscribed(&b).await;
    let mut a_socket = a.socket().await;
    let mut b_socket = b.socket().await;
    // Room events travel on the room's shard channel, which each instance
    // subscribes to once one of its users is a member.
    shard_subscribed(&cluster, "0", 2).await;

    // Fan-out across instances, once each.
    a_socket.say("0", "hello cluster", "h1").await;
    b_socket.wait_message("hello cluster").await;
    a_socket.wait_message("hello cluster").await;
    b_socket.say("0", "back", "b1").await;
    let next = a_socket.next_frame().await;
    assert!(
        matches!(&next, ServerFrame::Message(m) if m.message == "back"),
        "no duplicate before 'back': {next:?}"
    );

    // A private room (two users' room sets in two slots), announced to
    // the other member on the other instance.
    let room = open_private(&mut a, &bob).await;
    let shown = b_socket
        .wait_for(|f| match f {
            ServerFrame::ShowRoom(r) => Some(r.clone()),
            _ => None,
        })
        .await;
    assert_eq!(shown.id, room.id);
    assert_eq!(shown.name, "alice");
    // Presence: alice has a socket, so bob sees her online.
    assert_eq!(shown.online, Some(true));
    a_socket.say(&room.id, "psst", "p1").await;
    // (Bob's instance may subscribe to the new room only after "psst" was
    // published: it then reads what he missed from the stream. Either way
    // he gets it once.)
    let psst = b_socket.wait_message("psst").await;
    assert_eq!(psst.room_id, room.id);
    a_socket.wait_message("psst").await;
    a_socket.say(&room.id, "psst 2", "p2").await;
    let psst2 = b_socket
        .wait_for(|f| match f {
            ServerFrame::Message(m) => Some(m.clone()),
            _ => None,
        })
        .await;
    assert_eq!(psst2.message, "psst 2", "no second copy of 'psst'");

    // Outsiders cannot read it; its members can, on either instance.
    let mut e = Client::new(&one);
    e.register("eve").await;
    let r = e
        .get(&format!(
            "/api/messages?{}",
            query(&[("room_id", &room.id)])
        ))
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(
        page(&mut b, &room.id, None, Some("10")).await.messages[0].message,
        "psst"
    );

    // History paging in General.
    for i in 0..12 {
        a_socket.say("0", &format!("m{i}"), &format!("n{i}")).await;
        a_socket.wait_message(&format!("m{i}")).await;
    }
    let p1 = page(&mut b, "0", None, Some("5")).await;
    let p2 = page(&mut b, "0", p1.next.as_deref(), Some("5")).await;
    let p3 = page(&mut b, "0", p2.next.as_deref(), Some("5")).await;
    let texts = |p: &MessagePage| {
        p.messages
            .iter()
            .map(|m| m.message.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(texts(&p1), ["m7", "m8", "m9", "m10", "m11"]);
    assert_eq!(texts(&p2), ["m2", "m3", "m4", "m5", "m6"]);
    assert_eq!(texts(&p3), ["hello cluster", "back", "m0", "m1"]);
    assert_eq!(p3.next, None);

    // Room list: rooms in different slots, with unread counts.
    let listed = rooms(&mut b).await;
    let private = listed.iter().find(|r| r.id == room.id).unwrap();
    assert_eq!(private.unread, 2);
    assert_eq!(private.online, Some(true));
    assert_eq!(private.last_message.as_ref().unwrap().message, "psst 2");
    assert!(listed.iter().any(|r| r.id == "0"));
    // A page at a time: the same rooms in the same order (each room's
    // newest id read on its own node).
    let first = b.get("/api/rooms?limit=1").await;
    assert_eq!(first.status, 200, "{:?}", first.body);
    let after = format!("/api/rooms?limit=5&before={}", listed[0].id);
    let rest = b.get(&after).await;
    assert_eq!(rest.status, 200, "{:?}", rest.body);
    let paged: Vec<String> = [first.body, rest.body]
        .iter()
        .flat_map(|page| page.as_array().unwrap().clone())
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    let whole: Vec<String> = listed.iter().map(|r| r.id.clone()).collect();
    assert_eq!(paged, whole);

    // Read marks: bob reads; alice (partner, other instance) is told.
    b_socket
        .send_json(json!({"type":"read","data":{"roomId": room.id, "id": psst2.id}}))
        .await;
    let mark = a_socket
        .wait_for(|f| match f {
            ServerFrame::Read(r) if r.user_id == bob.id => Some(r.clone()),
            _ => None,
        })
        .await;
    assert_eq!(mark.id, psst2.id);
    let listed = rooms(&mut b).await;
    assert_eq!(listed.iter().find(|r| r.id == room.id).unwrap().unread, 0);

    // Edits reach the other instance and the history.
    a_socket
        .send_json(
            json!({"type":"edit","data":{"roomId": room.id, "id": psst.id, "message": "psst!"}}),
        )
        .await;
    let edited = b_socket
        .wait_for(|f| match f {
            ServerFrame::MessageUpdated(m) => Some(m.clone()),
            _ => None,
        })
        .await;
    assert_eq!(edited.message, "psst!");
    assert_eq!(
        page(&mut b, &room.id, None, Some("10")).await.messages[0].message,
        "psst!"
    );

    // Resume: bob is away while alice writes; he comes back on the other
    // instance and gets exactly what he missed.
    // (Bob's socket skipped the General messages while it waited for the
    // edit; his last one is the newest of the first page.)
    let last = p1.messages.last().unwrap().clone();
    b_socket.close().await;
    for i in 0..3 {
        a_socket
            .say("0", &format!("missed {i}"), &format!("x{i}"))
            .await;
        a_socket.wait_message(&format!("missed {i}")).await;
    }
    b.base = a.base.clone();
    let mut b_socket = b.resuming_socket().await;
    b_socket
        .send_json(json!({"type":"resume","data":{"rooms":{"0": last.id}}}))
        .await;
    let mut got = Vec::new();
    loop {
        match b_socket.next_frame().await {
            ServerFrame::Message(m) => got.push(m.message),
            ServerFrame::Resumed(_) => break,
            _ => {}
        }
    }
    assert_eq!(got, ["missed 0", "missed 1", "missed 2"]);

    // Directory search and the online flags.
    let r = e.get("/api/users?q=bo").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body[0]["username"], "bob");
    assert_eq!(r.body[0]["online"], json!(true));

    one.shutdown().await;
    two.shutdown().await;
}

#[tokio::test]
async fn data_of_the_original_demo_in_a_cluster_is_usable_and_imported_once() {
    let cluster = TestCluster::start().await;
    // The demo's keys, as `redis-cli --cluster import` copies them from a
    // single Redis: spread over the three masters.
    let mut con = cluster.con().await;
    let h = bcrypt::hash("password123", 4).unwrap();
    let _: () = con.set("total_users", 2).await.unwrap();
    for (id, name) in [(1, "Pablo"), (2, "Joe")] {
        let _: () = con
            .hset_multiple(
                format!("user:{id}"),
                &[("username", name), ("password", h.as_str())],
            )
            .await
            .unwrap();
        let _: () = con
            .set(format!("username:{name}"), format!("user:{id}"))
            .await
            .unwrap();
        let _: () = con
            .sadd(format!("user:{id}:rooms"), &["0", "1:2"])
            .await
            .unwrap();
    }
    let _: () = con.set("room:0:name", "General").await.unwrap();
    for (key, json, score) in [
        (
            "room:0",
            r#"{"from": "1", "date": 1615480369, "message": "Hello", "roomId": "0"}"#,
            1615480369,
        ),
        (
            "room:0",
            r#"{"from": 2, "date": 1615480370, "message": "Hi!", "roomId": "0"}"#,
            1615480370,
        ),
        (
            "room:1:2",
            r#"{"from": 2, "date": 1615480400, "message": "psst", "roomId": "1:2"}"#,
            1615480400,
        ),
    ] {
        let _: () = con.zadd(key, json, score).await.unwrap();
    }
    // The legacy keys really are on more than one master.
    let mut homes = std::collections::HashSet::new();
    for key in ["room:0", "room:1:2", "user:1", "user:2", "username:Pablo"] {
        homes.insert(cluster.node_of(key).await);
    }
    assert!(homes.len() > 1, "all on one node: {homes:?}");

    // Two instances start together: the import happens once.
    let mut cfg = cluster_config(&cluster);
    cfg.demo_data = true;
    let (one, two) = tokio::join!(serve(cfg.clone()), serve(cfg));
    let mut c = Client::new(&two);
    assert_eq!(c.login("pablo", "password123").await.status, 200);
    let got: Vec<(u64, i64, String)> = page(&mut c, "0", None, Some("50"))
        .await
        .messages
        .into_iter()
        .map(|m| (m.from, m.date, m.message))
        .collect();
    assert_eq!(
        got,
        [
            (1, 1615480369, "Hello".to_string()),
            (2, 1615480370, "Hi!".to_string())
        ]
    );
    assert_eq!(
        page(&mut c, "1:2", None, Some("50")).await.messages.len(),
        1
    );
    let len: usize = con.xlen("room:{0}:stream").await.unwrap();
    assert_eq!(len, 2, "imported once");
    // The backfill scanned every master: both users are in the directory.
    let r = c.get("/api/users?q=").await;
    let names: Vec<&str> = r
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Joe"], "everyone but the caller");
    // No demo data on top of existing users.
    let total: u64 = con.get("total_users").await.unwrap();
    assert_eq!(total, 2);
    one.shutdown().await;
    two.shutdown().await;
}

#[tokio::test]
async fn a_master_killed_and_restarted_loses_no_acknowledged_message() {
    let mut cluster = TestCluster::start().await;
    let one = serve(cluster_config(&cluster)).await;
    // Instance two knows only the first node; it learns the others from
    // the cluster.
    let mut only_first = cluster_config(&cluster);
    only_first.redis = redis_chat::server::config::RedisSource::Cluster(vec![cluster.url(0)]);
    let two = serve(only_first).await;
    let mut a = Client::new(&one);
    a.register("alice").await;
    let mut b = Client::new(&two);
    b.register("bob").await;
    subscribed(&a).await;
    subscribed(&b).await;
    let mut a_socket = a.socket().await;
    let mut b_socket = b.socket().await;
    shard_subscribed(&cluster, "0", 2).await;

    let mut acked = Vec::new();
    for i in 0..20 {
        a_socket
            .say("0", &format!("before {i}"), &format!("b{i}"))
            .await;
        acked.push(a_socket.wait_message(&format!("before {i}")).await.id);
    }
    b_socket.wait_message("before 19").await;

    // The master of General's stream dies (SIGKILL) ...
    let victim = cluster.node_of("room:{0}:stream").await;
    cluster.kill(victim);
    // ... so a send gets a clear error frame, not silence, and no panic.
    a_socket.say("0", "during", "d").await;
    let e = a_socket.wait_error().await;
    assert_eq!(e.code, "unavailable", "{e:?}");
    assert_eq!(e.nonce.as_deref(), Some("d"));
    // A load balancer sees it: /readyz pings every primary, so one down
    // is 503 (the other masters still answer).
    let health = a.get("/readyz").await;
    assert_eq!(health.status, 503, "{:?}", health.body);
    assert_eq!(health.body["redis"], json!(false));

    // It comes back on its port and directory (AOF).
    cluster.restart(victim).await;
    subscribed(&a).await;
    subscribed(&b).await;
    let mut probe = a.clone();
    poll_long("/readyz is 200 again", || {
        let mut c = probe.clone();
        async move { c.get("/readyz").await.status == 200 }
    })
    .await;
    probe.cookie = None;
    // Both instances subscribe to General's shard channel again by
    // themselves (redis-rs resubscribes after the reconnect).
    shard_subscribed(&cluster, "0", 2).await;
    // The client retries with the same nonce until the send is accepted;
    // the nonce keeps it from being stored twice.
    let mut tries = 0;
    let during = loop {
        tries += 1;
        assert!(tries < 200, "sends never recovered");
        a_socket.say("0", "during", "d").await;
        let got = a_socket
            .wait_for(|f| match f {
                ServerFrame::Message(m) if m.message == "during" => Some(Ok(m.clone())),
                ServerFrame::Error(e) if e.nonce.as_deref() == Some("d") => Some(Err(e.clone())),
                _ => None,
            })
            .await;
        match got {
            Ok(m) => break m,
            Err(e) => {
                assert_eq!(e.code, "unavailable", "{e:?}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    };
    acked.push(during.id.clone());
    // Delivery across instances has recovered.
    a_socket.say("0", "after", "af").await;
    acked.push(a_socket.wait_message("after").await.id);
    let after = b_socket.wait_message("after").await;
    assert_eq!(&after.id, acked.last().unwrap());

    // Now the node the instances subscribe on (the first listed) dies:
    // both subscriptions move to a surviving node (instance two's only
    // configured node is gone: it uses a primary the cluster reported),
    // and delivery goes on.
    if victim != 0 {
        cluster.kill(0);
        let shared = &cluster;
        poll_long(
            "both subscriptions moved to the surviving nodes",
            || async move {
                let mut n = 0;
                for i in 1..3 {
                    let Ok(mut c) = shared.node_con(i).await else {
                        return false;
                    };
                    let r: (String, u64) = redis::cmd("PUBSUB")
                        .arg("NUMSUB")
                        .arg("MESSAGES")
                        .query_async(&mut c)
                        .await
                        .unwrap_or_default();
                    n += r.1;
                }
                n == 2
            },
        )
        .await;
        a_socket.say("0", "moved", "mv").await;
        acked.push(a_socket.wait_message("moved").await.id);
        assert_eq!(
            &b_socket.wait_message("moved").await.id,
            acked.last().unwrap()
        );
        cluster.restart(0).await;
    }

    // Every acknowledged message is there, once, in order.
    let stored: Vec<String> = page(&mut b, "0", None, Some("100"))
        .await
        .messages
        .into_iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(stored, acked);
    one.shutdown().await;
    two.shutdown().await;
}

#[tokio::test]
async fn room_events_use_sharded_pubsub_and_subscriptions_follow_local_members() {
    let cluster = TestCluster::start().await;
    let one = serve(cluster_config(&cluster)).await;
    let two = serve(cluster_config(&cluster)).await;
    let mut a = Client::new(&one);
    a.register("alice").await;
    let mut b = Client::new(&one);
    let bob = b.register("bob").await;
    let mut c = Client::new(&two);
    c.register("carol").await;
    // A listener on the global channel, to see what still goes there.
    let mut global = redis::Client::open(cluster.url(1))
        .unwrap()
        .get_async_pubsub()
        .await
        .unwrap();
    global.subscribe("MESSAGES").await.unwrap();

    let mut a_socket = a.socket().await;
    let mut b_socket = b.socket().await;
    let mut c_socket = c.socket().await;
    shard_subscribed(&cluster, "0", 2).await;
    let room = open_private(&mut a, &bob).await;
    // Only instance one has members of the private room.
    shard_subscribed(&cluster, &room.id, 1).await;
    a_socket.say(&room.id, "private", "p").await;
    b_socket.wait_message("private").await;
    c_socket.say("0", "general", "g").await;
    a_socket.wait_message("general").await;
    c_socket.wait_message("general").await;
    let health = |c: &Client| {
        let mut c = c.clone();
        async move { c.get("/healthz").await.body["shardRooms"].as_u64() }
    };
    assert_eq!(health(&a).await, Some(2), "General and the private room");
    assert_eq!(health(&c).await, Some(1), "General only");

    // No room message went over the global channel: up to a marker
    // published after them, it carried only user events.
    let mut con = cluster.con().await;
    let _: () = con.publish("MESSAGES", "marker").await.unwrap();
    let mut stream = global.on_message();
    loop {
        let msg = futures::StreamExt::next(&mut stream).await.unwrap();
        let payload: String = msg.get_payload().unwrap();
        if payload == "marker" {
            break;
        }
        assert!(
            !payload.contains(r#""type":"message""#),
            "a room message on MESSAGES: {payload}"
        );
    }

    // The last local member leaves: the instance unsubscribes.
    a_socket.close().await;
    b_socket.close().await;
    shard_subscribed(&cluster, &room.id, 0).await;
    shard_subscribed(&cluster, "0", 1).await;
    poll_long("instance one follows no room", || async {
        health(&a).await == Some(0)
    })
    .await;
    // Carol's instance still delivers General.
    c_socket.say("0", "still here", "s").await;
    c_socket.wait_message("still here").await;
    one.shutdown().await;
    two.shutdown().await;
}

#[tokio::test]
async fn a_room_moved_to_another_shard_keeps_its_history_and_its_subscriptions() {
    let cluster = TestCluster::start().await;
    let one = serve(cluster_config(&cluster)).await;
    let two = serve(cluster_config(&cluster)).await;
    let mut a = Client::new(&one);
    a.register("alice").await;
    let mut b = Client::new(&two);
    b.register("bob").await;
    let mut a_socket = a.socket().await;
    let mut b_socket = b.socket().await;
    shard_subscribed(&cluster, "0", 2).await;
    a_socket.say("0", "before the move", "b").await;
    let before = b_socket.wait_message("before the move").await;

    // General's slot moves to another master (resharding): the server
    // tells the subscribers of its shard channels that they are dropped.
    let from = cluster.node_of("room:{0}:events").await;
    cluster
        .move_slot_of("room:{0}:events", (from + 1) % 3)
        .await;
    shard_subscribed(&cluster, "0", 2).await;
    a_socket.say("0", "after the move", "a").await;
    let after = b_socket.wait_message("after the move").await;
    let ids: Vec<String> = page(&mut b, "0", None, Some("10"))
        .await
        .messages
        .into_iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(ids, [before.id, after.id]);
    one.shutdown().await;
    two.shutdown().await;
}

#[tokio::test]
async fn a_single_redis_moves_to_a_cluster_with_redis_cli_import() {
    // A deployment on one Redis: the original demo's history, and users,
    // rooms, messages, edits and sessions written by redis-chat.
    let single = common::cluster::PlainRedis::start().await;
    let mut con = redis::Client::open(single.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: () = con
        .zadd(
            "room:0",
            r#"{"from": 1, "date": 1615480369, "message": "from the demo", "roomId": "0"}"#,
            1615480369,
        )
        .await
        .unwrap();
    let old = serve(redis_chat::server::config::Config::for_tests(&single.url())).await;
    let mut a = Client::new(&old);
    a.register("alice").await;
    let mut b = Client::new(&old);
    let bob = b.register("bob").await;
    let room = open_private(&mut a, &bob).await;
    let mut s = a.socket().await;
    s.say(&room.id, "before the move", "m1").await;
    let sent = s.wait_message("before the move").await;
    s.send_json(json!({"type":"edit","data":{"roomId": room.id, "id": sent.id, "message": "edited before"}}))
        .await;
    s.wait_for(|f| matches!(f, ServerFrame::MessageUpdated(_)).then_some(()))
        .await;
    s.close().await;
    old.shutdown().await;

    // The documented move: redis-cli copies every key into the cluster.
    let cluster = TestCluster::start().await;
    let out = tokio::process::Command::new("redis-cli")
        .args(["--cluster", "import"])
        .arg(format!("127.0.0.1:{}", cluster.ports[0]))
        .arg("--cluster-from")
        .arg(format!("127.0.0.1:{}", single.port))
        .arg("--cluster-copy")
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // Everything works on the cluster: the session made before the move,
    // sign-in, rooms, the edited message, the demo's history.
    let one = serve(cluster_config(&cluster)).await;
    a.base = format!("http://{}", one.addr);
    assert_eq!(a.get("/api/me").await.status, 200, "the old session");
    b.base = a.base.clone();
    b.cookie = None;
    assert_eq!(b.login("bob", "password123").await.status, 200);
    let listed = rooms(&mut b).await;
    let private = listed.iter().find(|r| r.id == room.id).unwrap();
    assert_eq!(
        private.last_message.as_ref().unwrap().message,
        "edited before"
    );
    let general: Vec<String> = page(&mut b, "0", None, Some("10"))
        .await
        .messages
        .into_iter()
        .map(|m| m.message)
        .collect();
    assert_eq!(general, ["from the demo"]);
    // And it goes on: a new user and live messages.
    let mut c = Client::new(&one);
    c.register("carol").await;
    let mut bs = b.socket().await;
    shard_subscribed(&cluster, &room.id, 1).await;
    let mut as_ = a.socket().await;
    as_.say(&room.id, "after the move", "m2").await;
    bs.wait_message("after the move").await;
    one.shutdown().await;
}

#[tokio::test]
async fn a_block_on_a_cluster_refuses_sends_and_opens_until_unblocked() {
    // The room's blocked set is in the room's slot (read by its scripts),
    // the blocker's list and the users' room sets in slots of their own.
    let cluster = TestCluster::start().await;
    let one = serve(cluster_config(&cluster)).await;
    let two = serve(cluster_config(&cluster)).await;
    let mut a = Client::new(&one);
    let alice = a.register("alice").await;
    let mut b = Client::new(&two);
    let bob = b.register("bob").await;
    subscribed(&a).await;
    subscribed(&b).await;
    let room = open_private(&mut a, &bob).await.id;
    let mut a_socket = a.socket().await;
    let mut b_socket = b.socket().await;
    shard_subscribed(&cluster, &room, 2).await;
    b_socket.say(&room, "before", "b1").await;
    a_socket.wait_message("before").await;

    let r = a
        .post("/api/block", &[("user_id", &bob.id.to_string())])
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        a.get("/api/blocked").await.body,
        json!([{"id": bob.id, "username": "bob"}])
    );
    b_socket.say(&room, "after", "b2").await;
    let e = b_socket.wait_error().await;
    assert_eq!(
        (e.code.as_str(), e.nonce.as_deref()),
        ("forbidden", Some("b2"))
    );
    let r = b
        .post("/api/private_room", &[("user_id", &alice.id.to_string())])
        .await;
    assert_eq!(r.status, 403, "{:?}", r.body);
    let r = b
        .get(&format!("/api/messages?{}", query(&[("room_id", &room)])))
        .await;
    let page: MessagePage = serde_json::from_value(r.body).unwrap();
    assert_eq!(page.messages.len(), 1, "nothing stored, history readable");

    let r = a
        .post("/api/unblock", &[("user_id", &bob.id.to_string())])
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    b_socket.say(&room, "again", "b3").await;
    a_socket.wait_message("again").await;
    one.shutdown().await;
    two.shutdown().await;
}
