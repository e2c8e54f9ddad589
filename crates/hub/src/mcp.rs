//! MCP over Streamable HTTP at `/mcp`: the same four tools over the same store as the HTTP routes.

use std::sync::Arc;

use pdchannels_mcp::ChannelsServer;
use pdchannels_model::Limits;
use pdchannels_relay::Delivery;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tokio_util::sync::CancellationToken;

/// The `/mcp` service. `port` is the hub's bound port: browsers send `Origin` with it, and only
/// the hub's own loopback origins are accepted (a page elsewhere cannot drive the tools).
pub fn service(
    channels: Delivery,
    limits: Limits,
    port: u16,
    extra_hosts: &[String],
    shutdown: CancellationToken,
) -> StreamableHttpService<ChannelsServer<Delivery>, LocalSessionManager> {
    let channels = Arc::new(channels);
    let mut hosts: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    hosts.extend(extra_hosts.iter().cloned());
    let mut origins: Vec<String> = ["localhost", "127.0.0.1", "[::1]"]
        .iter()
        .map(|h| format!("http://{h}:{port}"))
        .collect();
    origins.extend(extra_hosts.iter().map(|h| format!("https://{h}")));
    let config = StreamableHttpServerConfig::default()
        .with_allowed_hosts(hosts)
        .with_allowed_origins(origins)
        .with_max_request_body_bytes(limits.max_body_bytes)
        // Ending every session on shutdown also ends their SSE streams, which would otherwise
        // hold graceful shutdown open while an idle client keeps one.
        .with_cancellation_token(shutdown);
    StreamableHttpService::new(
        move || Ok(ChannelsServer::new(channels.clone(), limits.clone())),
        Arc::new(LocalSessionManager::default()),
        config,
    )
}

/// Every method a 2025-11-25 (or 2026-07-28) MCP client may send a server.
const KNOWN_METHODS: &[&str] = &[
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

/// Answers a request for a method no MCP server has with JSON-RPC's -32601 at once, session or
/// not (and answers a session's termination with 204). Without this, such a request before `initialize` gets a bare "Session ID is required",
/// and clients that probe with a newer method (Python's `server/discover`-first mode, for one)
/// cannot tell "unknown method" from "broken server".
pub async fn answer_unknown_methods(
    axum::extract::State(max_body_bytes): axum::extract::State<usize>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;

    if request.method() == axum::http::Method::DELETE {
        // Session termination: rmcp answers 202, which the Python SDK logs as a failure (it
        // expects 200 or 204). Nothing is pending after a DELETE, so 204 is the truthful answer.
        let mut response = next.run(request).await;
        if response.status() == axum::http::StatusCode::ACCEPTED {
            *response.status_mut() = axum::http::StatusCode::NO_CONTENT;
        }
        return response;
    }
    if request.method() != axum::http::Method::POST {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, max_body_bytes).await {
        Ok(bytes) => bytes,
        Err(_) => {
            let error = format!("the request body is over {max_body_bytes} bytes");
            return (axum::http::StatusCode::PAYLOAD_TOO_LARGE, error).into_response();
        }
    };
    if let Ok(serde_json::Value::Object(message)) = serde_json::from_slice(&bytes)
        && let (Some(id), Some(method)) = (
            message.get("id"),
            message.get("method").and_then(|m| m.as_str()),
        )
        && !KNOWN_METHODS.contains(&method)
    {
        let error = serde_json::json!({
            "jsonrpc": "2.0",
            "id": id,
            "error": {"code": -32601, "message": format!("Method not found: {method}")},
        });
        return (axum::http::StatusCode::BAD_REQUEST, axum::Json(error)).into_response();
    }
    next.run(axum::extract::Request::from_parts(
        parts,
        axum::body::Body::from(bytes),
    ))
    .await
}
