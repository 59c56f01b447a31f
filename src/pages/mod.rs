//! Screens, one module per page.

pub mod account;
pub mod chat;
pub mod login;
pub mod not_found;
