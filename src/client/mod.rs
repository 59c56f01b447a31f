//! Browser-only code (feature `hydrate`).
//!
//! - [`socket`]: the page's WebSocket connection to `/ws`, with reconnects.

pub mod socket;
