//! `loadgen`: the load generator of `make bench` (see `BENCHMARKS.md`).
//!
//! It talks to a running redis-chat server only through the public protocol
//! (`docs/PROTOCOL.md`): form posts to `/api/register` and `/api/login` for
//! the `rc_session` cookie, `GET /api/messages`, and real WebSockets on
//! `/ws`. The one exception is `history --redis-url`, which seeds the room's
//! stream directly in Redis (XADD pipelines) because a million messages
//! through the send path would take minutes.
//!
//! Scenarios (subcommands): `fanout`, `capacity`, `history`, `send`,
//! `mixed`, `rooms` (`loadgen/rooms.rs`: `/api/rooms` in thousands of rooms); helpers: `register` (create accounts, e.g. on a server with
//! another `BCRYPT_COST`) and `render` (JSON lines → SVG chart).
//!
//! Every run prints one JSON line per measurement to stdout (and appends it
//! to `--out`), and a human summary to stderr. The server under test should
//! run with `BCRYPT_COST=4` (or registering thousands of users takes
//! minutes) and `MSG_RATE_LIMIT=0` (the default 30 messages per 10 s per
//! user refuses a benchmark's senders). Logins of `mixed` come from
//! rotating loopback source addresses (127.0.0.2-251), since the server
//! allows 60 sign-ins per address per 5 minutes. Loopback addresses only;
//! every loop is bounded by time.
//!
//! Cost on the receive path: no JSON parse. Each frame is scanned for the
//! `"message":"t=<unix nanos>;` stamp the senders put at the start of the
//! text, and the latency goes into a log-linear histogram (0.1 % buckets).

use clap::{Args, Parser, Subcommand};
use futures::{stream::SplitSink, SinkExt, StreamExt};
use serde_json::{json, Value};
use std::{
    collections::BTreeMap,
    io::Write as _,
    net::{SocketAddr, ToSocketAddrs},
    path::PathBuf,
    sync::{
        atomic::{AtomicU64, Ordering::Relaxed},
        Arc, Mutex,
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use tokio_tungstenite::{
    tungstenite::{client::IntoClientRequest, protocol::WebSocketConfig, Message},
    WebSocketStream,
};

// The `rooms` scenario lives beside this file (a crate root looks for
// modules next to itself, not in a folder of its own name).
#[path = "loadgen/rooms.rs"]
mod rooms;

type Ws = WebSocketStream<TcpStream>;
type Sink = SplitSink<Ws, Message>;

const PASSWORD: &str = "password123";

// ----- command line ------------------------------------------------------------

#[derive(Parser)]
#[command(
    name = "loadgen",
    about = "Load generator for redis-chat (loopback only)"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// N sockets in General, K of them sending at fixed total rates (a ramp).
    Fanout(FanoutArgs),
    /// Ramp idle authenticated sockets to N: RSS per socket, connects/s.
    Capacity(CapacityArgs),
    /// Seed a room in Redis, then page `/api/messages` over C keep-alive connections.
    History(HistoryArgs),
    /// K senders, each with W messages in flight (or at a total rate): accepted msgs/s.
    Send(SendArgs),
    /// Fan-out while logins run against `/api/login`.
    Mixed(MixedArgs),
    /// Server-side rendering: GET a page (default `/login`) over keep-alive
    /// connections, one request at a time each: latency p50/p99, pages/s.
    Ssr(SsrArgs),
    /// `GET /api/rooms` of a user in thousands of private rooms (seeded in Redis).
    Rooms(rooms::RoomsArgs),
    /// Register accounts `<prefix><i>` (e.g. on a server with another BCRYPT_COST).
    Register(RegisterArgs),
    /// Render fan-out results (JSON lines) as an SVG chart.
    Render(RenderArgs),
}

#[derive(Args, Clone)]
struct Common {
    /// The server, host:port (loopback only).
    #[arg(long, default_value = "127.0.0.1:3000")]
    addr: String,
    /// The server's pid: CPU time and RSS from /proc.
    #[arg(long)]
    server_pid: Option<u32>,
    /// The Redis server's pid: CPU time from /proc.
    #[arg(long)]
    redis_pid: Option<u32>,
    /// Also append the JSON lines to this file.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Run on a current-thread tokio runtime (one core).
    #[arg(long)]
    single_thread: bool,
    /// Worker threads of the multi-thread runtime.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Run tag, part of user names (`lg<run>-<i>`); default: from the clock.
    #[arg(long)]
    run: Option<String>,
    /// Registrations and socket handshakes in flight at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Free text copied into the JSON lines.
    #[arg(long, default_value = "")]
    label: String,
}

#[derive(Args, Clone)]
struct FanoutArgs {
    #[command(flatten)]
    common: Common,
    /// Sockets (one user each), all in General.
    #[arg(long, default_value_t = 1000)]
    clients: usize,
    /// Senders among them.
    #[arg(long, default_value_t = 10)]
    senders: usize,
    /// Total message rates to step through, msgs/s (comma separated).
    #[arg(long, value_delimiter = ',', default_value = "20")]
    rates: Vec<f64>,
    /// Measured seconds per step.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of sending before each measured window.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Most seconds to wait for late deliveries after a step.
    #[arg(long, default_value_t = 5.0)]
    drain: f64,
    /// Message text size in bytes (stamp + padding).
    #[arg(long, default_value_t = 100)]
    size: usize,
    /// Stop the ramp after a step with p99 above this (ms), loss or a closed socket.
    #[arg(long, default_value_t = 50.0)]
    stop_p99_ms: f64,
    /// Send messages without a nonce.
    #[arg(long)]
    no_nonce: bool,
}

#[derive(Args, Clone)]
struct CapacityArgs {
    #[command(flatten)]
    common: Common,
    /// Sockets to open.
    #[arg(long, default_value_t = 10_000)]
    sockets: usize,
    /// Distinct users (socket i signs in as user i % users); default: one per socket.
    #[arg(long)]
    users: Option<usize>,
    /// Sockets per ramp step (RSS is sampled after each).
    #[arg(long, default_value_t = 1000)]
    step: usize,
    /// Seconds to wait after each step.
    #[arg(long, default_value_t = 1.0)]
    settle: f64,
    /// Seconds to hold all sockets at the end before the last sample.
    #[arg(long, default_value_t = 5.0)]
    hold: f64,
    /// Most seconds to wait for the presence frames of the ramp to drain.
    #[arg(long, default_value_t = 180.0)]
    settle_limit: f64,
}

#[derive(Args, Clone)]
struct HistoryArgs {
    #[command(flatten)]
    common: Common,
    /// Redis of the server under test, to seed the room (never a shared one).
    #[arg(long)]
    redis_url: Option<String>,
    /// Messages the room should hold (seeded with XADD pipelines).
    #[arg(long, default_value_t = 1_000_000)]
    seed: u64,
    /// Keep-alive HTTP connections (one user each).
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// Page size.
    #[arg(long, default_value_t = 50)]
    limit: usize,
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
}

#[derive(Args, Clone)]
struct SsrArgs {
    #[command(flatten)]
    common: Common,
    /// The page to render.
    #[arg(long, default_value = "/login")]
    path: String,
    /// Keep-alive HTTP connections, each with one request in flight
    /// (1 = latency of a lone request).
    #[arg(long, default_value_t = 1)]
    connections: usize,
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
}

#[derive(Args, Clone)]
struct SendArgs {
    #[command(flatten)]
    common: Common,
    #[arg(long, default_value_t = 100)]
    senders: usize,
    /// Messages in flight per sender (sent, not yet echoed back).
    #[arg(long, default_value_t = 4)]
    window: usize,
    /// Total rate, msgs/s; 0 = as fast as the acks allow.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// `private`: each sender talks in its own private room with an offline
    /// partner, so only the sender's socket gets the message (measures the
    /// send path, not fan-out). `general`: everyone in General.
    #[arg(long, default_value = "private")]
    room: String,
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    #[arg(long, default_value_t = 100)]
    size: usize,
}

#[derive(Args, Clone)]
struct MixedArgs {
    #[command(flatten)]
    fanout: FanoutArgs,
    /// Logins per second during the fan-out.
    #[arg(long, default_value_t = 20.0)]
    logins: f64,
    /// Accounts the logins use, `<login-prefix><i>`; default: registered
    /// now, on the server under test (with its BCRYPT_COST).
    #[arg(long)]
    login_prefix: Option<String>,
    #[arg(long, default_value_t = 20)]
    login_users: usize,
    /// Concurrent login connections.
    #[arg(long, default_value_t = 16)]
    login_workers: usize,
}

#[derive(Args, Clone)]
struct RegisterArgs {
    #[command(flatten)]
    common: Common,
    #[arg(long)]
    prefix: String,
    #[arg(long, default_value_t = 20)]
    count: usize,
}

#[derive(Args, Clone)]
struct RenderArgs {
    /// JSON lines files with fan-out results.
    #[arg(long = "input", required = true)]
    inputs: Vec<PathBuf>,
    /// The SVG to write.
    #[arg(long, default_value = "docs/bench-fanout.svg")]
    output: PathBuf,
    /// A line under the title (machine, date).
    #[arg(long, default_value = "")]
    subtitle: String,
}

fn main() {
    let cli = Cli::parse();
    let common = match &cli.cmd {
        Cmd::Fanout(a) => Some(a.common.clone()),
        Cmd::Capacity(a) => Some(a.common.clone()),
        Cmd::History(a) => Some(a.common.clone()),
        Cmd::Send(a) => Some(a.common.clone()),
        Cmd::Mixed(a) => Some(a.fanout.common.clone()),
        Cmd::Ssr(a) => Some(a.common.clone()),
        Cmd::Rooms(a) => Some(a.common.clone()),
        Cmd::Register(a) => Some(a.common.clone()),
        Cmd::Render(_) => None,
    };
    let Some(common) = common else {
        if let Cmd::Render(a) = &cli.cmd {
            if let Err(e) = render(a) {
                eprintln!("loadgen render: {e}");
                std::process::exit(1);
            }
        }
        return;
    };
    raise_fd_limit();
    let runtime = if common.single_thread {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(common.threads.max(1))
            .enable_all()
            .build()
    }
    .expect("tokio runtime");
    let result = runtime.block_on(async move {
        let ctx = Ctx::new(common)?;
        match cli.cmd {
            Cmd::Fanout(a) => fanout(&ctx, a, None).await,
            Cmd::Capacity(a) => capacity(&ctx, a).await,
            Cmd::History(a) => history(&ctx, a).await,
            Cmd::Send(a) => send(&ctx, a).await,
            Cmd::Mixed(a) => {
                let fan = a.fanout.clone();
                fanout(&ctx, fan, Some(a)).await
            }
            Cmd::Ssr(a) => ssr(&ctx, a).await,
            Cmd::Rooms(a) => rooms::rooms(&ctx, a).await,
            Cmd::Register(a) => register_cmd(&ctx, a).await,
            Cmd::Render(_) => Ok(()),
        }
    });
    // Sockets and tasks are dropped with the process; nothing to wait for.
    std::process::exit(match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("loadgen: {e}");
            1
        }
    });
}

type Res<T> = Result<T, String>;

fn raise_fd_limit() {
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// What every scenario needs: where the server is, how to report.
struct Ctx {
    common: Common,
    addr: SocketAddr,
    run: String,
}

impl Ctx {
    fn new(common: Common) -> Res<Self> {
        let addr = common
            .addr
            .to_socket_addrs()
            .map_err(|e| format!("--addr {}: {e}", common.addr))?
            .next()
            .ok_or_else(|| format!("--addr {}: no address", common.addr))?;
        if !addr.ip().is_loopback() {
            return Err(format!(
                "--addr {addr}: only loopback addresses are allowed"
            ));
        }
        let run = common
            .run
            .clone()
            .unwrap_or_else(|| format!("{:x}", (now_ns() / 1_000_000) % 0xffff_ffff));
        Ok(Self { common, addr, run })
    }

    /// Prints one JSON line (stdout and `--out`).
    fn emit(&self, mut v: Value) {
        if let Value::Object(m) = &mut v {
            m.insert("run".into(), json!(self.run));
            m.insert("label".into(), json!(self.common.label));
            m.insert("ts".into(), json!(now_ns() / 1_000_000_000));
            // Other work on the machine shows here (e.g. a compiler).
            let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
            m.insert(
                "loadavg_1m".into(),
                json!(load.split_whitespace().next().unwrap_or("")),
            );
            m.insert(
                "loadgen_runtime".into(),
                json!(if self.common.single_thread {
                    "current_thread".to_string()
                } else {
                    format!("multi_thread({})", self.common.threads)
                }),
            );
        }
        let line = v.to_string();
        println!("{line}");
        if let Some(path) = &self.common.out {
            match std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
            {
                Ok(mut f) => {
                    let _ = writeln!(f, "{line}");
                }
                Err(e) => eprintln!("loadgen: cannot append to {}: {e}", path.display()),
            }
        }
    }

    fn sample(&self) -> ProcSample {
        ProcSample::take(self.common.server_pid, self.common.redis_pid)
    }

    fn user(&self, i: usize) -> String {
        format!("lg{}-{i}", self.run)
    }
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

// ----- /proc -------------------------------------------------------------------

/// CPU seconds (utime + stime, all threads) of a process.
fn proc_cpu_secs(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = s.get(s.rfind(')')? + 2..)?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ut: f64 = f.get(11)?.parse().ok()?;
    let st: f64 = f.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Some((ut + st) / hz)
}

/// Resident set size in KiB.
fn proc_rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[derive(Clone, Copy)]
struct ProcSample {
    at: Instant,
    server_cpu: Option<f64>,
    server_rss_kib: Option<u64>,
    redis_cpu: Option<f64>,
    redis_rss_kib: Option<u64>,
    self_cpu: Option<f64>,
}

impl ProcSample {
    fn take(server: Option<u32>, redis: Option<u32>) -> Self {
        Self {
            at: Instant::now(),
            server_cpu: server.and_then(proc_cpu_secs),
            server_rss_kib: server.and_then(proc_rss_kib),
            redis_cpu: redis.and_then(proc_cpu_secs),
            redis_rss_kib: redis.and_then(proc_rss_kib),
            self_cpu: proc_cpu_secs(std::process::id()),
        }
    }

    /// CPU used between two samples, as JSON, with µs per `unit` of work.
    fn delta(&self, later: &ProcSample, units: u64) -> Value {
        let secs = later.at.duration_since(self.at).as_secs_f64().max(1e-9);
        let part = |a: Option<f64>, b: Option<f64>| -> Value {
            match (a, b) {
                (Some(a), Some(b)) => {
                    let cpu = (b - a).max(0.0);
                    json!({
                        "cpu_s": round3(cpu),
                        "cores": round3(cpu / secs),
                        "cpu_us_per_unit": if units > 0 { round3(cpu * 1e6 / units as f64) } else { 0.0 },
                    })
                }
                _ => Value::Null,
            }
        };
        let mut server = part(self.server_cpu, later.server_cpu);
        if let (Value::Object(m), Some(rss)) = (&mut server, later.server_rss_kib) {
            m.insert("rss_kib".into(), json!(rss));
        }
        let mut redis = part(self.redis_cpu, later.redis_cpu);
        if let (Value::Object(m), Some(rss)) = (&mut redis, later.redis_rss_kib) {
            m.insert("rss_kib".into(), json!(rss));
        }
        json!({
            "window_s": round3(secs),
            "server": server,
            "redis": redis,
            "loadgen": part(self.self_cpu, later.self_cpu),
        })
    }
}

// ----- latency histogram ---------------------------------------------------------

/// A log-linear histogram of microseconds: exact below 2,048 µs, then
/// 1,024 buckets per power of two (≤ 0.1 % error), up to 2^40 µs. Recording
/// is one relaxed atomic add, so every socket task can share one.
struct Histogram {
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    max: AtomicU64,
}

const HIST_BUCKETS: usize = 2048 + 29 * 1024;

impl Histogram {
    fn new() -> Self {
        Self {
            buckets: (0..HIST_BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            max: AtomicU64::new(0),
        }
    }

    fn index(v: u64) -> usize {
        let v = v.min((1 << 40) - 1);
        if v < 2048 {
            v as usize
        } else {
            let e = 63 - v.leading_zeros() as u64;
            let sub = (v >> (e - 10)) - 1024;
            (2048 + (e - 11) * 1024 + sub) as usize
        }
    }

    fn value_of(idx: usize) -> u64 {
        if idx < 2048 {
            idx as u64
        } else {
            let k = (idx - 2048) as u64;
            let e = k / 1024 + 11;
            (k % 1024 + 1024) << (e - 10)
        }
    }

    fn record(&self, us: u64) {
        self.buckets[Self::index(us)].fetch_add(1, Relaxed);
        self.count.fetch_add(1, Relaxed);
        self.max.fetch_max(us, Relaxed);
    }

    fn reset(&self) {
        for b in self.buckets.iter() {
            b.store(0, Relaxed);
        }
        self.count.store(0, Relaxed);
        self.max.store(0, Relaxed);
    }

    /// The value at quantile `q` (0..1), µs.
    fn quantile(&self, q: f64) -> u64 {
        let n = self.count.load(Relaxed);
        if n == 0 {
            return 0;
        }
        let target = ((q * n as f64).ceil() as u64).clamp(1, n);
        let mut seen = 0;
        for (i, b) in self.buckets.iter().enumerate() {
            seen += b.load(Relaxed);
            if seen >= target {
                return Self::value_of(i);
            }
        }
        self.max.load(Relaxed)
    }

    /// `{"p50","p95","p99","p999","max","n"}` in milliseconds.
    fn summary_ms(&self) -> Value {
        let ms = |us: u64| round3(us as f64 / 1000.0);
        json!({
            "p50": ms(self.quantile(0.50)),
            "p95": ms(self.quantile(0.95)),
            "p99": ms(self.quantile(0.99)),
            "p999": ms(self.quantile(0.999)),
            "max": ms(self.max.load(Relaxed)),
            "n": self.count.load(Relaxed),
        })
    }
}

// ----- a minimal HTTP/1.1 client -------------------------------------------------

/// One keep-alive HTTP/1.1 connection (Content-Length and chunked bodies).
/// Hand-written so that the load generator needs no HTTP client crate and
/// pays little per request.
struct HttpConn {
    addr: SocketAddr,
    /// Local address to connect from (e.g. 127.0.0.7: another "client").
    source: Option<std::net::IpAddr>,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
}

struct HttpResp {
    status: u16,
    session: Option<String>,
    body: Vec<u8>,
}

impl HttpConn {
    fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            source: None,
            stream: None,
            buf: Vec::with_capacity(16 * 1024),
        }
    }

    async fn connect(&self) -> std::io::Result<TcpStream> {
        match self.source {
            None => TcpStream::connect(self.addr).await,
            Some(ip) => {
                let socket = if ip.is_ipv4() {
                    tokio::net::TcpSocket::new_v4()?
                } else {
                    tokio::net::TcpSocket::new_v6()?
                };
                socket.bind(SocketAddr::new(ip, 0))?;
                socket.connect(self.addr).await
            }
        }
    }

    async fn request(
        &mut self,
        method: &str,
        path: &str,
        cookie: Option<&str>,
        form: Option<&str>,
    ) -> Res<HttpResp> {
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAccept: application/json\r\n",
            self.addr
        );
        if let Some(c) = cookie {
            req.push_str(&format!("Cookie: rc_session={c}\r\n"));
        }
        if let Some(body) = form {
            req.push_str(&format!(
                "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            ));
        } else {
            req.push_str("\r\n");
        }
        for attempt in 0..2 {
            let reused = self.stream.is_some();
            if self.stream.is_none() {
                let s = self
                    .connect()
                    .await
                    .map_err(|e| format!("connect {}: {e}", self.addr))?;
                let _ = s.set_nodelay(true);
                self.stream = Some(s);
                self.buf.clear();
            }
            let r = tokio::time::timeout(Duration::from_secs(30), self.exchange(req.as_bytes()))
                .await
                .unwrap_or_else(|_| Err("HTTP request timed out".into()));
            match r {
                Ok(r) => return Ok(r),
                Err(e) => {
                    self.stream = None;
                    if !(reused && attempt == 0) {
                        return Err(e);
                    }
                }
            }
        }
        Err("unreachable".into())
    }

    async fn fill(&mut self) -> Res<()> {
        let stream = self.stream.as_mut().ok_or("no connection")?;
        self.buf.reserve(8192);
        let n = stream
            .read_buf(&mut self.buf)
            .await
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed".into());
        }
        Ok(())
    }

    async fn exchange(&mut self, req: &[u8]) -> Res<HttpResp> {
        self.stream
            .as_mut()
            .ok_or("no connection")?
            .write_all(req)
            .await
            .map_err(|e| e.to_string())?;
        let head_end = loop {
            if let Some(p) = find(&self.buf, b"\r\n\r\n") {
                break p;
            }
            self.fill().await?;
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).into_owned();
        self.buf.drain(..head_end + 4);
        let mut lines = head.split("\r\n");
        let status: u16 = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|s| s.parse().ok())
            .ok_or("bad status line")?;
        let (mut length, mut chunked, mut close, mut session) = (None, false, false, None);
        for line in lines {
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            let v = v.trim();
            match k.trim().to_ascii_lowercase().as_str() {
                "content-length" => length = v.parse::<usize>().ok(),
                "transfer-encoding" => chunked = v.to_ascii_lowercase().contains("chunked"),
                "connection" => close = v.eq_ignore_ascii_case("close"),
                "set-cookie" => {
                    if let Some(rest) = v.strip_prefix("rc_session=") {
                        let value = rest.split(';').next().unwrap_or_default();
                        session = (!value.is_empty()).then(|| value.to_string());
                    }
                }
                _ => {}
            }
        }
        let body = if chunked {
            let mut body = Vec::new();
            loop {
                let line_end = loop {
                    if let Some(p) = find(&self.buf, b"\r\n") {
                        break p;
                    }
                    self.fill().await?;
                };
                let size_text = String::from_utf8_lossy(&self.buf[..line_end]).into_owned();
                let size =
                    usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                        .map_err(|_| "bad chunk size")?;
                self.buf.drain(..line_end + 2);
                if size == 0 {
                    // Trailers end with an empty line.
                    loop {
                        if let Some(p) = find(&self.buf, b"\r\n") {
                            self.buf.drain(..p + 2);
                            if p == 0 {
                                break;
                            }
                            continue;
                        }
                        self.fill().await?;
                    }
                    break;
                }
                while self.buf.len() < size + 2 {
                    self.fill().await?;
                }
                body.extend_from_slice(&self.buf[..size]);
                self.buf.drain(..size + 2);
            }
            body
        } else {
            let n = length.unwrap_or(0);
            while self.buf.len() < n {
                self.fill().await?;
            }
            self.buf.drain(..n).collect()
        };
        if close {
            self.stream = None;
        }
        Ok(HttpResp {
            status,
            session,
            body,
        })
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn form_encode(pairs: &[(&str, &str)]) -> String {
    let enc = |s: &str| -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

// ----- accounts ------------------------------------------------------------------

#[derive(Clone)]
struct Account {
    id: u64,
    cookie: String,
}

/// Registers `name` (or signs in when it exists already, e.g. a re-run).
/// A 503 (the server sheds bcrypt work past its queue) is retried, as a
/// browser's user would, after a pause that grows.
async fn sign_up(http: &mut HttpConn, name: &str) -> Res<Account> {
    let body = form_encode(&[("username", name), ("password", PASSWORD)]);
    let mut pause = Duration::from_millis(20);
    let mut r = loop {
        let r = http
            .request("POST", "/api/register", None, Some(&body))
            .await?;
        if r.status != 503 || pause > Duration::from_secs(5) {
            break r;
        }
        tokio::time::sleep(pause).await;
        pause *= 2;
    };
    if r.status == 409 {
        r = http
            .request("POST", "/api/login", None, Some(&body))
            .await?;
    }
    if r.status != 200 {
        return Err(format!(
            "register {name}: HTTP {}: {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        ));
    }
    let v: Value = serde_json::from_slice(&r.body).map_err(|e| format!("register {name}: {e}"))?;
    Ok(Account {
        id: v["id"].as_u64().ok_or("register: no id")?,
        cookie: r.session.ok_or("register: no rc_session cookie")?,
    })
}

/// Registers `names` with `concurrency` keep-alive connections.
async fn sign_up_all(ctx: &Ctx, names: Vec<String>) -> Res<(Vec<Account>, f64)> {
    let started = Instant::now();
    let n = names.len();
    let workers = ctx.common.concurrency.clamp(1, 64).min(n.max(1));
    let names = Arc::new(names);
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let (names, next, addr) = (names.clone(), next.clone(), ctx.addr);
        tasks.push(tokio::spawn(async move {
            let mut http = HttpConn::new(addr);
            let mut got = Vec::new();
            loop {
                let i = next.fetch_add(1, Relaxed) as usize;
                if i >= names.len() {
                    break;
                }
                got.push((i, sign_up(&mut http, &names[i]).await?));
            }
            Ok::<_, String>(got)
        }));
    }
    let mut accounts: Vec<Option<Account>> = vec![None; n];
    for t in tasks {
        for (i, a) in t.await.map_err(|e| e.to_string())?? {
            accounts[i] = Some(a);
        }
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "  registered {n} users in {secs:.1} s ({:.0}/s)",
        n as f64 / secs.max(1e-9)
    );
    Ok((accounts.into_iter().map(|a| a.unwrap()).collect(), secs))
}

// ----- sockets -------------------------------------------------------------------

/// Opens `/ws` with the session cookie; small buffers per socket.
async fn open_socket(addr: SocketAddr, cookie: &str) -> Res<Ws> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let mut req = format!("ws://{addr}/ws")
        .into_client_request()
        .map_err(|e| e.to_string())?;
    req.headers_mut().insert(
        "cookie",
        format!("rc_session={cookie}")
            .parse()
            .map_err(|_| "bad cookie")?,
    );
    // tungstenite zero-fills `read_buffer_size` bytes before every read:
    // at 16 KiB that memset was 13 % of the load generator's CPU in the
    // 20k/s fan-out (perf). Frames here are ~150 bytes; 4 KiB holds a
    // write's worth even under load.
    let config = WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_message_size(Some(1 << 20))
        .max_frame_size(Some(1 << 20));
    let (ws, _) = tokio::time::timeout(
        Duration::from_secs(30),
        tokio_tungstenite::client_async_with_config(req, tcp, Some(config)),
    )
    .await
    .map_err(|_| "handshake timed out".to_string())?
    .map_err(|e| format!("handshake: {e}"))?;
    Ok(ws)
}

/// What every receiving socket counts. One instance shared by all socket
/// tasks; a step resets it and moves the window.
struct Stats {
    hist: Histogram,
    /// Send-time window (unix ns) of the messages that count.
    win_start: AtomicU64,
    win_end: AtomicU64,
    /// Deliveries of messages sent inside the window.
    delivered: AtomicU64,
    /// Deliveries received while the wall clock is inside the window.
    received_in_window: AtomicU64,
    /// Messages sent inside the window (counted by the senders).
    sent: AtomicU64,
    frames: AtomicU64,
    message_frames: AtomicU64,
    error_frames: AtomicU64,
    other_frames: AtomicU64,
    open: AtomicU64,
    closed: AtomicU64,
    close_codes: Mutex<BTreeMap<String, u64>>,
    /// Stamps sent in the window, and those seen by the probe socket (the
    /// first one): a lost message can then be named by its send time.
    sent_log: Mutex<Vec<u64>>,
    probe_log: Mutex<Vec<u64>>,
}

impl Stats {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            hist: Histogram::new(),
            win_start: AtomicU64::new(u64::MAX),
            win_end: AtomicU64::new(u64::MAX),
            delivered: AtomicU64::new(0),
            received_in_window: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            frames: AtomicU64::new(0),
            message_frames: AtomicU64::new(0),
            error_frames: AtomicU64::new(0),
            other_frames: AtomicU64::new(0),
            open: AtomicU64::new(0),
            closed: AtomicU64::new(0),
            close_codes: Mutex::new(BTreeMap::new()),
            sent_log: Mutex::new(Vec::new()),
            probe_log: Mutex::new(Vec::new()),
        })
    }

    fn start_window(&self, start_ns: u64, end_ns: u64) {
        self.hist.reset();
        for c in [&self.delivered, &self.received_in_window, &self.sent] {
            c.store(0, Relaxed);
        }
        self.sent_log.lock().unwrap().clear();
        self.probe_log.lock().unwrap().clear();
        self.win_start.store(start_ns, Relaxed);
        self.win_end.store(end_ns, Relaxed);
    }

    /// Send times (ms after the window start) of messages that the probe
    /// socket never got, at most 20, and how many there were.
    fn lost_at_probe(&self) -> (usize, Vec<f64>) {
        let mut seen = self.probe_log.lock().unwrap().clone();
        seen.sort_unstable();
        let start = self.win_start.load(Relaxed);
        let lost: Vec<u64> = self
            .sent_log
            .lock()
            .unwrap()
            .iter()
            .copied()
            .filter(|t| seen.binary_search(t).is_err())
            .collect();
        let first = lost
            .iter()
            .take(20)
            .map(|t| round3(t.saturating_sub(start) as f64 / 1e6))
            .collect();
        (lost.len(), first)
    }

    fn in_window(&self, t: u64) -> bool {
        t >= self.win_start.load(Relaxed) && t < self.win_end.load(Relaxed)
    }

    /// The receive hot path: a byte scan, no JSON parse.
    fn on_frame(&self, b: &[u8], probe: bool) {
        self.frames.fetch_add(1, Relaxed);
        if b.starts_with(br#"{"type":"message""#) {
            self.message_frames.fetch_add(1, Relaxed);
            if let Some(t) = stamp(b) {
                let now = now_ns();
                if self.in_window(now) {
                    self.received_in_window.fetch_add(1, Relaxed);
                }
                if self.in_window(t) {
                    self.delivered.fetch_add(1, Relaxed);
                    self.hist.record(now.saturating_sub(t) / 1000);
                    if probe {
                        self.probe_log.lock().unwrap().push(t);
                    }
                }
            }
        } else if b.starts_with(br#"{"type":"error""#) {
            if self.error_frames.fetch_add(1, Relaxed) < 5 {
                eprintln!("  error frame: {}", String::from_utf8_lossy(b));
            }
        } else {
            self.other_frames.fetch_add(1, Relaxed);
        }
    }

    fn on_close(&self, code: String) {
        self.closed.fetch_add(1, Relaxed);
        *self.close_codes.lock().unwrap().entry(code).or_default() += 1;
    }

    fn frames_json(&self) -> Value {
        json!({
            "total": self.frames.load(Relaxed),
            "message": self.message_frames.load(Relaxed),
            "error": self.error_frames.load(Relaxed),
            "other": self.other_frames.load(Relaxed),
        })
    }

    fn closes_json(&self) -> Value {
        json!({
            "closed": self.closed.load(Relaxed),
            "codes": *self.close_codes.lock().unwrap(),
        })
    }
}

/// The send time in a message frame: the digits after `"message":"t=`.
fn stamp(b: &[u8]) -> Option<u64> {
    const PAT: &[u8] = br#""message":"t="#;
    // `{"type":"message","data":{` comes first; the text follows the id,
    // room, sender and dates.
    let mut i = 26;
    while i + PAT.len() <= b.len() {
        if b[i] == b'"' && b[i..].starts_with(PAT) {
            let mut t: u64 = 0;
            for &c in &b[i + PAT.len()..] {
                match c {
                    b'0'..=b'9' => t = t * 10 + (c - b'0') as u64,
                    b';' => return Some(t),
                    _ => return None,
                }
            }
            return None;
        }
        i += 1;
    }
    None
}

/// Reads a socket until it closes, feeding `stats`.
async fn read_loop(mut rx: futures::stream::SplitStream<Ws>, stats: Arc<Stats>, probe: bool) {
    stats.open.fetch_add(1, Relaxed);
    let code = loop {
        match rx.next().await {
            Some(Ok(Message::Text(t))) => stats.on_frame(t.as_bytes(), probe),
            Some(Ok(Message::Close(c))) => {
                break c
                    .map(|c| u16::from(c.code).to_string())
                    .unwrap_or_else(|| "none".into())
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => break format!("error: {e}"),
            None => break "eof".into(),
        }
    };
    stats.open.fetch_sub(1, Relaxed);
    stats.on_close(code);
}

/// Opens one socket per account with bounded concurrency; returns the
/// sinks (readers are spawned) and connect statistics.
async fn connect_all(
    ctx: &Ctx,
    cookies: Vec<String>,
    stats: &Arc<Stats>,
) -> (Vec<Option<Sink>>, Value) {
    let hist = Arc::new(Histogram::new());
    let started = Instant::now();
    let n = cookies.len();
    let failures = Arc::new(AtomicU64::new(0));
    let first_error: Arc<Mutex<Option<String>>> = Arc::default();
    let sinks: Vec<Option<Sink>> =
        futures::stream::iter(cookies.into_iter().enumerate().map(|(i, cookie)| {
            let (addr, stats, hist, failures, first_error) = (
                ctx.addr,
                stats.clone(),
                hist.clone(),
                failures.clone(),
                first_error.clone(),
            );
            async move {
                let t = Instant::now();
                match open_socket(addr, &cookie).await {
                    Ok(ws) => {
                        hist.record(t.elapsed().as_micros() as u64);
                        let (sink, rx) = ws.split();
                        tokio::spawn(read_loop(rx, stats, i == 0));
                        Some(sink)
                    }
                    Err(e) => {
                        failures.fetch_add(1, Relaxed);
                        first_error.lock().unwrap().get_or_insert(e);
                        None
                    }
                }
            }
        }))
        .buffered(ctx.common.concurrency.max(1))
        .collect()
        .await;
    let secs = started.elapsed().as_secs_f64();
    let ok = n as u64 - failures.load(Relaxed);
    eprintln!(
        "  opened {ok}/{n} sockets in {secs:.2} s ({:.0}/s), handshake p50 {:.1} ms p99 {:.1} ms",
        ok as f64 / secs.max(1e-9),
        hist.quantile(0.5) as f64 / 1000.0,
        hist.quantile(0.99) as f64 / 1000.0
    );
    if let Some(e) = first_error.lock().unwrap().as_ref() {
        eprintln!("  first connect error: {e}");
    }
    let info = json!({
        "sockets": ok,
        "failed": failures.load(Relaxed),
        "first_error": *first_error.lock().unwrap(),
        "seconds": round3(secs),
        "per_s": round3(ok as f64 / secs.max(1e-9)),
        "handshake_ms": hist.summary_ms(),
    });
    (sinks, info)
}

/// Waits until no frame arrived for `quiet` (at most `limit`): lets the
/// presence announcements of a connect storm pass.
async fn settle(stats: &Stats, quiet: Duration, limit: Duration) -> f64 {
    let started = Instant::now();
    let mut last = stats.frames.load(Relaxed);
    let mut still_since = Instant::now();
    while started.elapsed() < limit {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = stats.frames.load(Relaxed);
        if now != last {
            last = now;
            still_since = Instant::now();
        } else if still_since.elapsed() >= quiet {
            break;
        }
    }
    started.elapsed().as_secs_f64()
}

// ----- sending -------------------------------------------------------------------

struct SendPlan {
    /// This sender's index and the number of senders.
    index: u64,
    senders: u64,
    /// Total rate, msgs/s.
    rate: f64,
    start: Instant,
    end: Instant,
    room: String,
    size: usize,
    nonce_prefix: Option<String>,
}

fn message_frame(room: &str, t: u64, size: usize, nonce: Option<&str>) -> String {
    let head = format!("t={t};");
    let pad = size.saturating_sub(head.len());
    let mut s = String::with_capacity(size + 96);
    s.push_str(r#"{"type":"message","data":{"roomId":""#);
    s.push_str(room);
    s.push_str(r#"","message":""#);
    s.push_str(&head);
    s.extend(std::iter::repeat_n('x', pad));
    s.push('"');
    if let Some(n) = nonce {
        s.push_str(r#","nonce":""#);
        s.push_str(n);
        s.push('"');
    }
    s.push_str("}}");
    s
}

/// Sends this sender's share of an evenly spaced schedule: message g of the
/// whole run is due at `start + g / rate`, and sender j sends g ≡ j mod K.
/// A late sender catches up at once (its lag is reported).
async fn send_paced(mut sink: Sink, plan: SendPlan, stats: Arc<Stats>) -> (Sink, u64, u64) {
    let period = 1e9 / plan.rate.max(1e-6);
    let (mut g, mut sent, mut max_lag) = (plan.index, 0u64, 0u64);
    loop {
        let due = plan.start + Duration::from_nanos((g as f64 * period) as u64);
        if due >= plan.end {
            break;
        }
        let now = Instant::now();
        if due > now {
            tokio::time::sleep_until(due.into()).await;
        } else {
            max_lag = max_lag.max(now.duration_since(due).as_nanos() as u64);
        }
        let t = now_ns();
        let nonce = plan.nonce_prefix.as_ref().map(|p| format!("{p}-{g}"));
        let frame = message_frame(&plan.room, t, plan.size, nonce.as_deref());
        let left = plan.end.saturating_duration_since(Instant::now()) + Duration::from_secs(1);
        match tokio::time::timeout(left, sink.send(Message::Text(frame.into()))).await {
            Ok(Ok(())) => {}
            _ => break,
        }
        sent += 1;
        if stats.in_window(t) {
            stats.sent.fetch_add(1, Relaxed);
            stats.sent_log.lock().unwrap().push(t);
        }
        g += plan.senders;
    }
    (sink, sent, max_lag)
}

// ----- fan-out (and mixed) ---------------------------------------------------------

async fn fanout(ctx: &Ctx, a: FanoutArgs, mixed: Option<MixedArgs>) -> Res<()> {
    let scenario = if mixed.is_some() { "mixed" } else { "fanout" };
    let n = a.clients.max(1);
    let k = a.senders.clamp(1, n);
    eprintln!(
        "{scenario}: {n} clients, {k} senders, rates {:?} msgs/s, {} s + {} s warm-up per step (run {})",
        a.rates, a.duration, a.warmup, ctx.run
    );
    let (accounts, reg_secs) = sign_up_all(ctx, (0..n).map(|i| ctx.user(i)).collect()).await?;

    // Login accounts for `mixed`.
    let login_names: Vec<String> = match &mixed {
        Some(m) => match &m.login_prefix {
            Some(p) => (0..m.login_users).map(|i| format!("{p}{i}")).collect(),
            None => {
                let names: Vec<String> = (0..m.login_users)
                    .map(|i| format!("lg{}-login-{i}", ctx.run))
                    .collect();
                sign_up_all(ctx, names.clone()).await?;
                names
            }
        },
        None => vec![],
    };

    let stats = Stats::new();
    let rss_before = ctx.sample();
    let (mut sinks, connect) = connect_all(
        ctx,
        accounts.iter().map(|a| a.cookie.clone()).collect(),
        &stats,
    )
    .await;
    let settled = settle(&stats, Duration::from_secs(1), Duration::from_secs(60)).await;
    eprintln!(
        "  presence settled after {settled:.1} s ({} frames so far)",
        stats.frames.load(Relaxed)
    );
    let rss_after = ctx.sample();
    let base_rss = json!({
        "server_rss_kib_before_connect": rss_before.server_rss_kib,
        "server_rss_kib_after_connect": rss_after.server_rss_kib,
    });

    let run_tag = format!("lg{}", ctx.run);
    for (step, &rate) in a.rates.iter().enumerate() {
        let receivers = stats.open.load(Relaxed);
        let senders: Vec<(usize, Sink)> = sinks
            .iter_mut()
            .enumerate()
            .filter_map(|(i, s)| s.take().map(|s| (i, s)))
            .take(k)
            .collect();
        if senders.is_empty() {
            return Err("no open socket to send from".into());
        }
        let k_now = senders.len() as u64;
        let t0 = Instant::now();
        let t0_ns = now_ns();
        let start = t0 + Duration::from_millis(100);
        let win_start = start + Duration::from_secs_f64(a.warmup);
        let end = win_start + Duration::from_secs_f64(a.duration);
        let ns_of = |t: Instant| t0_ns + t.duration_since(t0).as_nanos() as u64;
        stats.start_window(ns_of(win_start), ns_of(end));
        let frames_before = stats.frames.load(Relaxed);
        let errors_before = stats.error_frames.load(Relaxed);
        let closed_before = stats.closed.load(Relaxed);

        let mut tasks = Vec::new();
        for (slot, (i, sink)) in senders.into_iter().enumerate() {
            let plan = SendPlan {
                index: slot as u64,
                senders: k_now,
                rate,
                start,
                end,
                room: "0".into(),
                size: a.size,
                nonce_prefix: (!a.no_nonce).then(|| format!("{run_tag}-s{step}-{i}")),
            };
            let stats = stats.clone();
            tasks.push((i, tokio::spawn(send_paced(sink, plan, stats))));
        }
        let logins = mixed.as_ref().map(|m| {
            tokio::spawn(login_load(
                ctx.addr,
                login_names.clone(),
                m.logins,
                m.login_workers,
                start,
                end,
            ))
        });

        tokio::time::sleep_until(win_start.into()).await;
        let s0 = ctx.sample();
        tokio::time::sleep_until(end.into()).await;
        let s1 = ctx.sample();
        let received_in_window = stats.received_in_window.load(Relaxed);

        let (mut sent_total, mut max_lag) = (0u64, 0u64);
        for (i, t) in tasks {
            let (sink, sent, lag) = t.await.map_err(|e| e.to_string())?;
            sinks[i] = Some(sink);
            sent_total += sent;
            max_lag = max_lag.max(lag);
        }
        let login_report = match logins {
            Some(t) => Some(t.await.map_err(|e| e.to_string())?),
            None => None,
        };
        // Late deliveries.
        let sent_in_window = stats.sent.load(Relaxed);
        let expected = sent_in_window * receivers;
        let drain_start = Instant::now();
        while stats.delivered.load(Relaxed) < expected
            && drain_start.elapsed().as_secs_f64() < a.drain
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let delivered = stats.delivered.load(Relaxed);
        let loss = expected.saturating_sub(delivered);
        let closed_now = stats.closed.load(Relaxed) - closed_before;
        let (lost_at_probe, lost_examples) = stats.lost_at_probe();
        let window = s0
            .at
            .elapsed()
            .min(s1.at.duration_since(s0.at))
            .as_secs_f64();
        let deliveries_per_s = received_in_window as f64 / window.max(1e-9);
        let lat = stats.hist.summary_ms();
        let p99 = lat["p99"].as_f64().unwrap_or(0.0);
        let mut line = json!({
            "scenario": scenario,
            "step": step,
            "clients": n,
            "receivers": receivers,
            "senders": k_now,
            "message_bytes": a.size,
            "nonce": !a.no_nonce,
            "offered_msgs_per_s": rate,
            "offered_deliveries_per_s": round3(rate * receivers as f64),
            "duration_s": a.duration,
            "warmup_s": a.warmup,
            "sent_total": sent_total,
            "sent_in_window": sent_in_window,
            "achieved_msgs_per_s": round3(sent_in_window as f64 / a.duration),
            "max_send_lag_ms": round3(max_lag as f64 / 1e6),
            "expected": expected,
            "delivered": delivered,
            "loss": loss,
            "loss_pct": if expected > 0 { round3(loss as f64 * 100.0 / expected as f64) } else { 0.0 },
            "deliveries_per_s": round3(deliveries_per_s),
            "latency_ms": lat,
            "closed_during_step": closed_now,
            "frames_during_step": stats.frames.load(Relaxed) - frames_before,
            "error_frames_during_step": stats.error_frames.load(Relaxed) - errors_before,
            "lost_at_probe": lost_at_probe,
            "lost_at_probe_ms_after_window_start": lost_examples,
            "window_start_unix_ms": stats.win_start.load(Relaxed) / 1_000_000,
            "closes": stats.closes_json(),
            "cpu": s0.delta(&s1, received_in_window),
            "connect": connect.clone(),
            "register_s": round3(reg_secs),
            "memory": base_rss.clone(),
        });
        if let (Some(m), Some(r)) = (&mixed, login_report) {
            line["logins"] = r;
            line["logins_offered_per_s"] = json!(m.logins);
        }
        eprintln!(
            "  step {step}: offered {:.0} msgs/s = {:.0} deliveries/s → {:.0} deliveries/s, loss {loss}/{expected}, latency p50 {} p99 {} max {} ms, server {} µs/delivery{}",
            rate,
            rate * receivers as f64,
            deliveries_per_s,
            line["latency_ms"]["p50"],
            line["latency_ms"]["p99"],
            line["latency_ms"]["max"],
            line["cpu"]["server"]["cpu_us_per_unit"],
            match line.get("logins") {
                Some(l) => format!(", logins {}/s p99 {} ms", l["per_s"], l["latency_ms"]["p99"]),
                None => String::new(),
            }
        );
        ctx.emit(line);
        if p99 > a.stop_p99_ms || loss > 0 || closed_now > 0 {
            eprintln!(
                "  stopping the ramp: p99 {p99} ms (limit {}), loss {loss}, closed {closed_now}",
                a.stop_p99_ms
            );
            break;
        }
        // Let queues drain before the next step.
        settle(&stats, Duration::from_millis(500), Duration::from_secs(5)).await;
    }
    Ok(())
}

/// Runs `rate` logins/s between `start` and `end` over `workers` keep-alive
/// connections; latency counts from the scheduled time (queueing included).
async fn login_load(
    addr: SocketAddr,
    names: Vec<String>,
    rate: f64,
    workers: usize,
    start: Instant,
    end: Instant,
) -> Value {
    let hist = Arc::new(Histogram::new());
    let failures = Arc::new(AtomicU64::new(0));
    let (tx, rx) = tokio::sync::mpsc::channel::<(Instant, usize)>(100_000);
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let mut tasks = Vec::new();
    for _ in 0..workers.max(1) {
        let (rx, hist, failures, names) =
            (rx.clone(), hist.clone(), failures.clone(), names.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let job = rx.lock().await.recv().await;
                let Some((due, i)) = job else { break };
                // The server allows 60 sign-ins per address per 5 minutes:
                // each login comes from its own loopback address (127.0.0.2
                // to 127.0.0.251, round robin), as from many browsers.
                let mut http = HttpConn::new(addr);
                if addr.ip().is_ipv4() {
                    http.source = Some(std::net::IpAddr::from([127, 0, 0, 2 + (i % 250) as u8]));
                }
                let body = form_encode(&[
                    ("username", &names[i % names.len()]),
                    ("password", PASSWORD),
                ]);
                match http.request("POST", "/api/login", None, Some(&body)).await {
                    Ok(r) if r.status == 200 => hist.record(due.elapsed().as_micros() as u64),
                    _ => {
                        failures.fetch_add(1, Relaxed);
                    }
                }
            }
        }));
    }
    let period = 1.0 / rate.max(1e-6);
    let mut i = 0usize;
    loop {
        let due = start + Duration::from_secs_f64(i as f64 * period);
        if due >= end || names.is_empty() {
            break;
        }
        tokio::time::sleep_until(due.into()).await;
        if tx.send((due, i)).await.is_err() {
            break;
        }
        i += 1;
    }
    drop(tx);
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(30), t).await;
    }
    let secs = end.duration_since(start).as_secs_f64();
    json!({
        "scheduled": i,
        "ok": hist.count.load(Relaxed),
        "failed": failures.load(Relaxed),
        "per_s": round3(hist.count.load(Relaxed) as f64 / secs.max(1e-9)),
        "latency_ms": hist.summary_ms(),
    })
}

// ----- capacity --------------------------------------------------------------------

async fn capacity(ctx: &Ctx, a: CapacityArgs) -> Res<()> {
    let n = a.sockets.max(1);
    let users = a.users.unwrap_or(n).clamp(1, n);
    eprintln!(
        "capacity: {n} sockets of {users} users, steps of {} (run {})",
        a.step, ctx.run
    );
    let (accounts, reg_secs) = sign_up_all(ctx, (0..users).map(|i| ctx.user(i)).collect()).await?;
    let stats = Stats::new();
    let base = ctx.sample();
    let mut steps = Vec::new();
    let mut all_sinks: Vec<Option<Sink>> = Vec::with_capacity(n);
    let (mut connect_secs, mut failed) = (0.0f64, 0u64);
    let mut opened = 0usize;
    while opened < n {
        let m = a.step.max(1).min(n - opened);
        let cookies = (opened..opened + m)
            .map(|i| accounts[i % users].cookie.clone())
            .collect();
        let (sinks, info) = connect_all(ctx, cookies, &stats).await;
        connect_secs += info["seconds"].as_f64().unwrap_or(0.0);
        failed += info["failed"].as_u64().unwrap_or(0);
        all_sinks.extend(sinks);
        opened += m;
        tokio::time::sleep(Duration::from_secs_f64(a.settle)).await;
        let s = ctx.sample();
        let open = stats.open.load(Relaxed);
        eprintln!(
            "  {opened} opened, {open} open, server RSS {} KiB, frames received {}, closed {}",
            s.server_rss_kib.unwrap_or(0),
            stats.frames.load(Relaxed),
            stats.closed.load(Relaxed)
        );
        steps.push(json!({
            "opened": opened,
            "open": open,
            "connect_s": info["seconds"],
            "connects_per_s": info["per_s"],
            "handshake_ms": info["handshake_ms"],
            "server_rss_kib": s.server_rss_kib,
            "redis_rss_kib": s.redis_rss_kib,
            "frames_total": stats.frames.load(Relaxed),
            "closed": stats.closed.load(Relaxed),
        }));
    }
    let settled = settle(
        &stats,
        Duration::from_secs(2),
        Duration::from_secs_f64(a.settle_limit),
    )
    .await;
    eprintln!(
        "  frames drained after {settled:.1} s ({} received)",
        stats.frames.load(Relaxed)
    );
    tokio::time::sleep(Duration::from_secs_f64(a.hold)).await;
    let end = ctx.sample();
    let open = stats.open.load(Relaxed);
    let rss_delta = match (base.server_rss_kib, end.server_rss_kib) {
        (Some(b), Some(e)) => Some(e.saturating_sub(b)),
        _ => None,
    };
    let line = json!({
        "scenario": "capacity",
        "sockets": n,
        "users": users,
        "open_at_end": open,
        "failed": failed,
        "connect_s": round3(connect_secs),
        "connects_per_s": round3((n as u64 - failed) as f64 / connect_secs.max(1e-9)),
        "register_s": round3(reg_secs),
        "settle_s": round3(settled),
        "server_rss_kib_before": base.server_rss_kib,
        "server_rss_kib_after": end.server_rss_kib,
        "server_rss_kib_per_socket": rss_delta.map(|d| round3(d as f64 / open.max(1) as f64)),
        "redis_rss_kib_after": end.redis_rss_kib,
        "frames": stats.frames_json(),
        "frames_per_socket": round3(stats.frames.load(Relaxed) as f64 / n as f64),
        "closes": stats.closes_json(),
        "cpu": base.delta(&end, n as u64),
        "steps": steps,
    });
    eprintln!(
        "  capacity: {open}/{n} open, {:.0} connects/s, RSS +{} KiB = {} KiB/socket, {} frames received ({} per socket), {} closed",
        line["connects_per_s"].as_f64().unwrap_or(0.0),
        rss_delta.unwrap_or(0),
        line["server_rss_kib_per_socket"],
        stats.frames.load(Relaxed),
        line["frames_per_socket"],
        stats.closed.load(Relaxed)
    );
    ctx.emit(line);
    drop(all_sinks);
    Ok(())
}

// ----- history ---------------------------------------------------------------------

/// A small xorshift generator (no dependency needed for random cursors).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

/// A connection to `--redis-url` for seeding data. Big pipelines on a busy
/// machine can take longer than the default response timeout (500 ms).
async fn seeding_connection(url: &str) -> Res<redis::aio::MultiplexedConnection> {
    let client = redis::Client::open(url).map_err(|e| format!("--redis-url: {e}"))?;
    let config =
        redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(60)));
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .map_err(|e| format!("redis: {e}"))
}

/// Fills General's stream to `target` messages; returns (messages, seconds).
async fn seed_room(url: &str, target: u64, sender: u64) -> Res<(u64, f64, Vec<String>)> {
    let mut con = seeding_connection(url).await?;
    let key = redis_chat::server::store::keys::room_stream("0");
    let have: u64 = redis::cmd("XLEN")
        .arg(&key)
        .query_async(&mut con)
        .await
        .map_err(|e| e.to_string())?;
    let started = Instant::now();
    let mut added = 0u64;
    const BATCH: u64 = 5_000;
    let from = sender.to_string();
    let mut in_flight = futures::stream::FuturesUnordered::new();
    let mut next = have;
    while next < target || !in_flight.is_empty() {
        while next < target && in_flight.len() < 4 {
            let count = BATCH.min(target - next);
            let mut pipe = redis::pipe();
            for i in next..next + count {
                pipe.cmd("XADD")
                    .arg(&key)
                    .arg("*")
                    .arg("from")
                    .arg(&from)
                    .arg("message")
                    .arg(format!(
                        "seeded message #{i}: the quick brown fox jumps over the lazy dog"
                    ))
                    .ignore();
            }
            let mut c = con.clone();
            in_flight.push(async move {
                pipe.query_async::<()>(&mut c)
                    .await
                    .map(|_| count)
                    .map_err(|e| e.to_string())
            });
            next += count;
        }
        if let Some(r) = in_flight.next().await {
            added += r?;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    if added > 0 {
        eprintln!(
            "  seeded {added} messages in {secs:.1} s ({:.0}/s)",
            added as f64 / secs.max(1e-9)
        );
    }
    // Cursors: real ids at random points of the stream (past the first 1 %).
    type Entries = Vec<(String, std::collections::HashMap<String, String>)>;
    let first: Entries = redis::cmd("XRANGE")
        .arg(&key)
        .arg("-")
        .arg("+")
        .arg("COUNT")
        .arg(1)
        .query_async(&mut con)
        .await
        .map_err(|e| e.to_string())?;
    let last: Entries = redis::cmd("XREVRANGE")
        .arg(&key)
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .query_async(&mut con)
        .await
        .map_err(|e| e.to_string())?;
    let ms = |id: &str| -> u64 {
        id.split('-')
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    };
    let (lo, hi) = match (first.first(), last.first()) {
        (Some(f), Some(l)) => (ms(&f.0), ms(&l.0)),
        _ => return Err("the room is empty after seeding".into()),
    };
    let lo = lo + (hi - lo) / 100;
    let mut rng = Rng(now_ns() | 1);
    let mut pipe = redis::pipe();
    for _ in 0..1000 {
        let at = lo + rng.next() % (hi - lo + 1);
        pipe.cmd("XRANGE")
            .arg(&key)
            .arg(at)
            .arg("+")
            .arg("COUNT")
            .arg(1);
    }
    let picks: Vec<Entries> = pipe
        .query_async(&mut con)
        .await
        .map_err(|e| e.to_string())?;
    let cursors: Vec<String> = picks
        .into_iter()
        .filter_map(|v| v.into_iter().next().map(|(id, _)| id))
        .collect();
    let len: u64 = redis::cmd("XLEN")
        .arg(&key)
        .query_async(&mut con)
        .await
        .map_err(|e| e.to_string())?;
    Ok((len, secs, cursors))
}

async fn history(ctx: &Ctx, a: HistoryArgs) -> Res<()> {
    let c = a.connections.max(1);
    eprintln!(
        "history: {c} connections, pages of {}, {} s (run {})",
        a.limit, a.duration, ctx.run
    );
    let (accounts, _) = sign_up_all(ctx, (0..c).map(|i| ctx.user(i)).collect()).await?;
    let (room_len, seed_secs, cursors) = match &a.redis_url {
        Some(url) => seed_room(url, a.seed, accounts[0].id).await?,
        None => (0, 0.0, vec![]),
    };
    if cursors.is_empty() {
        eprintln!("  no --redis-url: paging from the newest message only");
    }
    let cookies = accounts.iter().map(|a| Some(a.cookie.clone())).collect();
    let limit = a.limit;
    let (hist, counters, s0, s1) = http_load(ctx, cookies, a.warmup, a.duration, move |rng| {
        if cursors.is_empty() {
            format!("/api/messages?room_id=0&limit={limit}")
        } else {
            let cur = &cursors[(rng.next() % cursors.len() as u64) as usize];
            format!("/api/messages?room_id=0&limit={limit}&before={cur}")
        }
    })
    .await;
    let line = json!({
        "scenario": "history",
        "connections": c,
        "limit": a.limit,
        "room_messages": room_len,
        "seed_s": round3(seed_secs),
        "duration_s": a.duration,
    });
    ctx.emit(page_load_line(line, a.duration, &hist, &counters, &s0, &s1));
    Ok(())
}

// ----- server-side rendering ---------------------------------------------------------

/// Completes a scenario's JSON line with what [`http_load`] measured
/// (pages, failures, pages/s, page size, latency, CPU) and prints a summary.
fn page_load_line(
    mut line: serde_json::Value,
    duration: f64,
    hist: &Histogram,
    counters: &[AtomicU64; 3],
    s0: &ProcSample,
    s1: &ProcSample,
) -> serde_json::Value {
    let ok = counters[0].load(Relaxed);
    let measured = json!({
        "pages": ok,
        "failed": counters[1].load(Relaxed),
        "pages_per_s": round3(ok as f64 / duration),
        "avg_page_bytes": counters[2].load(Relaxed).checked_div(ok).unwrap_or(0),
        "latency_ms": hist.summary_ms(),
        "cpu": s0.delta(s1, ok),
    });
    if let (Some(line), serde_json::Value::Object(measured)) = (line.as_object_mut(), measured) {
        line.extend(measured);
    }
    eprintln!(
        "  {:.0} pages/s, latency p50 {} p99 {} max {} ms, {} failed, server {} µs/page",
        line["pages_per_s"].as_f64().unwrap_or(0.0),
        line["latency_ms"]["p50"],
        line["latency_ms"]["p99"],
        line["latency_ms"]["max"],
        line["failed"],
        line["cpu"]["server"]["cpu_us_per_unit"]
    );
    line
}

/// One keep-alive connection per entry of `cookies`, each sending `GET
/// path(rng)` one at a time until the measured window (after `warmup`
/// seconds, `duration` long) ends. Returns the latency histogram of the
/// window, its counters (ok, failed, body bytes) and the process samples
/// at its start and end.
async fn http_load(
    ctx: &Ctx,
    cookies: Vec<Option<String>>,
    warmup: f64,
    duration: f64,
    path: impl Fn(&mut Rng) -> String + Send + Sync + 'static,
) -> (Arc<Histogram>, Arc<[AtomicU64; 3]>, ProcSample, ProcSample) {
    let hist = Arc::new(Histogram::new());
    let counters = Arc::new([AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)]);
    let path = Arc::new(path);
    let start = Instant::now();
    let win_start = start + Duration::from_secs_f64(warmup);
    let end = win_start + Duration::from_secs_f64(duration);
    let mut tasks = Vec::new();
    for (w, cookie) in cookies.into_iter().enumerate() {
        let (hist, counters, path, addr) = (hist.clone(), counters.clone(), path.clone(), ctx.addr);
        tasks.push(tokio::spawn(async move {
            let mut http = HttpConn::new(addr);
            let mut rng = Rng((now_ns() ^ ((w as u64 + 1) * 0x9e37_79b9_7f4a_7c15)) | 1);
            loop {
                let now = Instant::now();
                if now >= end {
                    break;
                }
                let r = http
                    .request("GET", &path(&mut rng), cookie.as_deref(), None)
                    .await;
                match r {
                    Ok(r) if r.status == 200 => {
                        if now >= win_start {
                            hist.record(now.elapsed().as_micros() as u64);
                            counters[0].fetch_add(1, Relaxed);
                            counters[2].fetch_add(r.body.len() as u64, Relaxed);
                        }
                    }
                    _ => {
                        counters[1].fetch_add(1, Relaxed);
                    }
                }
            }
        }));
    }
    tokio::time::sleep_until(win_start.into()).await;
    let s0 = ctx.sample();
    tokio::time::sleep_until(end.into()).await;
    let s1 = ctx.sample();
    for t in tasks {
        let _ = t.await;
    }
    (hist, counters, s0, s1)
}

async fn ssr(ctx: &Ctx, a: SsrArgs) -> Res<()> {
    let c = a.connections.max(1);
    eprintln!(
        "ssr: GET {} over {c} connection(s), {} s",
        a.path, a.duration
    );
    let path = a.path.clone();
    let (hist, counters, s0, s1) = http_load(ctx, vec![None; c], a.warmup, a.duration, move |_| {
        path.clone()
    })
    .await;
    let line = json!({
        "scenario": "ssr",
        "path": a.path,
        "connections": c,
        "duration_s": a.duration,
    });
    ctx.emit(page_load_line(line, a.duration, &hist, &counters, &s0, &s1));
    Ok(())
}

// ----- send throughput ---------------------------------------------------------------

async fn send(ctx: &Ctx, a: SendArgs) -> Res<()> {
    let k = a.senders.max(1);
    let private = match a.room.as_str() {
        "private" => true,
        "general" => false,
        other => return Err(format!("--room {other}: private or general")),
    };
    eprintln!(
        "send: {k} senders, window {}, rate {}, {} room (run {})",
        a.window,
        if a.rate > 0.0 {
            format!("{} msgs/s", a.rate)
        } else {
            "as fast as acks allow".into()
        },
        a.room,
        ctx.run
    );
    let mut names: Vec<String> = (0..k).map(|i| ctx.user(i)).collect();
    names.push(format!("lg{}-partner", ctx.run));
    let (accounts, _) = sign_up_all(ctx, names).await?;
    let partner = accounts[k].id;
    let mut rooms = Vec::new();
    let mut http = HttpConn::new(ctx.addr);
    for acc in &accounts[..k] {
        if private {
            let body = form_encode(&[("user_id", &partner.to_string())]);
            let r = http
                .request("POST", "/api/private_room", Some(&acc.cookie), Some(&body))
                .await?;
            let v: Value = serde_json::from_slice(&r.body)
                .map_err(|e| format!("private_room: HTTP {}: {e}", r.status))?;
            rooms.push(
                v["id"]
                    .as_str()
                    .ok_or_else(|| format!("private_room: {v}"))?
                    .to_string(),
            );
        } else {
            rooms.push("0".to_string());
        }
    }
    let mut sockets = Vec::new();
    let t = Instant::now();
    for acc in &accounts[..k] {
        sockets.push(open_socket(ctx.addr, &acc.cookie).await?);
    }
    let connect_secs = t.elapsed().as_secs_f64();
    // Let the presence announcements pass.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let hist = Arc::new(Histogram::new());
    let counters = Arc::new([
        AtomicU64::new(0), // acked in window
        AtomicU64::new(0), // error frames
        AtomicU64::new(0), // sent total
        AtomicU64::new(0), // closed sockets
    ]);
    let t0 = Instant::now();
    let t0_ns = now_ns();
    let start = t0 + Duration::from_millis(100);
    let win_start = start + Duration::from_secs_f64(a.warmup);
    let end = win_start + Duration::from_secs_f64(a.duration);
    let ns_of = |t: Instant| t0_ns + t.duration_since(t0).as_nanos() as u64;
    let (ws_ns, we_ns) = (ns_of(win_start), ns_of(end));
    let mut tasks = Vec::new();
    for (j, (ws, room)) in sockets.into_iter().zip(rooms).enumerate() {
        let (hist, counters) = (hist.clone(), counters.clone());
        let window = a.window.max(1);
        let size = a.size;
        let period = if a.rate > 0.0 {
            Some(1e9 * k as f64 / a.rate)
        } else {
            None
        };
        let nonce_prefix = format!("lg{}-{j}-", ctx.run);
        tasks.push(tokio::spawn(async move {
            let (mut sink, mut rx) = ws.split();
            let mut inflight = 0usize;
            let mut seq = 0u64;
            let mut next_due = start
                + Duration::from_nanos(period.map_or(0, |p| (p * j as f64 / k as f64) as u64));
            tokio::time::sleep_until(start.into()).await;
            loop {
                let now = Instant::now();
                if now >= end && inflight == 0 {
                    break;
                }
                if now >= end + Duration::from_secs(5) {
                    break;
                }
                let may_send = now < end && inflight < window && next_due <= now;
                if may_send {
                    let t = now_ns();
                    let nonce = format!("{nonce_prefix}{seq}");
                    seq += 1;
                    let frame = message_frame(&room, t, size, Some(&nonce));
                    if sink.send(Message::Text(frame.into())).await.is_err() {
                        counters[3].fetch_add(1, Relaxed);
                        break;
                    }
                    counters[2].fetch_add(1, Relaxed);
                    inflight += 1;
                    if let Some(p) = period {
                        next_due += Duration::from_nanos(p as u64);
                    }
                    continue;
                }
                // Wait for an ack (or the next send time).
                let wake = if inflight < window && now < end {
                    next_due
                } else {
                    end + Duration::from_secs(5)
                };
                let frame = tokio::select! {
                    f = rx.next() => f,
                    _ = tokio::time::sleep_until(wake.into()) => continue,
                };
                match frame {
                    Some(Ok(Message::Text(txt))) => {
                        let b = txt.as_bytes();
                        if b.starts_with(br#"{"type":"message""#)
                            && find(b, nonce_prefix.as_bytes()).is_some()
                        {
                            inflight = inflight.saturating_sub(1);
                            if let Some(t) = stamp(b) {
                                if t >= ws_ns && t < we_ns {
                                    counters[0].fetch_add(1, Relaxed);
                                    hist.record(now_ns().saturating_sub(t) / 1000);
                                }
                            }
                        } else if b.starts_with(br#"{"type":"error""#) {
                            inflight = inflight.saturating_sub(1);
                            counters[1].fetch_add(1, Relaxed);
                        }
                    }
                    Some(Ok(_)) => {}
                    _ => {
                        counters[3].fetch_add(1, Relaxed);
                        break;
                    }
                }
            }
        }));
    }
    tokio::time::sleep_until(win_start.into()).await;
    let s0 = ctx.sample();
    tokio::time::sleep_until(end.into()).await;
    let s1 = ctx.sample();
    for t in tasks {
        let _ = t.await;
    }
    let acked = counters[0].load(Relaxed);
    let line = json!({
        "scenario": "send",
        "senders": k,
        "window": a.window,
        "room": a.room,
        "offered_msgs_per_s": a.rate,
        "message_bytes": a.size,
        "duration_s": a.duration,
        "sent_total": counters[2].load(Relaxed),
        "accepted_in_window": acked,
        "accepted_msgs_per_s": round3(acked as f64 / a.duration),
        "error_frames": counters[1].load(Relaxed),
        "closed": counters[3].load(Relaxed),
        "ack_latency_ms": hist.summary_ms(),
        "connect_s": round3(connect_secs),
        "cpu": s0.delta(&s1, acked),
    });
    eprintln!(
        "  {:.0} msgs/s accepted, ack p50 {} p99 {} max {} ms, {} errors, server {} µs/msg, redis {} µs/msg",
        line["accepted_msgs_per_s"].as_f64().unwrap_or(0.0),
        line["ack_latency_ms"]["p50"],
        line["ack_latency_ms"]["p99"],
        line["ack_latency_ms"]["max"],
        line["error_frames"],
        line["cpu"]["server"]["cpu_us_per_unit"],
        line["cpu"]["redis"]["cpu_us_per_unit"]
    );
    ctx.emit(line);
    Ok(())
}

// ----- register ------------------------------------------------------------------------

async fn register_cmd(ctx: &Ctx, a: RegisterArgs) -> Res<()> {
    let names: Vec<String> = (0..a.count).map(|i| format!("{}{i}", a.prefix)).collect();
    let (_, secs) = sign_up_all(ctx, names).await?;
    ctx.emit(json!({
        "scenario": "register",
        "prefix": a.prefix,
        "count": a.count,
        "seconds": round3(secs),
        "per_s": round3(a.count as f64 / secs.max(1e-9)),
    }));
    Ok(())
}

// ----- render (SVG by hand) ---------------------------------------------------------

fn fmt_num(v: f64) -> String {
    if v >= 1e6 {
        format!("{}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{}k", v / 1e3)
    } else if v >= 1.0 || v == 0.0 {
        format!("{v}")
    } else {
        format!("{v:.1}")
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn render(a: &RenderArgs) -> Res<()> {
    // "<clients> clients[, label]" → [(offered, achieved, p50, p99, loss)]
    let mut series: BTreeMap<(u64, String), Vec<[f64; 5]>> = BTreeMap::new();
    for path in &a.inputs {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        for line in text.lines() {
            let Ok(v) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            if v["scenario"] != "fanout" {
                continue;
            }
            let f = |p: &str| v.pointer(p).and_then(Value::as_f64).unwrap_or(0.0);
            let label = v["label"].as_str().unwrap_or_default().to_string();
            series
                .entry((f("/clients") as u64, label))
                .or_default()
                .push([
                    f("/offered_deliveries_per_s"),
                    f("/deliveries_per_s"),
                    f("/latency_ms/p50"),
                    f("/latency_ms/p99"),
                    f("/loss"),
                ]);
        }
    }
    if series.is_empty() {
        return Err("no fanout lines in the input".into());
    }
    for pts in series.values_mut() {
        pts.sort_by(|x, y| x[0].total_cmp(&y[0]));
    }
    // Log scales: the ramps are geometric (2k, 5k, 10k, 20k, ...).
    let positive = |v: f64| v.is_finite() && v > 0.0;
    let all: Vec<f64> = series
        .values()
        .flatten()
        .flat_map(|p| [p[0], p[1]])
        .filter(|v| positive(*v))
        .collect();
    let xlo = 10f64.powf(all.iter().copied().fold(f64::MAX, f64::min).log10().floor());
    let xhi = 10f64.powf(all.iter().copied().fold(1.0, f64::max).log10().ceil());
    let lat_max = series.values().flatten().map(|p| p[3]).fold(1.0, f64::max);
    let (ylo, yhi) = (0.1f64, 10f64.powf(lat_max.max(60.0).log10().ceil()));

    let (w, h) = (900.0, 760.0);
    let (left, right) = (80.0, 860.0);
    let (top1, bot1) = (80.0, 380.0); // latency panel
    let (top2, bot2) = (450.0, 690.0); // throughput panel
    let log_pos = |v: f64, lo: f64, hi: f64| {
        (v.clamp(lo, hi).log10() - lo.log10()) / (hi.log10() - lo.log10())
    };
    let x_of = |x: f64| left + (right - left) * log_pos(x, xlo, xhi);
    let ly_of = |ms: f64| bot1 - (bot1 - top1) * log_pos(ms, ylo, yhi);
    let ty_of = |d: f64| bot2 - (bot2 - top2) * log_pos(d, xlo, xhi);
    let colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"];
    // 1-2-5 ticks from lo to hi.
    let ticks = |lo: f64, hi: f64| -> Vec<f64> {
        let mut out = Vec::new();
        let mut d = lo;
        while d <= hi * 1.0001 {
            for m in [1.0, 2.0, 5.0] {
                if d * m <= hi * 1.0001 {
                    out.push(d * m);
                }
            }
            d *= 10.0;
        }
        out
    };

    let mut s = String::new();
    s.push_str(&format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{}" y="28" font-size="18" text-anchor="middle">redis-chat fan-out: latency and throughput vs offered load</text>
<text x="{}" y="48" fill="#555" text-anchor="middle">{}</text>
"##,
        w / 2.0,
        w / 2.0,
        esc(&a.subtitle)
    ));
    // Grid and axes.
    for x in ticks(xlo, xhi) {
        let px = x_of(x);
        s.push_str(&format!(
            "<line x1=\"{px:.1}\" y1=\"{top1}\" x2=\"{px:.1}\" y2=\"{bot1}\" stroke=\"#eee\"/>\n<line x1=\"{px:.1}\" y1=\"{top2}\" x2=\"{px:.1}\" y2=\"{bot2}\" stroke=\"#eee\"/>\n<text x=\"{px:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n<text x=\"{px:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n",
            bot1 + 16.0,
            fmt_num(x),
            bot2 + 16.0,
            fmt_num(x)
        ));
    }
    for d in ticks(ylo, yhi) {
        let py = ly_of(d);
        s.push_str(&format!(
            "<line x1=\"{left}\" y1=\"{py:.1}\" x2=\"{right}\" y2=\"{py:.1}\" stroke=\"#eee\"/>\n<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\n",
            left - 6.0,
            py + 4.0,
            fmt_num(d)
        ));
    }
    for y in ticks(xlo, xhi) {
        let py = ty_of(y);
        s.push_str(&format!(
            "<line x1=\"{left}\" y1=\"{py:.1}\" x2=\"{right}\" y2=\"{py:.1}\" stroke=\"#eee\"/>\n<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\n",
            left - 6.0,
            py + 4.0,
            fmt_num(y)
        ));
    }
    for (t, b) in [(top1, bot1), (top2, bot2)] {
        s.push_str(&format!(
            "<rect x=\"{left}\" y=\"{t}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#333\"/>\n",
            right - left,
            b - t
        ));
    }
    // Goal lines.
    for (ms, label) in [
        (50.0, "p99 goal at 200k/s: 50 ms"),
        (10.0, "p99 goal at 20k/s: 10 ms"),
    ] {
        let py = ly_of(ms);
        s.push_str(&format!(
            "<line x1=\"{left}\" y1=\"{py:.1}\" x2=\"{right}\" y2=\"{py:.1}\" stroke=\"#999\" stroke-dasharray=\"2,4\"/>\n<text x=\"{}\" y=\"{:.1}\" fill=\"#777\" text-anchor=\"end\">{label}</text>\n",
            right - 4.0,
            py - 4.0
        ));
    }
    s.push_str(&format!(
        "<line x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"#999\" stroke-dasharray=\"2,4\"/>\n",
        x_of(xlo),
        ty_of(xlo),
        x_of(xhi),
        ty_of(xhi)
    ));
    s.push_str(&format!(
        "<text x=\"{}\" y=\"{}\" font-size=\"14\">latency, ms: p99 solid, p50 dashed (log scales)</text>\n<text x=\"{}\" y=\"{}\" font-size=\"14\">deliveries/s achieved (dotted: achieved = offered)</text>\n<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">offered deliveries/s (messages/s × sockets in General)</text>\n",
        left,
        top1 - 8.0,
        left,
        top2 - 8.0,
        (left + right) / 2.0,
        bot2 + 36.0
    ));
    // Series.
    for (ci, ((clients, label), pts)) in series.iter().enumerate() {
        let name = if label.is_empty() {
            format!("{clients} clients")
        } else {
            format!("{clients} clients, {}", esc(label))
        };
        let c = colors[ci % colors.len()];
        let path = |f: &dyn Fn(&[f64; 5]) -> (f64, f64)| -> String {
            pts.iter()
                .enumerate()
                .map(|(i, p)| {
                    let (x, y) = f(p);
                    format!("{}{x:.1},{y:.1}", if i == 0 { "M" } else { " L" })
                })
                .collect()
        };
        let p99 = path(&|p| (x_of(p[0]), ly_of(p[3])));
        let p50 = path(&|p| (x_of(p[0]), ly_of(p[2])));
        let thr = path(&|p| (x_of(p[0]), ty_of(p[1])));
        s.push_str(&format!(
            "<path d=\"{p99}\" fill=\"none\" stroke=\"{c}\" stroke-width=\"2\"/>\n<path d=\"{p50}\" fill=\"none\" stroke=\"{c}\" stroke-width=\"1.5\" stroke-dasharray=\"6,4\"/>\n<path d=\"{thr}\" fill=\"none\" stroke=\"{c}\" stroke-width=\"2\"/>\n"
        ));
        for p in pts {
            let mark = if p[4] > 0.0 { "#000" } else { c };
            s.push_str(&format!(
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{mark}\"/>\n<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{c}\"/>\n",
                x_of(p[0]),
                ly_of(p[3]),
                x_of(p[0]),
                ty_of(p[1])
            ));
        }
        let ly = top1 + 16.0 + 18.0 * ci as f64;
        s.push_str(&format!(
            "<line x1=\"{}\" y1=\"{ly}\" x2=\"{}\" y2=\"{ly}\" stroke=\"{c}\" stroke-width=\"2\"/>\n<text x=\"{}\" y=\"{}\">{name}</text>\n",
            left + 10.0,
            left + 34.0,
            left + 40.0,
            ly + 4.0
        ));
    }
    s.push_str(&format!(
        "<text x=\"{}\" y=\"{}\" fill=\"#555\">black dot: a step with loss</text>\n</svg>\n",
        left + 10.0,
        top1 + 16.0 + 18.0 * series.len() as f64 + 4.0
    ));
    if let Some(dir) = a.output.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    std::fs::write(&a.output, s).map_err(|e| format!("{}: {e}", a.output.display()))?;
    eprintln!("wrote {}", a.output.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_round_trip() {
        for v in [0u64, 1, 2047, 2048, 2049, 5000, 1 << 20, (1 << 40) - 1] {
            let i = Histogram::index(v);
            let back = Histogram::value_of(i);
            assert!(
                back <= v && v - back <= v / 1000 + 1,
                "{v} -> {i} -> {back}"
            );
        }
        let h = Histogram::new();
        for v in 1..=100 {
            h.record(v);
        }
        assert_eq!(h.quantile(0.5), 50);
        assert_eq!(h.quantile(0.99), 99);
    }

    #[test]
    fn finds_the_stamp_without_parsing() {
        let f = br#"{"type":"message","data":{"id":"1-0","roomId":"0","from":3,"date":1,"dateMs":1000,"message":"t=12345;xxx","nonce":"a"}}"#;
        assert_eq!(stamp(f), Some(12345));
        let g = br#"{"type":"message","data":{"id":"1-0","roomId":"0","from":3,"date":1,"dateMs":1000,"message":"hello"}}"#;
        assert_eq!(stamp(g), None);
        let frame = message_frame("0", 77, 20, Some("n-1"));
        let v: Value = serde_json::from_str(&frame).unwrap();
        assert_eq!(v["data"]["message"].as_str().unwrap().len(), 20);
        assert!(v["data"]["message"].as_str().unwrap().starts_with("t=77;"));
    }
}
