//! Fixtures for tests that need a real server: our hub, and, where Pipedrive's cannot run
//! here, an OAuth authorization server that follows its documented contract; a fault-injecting
//! proxy to put in front of a hub, and a stray host that redirects must never reach.

mod fault_proxy;
mod hub;
mod oauth_server;
mod stray_host;

pub use fault_proxy::{Fault, FaultProxy, Seen};
pub use hub::{create_channel, spawn_hub};
pub use oauth_server::{CLIENT_ID, CLIENT_SECRET, OAuthServer};
pub use stray_host::{StrayHost, StrayRequest};
