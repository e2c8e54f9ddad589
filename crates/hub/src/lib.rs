//! `pdchannels serve`: a self-hostable server for Pipedrive's Channels API wire contract.
//!
//! # Layout
//!
//! - [`Application`]: binds, assembles the routes, runs until its shutdown token is cancelled.
//! - `routes`: the Channels API (under `/v1` and `/api/v1`), our read API, `/healthz`,
//!   `/metrics`.
//! - `mcp`: MCP over Streamable HTTP at `/mcp`, the same tools over the same store.
//! - `auth`: API tokens as Pipedrive accepts them (header, query, Bearer).
//! - `cursor`: the read API's opaque page cursors.
//! - `rate_limit`: Pipedrive-like burst limits and daily token budget, off by default.
//! - `body`, `error`: every error in the API's envelope.
//! - `metrics`: Prometheus counters and the receive latency histogram.

mod auth;
mod body;
mod config;
mod cursor;
mod error;
mod mcp;
mod metrics;
mod rate_limit;
mod routes;
mod startup;
mod state;

// The two parsers of outside input that are not model types, public for the fuzz targets.
pub use auth::api_token_from_query;
pub use config::{DEFAULT_LISTEN, HubConfig};
pub use cursor::decode_cursor;
pub use rate_limit::RateLimits;
pub use startup::Application;
