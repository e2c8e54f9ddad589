//! How a hub is set up.

use std::net::SocketAddr;

use pdchannels_model::Limits;

use crate::mcp_sessions::McpSessionLimits;
use crate::rate_limit::RateLimits;

/// The hub's default address: loopback only, a fixed port.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8787";

/// Everything `Application::build` needs besides the store.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Where to listen; port 0 picks a free port (tests).
    pub listen: SocketAddr,
    /// Payload limits.
    pub limits: Limits,
    /// Rate limits (off by default).
    pub rate_limits: RateLimits,
    /// Host names (besides loopback ones) that `/mcp` accepts in `Host`, for a hub behind a
    /// proxy or a real name. DNS-rebinding protection refuses every other host.
    pub extra_allowed_hosts: Vec<String>,
    /// Bounds on MCP sessions over HTTP.
    pub mcp_sessions: McpSessionLimits,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN.parse().expect("the default address parses"),
            limits: Limits::default(),
            rate_limits: RateLimits::default(),
            extra_allowed_hosts: Vec::new(),
            mcp_sessions: McpSessionLimits::default(),
        }
    }
}
