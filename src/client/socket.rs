//! The browser's WebSocket connection to `/ws`, kept alive for the page.
//!
//! [`Socket::connect`] spawns one task that opens `ws(s)://{host}{path}`,
//! sends a first frame of the caller's choosing (the page's `resume`, so the
//! server replays what it missed), hands every parsed [`ServerFrame`] to a
//! callback, and reports the connection state to another. When the connection drops it reconnects with
//! exponential backoff and jitter (0.5 s doubling up to 30 s), and at once
//! when the tab becomes visible again or the browser comes back online.
//! Two closes end it for good instead: the session ended (sign in again)
//! and "this user opened too many sockets; this was the oldest" (see
//! `protocol::close_codes`).

use crate::protocol::{close_codes, ClientFrame, ServerFrame};
use futures::channel::{mpsc, oneshot};
use futures::future::{self, Either};
use futures::{SinkExt, StreamExt};
use gloo_net::websocket::{futures::WebSocket, Message, State, WebSocketError};
use gloo_timers::future::TimeoutFuture;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use wasm_bindgen::closure::Closure;
use wasm_bindgen::JsCast;

const BACKOFF_START_MS: f64 = 500.0;
const BACKOFF_CAP_MS: f64 = 30_000.0;
/// A connection open this long counts as a success for the backoff.
const STABLE_AFTER_MS: f64 = 5_000.0;

/// Where the connection is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Opening (first time or after a drop).
    Connecting,
    /// Open: frames flow both ways.
    Open,
    /// Down; a reconnect is scheduled.
    Closed,
    /// The session ended (signed out, elsewhere too): no reconnect.
    SignedOut,
    /// Newer tabs of this user took this one's place: no reconnect.
    Replaced,
}

/// A handle on the page's connection. Cloning shares the same connection.
#[derive(Clone)]
pub struct Socket {
    inner: Rc<Inner>,
}

type Listener = (web_sys::EventTarget, &'static str, Closure<dyn FnMut()>);

struct Inner {
    /// Feeds the writer of the open connection; `None` while not open.
    out: RefCell<Option<mpsc::UnboundedSender<String>>>,
    /// Cuts the current backoff wait short.
    wake: RefCell<Option<oneshot::Sender<()>>>,
    stopped: Cell<bool>,
    listeners: RefCell<Vec<Listener>>,
}

impl Inner {
    fn wake(&self) {
        if let Some(tx) = self.wake.borrow_mut().take() {
            let _ = tx.send(());
        }
    }
}

impl Socket {
    /// Starts connecting to `path` (with its query, e.g. `/ws?resume=1`).
    /// Once a connection is open, the frame `hello` returns (if any) is sent
    /// first; then `on_frame` gets every frame the server sends, and
    /// `on_status` every change of the connection state.
    pub fn connect(
        path: &'static str,
        hello: impl Fn() -> Option<ClientFrame> + 'static,
        on_frame: impl Fn(ServerFrame) + 'static,
        on_status: impl Fn(Status) + 'static,
    ) -> Socket {
        let inner = Rc::new(Inner {
            out: RefCell::new(None),
            wake: RefCell::new(None),
            stopped: Cell::new(false),
            listeners: RefCell::new(Vec::new()),
        });
        listen_for_comebacks(&inner);
        leptos::task::spawn_local(run(Rc::clone(&inner), path, hello, on_frame, on_status));
        Socket { inner }
    }

    /// Sends a frame. `false` when the connection is not open (nothing sent).
    pub fn send(&self, frame: &ClientFrame) -> bool {
        let Ok(text) = serde_json::to_string(frame) else {
            return false;
        };
        match self.inner.out.borrow().as_ref() {
            Some(tx) => tx.unbounded_send(text).is_ok(),
            None => false,
        }
    }

    /// Skips the current backoff wait, if any.
    pub fn reconnect_now(&self) {
        self.inner.wake();
    }

    /// Closes the connection for good.
    pub fn close(&self) {
        self.inner.stopped.set(true);
        // Dropping the writer's sender ends the open connection, if any.
        self.inner.out.borrow_mut().take();
        self.inner.wake();
        for (target, event, closure) in self.inner.listeners.borrow_mut().drain(..) {
            let _ =
                target.remove_event_listener_with_callback(event, closure.as_ref().unchecked_ref());
        }
    }
}

/// Reconnects at once when the tab is shown again or the network returns.
fn listen_for_comebacks(inner: &Rc<Inner>) {
    let Some(window) = web_sys::window() else {
        return;
    };
    let document = window.document();
    let mut listeners = inner.listeners.borrow_mut();
    let weak = Rc::downgrade(inner);
    let online = Closure::<dyn FnMut()>::new(move || {
        if let Some(inner) = weak.upgrade() {
            inner.wake();
        }
    });
    if window
        .add_event_listener_with_callback("online", online.as_ref().unchecked_ref())
        .is_ok()
    {
        listeners.push((window.clone().into(), "online", online));
    }
    if let Some(document) = document {
        let weak = Rc::downgrade(inner);
        let doc = document.clone();
        let visible = Closure::<dyn FnMut()>::new(move || {
            if !doc.hidden() {
                if let Some(inner) = weak.upgrade() {
                    inner.wake();
                }
            }
        });
        if document
            .add_event_listener_with_callback("visibilitychange", visible.as_ref().unchecked_ref())
            .is_ok()
        {
            listeners.push((document.into(), "visibilitychange", visible));
        }
    }
}

fn ws_url(path: &str) -> Option<String> {
    let location = web_sys::window()?.location();
    let scheme = match location.protocol().ok()?.as_str() {
        "https:" => "wss",
        _ => "ws",
    };
    Some(format!("{scheme}://{}{path}", location.host().ok()?))
}

/// Opens a socket and waits until it is open; `None` when it failed.
async fn open(url: &str) -> Option<WebSocket> {
    let mut ws = WebSocket::open(url).ok()?;
    // `poll_ready` is pending while connecting and wakes on open or error.
    future::poll_fn(|cx| ws.poll_ready_unpin(cx)).await.ok()?;
    matches!(ws.state(), State::Open).then_some(ws)
}

async fn run(
    inner: Rc<Inner>,
    path: &'static str,
    hello: impl Fn() -> Option<ClientFrame> + 'static,
    on_frame: impl Fn(ServerFrame) + 'static,
    on_status: impl Fn(Status) + 'static,
) {
    let Some(url) = ws_url(path) else {
        on_status(Status::Closed);
        return;
    };
    let mut failures: i32 = 0;
    while !inner.stopped.get() {
        on_status(Status::Connecting);
        if let Some(ws) = open(&url).await {
            if inner.stopped.get() {
                break;
            }
            let opened = js_sys::Date::now();
            // A connection that lived a while resets the backoff; one that
            // is dropped at once keeps it growing.
            match serve(&inner, ws, &hello, &on_frame, &on_status).await {
                Ended::Final(status) => {
                    inner.stopped.set(true);
                    on_status(status);
                    return;
                }
                Ended::Used if js_sys::Date::now() - opened > STABLE_AFTER_MS => failures = 0,
                Ended::Used | Ended::Unused => {}
            }
        }
        if inner.stopped.get() {
            break;
        }
        on_status(Status::Closed);

        let base = (BACKOFF_START_MS * 2f64.powi(failures.min(16))).min(BACKOFF_CAP_MS);
        let delay = base / 2.0 + js_sys::Math::random() * base / 2.0;
        failures += 1;
        let (wake_tx, wake_rx) = oneshot::channel();
        *inner.wake.borrow_mut() = Some(wake_tx);
        let sleep = TimeoutFuture::new(delay as u32);
        if let Either::Left(_) = future::select(sleep, wake_rx).await {
            inner.wake.borrow_mut().take();
        }
    }
    on_status(Status::Closed);
}

/// How a connection ended.
enum Ended {
    /// It failed before it could be used.
    Unused,
    /// It was used; reconnect.
    Used,
    /// The server closed it for good, in this state.
    Final(Status),
}

/// Runs one open connection until it closes.
async fn serve(
    inner: &Inner,
    ws: WebSocket,
    hello: &impl Fn() -> Option<ClientFrame>,
    on_frame: &impl Fn(ServerFrame),
    on_status: &impl Fn(Status),
) -> Ended {
    let (mut sink, mut stream) = ws.split();
    if let Some(text) = hello().and_then(|frame| serde_json::to_string(&frame).ok()) {
        if sink.send(Message::Text(text)).await.is_err() {
            return Ended::Unused;
        }
    }
    let (tx, mut rx) = mpsc::unbounded::<String>();
    *inner.out.borrow_mut() = Some(tx);
    on_status(Status::Open);

    let writer = async move {
        while let Some(text) = rx.next().await {
            if sink.send(Message::Text(text)).await.is_err() {
                break;
            }
        }
    };
    let reader = async {
        // Ends after the close event; unparseable frames are skipped.
        let mut code = None;
        while let Some(item) = stream.next().await {
            match item {
                Ok(Message::Text(text)) => {
                    if let Ok(frame) = serde_json::from_str::<ServerFrame>(&text) {
                        on_frame(frame);
                    }
                }
                Err(WebSocketError::ConnectionClose(event)) => code = Some(event.code),
                _ => {}
            }
        }
        code
    };
    futures::pin_mut!(writer, reader);
    let code = match future::select(writer, reader).await {
        Either::Right((code, _)) => code,
        Either::Left(_) => None,
    };
    inner.out.borrow_mut().take();
    match code {
        Some(close_codes::SESSION_ENDED) => Ended::Final(Status::SignedOut),
        Some(close_codes::TOO_MANY_SOCKETS) => Ended::Final(Status::Replaced),
        _ => Ended::Used,
    }
}
