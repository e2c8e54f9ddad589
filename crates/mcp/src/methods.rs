//! The JSON-RPC methods an MCP client may send a server.

/// Every method a 2025-11-25 (or 2026-07-28) MCP client may send a server. A request for any
/// other method is answered -32601 (Method not found); a request for one of these whose
/// `params` do not fit the method is answered -32602 (Invalid params).
pub const KNOWN_METHODS: &[&str] = &[
    "initialize",
    "ping",
    "server/discover",
    "tools/list",
    "tools/call",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "resources/subscribe",
    "resources/unsubscribe",
    "prompts/list",
    "prompts/get",
    "completion/complete",
    "logging/setLevel",
    "tasks/get",
    "tasks/list",
    "tasks/result",
    "tasks/cancel",
];

/// Whether `method` is one an MCP client may send a server.
pub fn is_known_method(method: &str) -> bool {
    KNOWN_METHODS.contains(&method)
}
