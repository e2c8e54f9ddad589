//! MCP over Streamable HTTP at `/mcp`: the same four tools over the same store as the HTTP routes.

use std::sync::Arc;

use pdchannels_mcp::ChannelsServer;
use pdchannels_model::Limits;
use pdchannels_store::Store;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tokio_util::sync::CancellationToken;

/// The `/mcp` service. `port` is the hub's bound port: browsers send `Origin` with it, and only
/// the hub's own loopback origins are accepted (a page elsewhere cannot drive the tools).
pub fn service(
    store: Store,
    limits: Limits,
    port: u16,
    extra_hosts: &[String],
    shutdown: CancellationToken,
) -> StreamableHttpService<ChannelsServer<Store>, LocalSessionManager> {
    let store = Arc::new(store);
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
        move || Ok(ChannelsServer::new(store.clone(), limits.clone())),
        Arc::new(LocalSessionManager::default()),
        config,
    )
}
