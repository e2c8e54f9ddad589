//! Fixtures for tests that need a real server where Pipedrive's cannot run here.

mod oauth_server;

pub use oauth_server::{CLIENT_ID, CLIENT_SECRET, OAuthServer};
