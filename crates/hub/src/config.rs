//! How a hub is set up.

use std::net::SocketAddr;
use std::time::Duration;

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
    /// How many connections, and how long each may take to send its request.
    pub connections: ConnectionLimits,
    /// Rate limits (off by default).
    pub rate_limits: RateLimits,
    /// Host names (besides loopback ones) that `/mcp` accepts in `Host`, for a hub behind a
    /// proxy or a real name. DNS-rebinding protection refuses every other host.
    pub extra_allowed_hosts: Vec<String>,
    /// Browser origins (`https://app.example.com`, `http://localhost:*`) that may use `/mcp`
    /// besides the hub's own; any other `Origin` is refused, so a web page elsewhere cannot drive
    /// the tools with a visitor's browser.
    pub mcp_allowed_origins: Vec<String>,
    /// Bounds on MCP sessions over HTTP.
    pub mcp_sessions: McpSessionLimits,
    /// The company the hub plays, as Pipedrive answered it to apps (`GET /v1/users/me`,
    /// `pd_company_id` of an added channel).
    pub company: Company,
}

/// The company a hub's tokens are users of: Pipedrive answered apps with its id, name and
/// domain, and apps store them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Company {
    /// An integer, as Pipedrive's company ids are.
    pub id: i64,
    /// Its name.
    pub name: String,
    /// Its subdomain (`{domain}.pipedrive.com` at Pipedrive).
    pub domain: String,
}

impl Default for Company {
    fn default() -> Self {
        Self {
            id: 1,
            name: "pdchannels".to_owned(),
            domain: "pdchannels".to_owned(),
        }
    }
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN.parse().expect("the default address parses"),
            limits: Limits::default(),
            connections: ConnectionLimits::default(),
            rate_limits: RateLimits::default(),
            extra_allowed_hosts: Vec::new(),
            mcp_allowed_origins: Vec::new(),
            mcp_sessions: McpSessionLimits::default(),
            company: Company::default(),
        }
    }
}

/// Bounds on what a client's connection may hold: without them an idle socket, a half-sent
/// request head or a body sent a byte a second keeps a descriptor forever, and enough of them
/// lock every other client out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Open connections at most. At the cap, a new client takes the place of the connection
    /// idle the longest; when every connection is answering a request, it gets a quick 503.
    pub max_connections: usize,
    /// From a request head's first byte to its last.
    pub header_timeout: Duration,
    /// From the end of a request head to the end of its body.
    pub body_timeout: Duration,
    /// How long a connection may wait for its next request (after opening, or after a
    /// response). A streaming response (MCP's SSE) is a request in progress, not idle.
    pub idle_timeout: Duration,
}

impl ConnectionLimits {
    /// 512 connections: half of the common 1,024-descriptor limit, leaving the rest for the
    /// store, the relay's upstream connections and refusals (so the cap is reached before the
    /// process runs out of descriptors, which would stop it from accepting anyone).
    pub const DEFAULT_MAX_CONNECTIONS: usize = 512;
    /// A real client sends its head in one packet; 10 s allows for a slow mobile link.
    pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
    /// The largest body (1 MiB) at 35 KB/s.
    pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(30);
    /// Long enough to reuse a connection between a client's bursts.
    pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_connections: Self::DEFAULT_MAX_CONNECTIONS,
            header_timeout: Self::DEFAULT_HEADER_TIMEOUT,
            body_timeout: Self::DEFAULT_BODY_TIMEOUT,
            idle_timeout: Self::DEFAULT_IDLE_TIMEOUT,
        }
    }
}
