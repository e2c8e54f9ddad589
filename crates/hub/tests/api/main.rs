//! The hub over real HTTP on 127.0.0.1, port 0, with a temporary SQLite database.

mod agent_tools;
mod allowed_host;
mod apps;
mod auth;
mod channels;
mod connections;
mod errors;
mod helpers;
mod inbox;
mod inbox_attacks;
mod inbox_live;
mod inbox_state;
mod mcp_gate;
mod mcp_http;
mod metrics;
mod mirror_link;
mod provider_apps;
mod provider_attacks;
mod provider_reads;
mod queued;
mod rate_limit;
mod read;
mod shared_database;
mod shutdown;
mod token_cache;
