//! The HTTP routes: the Channels API (write), our read API, health and metrics.

pub mod channels;
pub mod health;
pub mod mirror;
pub mod read;
pub mod send;
pub mod templates;
pub mod users;
