//! `pdchannels serve`: a self-hostable server for Pipedrive's Channels API wire contract.
//!
//! # Layout
//!
//! - [`Application`]: binds, assembles the routes, runs until its shutdown token is cancelled.
//! - `routes`: the Channels API (under `/v1` and `/api/v1`), our read API, `/v1/users/me`,
//!   `/healthz`, `/metrics`.
//! - `mcp`: MCP over Streamable HTTP at `/mcp`, the same tools over the same store, behind a
//!   gate (JSON-RPC errors, session ownership, rate limits on tool calls).
//! - `dns_rebinding`: which `Host` names and browser `Origin`s may reach `/mcp`.
//! - `mcp_sessions`: the bounds on MCP sessions (in all, per token, idle timeout).
//! - `auth`: API tokens as Pipedrive accepts them (header, query, Bearer).
//! - `rate_limit`: Pipedrive-like burst limits and daily token budget, off by default.
//! - `listener`, `connection`: the accept loop with its connection cap, and each connection's
//!   header and idle timeouts (`body` has the body's).
//! - `body`, `extract`, `error`: every error in the API's envelope, axum's rejections included.
//! - `request_log`: one line per request, never a query string or a header.
//! - `metrics`: Prometheus counters and the receive latency histogram.

mod auth;
mod body;
mod config;
mod connection;
mod dns_rebinding;
mod error;
mod extract;
mod inbox;
mod listener;
mod mcp;
mod mcp_sessions;
mod metrics;
mod rate_limit;
mod request_log;
mod routes;
mod startup;
mod state;

// The two parsers of outside input that are not model types, public for the fuzz targets.
pub use auth::api_token_from_query;
pub use config::{Company, ConnectionLimits, DEFAULT_LISTEN, HubConfig};
pub use mcp_sessions::McpSessionLimits;
pub use pdchannels_store::cursor::decode_cursor;
pub use rate_limit::RateLimits;
pub use startup::Application;
