//! Unit tests of `config.rs`: parsing every setting from the environment.

use super::*;
use std::collections::HashMap;

fn with(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Config::from_lookup(|k| map.get(k).cloned())
}

#[test]
fn defaults_are_the_embedded_redis_on_port_3000() {
    let c = with(&[]).unwrap();
    assert_eq!(c.addr.to_string(), "127.0.0.1:3000");
    assert!(matches!(c.redis, RedisSource::Embedded { .. }));
    assert!(c.demo_data);
    assert_eq!(c.bcrypt_cost, 12);
    assert_eq!(c.nonce_ttl.as_secs(), 86_400);
    assert_eq!(c.history_cache_bytes, 32 << 20);
    assert_eq!(
        (c.private_room_rate.count, c.private_room_rate.window_ms),
        (30, 3_600_000)
    );
    let off = with(&[("PRIVATE_ROOM_RATE_LIMIT", "0")]).unwrap();
    assert_eq!(off.private_room_rate.count, 0);
    let c = with(&[("NONCE_TTL_SECS", "3600"), ("HISTORY_CACHE_MB", "0")]).unwrap();
    assert_eq!((c.nonce_ttl.as_secs(), c.history_cache_bytes), (3600, 0));
}

#[test]
fn demo_data_by_default_only_on_a_loopback_address() {
    for addr in ["127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"] {
        let c = with(&[("ADDR", addr)]).unwrap();
        assert!(c.demo_data && !c.demo_data_withheld, "{addr}");
        let c = with(&[("ADDR", addr), ("DEMO_DATA", "false")]).unwrap();
        assert!(!c.demo_data && !c.demo_data_withheld, "{addr}");
    }
    for addr in ["0.0.0.0", "::", "10.1.2.3", "fe80::1", "::ffff:10.0.0.1"] {
        let c = with(&[("ADDR", addr)]).unwrap();
        assert!(!c.demo_data && c.demo_data_withheld, "{addr}");
        let c = with(&[("ADDR", addr), ("DEMO_DATA", "true")]).unwrap();
        assert!(c.demo_data && !c.demo_data_withheld, "{addr}");
        let c = with(&[("ADDR", addr), ("DEMO_DATA", "false")]).unwrap();
        assert!(!c.demo_data && !c.demo_data_withheld, "{addr}");
    }
}

#[test]
fn redis_url_and_flags() {
    let c = with(&[
        ("REDIS_URL", "rediss://u:p@example:6380"),
        ("DEMO_DATA", "false"),
        ("PORT", "8080"),
        ("ALLOWED_ORIGINS", "https://a.example/, https://b.example"),
    ])
    .unwrap();
    assert_eq!(
        c.redis,
        RedisSource::Url("rediss://u:p@example:6380".into())
    );
    assert!(!c.demo_data);
    assert_eq!(c.addr.port(), 8080);
    assert_eq!(
        c.allowed_origins,
        ["https://a.example", "https://b.example"]
    );
}

#[test]
fn cluster_nodes() {
    let c = with(&[(
        "REDIS_CLUSTER_NODES",
        "10.0.0.1:7000, rediss://u:p@10.0.0.2:7001,",
    )])
    .unwrap();
    assert_eq!(
        c.redis,
        RedisSource::Cluster(vec![
            "redis://10.0.0.1:7000".into(),
            "rediss://u:p@10.0.0.2:7001".into()
        ])
    );
    for bad in ["", " , ", "host", "host:0", "http://h:1", ":7000"] {
        let e = with(&[("REDIS_CLUSTER_NODES", bad)]);
        // An empty value counts as unset in the environment, but not here.
        assert!(e.is_err(), "{bad:?}");
    }
    let both = with(&[("REDIS_CLUSTER_NODES", "h:1"), ("REDIS_URL", "redis://h:2")]).unwrap_err();
    assert!(both.0.contains("REDIS_CLUSTER_NODES"), "{both}");
}

#[test]
fn bad_values_name_the_setting() {
    for (k, v) in [
        ("PORT", "x"),
        ("DEMO_DATA", "maybe"),
        ("REDIS_URL", "http://x"),
        ("BCRYPT_COST", "2"),
        ("ADDR", "nowhere"),
        ("MSG_RATE_LIMIT", "lots"),
        ("REDIS_CLUSTER_NODES", "nowhere"),
        ("HISTORY_MAX_PER_ROOM", "-1"),
        ("NONCE_TTL_SECS", "59"),
        ("HISTORY_MAX_AGE_DAYS", "36501"),
        ("HISTORY_CACHE_MB", "lots"),
        ("MAX_SOCKETS_PER_USER", "0"),
        ("TYPING_RATE_LIMIT", "fast"),
        ("PRIVATE_ROOM_RATE_LIMIT", "many"),
        ("TRUST_PROXY", "maybe"),
        ("REGISTER_RATE_LIMIT", "lots"),
    ] {
        let e = with(&[(k, v)]).unwrap_err();
        assert!(e.0.contains(k), "{e}");
    }
}

/// A certificate, its key, another key and a file that is not PEM.
fn pem_files() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let other = rcgen::KeyPair::generate().unwrap();
    for (name, text) in [
        ("cert.pem", cert.pem()),
        ("key.pem", key.serialize_pem()),
        ("other.key", other.serialize_pem()),
        ("junk.pem", "not PEM at all".to_string()),
    ] {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

#[test]
fn tls_files_are_read_at_start_and_bad_ones_name_the_setting() {
    let dir = pem_files();
    let file = |name: &str| dir.path().join(name).display().to_string();
    let url = ("REDIS_URL", "rediss://h:6380".to_string());
    let ca = |name: &str| ("REDIS_CA_CERT", file(name));
    let cert = |name: &str| ("REDIS_CLIENT_CERT", file(name));
    let key = |name: &str| ("REDIS_CLIENT_KEY", file(name));
    let with_owned = |pairs: &[(&str, String)]| {
        let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        with(&pairs)
    };

    let c = with_owned(&[
        url.clone(),
        ca("cert.pem"),
        cert("cert.pem"),
        key("key.pem"),
    ])
    .unwrap();
    assert!(c.redis_tls.is_set());
    let shown = format!("{c:?}");
    assert!(
        shown.contains("cert.pem") && !shown.contains("PRIVATE KEY"),
        "{shown}"
    );
    assert!(with_owned(&[url.clone(), ca("cert.pem")])
        .unwrap()
        .redis_tls
        .is_set());
    assert!(!with_owned(std::slice::from_ref(&url))
        .unwrap()
        .redis_tls
        .is_set());

    for (pairs, setting, says) in [
        (vec![ca("missing.pem")], "REDIS_CA_CERT", "cannot read it"),
        (
            vec![("REDIS_CA_CERT", file(""))],
            "REDIS_CA_CERT",
            "cannot read it",
        ),
        (vec![ca("junk.pem")], "REDIS_CA_CERT", "no PEM certificate"),
        (vec![ca("key.pem")], "REDIS_CA_CERT", "no PEM certificate"),
        (vec![cert("cert.pem")], "REDIS_CLIENT_KEY", "go together"),
        (vec![key("key.pem")], "REDIS_CLIENT_CERT", "go together"),
        (
            vec![cert("junk.pem"), key("key.pem")],
            "REDIS_CLIENT_CERT",
            "no PEM certificate",
        ),
        (
            vec![cert("cert.pem"), key("cert.pem")],
            "REDIS_CLIENT_KEY",
            "no PEM private key",
        ),
        (
            vec![cert("cert.pem"), key("other.key")],
            "REDIS_CLIENT_KEY",
            "not the key of",
        ),
    ] {
        let pairs: Vec<_> = [url.clone()].into_iter().chain(pairs).collect();
        let e = with_owned(&pairs).unwrap_err();
        assert!(
            e.0.contains(setting) && e.0.contains(says),
            "{pairs:?}: {e}"
        );
    }

    // Certificates without a rediss:// URL would do nothing.
    for (redis, names) in [
        (("REDIS_URL", "redis://h:6379".to_string()), "REDIS_URL"),
        (
            ("REDIS_CLUSTER_NODES", "h:1,redis://h:2".to_string()),
            "REDIS_CLUSTER_NODES",
        ),
    ] {
        let e = with_owned(&[redis, ca("cert.pem")]).unwrap_err();
        assert!(e.0.contains(names) && e.0.contains("REDIS_CA_CERT"), "{e}");
    }
    let e = with_owned(&[cert("cert.pem"), key("key.pem")]).unwrap_err();
    assert!(
        e.0.contains("embedded") && e.0.contains("REDIS_CLIENT_CERT"),
        "{e}"
    );
    let cluster = (
        "REDIS_CLUSTER_NODES",
        "rediss://h:1,rediss://h:2".to_string(),
    );
    assert!(with_owned(&[cluster, ca("cert.pem")]).is_ok());
}
