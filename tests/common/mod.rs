//! Test harness: a private `redis-server` per test (in a temp dir, on a unix
//! socket — never the machine's 6379), servers on `127.0.0.1:0`, and a small
//! HTTP + WebSocket client that speaks the public protocol.
#![allow(dead_code)]

pub mod binary;
pub mod cluster;
pub mod process;
pub mod raw;
pub mod tls;

use futures::{SinkExt, StreamExt};
use redis_chat::protocol::{ServerFrame, User};
use redis_chat::server::{self, config::Config, embedded_redis::EmbeddedRedis, RunningServer};
use serde_json::Value;
use std::time::Duration;
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest, Message};

pub struct TestRedis {
    pub redis: Option<EmbeddedRedis>,
    pub dir: tempfile::TempDir,
}

impl TestRedis {
    pub async fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("rc-")
            .tempdir_in("/tmp")
            .unwrap();
        let redis = EmbeddedRedis::start(&dir.path().join("r"), "redis-server")
            .await
            .expect("redis-server must be installed for the tests");
        Self {
            redis: Some(redis),
            dir,
        }
    }

    pub fn url(&self) -> String {
        self.redis.as_ref().unwrap().url().to_string()
    }

    pub async fn con(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }

    /// Stops the server but keeps its data directory.
    pub async fn pause(&mut self) {
        if let Some(r) = self.redis.take() {
            r.stop().await;
        }
    }

    /// Starts it again on the same directory (same socket, same data).
    pub async fn resume(&mut self) {
        self.redis = Some(
            EmbeddedRedis::start(&self.dir.path().join("r"), "redis-server")
                .await
                .unwrap(),
        );
    }

    pub async fn stop(mut self) {
        if let Some(r) = self.redis.take() {
            r.stop().await;
        }
    }
}

pub fn config(redis: &TestRedis) -> Config {
    Config::for_tests(&redis.url())
}

/// Test settings for a server on a Redis Cluster.
pub fn cluster_config(cluster: &cluster::TestCluster) -> Config {
    let mut c = Config::for_tests("");
    c.redis = redis_chat::server::config::RedisSource::Cluster(
        (0..cluster.ports.len()).map(|i| cluster.url(i)).collect(),
    );
    c
}

pub async fn serve(config: Config) -> RunningServer {
    server::start(config).await.expect("server starts")
}

/// A client with its own cookie jar of one cookie: the session.
#[derive(Clone)]
pub struct Client {
    pub http: reqwest::Client,
    pub base: String,
    pub cookie: Option<String>,
}

pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Client {
    pub fn new(server: &RunningServer) -> Self {
        Self::for_addr(server.addr)
    }

    pub fn for_addr(addr: std::net::SocketAddr) -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: format!("http://{addr}"),
            cookie: None,
        }
    }

    fn remember(&mut self, headers: &reqwest::header::HeaderMap) {
        for v in headers.get_all("set-cookie") {
            let v = v.to_str().unwrap();
            let pair = v.split(';').next().unwrap();
            if let Some(value) = pair.strip_prefix("rc_session=") {
                self.cookie = (!value.is_empty()).then(|| value.to_string());
            }
        }
    }

    async fn finish(&mut self, resp: reqwest::Response) -> Reply {
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        self.remember(&headers);
        let text = resp.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Reply {
            status,
            headers,
            body,
        }
    }

    fn with_cookie(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.cookie {
            Some(c) => req.header("cookie", format!("rc_session={c}")),
            None => req,
        }
    }

    pub async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Reply {
        let req = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(serde_urlencoded(form));
        let resp = self.with_cookie(req).send().await.unwrap();
        self.finish(resp).await
    }

    /// [`Client::post`] with extra request headers (e.g. `X-Forwarded-For`,
    /// which may be given more than once).
    pub async fn post_with_headers(
        &mut self,
        path: &str,
        form: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut req = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(serde_urlencoded(form));
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let resp = self.with_cookie(req).send().await.unwrap();
        self.finish(resp).await
    }

    pub async fn get(&mut self, path: &str) -> Reply {
        let req = self.http.get(format!("{}{path}", self.base));
        let resp = self.with_cookie(req).send().await.unwrap();
        self.finish(resp).await
    }

    pub async fn register(&mut self, name: &str) -> User {
        let r = self
            .post(
                "/api/register",
                &[("username", name), ("password", "password123")],
            )
            .await;
        assert_eq!(r.status, 200, "register {name}: {:?}", r.body);
        serde_json::from_value(r.body).unwrap()
    }

    pub async fn login(&mut self, name: &str, password: &str) -> Reply {
        self.post("/api/login", &[("username", name), ("password", password)])
            .await
    }

    pub async fn socket(&self) -> Socket {
        self.try_socket(None).await.expect("socket opens")
    }

    pub async fn try_socket(&self, origin: Option<&str>) -> Result<Socket, u16> {
        self.try_socket_at("/ws", origin).await
    }

    /// A socket that asks the server to hold live frames until its resume.
    pub async fn resuming_socket(&self) -> Socket {
        self.try_socket_at("/ws?resume=1", None)
            .await
            .expect("socket opens")
    }

    pub async fn try_socket_at(&self, path: &str, origin: Option<&str>) -> Result<Socket, u16> {
        let url = format!("{}{path}", self.base.replacen("http", "ws", 1));
        let mut req = url.into_client_request().unwrap();
        if let Some(c) = &self.cookie {
            req.headers_mut()
                .insert("cookie", format!("rc_session={c}").parse().unwrap());
        }
        if let Some(o) = origin {
            req.headers_mut().insert("origin", o.parse().unwrap());
        }
        match tokio_tungstenite::connect_async(req).await {
            Ok((ws, _)) => Ok(Socket { ws }),
            Err(tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
            Err(e) => panic!("websocket error: {e}"),
        }
    }
}

fn serde_urlencoded(form: &[(&str, &str)]) -> String {
    form.iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub fn query(pairs: &[(&str, &str)]) -> String {
    serde_urlencoded(pairs)
}

pub struct Socket {
    pub ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
}

/// What a socket read: a frame, or the close code.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // test helper; frames are short-lived
pub enum Event {
    Frame(ServerFrame),
    Closed(Option<u16>),
}

impl Socket {
    pub async fn send_json(&mut self, v: Value) {
        self.ws.send(Message::text(v.to_string())).await.unwrap();
    }

    pub async fn send_raw(&mut self, text: String) {
        self.ws.send(Message::text(text)).await.unwrap();
    }

    pub async fn say(&mut self, room: &str, text: &str, nonce: &str) {
        self.send_json(serde_json::json!({
            "type": "message",
            "data": {"roomId": room, "message": text, "nonce": nonce}
        }))
        .await;
    }

    /// The next frame or close (10 s at most).
    pub async fn next_event(&mut self) -> Event {
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(10), self.ws.next())
                .await
                .expect("no frame within 10 s");
            match msg {
                Some(Ok(Message::Text(t))) => {
                    return Event::Frame(
                        serde_json::from_str(t.as_str())
                            .unwrap_or_else(|e| panic!("unparseable frame {t}: {e}")),
                    )
                }
                Some(Ok(Message::Close(c))) => return Event::Closed(c.map(|c| c.code.into())),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Event::Closed(None),
            }
        }
    }

    pub async fn next_frame(&mut self) -> ServerFrame {
        match self.next_event().await {
            Event::Frame(f) => f,
            Event::Closed(c) => panic!("socket closed ({c:?}) while waiting for a frame"),
        }
    }

    /// Skips frames until one matches.
    pub async fn wait_for<T>(&mut self, mut pick: impl FnMut(&ServerFrame) -> Option<T>) -> T {
        loop {
            let f = self.next_frame().await;
            if let Some(t) = pick(&f) {
                return t;
            }
        }
    }

    /// Waits for the next `error` frame.
    pub async fn wait_error(&mut self) -> redis_chat::protocol::FrameError {
        self.wait_for(|f| match f {
            ServerFrame::Error(e) => Some(e.clone()),
            _ => None,
        })
        .await
    }

    /// Waits for the chat message with this text.
    pub async fn wait_message(&mut self, text: &str) -> redis_chat::protocol::ChatMessage {
        self.wait_for(|f| match f {
            ServerFrame::Message(m) if m.message == text => Some(m.clone()),
            _ => None,
        })
        .await
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
        while let Some(Ok(_)) = self.ws.next().await {}
    }
}

/// Polls `check` until it is true (for state that has no event to await,
/// e.g. keys a background task writes), up to 10 s.
pub async fn eventually<F, Fut>(what: &str, check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    eventually_within(what, Duration::from_secs(10), check).await
}

/// [`eventually`] with another limit.
pub async fn eventually_within<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One page of `/api/messages` (asserts 200).
pub async fn page(
    c: &mut Client,
    room: &str,
    before: Option<&str>,
    limit: Option<&str>,
) -> redis_chat::protocol::MessagePage {
    let mut q = vec![("room_id", room)];
    if let Some(b) = before {
        q.push(("before", b));
    }
    if let Some(l) = limit {
        q.push(("limit", l));
    }
    let r = c.get(&format!("/api/messages?{}", query(&q))).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    serde_json::from_value(r.body).unwrap()
}

/// `/api/rooms` (asserts 200).
pub async fn rooms(c: &mut Client) -> Vec<redis_chat::protocol::RoomSummary> {
    let r = c.get("/api/rooms").await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    serde_json::from_value(r.body).unwrap()
}

/// Opens the private room with `other` (asserts 200).
pub async fn open_private(
    c: &mut Client,
    other: &redis_chat::protocol::User,
) -> redis_chat::protocol::RoomSummary {
    let r = c
        .post("/api/private_room", &[("user_id", &other.id.to_string())])
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    serde_json::from_value(r.body).unwrap()
}
