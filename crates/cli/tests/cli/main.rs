//! The `pdchannels` binary as its users run it: real subprocesses on real files and ports. One
//! test binary (one link, one process start per test run), one module per area.

mod apps;
mod auth;
mod cli;
mod commands;
mod db_copy;
mod first_hour;
mod import;
mod inbox;
mod mcp_sessions_memory;
mod mcp_stdio;
mod mirror;
mod postgres_hubs;
mod quickstart;
mod relay_crash;
mod serve;
mod store;
