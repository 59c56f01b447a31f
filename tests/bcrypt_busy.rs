//! Registrations while bcrypt is busy. A test binary of its own: the
//! bcrypt queue is shared by the whole process, so filling it here would
//! refuse the registrations of other tests running beside it.

mod common;
use common::*;

/// Past the hashing queue a registration gets a clear 503 "try again";
/// the retry it asks for must then work: the refused attempt leaves the
/// name free, not claimed for a minute.
#[tokio::test]
async fn a_registration_refused_while_busy_leaves_the_name_free() {
    let redis = TestRedis::start().await;
    let mut config = config(&redis);
    // ~50 ms per hash here: the burst below arrives long before the
    // queue of 16 drains.
    config.bcrypt_cost = 10;
    let server = serve(config).await;
    let mut tasks = Vec::new();
    for i in 0..40 {
        let mut c = Client::new(&server);
        tasks.push(tokio::spawn(async move {
            let name = format!("burst{i}");
            let r = c
                .post(
                    "/api/register",
                    &[("username", name.as_str()), ("password", "password123")],
                )
                .await;
            (name, r.status, r.body)
        }));
    }
    let mut refused = Vec::new();
    for t in tasks {
        let (name, status, body) = t.await.unwrap();
        match status {
            200 => {}
            503 => {
                assert_eq!(body["code"], "unavailable", "{body}");
                refused.push(name);
            }
            _ => panic!("{name}: {status} {body}"),
        }
    }
    assert!(!refused.is_empty(), "the burst should overflow the queue");
    for name in refused {
        let mut c = Client::new(&server);
        let r = c
            .post(
                "/api/register",
                &[("username", name.as_str()), ("password", "password123")],
            )
            .await;
        assert_eq!(r.status, 200, "{name}: the retry: {:?}", r.body);
        assert_eq!(c.login(&name, "password123").await.status, 200, "{name}");
    }
    server.shutdown().await;
    redis.stop().await;
}
