//! Start-up: the embedded redis-server supervisor, demo data, and data
//! written by the original demo.

mod common;
use common::*;
use redis::AsyncCommands;
use redis_chat::protocol::{MessagePage, RoomSummary};
use redis_chat::server::embedded_redis::{EmbeddedError, EmbeddedRedis};

#[tokio::test]
async fn embedded_redis_starts_restarts_persists_and_stops() {
    let dir = tempfile::Builder::new()
        .prefix("rc-")
        .tempdir_in("/tmp")
        .unwrap();
    let data = dir.path().join("data");
    let redis = EmbeddedRedis::start(&data, "redis-server").await.unwrap();
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&data).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "the data dir and its socket are private");
    let client = redis::Client::open(redis.url()).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = con.set("kept", "yes").await.unwrap();
    let cfg: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("appendonly")
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(cfg[1], "yes");
    let port: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("port")
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(port[1], "0", "no TCP listener");

    // A second start on the same directory is refused clearly.
    let again = EmbeddedRedis::start(&data, "redis-server").await;
    assert!(matches!(again, Err(EmbeddedError::InUse(_))));

    // The child dies: the supervisor starts a new one, data intact.
    let first_pid = redis.pid();
    unsafe {
        libc::kill(first_pid as i32, libc::SIGKILL);
    }
    eventually("a restarted redis-server", || {
        let pid = redis.pid();
        async move { pid != first_pid && pid != 0 }
    })
    .await;
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let v: Option<String> = con.get("kept").await.unwrap();
    assert_eq!(v.as_deref(), Some("yes"), "AOF replayed after the crash");

    // A clean stop ends the child; a new start finds the data.
    let pid = redis.pid();
    redis.stop().await;
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "child gone"
    );
    let redis = EmbeddedRedis::start(&data, "redis-server").await.unwrap();
    let mut con = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let v: Option<String> = con.get("kept").await.unwrap();
    assert_eq!(v.as_deref(), Some("yes"));
    redis.stop().await;
}

#[tokio::test]
async fn a_missing_redis_server_is_one_clear_line() {
    let dir = tempfile::Builder::new()
        .prefix("rc-")
        .tempdir_in("/tmp")
        .unwrap();
    let err = EmbeddedRedis::start(&dir.path().join("d"), "redis-server-that-does-not-exist")
        .await
        .err()
        .unwrap();
    let text = err.to_string();
    assert!(
        text.contains("was not found") && text.contains("REDIS_URL"),
        "{text}"
    );
    assert!(!text.contains('\n'));
}

#[tokio::test]
async fn demo_data_is_created_once_by_concurrent_starters() {
    let redis = TestRedis::start().await;
    let mut cfg = config(&redis);
    cfg.demo_data = true;
    let (one, two) = tokio::join!(serve(cfg.clone()), serve(cfg.clone()));
    let three = serve(cfg).await;
    let mut con = redis.con().await;
    let total: u64 = con.get("total_users").await.unwrap();
    assert_eq!(total, 4);
    let len: usize = con.xlen("room:{0}:stream").await.unwrap();
    assert_eq!(len, 6);

    let mut pablo = Client::new(&one);
    let r = pablo.login("Pablo", "password123").await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let rooms: Vec<RoomSummary> =
        serde_json::from_value(pablo.get("/api/rooms").await.body).unwrap();
    assert_eq!(
        rooms.len(),
        4,
        "General and a private room with each of the others"
    );
    assert!(rooms.iter().all(|r| r.last_message.is_some()));
    let names: Vec<String> =
        serde_json::from_value(pablo.get("/api/demo_accounts").await.body).unwrap();
    assert_eq!(names, ["Pablo", "Joe", "Mary", "Alex"]);
    for s in [one, two, three] {
        s.shutdown().await;
    }
    redis.stop().await;
}

#[tokio::test]
async fn history_written_by_the_original_demo_is_imported_once() {
    let redis = TestRedis::start().await;
    let mut con = redis.con().await;
    let h = bcrypt::hash("password123", 4).unwrap();
    let _: () = redis::pipe()
        .set("total_users", 2)
        .hset_multiple("user:1", &[("username", "Pablo"), ("password", h.as_str())])
        .set("username:Pablo", "user:1")
        .sadd("user:1:rooms", &["0", "1:2"])
        .hset_multiple("user:2", &[("username", "Joe"), ("password", h.as_str())])
        .set("username:Joe", "user:2")
        .sadd("user:2:rooms", &["0", "1:2"])
        .set("room:0:name", "General")
        // Two identical texts at one second: the demo keeps them apart only by JSON.
        .zadd(
            "room:0",
            r#"{"from": "1", "date": 1615480369, "message": "Hello", "roomId": "0"}"#,
            1615480369,
        )
        .zadd(
            "room:0",
            r#"{"from": 2, "date": 1615480370, "message": "Hi!", "roomId": "0"}"#,
            1615480370,
        )
        .zadd(
            "room:1:2",
            r#"{"from": 2, "date": 1615480400, "message": "psst", "roomId": "1:2"}"#,
            1615480400,
        )
        .query_async(&mut con)
        .await
        .unwrap();
    let mut cfg = config(&redis);
    cfg.demo_data = true;
    let one = serve(cfg.clone()).await;
    one.shutdown().await;
    let two = serve(cfg).await;
    let mut c = Client::new(&two);
    assert_eq!(c.login("Pablo", "password123").await.status, 200);
    let p: MessagePage =
        serde_json::from_value(c.get("/api/messages?room_id=0").await.body).unwrap();
    let got: Vec<(u64, i64, &str)> = p
        .messages
        .iter()
        .map(|m| (m.from, m.date, m.message.as_str()))
        .collect();
    assert_eq!(
        got,
        [(1, 1615480369, "Hello"), (2, 1615480370, "Hi!")],
        "imported once, in order"
    );
    let p: MessagePage =
        serde_json::from_value(c.get("/api/messages?room_id=1:2").await.body).unwrap();
    assert_eq!(p.messages.len(), 1);
    // No demo data was added on top of existing users.
    let total: u64 = con.get("total_users").await.unwrap();
    assert_eq!(total, 2);
    two.shutdown().await;
    redis.stop().await;
}

/// Demo accounts have a published password: the real binary creates them
/// on a loopback address, or anywhere with `DEMO_DATA=true`; on another
/// address without the setting there are none, and one log line says why.
#[tokio::test]
async fn demo_accounts_need_a_loopback_address_or_demo_data_true() {
    let says_why = |line: &String| line.contains("no demo accounts");
    for (addr, demo_data, demo) in [
        ("0.0.0.0", None, false),
        ("0.0.0.0", Some("true"), true),
        ("127.0.0.1", None, true),
    ] {
        let case = format!("ADDR={addr} DEMO_DATA={demo_data:?}");
        let dir = tempfile::Builder::new()
            .prefix("rc-")
            .tempdir_in("/tmp")
            .unwrap();
        let mut env = vec![
            ("ADDR", addr.to_string()),
            ("PORT", "0".into()),
            (
                "REDIS_DATA_DIR",
                dir.path().join("redis").display().to_string(),
            ),
            ("BCRYPT_COST", "4".into()),
        ];
        if let Some(v) = demo_data {
            env.push(("DEMO_DATA", v.into()));
        }
        let server = common::process::ServerProcess::start(&env, dir.path()).await;
        let mut c = Client::for_addr(([127, 0, 0, 1], server.port()).into());
        let names: Vec<String> =
            serde_json::from_value(c.get("/api/demo_accounts").await.body).unwrap();
        let pablo = c.login("Pablo", "password123").await;
        let why: Vec<&String> = server.log.iter().filter(|l| says_why(l)).collect();
        if demo {
            assert_eq!(names, ["Pablo", "Joe", "Mary", "Alex"], "{case}");
            assert_eq!(pablo.status, 200, "{case}: {:?}", pablo.body);
            assert!(why.is_empty(), "{case}: {why:?}");
        } else {
            assert!(names.is_empty(), "{case}: {names:?}");
            assert_eq!(pablo.status, 401, "{case}: {:?}", pablo.body);
            assert_eq!(why.len(), 1, "{case}: one line says why: {:#?}", server.log);
            assert!(why[0].contains("DEMO_DATA=true"), "{case}: {why:?}");
        }
        assert_eq!(server.stop().await, Some(0), "{case}");
    }
}

/// Demo accounts made by an earlier start on a loopback address still have
/// the published password when the server is later started on a public
/// address: one warning names them.
#[tokio::test]
async fn leftover_demo_accounts_on_a_public_address_are_warned_about() {
    let dir = tempfile::Builder::new()
        .prefix("rc-")
        .tempdir_in("/tmp")
        .unwrap();
    let env = |addr: &str| {
        vec![
            ("ADDR", addr.to_string()),
            ("PORT", "0".into()),
            (
                "REDIS_DATA_DIR",
                dir.path().join("redis").display().to_string(),
            ),
            ("BCRYPT_COST", "4".into()),
        ]
    };
    let warned = |line: &str| line.contains("published password");
    let local = common::process::ServerProcess::start(&env("127.0.0.1"), dir.path()).await;
    assert!(!local.log.iter().any(|l| warned(l)), "{:#?}", local.log);
    assert_eq!(local.stop().await, Some(0));

    let mut public = common::process::ServerProcess::start(&env("0.0.0.0"), dir.path()).await;
    let line = public.wait_line(warned).await;
    assert!(line.contains("Pablo, Joe, Mary, Alex"), "{line}");
    // Once one has a new password, it is no longer named.
    assert_eq!(public.stop().await, Some(0));
    let mut cli = common::process::command(
        &["user", "passwd", "Joe", "--password-stdin"],
        &env("127.0.0.1"),
        dir.path(),
    );
    cli.stdin(std::process::Stdio::piped());
    let mut child = cli.spawn().unwrap();
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"a-new-long-password\n").await.unwrap();
    }
    let out = child.wait_with_output().await.unwrap();
    assert!(out.status.success(), "{out:?}");
    let mut public = common::process::ServerProcess::start(&env("0.0.0.0"), dir.path()).await;
    let line = public.wait_line(warned).await;
    assert!(line.contains("Pablo, Mary, Alex"), "{line}");
    assert_eq!(public.stop().await, Some(0));
}
