//! Fixtures for tests that need a real server: our hub, and, where Pipedrive's cannot run
//! here, an OAuth authorization server that follows its documented contract.

mod hub;
mod oauth_server;

pub use hub::{create_channel, spawn_hub};
pub use oauth_server::{CLIENT_ID, CLIENT_SECRET, OAuthServer};
