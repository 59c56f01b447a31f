//! TLS to Redis: `redis-server --tls-port` (no plain port) with
//! certificates made by the test (a CA, a server certificate for
//! 127.0.0.1, a client certificate, an unrelated CA): the binary on
//! `rediss://`, chat over TLS with `REDIS_CA_CERT` (the pub/sub subscriber
//! included), a wrong CA, mutual TLS, and a TLS Redis Cluster.

mod common;
use common::binary::Cli;
use common::cluster::{PlainRedis, TestCluster};
use common::process::ServerProcess;
use common::tls::TestPki;
use common::*;
use redis_chat::server::{self, config::Config, redis_tls::RedisTls, StartError};
use std::time::{Duration, Instant};

/// The binary with these settings (and a free port, no demo data).
fn binary(pki: &TestPki, env: &[(&'static str, String)]) -> Cli {
    Cli {
        env: [("PORT", "0".to_string()), ("DEMO_DATA", "false".into())]
            .into_iter()
            .chain(env.iter().cloned())
            .collect(),
        dir: pki.dir.path().to_path_buf(),
    }
}

/// Serves (ready: Redis answers over TLS) until asked, then stops cleanly.
async fn serves(cli: Cli) {
    let server = ServerProcess::start(&cli.env, &cli.dir).await;
    server.wait_ready().await;
    assert_eq!(server.stop().await, Some(0));
}

/// `server::start`'s error, which must come well before the 30 s that
/// start-up waits for a Redis that is not up yet.
async fn start_error(config: Config) -> String {
    let started = Instant::now();
    let error = match server::start(config).await {
        Ok(_) => panic!("the server started"),
        Err(e) => e,
    };
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}: {error}",
        started.elapsed()
    );
    assert!(matches!(error, StartError::Tls(_)), "{error:?}");
    let line = error.to_string();
    assert_eq!(line.lines().count(), 1, "{line:?}");
    line
}

/// Before the crypto provider was installed, every `rediss://` start
/// panicked ("Could not automatically determine the process-level
/// CryptoProvider"), `#insecure` too, as the README sends Redis Cloud
/// users there. Now: without the CA one line and exit code 1;
/// `#insecure` (no verification) and `REDIS_CA_CERT` serve.
#[tokio::test]
async fn the_binary_on_rediss_serves_or_says_why_not() {
    let pki = TestPki::new();
    let redis = PlainRedis::start_tls(pki.server(false)).await;

    let out = binary(&pki, &[("REDIS_URL", redis.url())]).run(&[]).await;
    assert!(!out.stderr.contains("panicked"), "{:?}", out.stderr);
    out.failed(1, "not trusted: set REDIS_CA_CERT to the CA that signed it");

    serves(binary(
        &pki,
        &[("REDIS_URL", format!("{}/#insecure", redis.url()))],
    ))
    .await;
    serves(binary(
        &pki,
        &[
            ("REDIS_URL", redis.url()),
            ("REDIS_CA_CERT", pki.file("ca.crt")),
        ],
    ))
    .await;
}

/// Two instances on one TLS Redis with `REDIS_CA_CERT`: a user made on one
/// signs in on the other, a message sent through one arrives live on a
/// socket of the other (so the pub/sub subscriber is on TLS too) and is
/// in the history.
#[tokio::test]
async fn sign_in_send_history_and_live_delivery_over_tls() {
    let pki = TestPki::new();
    let redis = PlainRedis::start_tls(pki.server(false)).await;
    let mut config = Config::for_tests(&redis.url());
    config.redis_tls = pki.tls(false);
    let one = serve(config.clone()).await;
    let two = serve(config).await;

    let mut a = Client::new(&one);
    let alice = a.register("alice").await;
    let mut b = Client::new(&two);
    b.register("bob").await;
    let mut alice_on_two = Client::new(&two);
    let r = alice_on_two.login("alice", "password123").await;
    assert_eq!(r.status, 200, "{:?}", r.body);

    let mut bob_socket = b.socket().await;
    let mut alice_socket = a.socket().await;
    alice_socket.say("0", "over TLS", "t-1").await;
    let live = bob_socket.wait_message("over TLS").await;
    assert_eq!(live.from, alice.id);

    let history = page(&mut b, "0", None, None).await;
    assert!(
        history.messages.iter().any(|m| m.id == live.id),
        "{:?}",
        history.messages
    );
    one.shutdown().await;
    two.shutdown().await;
}

/// A CA that did not sign the server's certificate: the start stops at
/// once with one line naming REDIS_CA_CERT, from the library and from
/// the binary (exit code 1, one line on stderr).
#[tokio::test]
async fn a_wrong_ca_stops_the_start_with_one_clear_line() {
    let pki = TestPki::new();
    let redis = PlainRedis::start_tls(pki.server(false)).await;
    let mut config = Config::for_tests(&redis.url());
    config.redis_tls = RedisTls::load(Some(&pki.path("other-ca.crt")), None, None).unwrap();
    let line = start_error(config).await;
    assert!(line.contains("not trusted"), "{line}");
    assert!(
        line.contains(&format!("REDIS_CA_CERT={}", pki.file("other-ca.crt"))),
        "{line}"
    );

    binary(
        &pki,
        &[
            ("REDIS_URL", redis.url()),
            ("REDIS_CA_CERT", pki.file("other-ca.crt")),
        ],
    )
    .run(&[])
    .await
    .failed(1, "did not sign it");
    // The operator commands say the same.
    binary(
        &pki,
        &[
            ("REDIS_URL", redis.url()),
            ("REDIS_CA_CERT", pki.file("other-ca.crt")),
        ],
    )
    .run(&["users"])
    .await
    .failed(1, "not trusted");
}

/// `--tls-auth-clients yes`: with `REDIS_CLIENT_CERT`/`REDIS_CLIENT_KEY`
/// the chat works (pub/sub included); without them the start stops with
/// one line that says to set them, and with a certificate of a CA the
/// server does not trust, with one line that says so.
#[tokio::test]
async fn mutual_tls_works_with_the_client_certificate_and_says_so_without() {
    let pki = TestPki::new();
    let redis = PlainRedis::start_tls(pki.server(true)).await;
    let mut config = Config::for_tests(&redis.url());
    config.redis_tls = pki.tls(false);
    let line = start_error(config.clone()).await;
    assert!(
        line.contains("requires a client certificate")
            && line.contains("REDIS_CLIENT_CERT and REDIS_CLIENT_KEY"),
        "{line}"
    );
    binary(
        &pki,
        &[
            ("REDIS_URL", redis.url()),
            ("REDIS_CA_CERT", pki.file("ca.crt")),
        ],
    )
    .run(&[])
    .await
    .failed(1, "set REDIS_CLIENT_CERT and REDIS_CLIENT_KEY");

    config.redis_tls = RedisTls::load(
        Some(&pki.path("ca.crt")),
        Some(&pki.path("stranger.crt")),
        Some(&pki.path("stranger.key")),
    )
    .unwrap();
    let line = start_error(config.clone()).await;
    assert!(
        line.contains("refused the client certificate")
            && line.contains(&format!("REDIS_CLIENT_CERT={}", pki.file("stranger.crt"))),
        "{line}"
    );

    config.redis_tls = pki.tls(true);
    let server = serve(config).await;
    let mut a = Client::new(&server);
    let alice = a.register("alice").await;
    let mut b = Client::new(&server);
    b.register("bob").await;
    let mut bob_socket = b.socket().await;
    a.socket().await.say("0", "mutual", "m-1").await;
    assert_eq!(bob_socket.wait_message("mutual").await.from, alice.id);
    server.shutdown().await;

    serves(binary(
        &pki,
        &[
            ("REDIS_URL", redis.url()),
            ("REDIS_CA_CERT", pki.file("ca.crt")),
            ("REDIS_CLIENT_CERT", pki.file("client.crt")),
            ("REDIS_CLIENT_KEY", pki.file("client.key")),
        ],
    ))
    .await;
}

/// A Redis Cluster of three TLS masters (`--tls-cluster yes`), reached as
/// `rediss://` nodes with `REDIS_CA_CERT`: sign-in, send, and live
/// delivery across two instances through the sharded subscriptions.
#[tokio::test]
async fn a_tls_cluster_signs_in_sends_and_delivers_live() {
    let pki = TestPki::new();
    let cluster = TestCluster::start_tls(pki.server(false)).await;
    let mut config = cluster_config(&cluster);
    config.redis_tls = pki.tls(false);
    let one = serve(config.clone()).await;
    let two = serve(config).await;

    let mut a = Client::new(&one);
    let alice = a.register("alice").await;
    let mut b = Client::new(&two);
    let bob = b.register("bob").await;
    let room = open_private(&mut a, &bob).await;
    let mut bob_socket = b.socket().await;
    let mut alice_socket = a.socket().await;
    for (room, text) in [
        (room.id.as_str(), "private over TLS"),
        ("0", "general over TLS"),
    ] {
        alice_socket.say(room, text, text).await;
        let m = bob_socket.wait_message(text).await;
        assert_eq!((m.from, m.room_id.as_str()), (alice.id, room));
    }
    assert!(two.state.hub.shard_rooms() >= 2, "sharded subscriptions");
    let history = page(&mut b, &room.id, None, None).await;
    assert_eq!(history.messages[0].message, "private over TLS");

    let mut wrong_ca = cluster_config(&cluster);
    wrong_ca.redis_tls = RedisTls::load(Some(&pki.path("other-ca.crt")), None, None).unwrap();
    assert!(start_error(wrong_ca).await.contains("not trusted"));
    binary(&pki, &[("REDIS_CLUSTER_NODES", cluster.nodes_setting())])
        .run(&["users"])
        .await
        .failed(1, "set REDIS_CA_CERT");
    one.shutdown().await;
    two.shutdown().await;
}
