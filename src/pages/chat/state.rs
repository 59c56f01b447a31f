//! The chat screen's state and what changes it: loading rooms and history,
//! sending, and the frames that arrive on the socket.
//!
//! Everything is loaded in the browser after hydration (the server renders
//! the empty shell), so the server-rendered and hydrated markup agree.

use crate::api::{messages, private_room, rooms, users};
use crate::protocol::{
    message_id_key, ChatMessage, ClientFrame, DirectoryUser, MessagePage, ResumeRequest, Resumed,
    RoomSummary, SendMessage, ServerFrame, UserId, GENERAL_ROOM_ID,
};
use leptos::html::Div;
use leptos::prelude::*;
use leptos::task::spawn_local;
use std::collections::HashMap;
use std::time::Duration;

/// Without an echo by then, the history is checked for a sent message.
const ECHO_CHECK_AFTER: Duration = Duration::from_secs(4);
/// Without an echo by then, a sent message is marked failed (Retry resends).
const ECHO_GIVE_UP_AFTER: Duration = Duration::from_secs(20);

/// The error code of a message refused for being sent too fast.
const RATE_LIMITED: &str = "rate_limited";
/// How often a rate-limited message is resent by itself before it is
/// marked failed, and the pause before each resend (times the attempt).
const RATE_LIMIT_RETRIES: u32 = 3;
const RATE_LIMIT_PAUSE: Duration = Duration::from_millis(1100);

/// The connection pill's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
pub enum ConnState {
    Connecting,
    Open,
    Closed,
}

impl ConnState {
    /// The `data-state` attribute value.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnState::Connecting => "connecting",
            ConnState::Open => "open",
            ConnState::Closed => "closed",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            ConnState::Connecting => "Connecting…",
            ConnState::Open => "Live",
            ConnState::Closed => "Offline — retrying",
        }
    }
}

/// Where a message shown in the conversation is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Stored by the server (it has an id).
    Sent,
    /// Sent on the socket, waiting for the server's echo.
    Pending,
    /// Refused or not sent; the text says why.
    Failed(String),
}

/// A message in the open conversation. The parts that change after it is
/// shown (a pending message gets its id and time) are signals, so its
/// element stays the same.
#[derive(Clone, Debug)]
pub struct UiMessage {
    /// Stable key for the list: the nonce for own messages, else the id.
    pub key: String,
    pub id: ArcRwSignal<String>,
    pub from: UserId,
    pub text: String,
    pub nonce: Option<String>,
    pub time_ms: ArcRwSignal<i64>,
    pub delivery: ArcRwSignal<Delivery>,
    /// Counts sends of an own message, so that an old attempt's timers
    /// leave a newer attempt alone.
    pub attempt: ArcRwSignal<u32>,
}

impl UiMessage {
    /// The server stored this (pending or failed) message as `m`.
    fn confirm(&self, m: &ChatMessage) {
        self.id.set(m.id.clone());
        self.time_ms.set(message_ms(m));
        self.delivery.set(Delivery::Sent);
    }

    fn from_server(m: &ChatMessage) -> Self {
        Self {
            key: format!("m:{}", m.id),
            id: ArcRwSignal::new(m.id.clone()),
            from: m.from,
            text: m.message.clone(),
            nonce: m.nonce.clone(),
            time_ms: ArcRwSignal::new(message_ms(m)),
            delivery: ArcRwSignal::new(Delivery::Sent),
            attempt: ArcRwSignal::new(0),
        }
    }
}

/// A room in the left pane.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoomEntry {
    pub summary: RoomSummary,
    pub unread: bool,
}

/// All of the chat screen's state: signals, so the struct is `Copy` and
/// every part of the screen holds the same one.
#[derive(Clone, Copy)]
pub struct Chat {
    pub me_id: UserId,
    pub rooms: RwSignal<Vec<RoomEntry>>,
    pub rooms_loaded: RwSignal<bool>,
    pub rooms_error: RwSignal<Option<String>>,
    /// The open room's id.
    pub active: RwSignal<String>,
    /// The open room's messages, oldest first.
    pub messages: RwSignal<Vec<UiMessage>>,
    /// Cursor of the page before the oldest loaded message.
    pub next: RwSignal<Option<String>>,
    pub loading: RwSignal<bool>,
    pub loading_older: RwSignal<bool>,
    pub history_error: RwSignal<Option<String>>,
    /// Known user names, for message senders.
    pub names: RwSignal<HashMap<UserId, String>>,
    pub conn: RwSignal<ConnState>,
    /// Phone layout: the conversation (not the room list) is shown.
    pub show_conversation: RwSignal<bool>,
    /// New messages arrived below the visible part of the conversation.
    pub new_pill: RwSignal<bool>,
    /// A passing error to show above the composer.
    pub notice: RwSignal<Option<String>>,
    /// The `#messages` scroll container.
    pub scroller: NodeRef<Div>,
    /// Bumped on every room switch, so late answers for another room are dropped.
    load_gen: StoredValue<u64>,
    /// Whether the socket has been open before (then reopening refreshes).
    #[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
    was_open: StoredValue<bool>,
    #[cfg(feature = "hydrate")]
    socket: StoredValue<Option<crate::client::socket::Socket>, LocalStorage>,
}

impl Chat {
    pub fn new(me_id: UserId, me_name: String) -> Self {
        let mut names = HashMap::new();
        names.insert(me_id, me_name);
        Self {
            me_id,
            rooms: RwSignal::new(Vec::new()),
            rooms_loaded: RwSignal::new(false),
            rooms_error: RwSignal::new(None),
            active: RwSignal::new(GENERAL_ROOM_ID.to_string()),
            messages: RwSignal::new(Vec::new()),
            next: RwSignal::new(None),
            loading: RwSignal::new(true),
            loading_older: RwSignal::new(false),
            history_error: RwSignal::new(None),
            names: RwSignal::new(names),
            conn: RwSignal::new(ConnState::Connecting),
            show_conversation: RwSignal::new(false),
            new_pill: RwSignal::new(false),
            notice: RwSignal::new(None),
            scroller: NodeRef::new(),
            load_gen: StoredValue::new(0),
            was_open: StoredValue::new(false),
            #[cfg(feature = "hydrate")]
            socket: StoredValue::new_local(None),
        }
    }

    /// Loads everything and connects (in the browser, once hydrated).
    pub fn start(self) {
        self.load_rooms();
        self.load_history();
        // Fill the name cache with the first users of the directory.
        spawn_local(async move {
            if let Ok(list) = users(None).await {
                self.remember_users(&list);
            }
        });
        #[cfg(feature = "hydrate")]
        {
            use crate::client::socket::{Socket, Status};
            let socket = Socket::connect(
                "/ws?resume=1",
                move || Some(self.resume_frame()),
                move |frame| self.handle_frame(frame),
                move |status| {
                    self.set_conn(match status {
                        Status::Connecting => ConnState::Connecting,
                        Status::Open => ConnState::Open,
                        Status::Closed => ConnState::Closed,
                    })
                },
            );
            self.socket.set_value(Some(socket));
        }
    }

    /// Closes the socket (the page is going away).
    pub fn stop(self) {
        #[cfg(feature = "hydrate")]
        {
            let _ = self.socket.try_with_value(|s| {
                if let Some(s) = s {
                    s.close();
                }
            });
        }
    }

    /// The display name of a user (reactive: tracks the name cache).
    pub fn name_of(self, id: UserId) -> String {
        self.names
            .with(|n| n.get(&id).cloned())
            .unwrap_or_else(|| format!("User #{id}"))
    }

    fn remember_users(self, list: &[DirectoryUser]) {
        self.names.update(|n| {
            for u in list {
                n.insert(u.id, u.username.clone());
            }
        });
    }

    /// The open room's summary, if it is in the list.
    pub fn active_room(self) -> Option<RoomSummary> {
        let active = self.active.get();
        self.rooms.with(|list| {
            list.iter()
                .find(|e| e.summary.id == active)
                .map(|e| e.summary.clone())
        })
    }

    // ---- rooms ----------------------------------------------------------

    pub fn load_rooms(self) {
        spawn_local(async move {
            match rooms().await {
                Ok(list) => {
                    let active = self.active.get_untracked();
                    let mut entries: Vec<RoomEntry> = list
                        .into_iter()
                        .map(|summary| RoomEntry {
                            unread: summary.id != active && self.is_unread(&summary),
                            summary,
                        })
                        .collect();
                    // Keep what live frames told us meanwhile.
                    self.rooms.with_untracked(|old| {
                        for e in &mut entries {
                            if let Some(o) = old.iter().find(|o| o.summary.id == e.summary.id) {
                                e.unread |= o.unread;
                                if let Some(m) = &o.summary.last_message {
                                    if is_newer(m, e.summary.last_message.as_ref()) {
                                        e.summary.last_message = Some(m.clone());
                                    }
                                }
                            }
                        }
                    });
                    sort_rooms(&mut entries);
                    self.names.update(|n| {
                        for e in &entries {
                            if let Some(other) = e.summary.other_user_id {
                                n.insert(other, e.summary.name.clone());
                            }
                        }
                    });
                    self.rooms.set(entries);
                    self.rooms_error.set(None);
                }
                Err(e) => self.rooms_error.set(Some(e.message)),
            }
            self.rooms_loaded.set(true);
        });
    }

    /// Adds a room to the list, or refreshes the one with the same id.
    pub fn add_room(self, summary: RoomSummary) {
        if let Some(other) = summary.other_user_id {
            self.names.update(|n| {
                n.insert(other, summary.name.clone());
            });
        }
        let active = self.active.get_untracked();
        self.rooms.update(|list| {
            match list.iter_mut().find(|e| e.summary.id == summary.id) {
                Some(e) => {
                    e.summary.name = summary.name;
                    e.summary.other_user_id = summary.other_user_id;
                    if summary.online.is_some() {
                        e.summary.online = summary.online;
                    }
                    if let Some(m) = summary.last_message {
                        if is_newer(&m, e.summary.last_message.as_ref()) {
                            e.summary.last_message = Some(m);
                        }
                    }
                }
                None => {
                    let unread = summary.id != active
                        && summary
                            .last_message
                            .as_ref()
                            .is_some_and(|m| m.from != self.me_id);
                    list.push(RoomEntry { summary, unread });
                }
            }
            sort_rooms(list);
        });
    }

    /// Opens a room: shows its conversation and loads its latest messages.
    pub fn open_room(self, id: String) {
        self.show_conversation.set(true);
        self.rooms.update(|list| {
            if let Some(e) = list.iter_mut().find(|e| e.summary.id == id) {
                e.unread = false;
                if let Some(m) = &e.summary.last_message {
                    remember_seen(self.me_id, &id, &m.id);
                }
            }
        });
        if self.active.get_untracked() == id {
            // Already open (on a phone it may just have been hidden).
            self.scroll_to_bottom();
            return;
        }
        self.active.set(id);
        self.load_history();
    }

    /// Opens (creating if needed) the private room with a user.
    pub fn open_private(self, user: DirectoryUser) {
        self.names.update(|n| {
            n.insert(user.id, user.username.clone());
        });
        spawn_local(async move {
            match private_room(user.id.to_string()).await {
                Ok(summary) => {
                    let id = summary.id.clone();
                    self.add_room(summary);
                    self.open_room(id);
                }
                Err(e) => self.show_notice(e.message),
            }
        });
    }

    // ---- history --------------------------------------------------------

    fn bump_gen(self) -> u64 {
        self.load_gen.update_value(|g| *g += 1);
        self.load_gen.get_value()
    }

    /// Loads the open room's latest page, replacing the conversation.
    pub fn load_history(self) {
        let gen = self.bump_gen();
        let room = self.active.get_untracked();
        self.messages.set(Vec::new());
        self.next.set(None);
        self.loading.set(true);
        self.loading_older.set(false);
        self.history_error.set(None);
        self.new_pill.set(false);
        spawn_local(async move {
            let result = messages(room.clone(), None, None).await;
            if self.load_gen.get_value() != gen {
                return;
            }
            self.loading.set(false);
            match result {
                Ok(page) => {
                    self.next.set(page.next.clone());
                    self.merge_page(page);
                    self.mark_active_seen();
                    self.scroll_to_bottom();
                    self.fill_viewport();
                }
                Err(e) => self.history_error.set(Some(e.message)),
            }
        });
    }

    /// Loads the page before the oldest loaded message, keeping the view
    /// where it is.
    pub fn load_older(self) {
        if self.loading.get_untracked() || self.loading_older.get_untracked() {
            return;
        }
        let Some(cursor) = self.next.get_untracked() else {
            return;
        };
        let gen = self.load_gen.get_value();
        let room = self.active.get_untracked();
        self.loading_older.set(true);
        spawn_local(async move {
            let result = messages(room, Some(cursor), None).await;
            if self.load_gen.get_value() != gen {
                return;
            }
            self.loading_older.set(false);
            match result {
                Ok(page) => {
                    let before = self
                        .scroller
                        .get_untracked()
                        .map(|el| (el.scroll_height(), el.scroll_top()));
                    self.next.set(page.next.clone());
                    self.merge_page(page);
                    let scroller = self.scroller;
                    // After the new rows are in the DOM, move by what they added.
                    request_animation_frame(move || {
                        if let (Some(el), Some((height, top))) = (scroller.get_untracked(), before)
                        {
                            el.set_scroll_top(top + el.scroll_height() - height);
                        }
                        self.fill_viewport();
                    });
                }
                Err(e) => self.show_notice(e.message),
            }
        });
    }

    /// Merges a page of history into the conversation (by id, in order).
    fn merge_page(self, page: MessagePage) {
        self.messages.update(|list| {
            for m in &page.messages {
                if list.iter().any(|x| x.id.with_untracked(|id| *id == m.id)) {
                    continue;
                }
                // Our own unconfirmed message, stored though its echo was
                // lost? Matched by nonce, or by text (history may not carry
                // nonces).
                let unconfirmed = list.iter().find(|x| {
                    m.from == self.me_id
                        && x.id.with_untracked(String::is_empty)
                        && match (m.nonce.as_deref(), x.nonce.as_deref()) {
                            (Some(a), Some(b)) => a == b,
                            _ => x.text == m.message,
                        }
                });
                match unconfirmed {
                    Some(x) => x.confirm(m),
                    None => list.push(UiMessage::from_server(m)),
                }
            }
            // Sent messages by id (ids increase within a room), unsent last.
            list.sort_by_cached_key(|x| {
                let id = x.id.get_untracked();
                (id.is_empty(), message_id_key(&id))
            });
        });
    }

    /// When the loaded messages do not fill the view, nothing can be
    /// scrolled to load more: load the page before now.
    fn fill_viewport(self) {
        let scroller = self.scroller;
        request_animation_frame(move || {
            if let Some(el) = scroller.get_untracked() {
                // (A hidden pane has no height: nothing to fill.)
                let height = el.client_height();
                if height > 0 && el.scroll_height() <= height && self.next.get_untracked().is_some()
                {
                    self.load_older();
                }
            }
        });
    }

    /// Whether the conversation is scrolled to (nearly) the bottom.
    pub fn at_bottom(self) -> bool {
        self.scroller
            .get_untracked()
            .map(|el| el.scroll_height() - el.scroll_top() - el.client_height() < 48)
            .unwrap_or(true)
    }

    pub fn scroll_to_bottom(self) {
        self.new_pill.set(false);
        let scroller = self.scroller;
        request_animation_frame(move || {
            if let Some(el) = scroller.get_untracked() {
                el.set_scroll_top(el.scroll_height());
            }
        });
    }

    /// Remembers the open room's newest message as seen.
    pub fn mark_active_seen(self) {
        let room = self.active.get_untracked();
        let newest = self.messages.with_untracked(|list| {
            list.iter().rev().find_map(|m| {
                let id = m.id.get_untracked();
                (!id.is_empty()).then_some(id)
            })
        });
        if let Some(id) = newest {
            remember_seen(self.me_id, &room, &id);
        }
    }

    fn is_unread(self, summary: &RoomSummary) -> bool {
        let Some(last) = &summary.last_message else {
            return false;
        };
        if last.from == self.me_id {
            return false;
        }
        match seen(self.me_id, &summary.id) {
            Some(seen) => message_id_key(&last.id) > message_id_key(&seen),
            None => true,
        }
    }

    // ---- sending --------------------------------------------------------

    /// Sends a message to the open room (shown at once as pending).
    pub fn send(self, text: &str) {
        let text = text.trim();
        if text.is_empty() {
            return;
        }
        self.notice.set(None);
        let nonce = new_nonce();
        let ui = UiMessage {
            key: format!("n:{nonce}"),
            id: ArcRwSignal::new(String::new()),
            from: self.me_id,
            text: text.to_string(),
            nonce: Some(nonce),
            time_ms: ArcRwSignal::new(now_ms()),
            delivery: ArcRwSignal::new(Delivery::Pending),
            attempt: ArcRwSignal::new(0),
        };
        self.messages.update(|list| list.push(ui.clone()));
        self.scroll_to_bottom();
        self.deliver(&ui);
    }

    /// Sends a failed message again, with the same nonce.
    pub fn retry(self, key: &str) {
        let ui = self
            .messages
            .with_untracked(|list| list.iter().find(|m| m.key == key).cloned());
        if let Some(ui) = ui {
            ui.delivery.set(Delivery::Pending);
            self.deliver(&ui);
        }
    }

    fn deliver(self, ui: &UiMessage) {
        let frame = ClientFrame::Message(SendMessage {
            room_id: self.active.get_untracked(),
            message: ui.text.clone(),
            nonce: ui.nonce.clone(),
        });
        if !self.send_frame(&frame) {
            // Offline: it stays pending and goes out when the connection
            // is back (see `set_conn`); the nonce makes that safe to repeat.
            ui.delivery.set(Delivery::Pending);
            return;
        }
        ui.attempt.update(|n| *n += 1);
        let attempt = ui.attempt.get_untracked();
        let still_waiting = {
            let ui = ui.clone();
            move || {
                ui.attempt.get_untracked() == attempt
                    && ui.delivery.with_untracked(|d| *d == Delivery::Pending)
            }
        };
        // No echo yet? It may have been lost: look in the history (sends
        // are idempotent by nonce, so the stored copy carries it).
        let check = still_waiting.clone();
        set_timeout(
            move || {
                if check() {
                    self.catch_up();
                }
            },
            ECHO_CHECK_AFTER,
        );
        let delivery = ui.delivery.clone();
        set_timeout(
            move || {
                if still_waiting() {
                    delivery.set(Delivery::Failed("No answer from the server.".into()));
                }
            },
            ECHO_GIVE_UP_AFTER,
        );
    }

    fn send_frame(self, frame: &ClientFrame) -> bool {
        #[cfg(feature = "hydrate")]
        {
            self.socket
                .try_with_value(|s| s.as_ref().map(|s| s.send(frame)))
                .flatten()
                .unwrap_or(false)
        }
        #[cfg(not(feature = "hydrate"))]
        {
            let _ = frame;
            false
        }
    }

    pub fn show_notice(self, text: String) {
        self.notice.set(Some(text.clone()));
        set_timeout(
            move || {
                if self.notice.try_get_untracked().flatten().as_deref() == Some(text.as_str()) {
                    self.notice.set(None);
                }
            },
            Duration::from_secs(6),
        );
    }
}

/// Live updates from the socket (which only exists in the browser).
#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
impl Chat {
    fn set_conn(self, state: ConnState) {
        let before = self.conn.get_untracked();
        self.conn.set(state);
        match state {
            ConnState::Open => {
                if self.was_open.get_value() && before != ConnState::Open {
                    // Missed messages come back through `resume`; presence
                    // may be stale.
                    self.load_rooms();
                }
                self.was_open.set_value(true);
                if before != ConnState::Open {
                    // Sends typed while offline, or unanswered when the
                    // connection dropped, go (again) now. The server stores
                    // a nonce once, so a message that did arrive is not
                    // doubled: its original comes back instead.
                    let pending: Vec<UiMessage> = self.messages.with_untracked(|list| {
                        list.iter()
                            .filter(|m| m.delivery.get_untracked() == Delivery::Pending)
                            .cloned()
                            .collect()
                    });
                    for m in &pending {
                        self.deliver(m);
                    }
                }
            }
            ConnState::Closed => {}
            ConnState::Connecting => {}
        }
    }

    /// The first frame of every connection: the newest message this page
    /// has of each room, so the server replays what came after. (A room
    /// without messages asks for all of them, from `0-0`.)
    fn resume_frame(self) -> ClientFrame {
        let mut rooms = std::collections::BTreeMap::new();
        self.rooms.with_untracked(|list| {
            for e in list {
                let last = e.summary.last_message.as_ref().map(|m| m.id.clone());
                rooms.insert(e.summary.id.clone(), last.unwrap_or_else(|| "0-0".into()));
            }
        });
        let active = self.active.get_untracked();
        let newest = self.messages.with_untracked(|list| {
            list.iter()
                .filter_map(|m| {
                    let id = m.id.get_untracked();
                    (!id.is_empty()).then_some(id)
                })
                .max_by_key(|id| message_id_key(id))
        });
        if let Some(newest) = newest {
            let known = rooms.entry(active).or_insert_with(|| newest.clone());
            if message_id_key(&newest) > message_id_key(known) {
                *known = newest;
            }
        }
        ClientFrame::Resume(ResumeRequest { rooms })
    }

    /// The replay of a `resume` is over: rooms with too much to replay are
    /// reloaded.
    fn on_resumed(self, resumed: Resumed) {
        if resumed.truncated.is_empty() {
            return;
        }
        self.load_rooms();
        let active = self.active.get_untracked();
        if resumed.truncated.contains(&active) {
            self.load_history();
        }
    }

    /// Merges the open room's latest page (when an echo is late).
    fn catch_up(self) {
        let gen = self.load_gen.get_value();
        let room = self.active.get_untracked();
        spawn_local(async move {
            let was_at_bottom = self.at_bottom();
            if let Ok(page) = messages(room, None, None).await {
                if self.load_gen.get_value() != gen {
                    return;
                }
                let before = self.messages.with_untracked(Vec::len);
                self.merge_page(page);
                if self.messages.with_untracked(Vec::len) != before {
                    if was_at_bottom {
                        self.scroll_to_bottom();
                        self.mark_active_seen();
                    } else {
                        self.new_pill.set(true);
                    }
                }
            }
        });
    }

    /// Applies one frame from the server.
    pub fn handle_frame(self, frame: ServerFrame) {
        match frame {
            ServerFrame::Message(m) => self.on_message(m),
            ServerFrame::Error(e) => {
                let target = e.nonce.as_deref().and_then(|nonce| {
                    self.messages.with_untracked(|list| {
                        list.iter()
                            .find(|m| m.nonce.as_deref() == Some(nonce))
                            .cloned()
                    })
                });
                match target {
                    Some(ui) if ui.id.with_untracked(String::is_empty) => {
                        let attempt = ui.attempt.get_untracked();
                        if e.code == RATE_LIMITED && attempt <= RATE_LIMIT_RETRIES {
                            // Too fast: send it again a little later, by itself.
                            let key = ui.key.clone();
                            set_timeout(
                                move || {
                                    let current = self.messages.with_untracked(|list| {
                                        list.iter().find(|m| m.key == key).cloned()
                                    });
                                    if let Some(ui) = current {
                                        if ui.attempt.get_untracked() == attempt
                                            && ui.id.with_untracked(String::is_empty)
                                        {
                                            self.deliver(&ui);
                                        }
                                    }
                                },
                                RATE_LIMIT_PAUSE * attempt,
                            );
                        } else {
                            ui.delivery.set(Delivery::Failed(e.message))
                        }
                    }
                    Some(_) => {}
                    None => self.show_notice(e.message),
                }
            }
            ServerFrame::ShowRoom(summary) => self.add_room(summary),
            ServerFrame::UserConnected(u) => self.set_online(u.id, u.username, true),
            ServerFrame::UserDisconnected(u) => self.set_online(u.id, u.username, false),
            ServerFrame::Resumed(r) => self.on_resumed(r),
            // Issue 7 frames: handled by the UI work in progress.
            ServerFrame::MessageUpdated(_) | ServerFrame::Read(_) | ServerFrame::Typing(_) => {}
        }
    }

    fn set_online(self, id: UserId, name: String, online: bool) {
        self.names.update(|n| {
            n.insert(id, name);
        });
        if self
            .rooms
            .with_untracked(|list| list.iter().any(|e| e.summary.other_user_id == Some(id)))
        {
            self.rooms.update(|list| {
                for e in list.iter_mut() {
                    if e.summary.other_user_id == Some(id) {
                        e.summary.online = Some(online);
                    }
                }
            });
        }
    }

    fn on_message(self, m: ChatMessage) {
        let active = self.active.get_untracked();
        let is_active = m.room_id == active;

        // The room list: preview, time, order, unread.
        let known = self
            .rooms
            .with_untracked(|list| list.iter().any(|e| e.summary.id == m.room_id));
        if known {
            self.rooms.update(|list| {
                if let Some(e) = list.iter_mut().find(|e| e.summary.id == m.room_id) {
                    if is_newer(&m, e.summary.last_message.as_ref()) {
                        e.summary.last_message = Some(m.clone());
                        if !is_active && m.from != self.me_id {
                            e.unread = true;
                        }
                    }
                }
                sort_rooms(list);
            });
        } else {
            // A room this page has not heard of yet: refresh the list.
            self.load_rooms();
        }

        if !is_active {
            return;
        }

        // Never the same id twice.
        if self
            .messages
            .with_untracked(|list| list.iter().any(|x| x.id.with_untracked(|id| *id == m.id)))
        {
            return;
        }
        // The pending copy of one of our own messages? Matched by nonce, or
        // by text when the echo carries no nonce.
        let pending = self.messages.with_untracked(|list| {
            list.iter()
                .find(|x| {
                    x.id.with_untracked(String::is_empty)
                        && match m.nonce.as_deref() {
                            Some(nonce) => x.nonce.as_deref() == Some(nonce),
                            None => m.from == self.me_id && x.text == m.message,
                        }
                })
                .cloned()
        });
        if let Some(ui) = pending {
            ui.confirm(&m);
            remember_seen(self.me_id, &active, &m.id);
            return;
        }
        let was_at_bottom = self.at_bottom();
        let own = m.from == self.me_id;
        self.messages
            .update(|list| list.push(UiMessage::from_server(&m)));
        if was_at_bottom || own {
            self.scroll_to_bottom();
            remember_seen(self.me_id, &active, &m.id);
        } else {
            self.new_pill.set(true);
        }
    }
}

// ---- helpers --------------------------------------------------------------

/// A message's time in Unix milliseconds.
pub fn message_ms(m: &ChatMessage) -> i64 {
    if m.date_ms > 0 {
        m.date_ms
    } else {
        m.date.saturating_mul(1000)
    }
}

/// Whether `m` is newer than `than` (by stream id).
fn is_newer(m: &ChatMessage, than: Option<&ChatMessage>) -> bool {
    than.is_none_or(|t| message_id_key(&m.id) >= message_id_key(&t.id))
}

/// Newest activity first; rooms without messages keep their order, last.
fn sort_rooms(list: &mut [RoomEntry]) {
    list.sort_by_key(|e| std::cmp::Reverse(e.summary.last_message.as_ref().map_or(0, message_ms)));
}

/// `HH:MM` in the browser's time zone.
pub fn hhmm(ms: i64) -> String {
    #[cfg(feature = "hydrate")]
    {
        let d = js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(ms as f64));
        format!("{:02}:{:02}", d.get_hours(), d.get_minutes())
    }
    #[cfg(not(feature = "hydrate"))]
    {
        let minutes = ms.div_euclid(60_000);
        format!(
            "{:02}:{:02}",
            minutes.div_euclid(60).rem_euclid(24),
            minutes.rem_euclid(60)
        )
    }
}

fn now_ms() -> i64 {
    #[cfg(feature = "hydrate")]
    {
        js_sys::Date::now() as i64
    }
    #[cfg(not(feature = "hydrate"))]
    {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64)
    }
}

/// A client nonce: `c-` and 16 random hex digits.
fn new_nonce() -> String {
    #[cfg(feature = "hydrate")]
    {
        let part = || (js_sys::Math::random() * f64::from(u32::MAX)) as u32;
        format!("c-{:08x}{:08x}", part(), part())
    }
    #[cfg(not(feature = "hydrate"))]
    {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(1);
        format!("c-{:016x}", NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

fn seen_key(me: UserId, room: &str) -> String {
    format!("redis-chat:seen:{me}:{room}")
}

/// The newest message id seen in a room, from `localStorage`.
fn seen(me: UserId, room: &str) -> Option<String> {
    #[cfg(feature = "hydrate")]
    {
        let storage = web_sys::window()?.local_storage().ok()??;
        storage.get_item(&seen_key(me, room)).ok()?
    }
    #[cfg(not(feature = "hydrate"))]
    {
        let _ = seen_key(me, room);
        None
    }
}

/// Remembers `id` as seen in a room (keeps the newest).
fn remember_seen(me: UserId, room: &str, id: &str) {
    #[cfg(feature = "hydrate")]
    {
        if seen(me, room).is_some_and(|s| message_id_key(&s) >= message_id_key(id)) {
            return;
        }
        if let Some(Ok(Some(storage))) = web_sys::window().map(|w| w.local_storage()) {
            let _ = storage.set_item(&seen_key(me, room), id);
        }
    }
    #[cfg(not(feature = "hydrate"))]
    {
        let _ = (seen(me, room), id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_time_without_a_browser() {
        assert_eq!(hhmm(0), "00:00");
        assert_eq!(hhmm((13 * 60 + 7) * 60_000), "13:07");
    }
}
