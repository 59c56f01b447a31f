//! The chat screen's state and what changes it: loading rooms and history,
//! sending, and the frames that arrive on the socket.
//!
//! Everything is loaded in the browser after hydration (the server renders
//! the empty shell), so the server-rendered and hydrated markup agree.

use super::notify;
use super::room_pages::ROOM_PAGE;
use crate::api::{messages, private_room, rooms, users};
use crate::protocol::{
    message_id_key, ChatMessage, ClientFrame, DirectoryUser, EditMessage, MessagePage, MessageRef,
    ReadMark, ResumeRequest, Resumed, RoomRef, RoomSummary, SendMessage, ServerFrame, Typing,
    UserId, GENERAL_ROOM_ID, MAX_UNREAD_COUNT, TYPING_RESEND_MS, TYPING_SHOW_MS,
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
    /// The session ended: the page goes to the sign-in page.
    SignedOut,
    /// The user's newer tabs took this one's connection.
    Replaced,
}

impl ConnState {
    /// The `data-state` attribute value.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnState::Connecting => "connecting",
            ConnState::Open => "open",
            ConnState::Closed => "closed",
            ConnState::SignedOut => "signed-out",
            ConnState::Replaced => "replaced",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            ConnState::Connecting => "Connecting…",
            ConnState::Open => "Live",
            ConnState::Closed => "Offline — retrying",
            ConnState::SignedOut => "Signed out",
            ConnState::Replaced => "Open in too many tabs — reload to use this one",
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

/// A message in the open conversation (or, unsent, in the outbox). The
/// parts that change after it is shown (a pending message gets its id and
/// time; a message is edited or deleted) are signals, so its element stays
/// the same.
#[derive(Clone, Debug)]
pub struct UiMessage {
    /// Stable key for the list: the nonce for own messages, else the id.
    pub key: String,
    /// Its room: an unsent message is resent to the room it was written in,
    /// whichever room is open by then.
    pub room_id: String,
    pub id: ArcRwSignal<String>,
    pub from: UserId,
    pub text: ArcRwSignal<String>,
    /// Changed by its sender after it was sent.
    pub edited: ArcRwSignal<bool>,
    /// Deleted by its sender (the text is then empty).
    pub deleted: ArcRwSignal<bool>,
    pub nonce: Option<String>,
    pub time_ms: ArcRwSignal<i64>,
    pub delivery: ArcRwSignal<Delivery>,
    /// Counts sends of an own message, so that an old attempt's timers
    /// leave a newer attempt alone.
    pub attempt: ArcRwSignal<u32>,
}

impl UiMessage {
    /// The server stored this (pending or failed) message as `m`; the
    /// answer to a resend shows it as it is now, perhaps edited or deleted
    /// from another tab meanwhile.
    fn confirm(&self, m: &ChatMessage) {
        self.id.set(m.id.clone());
        self.time_ms.set(message_ms(m));
        self.delivery.set(Delivery::Sent);
        if m.edited_ms.is_some() {
            self.apply_update(m);
        }
    }

    /// The message was edited or deleted (`message.updated`).
    fn apply_update(&self, m: &ChatMessage) {
        if self.text.with_untracked(|t| *t != m.message) {
            self.text.set(m.message.clone());
        }
        self.edited.set(m.edited_ms.is_some() && !m.deleted);
        self.deleted.set(m.deleted);
    }

    fn from_server(m: &ChatMessage) -> Self {
        Self {
            key: format!("m:{}", m.id),
            room_id: m.room_id.clone(),
            id: ArcRwSignal::new(m.id.clone()),
            from: m.from,
            text: ArcRwSignal::new(m.message.clone()),
            edited: ArcRwSignal::new(m.edited_ms.is_some() && !m.deleted),
            deleted: ArcRwSignal::new(m.deleted),
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
    /// Messages from others not read yet, up to [`MAX_UNREAD_COUNT`].
    pub unread: u32,
}

/// Someone typing in a room, shown until `until_ms`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TypingEntry {
    pub room_id: String,
    pub user_id: UserId,
    pub username: String,
    pub until_ms: i64,
}

/// All of the chat screen's state: signals, so the struct is `Copy` and
/// every part of the screen holds the same one.
#[derive(Clone, Copy)]
pub struct Chat {
    pub me_id: UserId,
    pub rooms: RwSignal<Vec<RoomEntry>>,
    pub rooms_loaded: RwSignal<bool>,
    pub rooms_error: RwSignal<Option<String>>,
    /// Pages of the room list beyond those loaded (see [`super::room_pages`]).
    pub rooms_paging: super::room_pages::RoomPaging,
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
    /// Whether the tab is visible (a hidden tab reads nothing).
    pub visible: RwSignal<bool>,
    /// The open room's read mark when it was opened: the "New messages"
    /// divider goes before the first later message from someone else.
    /// `None`: no divider.
    pub unread_mark: RwSignal<Option<String>>,
    /// The key of the message the divider goes before.
    pub divider_key: Memo<Option<String>>,
    /// The key of own message to show "Seen" under (private rooms).
    pub seen_key: Memo<Option<String>>,
    /// Who is typing, in any room.
    pub typing: RwSignal<Vec<TypingEntry>>,
    /// Desktop notifications are switched on (and permitted).
    pub notify_on: RwSignal<bool>,
    /// Own messages not yet stored by the server, of every room: they are
    /// resent on reconnect and shown again when their room is reopened.
    outbox: StoredValue<Vec<UiMessage>>,
    /// The open room's unread mark is still to be taken from the room list
    /// (the history was opened before the list arrived).
    mark_pending: StoredValue<bool>,
    /// Room → when this tab last said it is typing there (ms).
    typing_sent: StoredValue<HashMap<String, i64>>,
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
        let rooms = RwSignal::new(Vec::<RoomEntry>::new());
        let active = RwSignal::new(GENERAL_ROOM_ID.to_string());
        let messages = RwSignal::new(Vec::<UiMessage>::new());
        let unread_mark = RwSignal::new(None::<String>);
        let divider_key = Memo::new(move |_| {
            let mark = unread_mark.get()?;
            messages.with(|list| divider_before(me_id, &mark, list))
        });
        let seen_key = Memo::new(move |_| {
            let active = active.get();
            let peer_read = rooms.with(|list| {
                list.iter()
                    .find(|e| e.summary.id == active && e.summary.other_user_id.is_some())
                    .and_then(|e| e.summary.peer_read.clone())
            })?;
            messages.with(|list| seen_under(me_id, &peer_read, list))
        });
        Self {
            me_id,
            rooms,
            rooms_loaded: RwSignal::new(false),
            rooms_error: RwSignal::new(None),
            rooms_paging: Default::default(),
            active,
            messages,
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
            visible: RwSignal::new(true),
            unread_mark,
            divider_key,
            seen_key,
            typing: RwSignal::new(Vec::new()),
            notify_on: RwSignal::new(false),
            outbox: StoredValue::new(Vec::new()),
            mark_pending: StoredValue::new(true),
            typing_sent: StoredValue::new(HashMap::new()),
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
        self.notify_on.set(notify::enabled());
        #[cfg(feature = "hydrate")]
        {
            use crate::client::socket::{Socket, Status};
            if let Some(doc) = web_sys::window().and_then(|w| w.document()) {
                self.visible.set(!doc.hidden());
            }
            let socket = Socket::connect(
                "/ws?resume=1",
                move || Some(self.resume_frame()),
                move |frame| self.handle_frame(frame),
                move |status| {
                    self.set_conn(match status {
                        Status::Connecting => ConnState::Connecting,
                        Status::Open => ConnState::Open,
                        Status::Closed => ConnState::Closed,
                        Status::SignedOut => ConnState::SignedOut,
                        Status::Replaced => ConnState::Replaced,
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

    /// Loads the first page of the room list (again, after a reconnect or
    /// for a room this page has not heard of); pages loaded beyond it stay
    /// (see [`super::room_pages`]).
    pub fn load_rooms(self) {
        spawn_local(async move {
            match rooms(Some(ROOM_PAGE.to_string()), None).await {
                Ok(list) => {
                    let active = self.active.get_untracked();
                    if self.mark_pending.get_value() {
                        // The open room's history came first: its divider
                        // needs the read mark from this list.
                        self.mark_pending.set_value(false);
                        if let Some(room) = list.iter().find(|r| r.id == active) {
                            self.unread_mark
                                .set(unread_mark_of(room.unread, &room.last_read));
                        }
                    }
                    self.first_room_page_loaded(&list);
                    let mut entries = self.room_entries(list);
                    // Rooms of later pages stay: they are older than this page.
                    self.rooms.with_untracked(|old| {
                        for o in old {
                            if !entries.iter().any(|e| e.summary.id == o.summary.id) {
                                entries.push(o.clone());
                            }
                        }
                    });
                    sort_rooms(&mut entries);
                    self.rooms.set(entries);
                    self.rooms_error.set(None);
                }
                Err(e) => self.rooms_error.set(Some(e.message)),
            }
            self.rooms_loaded.set(true);
            self.send_read();
        });
    }

    /// Entries for rooms as the server listed them, keeping what live
    /// frames told us meanwhile (the server's counts already include every
    /// message it listed), and their names remembered.
    pub(super) fn room_entries(self, list: Vec<RoomSummary>) -> Vec<RoomEntry> {
        let active = self.active.get_untracked();
        let reading = self.visible.get_untracked();
        let mut entries: Vec<RoomEntry> = list
            .into_iter()
            .map(|summary| RoomEntry {
                // The open room is being read (its mark follows).
                unread: if summary.id == active && reading {
                    0
                } else {
                    summary.unread.min(MAX_UNREAD_COUNT)
                },
                summary,
            })
            .collect();
        self.rooms.with_untracked(|old| {
            for e in &mut entries {
                if let Some(o) = old.iter().find(|o| o.summary.id == e.summary.id) {
                    if let Some(m) = &o.summary.last_message {
                        if is_newer(m, e.summary.last_message.as_ref()) {
                            e.summary.last_message = Some(m.clone());
                        }
                    }
                    e.summary.last_read = newest_id(&e.summary.last_read, &o.summary.last_read);
                    e.summary.peer_read = newest_id(&e.summary.peer_read, &o.summary.peer_read);
                }
            }
        });
        self.names.update(|n| {
            for e in &entries {
                if let Some(other) = e.summary.other_user_id {
                    n.insert(other, e.summary.name.clone());
                }
            }
        });
        entries
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
                    e.summary.last_read = newest_id(&e.summary.last_read, &summary.last_read);
                    e.summary.peer_read = newest_id(&e.summary.peer_read, &summary.peer_read);
                }
                None => {
                    let unread = if summary.id == active {
                        0
                    } else {
                        summary.unread.min(MAX_UNREAD_COUNT)
                    };
                    list.push(RoomEntry { summary, unread });
                }
            }
            sort_rooms(list);
        });
    }

    /// Opens a room: shows its conversation and loads its latest messages.
    pub fn open_room(self, id: String) {
        self.show_conversation.set(true);
        if self.active.get_untracked() == id {
            // Already open (on a phone it may just have been hidden).
            self.scroll_to_bottom();
            self.send_read();
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
        // The divider goes after what was read before this opening.
        let summary = self
            .rooms
            .with_untracked(|list| list.iter().find(|e| e.summary.id == room).cloned());
        self.mark_pending
            .set_value(summary.is_none() && !self.rooms_loaded.get_untracked());
        // (The live count: the summary's count is the one loaded with the list.)
        self.unread_mark.set(
            summary
                .as_ref()
                .and_then(|e| unread_mark_of(e.unread, &e.summary.last_read)),
        );
        // Own messages not yet stored come back, after the history.
        let unsent: Vec<UiMessage> = self
            .outbox
            .with_value(|o| o.iter().filter(|m| m.room_id == room).cloned().collect());
        self.messages.set(unsent);
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
                    self.scroll_to_bottom();
                    self.fill_viewport();
                    self.send_read();
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
                            _ => x.text.with_untracked(|t| *t == m.message),
                        }
                });
                match unconfirmed {
                    Some(x) => {
                        x.confirm(m);
                        x.apply_update(m);
                    }
                    None => list.push(UiMessage::from_server(m)),
                }
            }
            // Sent messages by id (ids increase within a room), unsent last.
            list.sort_by_cached_key(|x| {
                let id = x.id.get_untracked();
                (id.is_empty(), message_id_key(&id))
            });
        });
        self.settle_outbox();
    }

    /// Drops the messages the server has stored from the outbox.
    fn settle_outbox(self) {
        self.outbox
            .update_value(|o| o.retain(|m| m.id.with_untracked(String::is_empty)));
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

    /// Tells the server the open room is read up to its newest message,
    /// when the tab is visible and that id is past the room's read mark
    /// (so it is sent once per new message at most).
    pub fn send_read(self) {
        if !self.visible.get_untracked()
            || !self.rooms_loaded.get_untracked()
            || self.loading.get_untracked()
        {
            return;
        }
        let room = self.active.get_untracked();
        let newest = self.messages.with_untracked(|list| {
            list.iter()
                .filter_map(|m| {
                    let id = m.id.get_untracked();
                    (!id.is_empty()).then_some(id)
                })
                .max_by_key(|id| message_id_key(id))
        });
        let Some(newest) = newest else {
            return;
        };
        let read = self.rooms.with_untracked(|list| {
            list.iter()
                .find(|e| e.summary.id == room)
                .map(|e| e.summary.last_read.clone())
        });
        let Some(read) = read else {
            return;
        };
        if read.is_some_and(|r| message_id_key(&r) >= message_id_key(&newest)) {
            return;
        }
        let frame = ClientFrame::Read(ReadMark {
            room_id: room.clone(),
            id: newest.clone(),
            user_id: self.me_id,
        });
        if self.send_frame(&frame) {
            // Counted as read at once; the server's `read` echo agrees.
            self.apply_own_read(&room, &newest);
        }
    }

    /// Our read mark in `room` moved to `id` (this tab or another one).
    fn apply_own_read(self, room: &str, id: &str) {
        self.rooms.update(|list| {
            if let Some(e) = list.iter_mut().find(|e| e.summary.id == room) {
                e.summary.last_read = newest_id(&e.summary.last_read, &Some(id.to_string()));
                let caught_up = e
                    .summary
                    .last_message
                    .as_ref()
                    .is_none_or(|m| message_id_key(id) >= message_id_key(&m.id));
                if caught_up {
                    e.unread = 0;
                }
            }
        });
    }

    /// The tab was shown or hidden.
    pub fn set_visible(self, visible: bool) {
        if self.visible.get_untracked() == visible {
            return;
        }
        self.visible.set(visible);
        if visible {
            let room = self.active.get_untracked();
            self.rooms.update(|list| {
                if let Some(e) = list.iter_mut().find(|e| e.summary.id == room) {
                    e.unread = 0;
                }
            });
            self.send_read();
        } else {
            // What arrives while away gets the divider before it (the one
            // from opening the room has been seen by now).
            let newest = self.messages.with_untracked(|list| {
                list.iter().rev().find_map(|m| {
                    let id = m.id.get_untracked();
                    (!id.is_empty()).then_some(id)
                })
            });
            self.unread_mark
                .set(Some(newest.unwrap_or_else(|| "0-0".into())));
        }
    }

    /// The total unread count, for the tab title.
    pub fn total_unread(self) -> u32 {
        self.rooms
            .with(|list| list.iter().map(|e| e.unread).sum::<u32>())
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
        let room = self.active.get_untracked();
        // (The typing throttle is not reset here: the server drops notices
        // closer than half the resend interval anyway.)
        let ui = UiMessage {
            key: format!("n:{nonce}"),
            room_id: room,
            id: ArcRwSignal::new(String::new()),
            from: self.me_id,
            text: ArcRwSignal::new(text.to_string()),
            edited: ArcRwSignal::new(false),
            deleted: ArcRwSignal::new(false),
            nonce: Some(nonce),
            time_ms: ArcRwSignal::new(now_ms()),
            delivery: ArcRwSignal::new(Delivery::Pending),
            attempt: ArcRwSignal::new(0),
        };
        self.outbox.update_value(|o| o.push(ui.clone()));
        self.messages.update(|list| list.push(ui.clone()));
        self.scroll_to_bottom();
        self.deliver(&ui);
    }

    /// The unsent own message with this key, in any room.
    fn outbox_find(self, key: &str) -> Option<UiMessage> {
        self.outbox
            .with_value(|o| o.iter().find(|m| m.key == key).cloned())
    }

    /// Sends a failed message again, with the same nonce.
    pub fn retry(self, key: &str) {
        let ui = self.outbox_find(key);
        if let Some(ui) = ui {
            ui.delivery.set(Delivery::Pending);
            self.deliver(&ui);
        }
    }

    fn deliver(self, ui: &UiMessage) {
        let frame = ClientFrame::Message(SendMessage {
            room_id: ui.room_id.clone(),
            message: ui.text.get_untracked(),
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
        let room = ui.room_id.clone();
        set_timeout(
            move || {
                if check() && self.active.with_untracked(|a| *a == room) {
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

    /// The composer's text changed: tell the room "typing", at most every
    /// [`TYPING_RESEND_MS`].
    pub fn typing_input(self, text: &str) {
        if text.trim().is_empty() {
            return;
        }
        let room = self.active.get_untracked();
        let now = now_ms();
        let last = self.typing_sent.with_value(|t| t.get(&room).copied());
        if !typing_due(last, now) {
            return;
        }
        if self.send_frame(&ClientFrame::Typing(RoomRef {
            room_id: room.clone(),
        })) {
            self.typing_sent.update_value(|t| {
                t.insert(room, now);
            });
        }
    }

    /// Replaces the text of one of our messages (the server answers every
    /// member with `message.updated`).
    pub fn edit(self, id: String, text: &str) {
        let text = text.trim();
        if text.is_empty() {
            return;
        }
        let frame = ClientFrame::Edit(EditMessage {
            room_id: self.active.get_untracked(),
            id,
            message: text.to_string(),
        });
        if !self.send_frame(&frame) {
            self.show_notice("Not connected; try again in a moment.".into());
        }
    }

    /// Deletes one of our messages.
    pub fn delete(self, id: String) {
        let frame = ClientFrame::Delete(MessageRef {
            room_id: self.active.get_untracked(),
            id,
        });
        if !self.send_frame(&frame) {
            self.show_notice("Not connected; try again in a moment.".into());
        }
    }

    /// The names of who is typing in the open room (reactive).
    pub fn typing_names(self) -> Vec<String> {
        let active = self.active.get();
        self.typing.with(|list| {
            list.iter()
                .filter(|t| t.room_id == active)
                .map(|t| t.username.clone())
                .collect()
        })
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
                    // That is every room's outbox, not only the open room.
                    let pending: Vec<UiMessage> = self.outbox.with_value(|o| {
                        o.iter()
                            .filter(|m| m.delivery.get_untracked() == Delivery::Pending)
                            .cloned()
                            .collect()
                    });
                    for m in &pending {
                        self.deliver(m);
                    }
                    self.send_read();
                }
            }
            ConnState::SignedOut => {
                // Signed out here or elsewhere: on to the sign-in page.
                #[cfg(feature = "hydrate")]
                if let Some(window) = web_sys::window() {
                    let _ = window.location().assign("/login");
                }
            }
            ConnState::Closed | ConnState::Connecting | ConnState::Replaced => {}
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
                    } else {
                        self.new_pill.set(true);
                    }
                    self.send_read();
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
                    self.outbox.with_value(|o| {
                        o.iter()
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
                                    let current = self.outbox_find(&key);
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
            ServerFrame::MessageUpdated(m) => self.on_updated(m),
            ServerFrame::Read(r) => self.on_read(r),
            ServerFrame::Typing(t) => self.on_typing(t),
        }
    }

    /// A message was edited or deleted: the open list and the preview.
    fn on_updated(self, m: ChatMessage) {
        if self.rooms.with_untracked(|list| {
            list.iter().any(|e| {
                e.summary.id == m.room_id
                    && e.summary
                        .last_message
                        .as_ref()
                        .is_some_and(|l| l.id == m.id)
            })
        }) {
            self.rooms.update(|list| {
                if let Some(e) = list.iter_mut().find(|e| e.summary.id == m.room_id) {
                    e.summary.last_message = Some(m.clone());
                }
            });
        }
        if self.active.with_untracked(|a| *a == m.room_id) {
            let ui = self.messages.with_untracked(|list| {
                list.iter()
                    .find(|x| x.id.with_untracked(|id| *id == m.id))
                    .cloned()
            });
            if let Some(ui) = ui {
                ui.apply_update(&m);
            }
        }
    }

    /// A read mark moved: ours (another tab, or this one's echo) clears
    /// the room's unread count; the other member's shows "Seen".
    fn on_read(self, r: ReadMark) {
        if r.user_id == self.me_id {
            self.apply_own_read(&r.room_id, &r.id);
            return;
        }
        self.rooms.update(|list| {
            if let Some(e) = list
                .iter_mut()
                .find(|e| e.summary.id == r.room_id && e.summary.other_user_id == Some(r.user_id))
            {
                e.summary.peer_read = newest_id(&e.summary.peer_read, &Some(r.id.clone()));
            }
        });
    }

    /// Someone is typing: shown for [`TYPING_SHOW_MS`] unless renewed.
    fn on_typing(self, t: Typing) {
        if t.user_id == self.me_id {
            return;
        }
        let until_ms = now_ms() + TYPING_SHOW_MS as i64;
        self.typing.update(|list| {
            list.retain(|x| !(x.room_id == t.room_id && x.user_id == t.user_id));
            list.push(TypingEntry {
                room_id: t.room_id,
                user_id: t.user_id,
                username: t.username,
                until_ms,
            });
        });
        set_timeout(
            move || {
                let now = now_ms();
                if self
                    .typing
                    .try_with_untracked(|list| list.iter().any(|x| x.until_ms <= now))
                    == Some(true)
                {
                    self.typing.update(|list| list.retain(|x| x.until_ms > now));
                }
            },
            Duration::from_millis(TYPING_SHOW_MS + 50),
        );
    }

    /// A message from `user` ends their "typing" in that room.
    fn clear_typing(self, room: &str, user: UserId) {
        if self
            .typing
            .with_untracked(|list| list.iter().any(|x| x.room_id == room && x.user_id == user))
        {
            self.typing
                .update(|list| list.retain(|x| !(x.room_id == room && x.user_id == user)));
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
        let own = m.from == self.me_id;
        self.clear_typing(&m.room_id, m.from);

        // The room list: preview, time, order, unread. Only a message newer
        // than the room's last one counts (a replay after a reconnect may
        // repeat what the list already has).
        let known = self
            .rooms
            .with_untracked(|list| list.iter().any(|e| e.summary.id == m.room_id));
        let mut fresh = false;
        if known {
            let reading = is_active && self.visible.get_untracked();
            self.rooms.update(|list| {
                if let Some(e) = list.iter_mut().find(|e| e.summary.id == m.room_id) {
                    fresh = e
                        .summary
                        .last_message
                        .as_ref()
                        .is_none_or(|l| message_id_key(&m.id) > message_id_key(&l.id));
                    if is_newer(&m, e.summary.last_message.as_ref()) {
                        e.summary.last_message = Some(m.clone());
                    }
                    if fresh && !own && !reading {
                        e.unread = (e.unread + 1).min(MAX_UNREAD_COUNT);
                    }
                }
                sort_rooms(list);
            });
        } else {
            // A room this page has not heard of yet: refresh the list.
            self.load_rooms();
        }
        if fresh && !own && !self.visible.get_untracked() && self.notify_on.get_untracked() {
            self.notify(&m);
        }

        // One of our own unsent messages, in any room? Matched by nonce, or
        // by text when the echo carries no nonce.
        if own {
            let pending = self.outbox.with_value(|o| {
                o.iter()
                    .find(|x| {
                        x.room_id == m.room_id
                            && x.id.with_untracked(String::is_empty)
                            && match m.nonce.as_deref() {
                                Some(nonce) => x.nonce.as_deref() == Some(nonce),
                                None => x.text.with_untracked(|t| *t == m.message),
                            }
                    })
                    .cloned()
            });
            if let Some(ui) = pending {
                ui.confirm(&m);
                self.settle_outbox();
                if is_active {
                    self.send_read();
                }
                return;
            }
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
        let was_at_bottom = self.at_bottom();
        // Before any unsent message of ours (those stay last).
        self.messages.update(|list| {
            let at = list
                .iter()
                .position(|x| x.id.with_untracked(String::is_empty))
                .unwrap_or(list.len());
            list.insert(at, UiMessage::from_server(&m));
        });
        if was_at_bottom || own {
            self.scroll_to_bottom();
        } else {
            self.new_pill.set(true);
        }
        self.send_read();
    }

    /// A desktop notification for a message (the tab is hidden).
    fn notify(self, m: &ChatMessage) {
        let sender = self.name_of_untracked(m.from);
        let room = self.rooms.with_untracked(|list| {
            list.iter()
                .find(|e| e.summary.id == m.room_id)
                .map(|e| (e.summary.name.clone(), e.summary.other_user_id.is_some()))
        });
        let title = match room {
            Some((_, true)) | None => sender,
            Some((name, false)) => format!("{sender} in {name}"),
        };
        notify::show(&title, &m.message, &m.room_id);
    }

    fn name_of_untracked(self, id: UserId) -> String {
        self.names
            .with_untracked(|n| n.get(&id).cloned())
            .unwrap_or_else(|| format!("User #{id}"))
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
pub(super) fn sort_rooms(list: &mut [RoomEntry]) {
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

/// The newer of two optional message ids.
fn newest_id(a: &Option<String>, b: &Option<String>) -> Option<String> {
    match (a, b) {
        (Some(x), Some(y)) if message_id_key(y) > message_id_key(x) => Some(y.clone()),
        (Some(x), _) => Some(x.clone()),
        (None, y) => y.clone(),
    }
}

/// Where the "New messages" divider of a room opened now goes: after its
/// read mark, when it has unread messages (`"0-0"`: never read).
fn unread_mark_of(unread: u32, last_read: &Option<String>) -> Option<String> {
    (unread > 0).then(|| last_read.clone().unwrap_or_else(|| "0-0".into()))
}

/// The key of the first stored message from someone else after `mark`
/// (reactive: reads the ids).
fn divider_before(me: UserId, mark: &str, list: &[UiMessage]) -> Option<String> {
    let mark = message_id_key(mark);
    list.iter()
        .find(|m| m.from != me && m.id.with(|id| !id.is_empty() && message_id_key(id) > mark))
        .map(|m| m.key.clone())
}

/// The key of our newest stored message, when the other member has read up
/// to it (reactive: reads the ids).
fn seen_under(me: UserId, peer_read: &str, list: &[UiMessage]) -> Option<String> {
    let last = list
        .iter()
        .rev()
        .find(|m| m.from == me && m.id.with(|id| !id.is_empty()))?;
    let seen = last
        .id
        .with(|id| message_id_key(id) <= message_id_key(peer_read));
    seen.then(|| last.key.clone())
}

/// Whether a `typing` frame is due, last sent at `last` (ms), now `now`.
fn typing_due(last: Option<i64>, now: i64) -> bool {
    last.is_none_or(|l| now - l >= TYPING_RESEND_MS as i64 || now < l)
}

/// "Mary is typing…", "Mary and Joe are typing…", "Mary, Joe and Alex are
/// typing…", "4 people are typing…"; `None` when nobody is.
pub fn typing_label(names: &[String]) -> Option<String> {
    Some(match names {
        [] => return None,
        [a] => format!("{a} is typing…"),
        [a, b] => format!("{a} and {b} are typing…"),
        [a, b, c] => format!("{a}, {b} and {c} are typing…"),
        more => format!("{} people are typing…", more.len()),
    })
}

/// An unread count as shown: "99+" from [`MAX_UNREAD_COUNT`] on.
pub fn unread_label(n: u32) -> String {
    if n >= MAX_UNREAD_COUNT {
        "99+".to_string()
    } else {
        n.to_string()
    }
}

/// The tab title: "(3) Redis chat" with unread messages.
pub fn tab_title(total_unread: u32) -> String {
    if total_unread == 0 {
        "Redis chat".to_string()
    } else {
        format!("({}) Redis chat", unread_label(total_unread))
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

    fn msg(from: UserId, id: &str, key: &str) -> UiMessage {
        UiMessage {
            key: key.into(),
            room_id: "0".into(),
            id: ArcRwSignal::new(id.into()),
            from,
            text: ArcRwSignal::new("x".into()),
            edited: ArcRwSignal::new(false),
            deleted: ArcRwSignal::new(false),
            nonce: None,
            time_ms: ArcRwSignal::new(0),
            delivery: ArcRwSignal::new(Delivery::Sent),
            attempt: ArcRwSignal::new(0),
        }
    }

    #[test]
    fn newest_of_two_ids() {
        let s = |x: &str| Some(x.to_string());
        assert_eq!(newest_id(&s("10-0"), &s("9-5")), s("10-0"));
        assert_eq!(newest_id(&s("9-5"), &s("10-0")), s("10-0"));
        assert_eq!(newest_id(&None, &s("1-0")), s("1-0"));
        assert_eq!(newest_id(&s("1-0"), &None), s("1-0"));
        assert_eq!(newest_id(&None, &None), None);
    }

    #[test]
    fn divider_goes_before_the_first_unread_from_others() {
        let list = vec![
            msg(2, "1-0", "a"),
            msg(1, "2-0", "b"),
            msg(1, "3-0", "c"),
            msg(2, "4-0", "d"),
            msg(1, "", "e"),
        ];
        // Our own messages after the mark are not where the divider goes.
        assert_eq!(divider_before(1, "1-0", &list), Some("d".into()));
        assert_eq!(divider_before(1, "0-0", &list), Some("a".into()));
        assert_eq!(divider_before(1, "4-0", &list), None);
        assert_eq!(divider_before(2, "1-0", &list), Some("b".into()));
        assert_eq!(divider_before(2, "3-0", &list), None);
    }

    #[test]
    fn seen_under_the_last_own_message() {
        let list = vec![msg(1, "1-0", "a"), msg(2, "2-0", "b"), msg(1, "3-0", "c")];
        assert_eq!(seen_under(1, "3-0", &list), Some("c".into()));
        assert_eq!(seen_under(1, "4-0", &list), Some("c".into()));
        // Read up to an older message only: nothing shown.
        assert_eq!(seen_under(1, "2-0", &list), None);
        assert_eq!(seen_under(3, "9-0", &list), None);
        // An unsent last message: the stored one before it counts.
        let mut list = list;
        list.push(msg(1, "", "d"));
        assert_eq!(seen_under(1, "3-0", &list), Some("c".into()));
    }

    #[test]
    fn unread_marks_of_rooms() {
        assert_eq!(unread_mark_of(0, &Some("5-1".into())), None);
        assert_eq!(unread_mark_of(2, &None), Some("0-0".into()));
        assert_eq!(unread_mark_of(2, &Some("5-1".into())), Some("5-1".into()));
    }

    #[test]
    fn typing_is_throttled() {
        assert!(typing_due(None, 0));
        assert!(!typing_due(Some(1000), 1000 + TYPING_RESEND_MS as i64 - 1));
        assert!(typing_due(Some(1000), 1000 + TYPING_RESEND_MS as i64));
        // A clock that went back does not silence it.
        assert!(typing_due(Some(5000), 10));
    }

    #[test]
    fn typing_labels() {
        let n = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(typing_label(&[]), None);
        assert_eq!(typing_label(&n(&["Mary"])).unwrap(), "Mary is typing…");
        assert_eq!(
            typing_label(&n(&["Mary", "Joe"])).unwrap(),
            "Mary and Joe are typing…"
        );
        assert_eq!(
            typing_label(&n(&["Mary", "Joe", "Alex"])).unwrap(),
            "Mary, Joe and Alex are typing…"
        );
        assert_eq!(
            typing_label(&n(&["a", "b", "c", "d"])).unwrap(),
            "4 people are typing…"
        );
    }

    #[test]
    fn unread_labels_and_titles() {
        assert_eq!(unread_label(3), "3");
        assert_eq!(unread_label(99), "99");
        assert_eq!(unread_label(MAX_UNREAD_COUNT), "99+");
        assert_eq!(tab_title(0), "Redis chat");
        assert_eq!(tab_title(3), "(3) Redis chat");
        assert_eq!(tab_title(250), "(99+) Redis chat");
    }
}
