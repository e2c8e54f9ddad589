//! Fixtures for tests that need a real server: our hub, and, where Pipedrive's cannot run
//! here, an OAuth authorization server that follows its documented contract; a fault-injecting
//! proxy to put in front of a hub, and a stray host that redirects must never reach.

mod database;
mod deadline;
mod fault_proxy;
mod held_request;
mod hub;
mod loopback;
mod metrics_text;
mod oauth_server;
pub mod pipedrive_api;
mod provider_app;
mod stray_host;

mod test_log;

pub use database::{Backend, DEFAULT_TEST_POSTGRES, TestDatabase, database_url, test_postgres_url};
pub use deadline::wait_within;
pub use fault_proxy::{Fault, FaultProxy, Seen};
pub use held_request::HeldRequest;
pub use hub::{HubBuilder, TestHub, create_channel, spawn_hub};
pub use metrics_text::sample;
pub use oauth_server::{CLIENT_ID, CLIENT_SECRET, OAuthServer};
pub use provider_app::{
    APP_CLIENT_ID, APP_CLIENT_SECRET, AppRequest, Misbehaviour, ProviderApp, app_basic_auth,
};
pub use stray_host::{StrayHost, StrayRequest};
pub use test_log::{init_test_log, subprocess_log_env, subprocess_stderr, test_log_enabled};
