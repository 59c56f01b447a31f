//! The room list a page at a time: the first [`ROOM_PAGE`] rooms load with
//! the screen, "Show more rooms" loads the next ones after the last room of
//! the previous page (`GET /api/rooms?limit=&before=`), so a user in
//! thousands of rooms gets a short first answer. Live frames keep every
//! loaded room current; a room that gets a message moves to the top, and
//! rooms not loaded yet arrive with their page or with their first frame.

use super::state::{sort_rooms, Chat};
use crate::api::rooms;
use crate::protocol::RoomSummary;
use leptos::prelude::*;
use leptos::task::spawn_local;

/// Rooms per page of the room list.
pub const ROOM_PAGE: usize = 100;

/// Where the room list's paging stands.
#[derive(Clone, Copy)]
pub struct RoomPaging {
    /// The server may have rooms after the last page loaded.
    pub more: RwSignal<bool>,
    /// A next page is on its way.
    pub loading: RwSignal<bool>,
    /// The last room of the last page loaded (the next page's cursor).
    cursor: StoredValue<Option<String>>,
    /// Pages loaded beyond the first.
    later_pages: StoredValue<u32>,
}

impl Default for RoomPaging {
    fn default() -> Self {
        Self {
            more: RwSignal::new(false),
            loading: RwSignal::new(false),
            cursor: StoredValue::new(None),
            later_pages: StoredValue::new(0),
        }
    }
}

impl Chat {
    /// The first page arrived: it sets the cursor unless later pages were
    /// loaded already (they stay, and so does their cursor).
    pub(super) fn first_room_page_loaded(self, list: &[RoomSummary]) {
        let paging = self.rooms_paging;
        if paging.later_pages.get_value() == 0 {
            paging.cursor.set_value(list.last().map(|r| r.id.clone()));
            paging.more.set(list.len() >= ROOM_PAGE);
        }
    }

    /// Loads the page of rooms after the last one loaded.
    pub fn load_more_rooms(self) {
        let paging = self.rooms_paging;
        if paging.loading.get_untracked() || !paging.more.get_untracked() {
            return;
        }
        paging.loading.set(true);
        let cursor = paging.cursor.get_value();
        spawn_local(async move {
            match rooms(Some(ROOM_PAGE.to_string()), cursor).await {
                Ok(list) => {
                    paging.more.set(list.len() >= ROOM_PAGE);
                    if let Some(last) = list.last() {
                        paging.cursor.set_value(Some(last.id.clone()));
                    }
                    paging.later_pages.update_value(|n| *n += 1);
                    let entries = self.room_entries(list);
                    self.rooms.update(|rooms| {
                        for e in entries {
                            match rooms.iter_mut().find(|r| r.summary.id == e.summary.id) {
                                Some(r) => *r = e,
                                None => rooms.push(e),
                            }
                        }
                        sort_rooms(rooms);
                    });
                    self.rooms_error.set(None);
                }
                Err(e) => self.rooms_error.set(Some(e.message)),
            }
            paging.loading.set(false);
        });
    }
}
