//! The operator command line, run as the real binary against a private
//! Redis (never the machine's 6379): every subcommand, `--json`, exit
//! codes, `--password-stdin`, live delivery to a running server's
//! WebSocket, and the embedded mode.

mod common;
use common::binary::Cli;
use common::*;
use redis::AsyncCommands;
use redis_chat::protocol::{ChatMessage, DirectoryUser, ServerFrame, User};

#[tokio::test]
async fn user_add_validates_like_registration_and_users_lists_them() {
    let redis = TestRedis::start().await;
    let cli = Cli::url(&redis);

    let out = cli
        .run_with_stdin(
            &["user", "add", "alice", "--password-stdin"],
            "password123\n",
        )
        .await
        .ok();
    assert_eq!(out.stdout.trim(), "created user alice (id 1)");
    let bob = cli.add_user("bob").await;
    assert_eq!(
        bob,
        User {
            id: 2,
            username: "bob".into()
        }
    );

    // Registration's rules, as exit code 4.
    cli.run_with_stdin(
        &["user", "add", "ALICE", "--password-stdin"],
        "password123\n",
    )
    .await
    .failed(4, "taken");
    cli.run_with_stdin(&["user", "add", "a b", "--password-stdin"], "password123\n")
        .await
        .failed(4, "username");
    cli.run_with_stdin(&["user", "add", "carol", "--password-stdin"], "short\n")
        .await
        .failed(4, "password");
    // bcrypt would ignore every byte after the 72nd: refused, not cut.
    let long = format!("{}\n", "x".repeat(73));
    cli.run_with_stdin(&["user", "add", "carol", "--password-stdin"], &long)
        .await
        .failed(4, "at most 72 bytes");
    cli.run_with_stdin(&["user", "add", "carol", "--password-stdin"], "")
        .await
        .failed(4, "password");
    // No terminal and no --password-stdin: a usage error, before any change.
    cli.run(&["user", "add", "carol"])
        .await
        .failed(2, "--password-stdin");
    // Usage errors are clap's.
    cli.run(&["user"]).await.failed(2, "usage");
    cli.run(&["frobnicate"]).await.failed(2, "unrecognized");

    let out = cli.run(&["users"]).await.ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(lines[0].contains("NAME") && lines[0].contains("ONLINE"));
    assert!(lines[1].contains("alice") && lines[1].ends_with("no"));
    assert!(lines[2].contains("bob"));
    let users: Vec<DirectoryUser> =
        serde_json::from_value(cli.run(&["--json", "users"]).await.ok().json()).unwrap();
    let names: Vec<(u64, &str, bool)> = users
        .iter()
        .map(|u| (u.id, u.username.as_str(), u.online))
        .collect();
    assert_eq!(names, [(1, "alice", false), (2, "bob", false)]);

    // Nothing was written for "carol".
    let mut con = redis.con().await;
    let total: u64 = con.get("total_users").await.unwrap();
    assert_eq!(total, 2);
    redis.stop().await;
}

#[tokio::test]
async fn users_shows_who_is_online_and_passwd_ends_sessions() {
    let redis = TestRedis::start().await;
    let server = serve(config(&redis)).await;
    let cli = Cli::url(&redis);
    let mut alice = Client::new(&server);
    let me = alice.register("alice").await;
    let mut bob = Client::new(&server);
    bob.register("bob").await;
    let socket = alice.socket().await;
    let mut con = redis.con().await;
    eventually("alice online", || {
        let mut con = con.clone();
        async move {
            con.sismember::<_, _, bool>("online_users", me.id)
                .await
                .unwrap()
        }
    })
    .await;
    let users: Vec<DirectoryUser> =
        serde_json::from_value(cli.run(&["users", "--json"]).await.ok().json()).unwrap();
    let flags: Vec<(&str, bool)> = users
        .iter()
        .map(|u| (u.username.as_str(), u.online))
        .collect();
    assert_eq!(flags, [("alice", true), ("bob", false)]);
    // A command is not an instance: it wrote no presence of its own.
    let instances: Vec<String> = con.smembers("{online_users}:instances").await.unwrap();
    assert!(
        instances.iter().all(|i| !i.starts_with("cli-")),
        "{instances:?}"
    );
    socket.close().await;

    assert_eq!(alice.get("/api/me").await.status, 200);
    // A socket open while the operator changes the password is closed.
    let mut open_socket = alice.socket().await;
    cli.run_with_stdin(
        &["user", "passwd", "nobody", "--password-stdin"],
        "newpassword1\n",
    )
    .await
    .failed(3, "no such user");
    cli.run_with_stdin(&["user", "passwd", "alice", "--password-stdin"], "short\n")
        .await
        .failed(4, "password");
    let long = format!("{}\n", "é".repeat(37));
    cli.run_with_stdin(&["user", "passwd", "alice", "--password-stdin"], &long)
        .await
        .failed(4, "at most 72 bytes");
    let out = cli
        .run_with_stdin(
            &["user", "passwd", "ALICE", "--password-stdin", "--json"],
            "newpassword1\r\n",
        )
        .await
        .ok();
    assert_eq!(out.json()["username"], "alice");
    open_socket.say("0", "after passwd", "p-1").await;
    loop {
        if let Event::Closed(code) = open_socket.next_event().await {
            assert_eq!(code, Some(redis_chat::protocol::close_codes::SESSION_ENDED));
            break;
        }
    }
    assert!(page(&mut bob, "0", None, None).await.messages.is_empty());
    assert_eq!(alice.get("/api/me").await.status, 401, "session ended");
    let mut again = Client::new(&server);
    assert_eq!(again.login("alice", "password123").await.status, 401);
    assert_eq!(again.login("alice", "newpassword1").await.status, 200);
    server.shutdown().await;
    redis.stop().await;
}

#[tokio::test]
async fn send_reaches_live_sockets_of_a_running_server() {
    let redis = TestRedis::start().await;
    let server = serve(config(&redis)).await;
    let cli = Cli::url(&redis);
    let mut a = Client::new(&server);
    let alice = a.register("alice").await;
    let mut b = Client::new(&server);
    let bob = b.register("bob").await;
    let mut bob_socket = b.socket().await;
    let mut alice_socket = a.socket().await;

    // A new private room: announced to both, then the message, live.
    let id = cli.send("alice", "Bob", "hello  bob").await;
    let room = bob_socket
        .wait_for(|f| match f {
            ServerFrame::ShowRoom(r) => Some(r.clone()),
            _ => None,
        })
        .await;
    assert_eq!(room.id, "1:2");
    assert_eq!(room.name, "alice");
    assert_eq!(room.other_user_id, Some(alice.id));
    let m = bob_socket.wait_message("hello  bob").await;
    assert_eq!(
        (m.id.as_str(), m.from, m.room_id.as_str()),
        (id.as_str(), alice.id, "1:2")
    );
    let mine = alice_socket.wait_message("hello  bob").await;
    assert_eq!(mine.id, id);

    // The room exists now: no second announcement, just the message.
    let out = cli
        .run(&[
            "send", "--json", "--as", "bob", "--to", "alice", "hi", "there",
        ])
        .await
        .ok();
    let sent: ChatMessage = serde_json::from_value(out.json()).unwrap();
    assert_eq!((sent.from, sent.room_id.as_str()), (bob.id, "1:2"));
    assert_eq!(sent.message, "hi there");
    let first = alice_socket
        .wait_for(|f| match f {
            ServerFrame::ShowRoom(_) => Some(None),
            ServerFrame::Message(m) if m.message == "hi there" => Some(Some(m.clone())),
            _ => None,
        })
        .await;
    assert_eq!(first, Some(sent), "the message, not a second show.room");

    // A room by id.
    let out = cli
        .run(&["send", "--as", "alice", "--room", "0", "  to everyone\n"])
        .await
        .ok();
    let m = bob_socket.wait_message("to everyone").await;
    assert_eq!(m.id, out.stdout.trim());
    assert_eq!(m.room_id, "0");

    // Errors: unknown users and rooms (3), refused input (4), usage (2).
    let carol = cli.add_user("carol").await;
    cli.run(&["send", "--as", "nobody", "--to", "bob", "x"])
        .await
        .failed(3, "no such user");
    cli.run(&["send", "--as", "alice", "--to", "nobody", "x"])
        .await
        .failed(3, "no such user");
    cli.run(&["send", "--as", "alice", "--room", "lobby", "x"])
        .await
        .failed(3, "no such room");
    cli.run(&["send", "--as", "alice", "--room", "1:3", "x"])
        .await
        .failed(3, "no such room");
    cli.run(&["send", "--as", "carol", "--room", "1:2", "x"])
        .await
        .failed(4, "not a member");
    cli.run(&["send", "--as", "alice", "--to", "alice", "x"])
        .await
        .failed(4, "themselves");
    cli.run(&["send", "--as", "alice", "--room", "0", " \n\t"])
        .await
        .failed(4, "empty");
    let long = "x".repeat(4001);
    cli.run(&["send", "--as", "alice", "--room", "0", &long])
        .await
        .failed(4, "limit");
    cli.run(&["send", "--as", "alice", "x"])
        .await
        .failed(2, "--to");
    cli.run(&["send", "--as", "alice", "--to", "bob", "--room", "0", "x"])
        .await
        .failed(2, "cannot be used");
    let mut con = redis.con().await;
    let carol_rooms: Vec<String> = con
        .smembers(format!("user:{}:rooms", carol.id))
        .await
        .unwrap();
    assert_eq!(carol_rooms, ["0"], "failed sends opened no room");
    let len: usize = con.xlen("room:{0}:stream").await.unwrap();
    assert_eq!(len, 1);
    server.shutdown().await;
    redis.stop().await;
}

#[tokio::test]
async fn inbox_lists_messages_to_a_user_newest_first_with_seen_flags() {
    let redis = TestRedis::start().await;
    let cli = Cli::url(&redis);
    let alice = cli.add_user("alice").await;
    cli.add_user("bob").await;
    cli.add_user("carol").await;
    cli.add_user("dave").await;
    let one = cli.send("bob", "alice", "one").await;
    cli.send("alice", "bob", "mine").await;
    let two = cli.send("carol", "alice", "two\nlines").await;
    let three = cli.send("bob", "alice", "three").await;
    let general = cli
        .run(&["send", "--as", "dave", "--room", "0", "general"])
        .await
        .ok()
        .stdout
        .trim()
        .to_string();

    let alice_id = alice.id;
    let inbox = |args: &'static [&'static str]| {
        let cli = &cli;
        async move {
            let mut all = vec!["inbox", "alice", "--json"];
            all.extend_from_slice(args);
            let v = cli.run(&all).await.ok().json();
            assert_eq!(v["user"]["id"], alice_id);
            v["messages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| {
                    (
                        m["id"].as_str().unwrap().to_string(),
                        m["fromName"].as_str().unwrap().to_string(),
                        m["seen"].as_bool().unwrap(),
                    )
                })
                .collect::<Vec<_>>()
        }
    };
    let t = |id: &str, from: &str, seen: bool| (id.to_string(), from.to_string(), seen);
    assert_eq!(
        inbox(&[]).await,
        [
            t(&three, "bob", false),
            t(&two, "carol", false),
            t(&one, "bob", false)
        ]
    );

    // Alice has read her room with bob up to "one" (the hash the server's
    // read marks live in).
    let mut con = redis.con().await;
    let _: () = con.hset("room:{1:2}:read", alice.id, &one).await.unwrap();
    assert_eq!(
        inbox(&[]).await,
        [
            t(&three, "bob", false),
            t(&two, "carol", false),
            t(&one, "bob", true)
        ]
    );
    assert_eq!(
        inbox(&["--limit", "2"]).await,
        [t(&three, "bob", false), t(&two, "carol", false)]
    );
    assert_eq!(
        inbox(&["--general", "--limit", "1"]).await,
        [t(&general, "dave", false)]
    );

    let out = cli.run(&["inbox", "alice"]).await.ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(lines[0].starts_with("NEW") && lines[0].ends_with("bob: three"));
    assert!(lines[1].ends_with("carol: two\\nlines"), "one line each");
    assert!(lines[2].starts_with("seen") && lines[2].ends_with("bob: one"));
    let out = cli.run(&["inbox", "dave"]).await.ok();
    assert_eq!(out.stdout.trim(), "no messages for dave");
    cli.run(&["inbox", "nobody"])
        .await
        .failed(3, "no such user");
    cli.run(&["inbox", "alice", "--limit", "0"])
        .await
        .failed(2, "limit");

    // Contacts.
    let v = cli.run(&["contacts", "alice", "--json"]).await.ok().json();
    let contacts: Vec<(String, String, bool)> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["username"].as_str().unwrap().to_string(),
                c["roomId"].as_str().unwrap().to_string(),
                c["online"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        contacts,
        [
            ("bob".to_string(), "1:2".to_string(), false),
            ("carol".to_string(), "1:3".to_string(), false)
        ]
    );
    let out = cli.run(&["contacts", "carol"]).await.ok();
    assert_eq!(out.stdout.lines().count(), 2, "{}", out.stdout);
    assert!(out.stdout.contains("alice") && out.stdout.contains("1:3"));
    let out = cli.run(&["contacts", "dave"]).await.ok();
    assert_eq!(out.stdout.trim(), "dave has no private rooms");
    cli.run(&["contacts", "nobody"])
        .await
        .failed(3, "no such user");

    // Edits and deletions (the overlay the server writes): an edited
    // message shows its new text, a deleted one is gone.
    let _: () = con
        .hset(
            "room:{1:2}:edits",
            &three,
            r#"{"message":"THREE","editedMs":1}"#,
        )
        .await
        .unwrap();
    let _: () = con
        .hset("room:{1:3}:edits", &two, r#"{"deleted":true,"editedMs":2}"#)
        .await
        .unwrap();
    assert_eq!(
        inbox(&[]).await,
        [t(&three, "bob", false), t(&one, "bob", true)]
    );
    let out = cli.run(&["inbox", "alice"]).await.ok();
    assert!(out.stdout.contains("THREE (edited)"), "{}", out.stdout);
    assert!(!out.stdout.contains("two"), "{}", out.stdout);
    redis.stop().await;
}

#[tokio::test]
async fn demo_data_is_loaded_once() {
    let redis = TestRedis::start().await;
    let cli = Cli::url(&redis);
    let v = cli.run(&["demo-data", "--json"]).await.ok().json();
    assert_eq!(v["created"], true);
    let out = cli.run(&["demo-data"]).await.ok();
    assert!(out.stdout.starts_with("nothing to do"), "{}", out.stdout);
    let users: Vec<DirectoryUser> =
        serde_json::from_value(cli.run(&["users", "--json"]).await.ok().json()).unwrap();
    let names: Vec<&str> = users.iter().map(|u| u.username.as_str()).collect();
    assert_eq!(names, ["Pablo", "Joe", "Mary", "Alex"]);
    let mut con = redis.con().await;
    let len: usize = con.xlen("room:{0}:stream").await.unwrap();
    assert_eq!(len, 6, "written once");
    let v = cli.run(&["inbox", "Pablo", "--json"]).await.ok().json();
    let greetings: Vec<&str> = v["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["message"].as_str().unwrap())
        .collect();
    assert_eq!(greetings, ["Hi Pablo, nice to see you here."; 3]);
    let v = cli.run(&["contacts", "Pablo", "--json"]).await.ok().json();
    assert_eq!(v.as_array().unwrap().len(), 3);

    // A database with users of its own is left alone.
    let other = TestRedis::start().await;
    let cli = Cli::url(&other);
    cli.add_user("alice").await;
    let v = cli.run(&["demo-data", "--json"]).await.ok().json();
    assert_eq!(v["created"], false);
    let mut con = other.con().await;
    let total: u64 = con.get("total_users").await.unwrap();
    assert_eq!(total, 1);
    other.stop().await;
    redis.stop().await;
}

#[tokio::test]
async fn without_redis_url_commands_use_the_embedded_data_dir() {
    let dir = tempfile::Builder::new()
        .prefix("rc-")
        .tempdir_in("/tmp")
        .unwrap();
    let data = dir.path().join("d");
    let cli = Cli::embedded(&data, dir.path());

    // Each command starts redis-server on the directory and stops it.
    cli.add_user("alice").await;
    let users: Vec<DirectoryUser> =
        serde_json::from_value(cli.run(&["users", "--json"]).await.ok().json()).unwrap();
    assert_eq!(users.len(), 1);
    assert_eq!(users[0].username, "alice");

    // Nothing is left running: the directory is free for a server.
    let redis = redis_chat::server::embedded_redis::EmbeddedRedis::start(&data, "redis-server")
        .await
        .expect("no redis-server left behind by the commands");
    // While one runs (as a server's would), commands use it and leave it be.
    cli.add_user("bob").await;
    let mut con = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let total: u64 = con.get("total_users").await.unwrap();
    assert_eq!(total, 2, "bob was written to the running redis-server");
    redis.stop().await;
    let users: Vec<DirectoryUser> =
        serde_json::from_value(cli.run(&["users", "--json"]).await.ok().json()).unwrap();
    assert_eq!(users.len(), 2);

    // A missing redis-server binary: one clear line, exit 1.
    let mut broken = Cli::embedded(&data, dir.path());
    broken.env.push((
        "REDIS_SERVER_BIN",
        "redis-server-that-does-not-exist".into(),
    ));
    broken.run(&["users"]).await.failed(1, "was not found");
}

#[tokio::test]
async fn an_unreachable_or_misconfigured_redis_is_exit_code_1() {
    let dir = tempfile::Builder::new()
        .prefix("rc-")
        .tempdir_in("/tmp")
        .unwrap();
    let cli = Cli {
        env: vec![(
            "REDIS_URL",
            format!("redis+unix://{}/no.sock", dir.path().display()),
        )],
        dir: dir.path().to_path_buf(),
    };
    cli.run(&["users"]).await.failed(1, "cannot reach Redis");
    cli.run(&["send", "--as", "a", "--room", "0", "x"])
        .await
        .failed(1, "cannot reach Redis");
    let cli = Cli {
        env: vec![("REDIS_URL", "http://example".into())],
        dir: dir.path().to_path_buf(),
    };
    cli.run(&["users"]).await.failed(1, "REDIS_URL");
}

#[tokio::test]
async fn no_command_serves_until_sigterm() {
    let redis = TestRedis::start().await;
    let cli = Cli {
        env: vec![
            ("REDIS_URL", redis.url()),
            ("PORT", "0".into()),
            ("DEMO_DATA", "false".into()),
        ],
        dir: redis.dir.path().to_path_buf(),
    };
    let server = common::process::ServerProcess::start(&cli.env, &cli.dir).await;
    server.wait_ready().await;
    assert_eq!(server.stop().await, Some(0));
    redis.stop().await;
}

#[tokio::test]
async fn commands_work_on_a_cluster() {
    let cluster = common::cluster::TestCluster::start().await;
    let server = serve(cluster_config(&cluster)).await;
    let cli = Cli {
        env: vec![
            ("REDIS_CLUSTER_NODES", cluster.nodes_setting()),
            ("BCRYPT_COST", "4".into()),
        ],
        dir: cluster.dir.path().to_path_buf(),
    };
    let alice = cli.add_user("alice").await;
    let bob = cli.add_user("bob").await;
    cli.run_with_stdin(&["user", "add", "Bob", "--password-stdin"], "password123\n")
        .await
        .failed(4, "taken");
    let users: Vec<DirectoryUser> =
        serde_json::from_value(cli.run(&["--json", "users"]).await.ok().json()).unwrap();
    assert_eq!(users.len(), 2);

    // A user made by the command line signs in on the server, and a send
    // reaches the server's sockets through the cluster.
    let mut b = Client::new(&server);
    assert_eq!(b.login("bob", "password123").await.status, 200);
    let mut bob_socket = b.socket().await;
    let id = cli.send("alice", "bob", "over the cluster").await;
    let m = bob_socket.wait_message("over the cluster").await;
    assert_eq!((m.id.as_str(), m.from), (id.as_str(), alice.id));

    let v = cli.run(&["inbox", "bob", "--json"]).await.ok().json();
    assert_eq!(v["messages"][0]["message"], "over the cluster");
    assert_eq!(v["messages"][0]["seen"], false);
    let v = cli.run(&["contacts", "alice", "--json"]).await.ok().json();
    assert_eq!(v[0]["id"], bob.id);
    cli.run(&["send", "--as", "bob", "--room", "7:9", "x"])
        .await
        .failed(3, "room");
    server.shutdown().await;
}

#[tokio::test]
async fn version_names_the_crate_version_and_the_commit() {
    let dir = tempfile::tempdir().unwrap();
    let cli = Cli {
        env: vec![],
        dir: dir.path().to_path_buf(),
    };
    let out = cli.run(&["--version"]).await.ok();
    let line = out.stdout.trim();
    let expected = format!("redis-chat {} (commit ", env!("CARGO_PKG_VERSION"));
    assert!(line.starts_with(&expected), "{line:?}");
    // The Makefile passes the commit; a plain `cargo build` says "unknown".
    let commit = line[expected.len()..].trim_end_matches(')');
    assert!(
        commit == "unknown" || (commit.len() >= 7 && commit.chars().all(|c| c.is_ascii_hexdigit())),
        "{line:?}"
    );
}
