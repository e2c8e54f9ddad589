//! `--allowed-host`: `/mcp` accepts the loopback names and the hosts it lists, and refuses every
//! other `Host` (DNS rebinding).

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{TestApp, spawn_app_with};

/// POSTs an MCP `initialize` to `/mcp` as if the hub were reached under `host`.
async fn initialize_as(app: &TestApp, host: &str) -> StatusCode {
    app.client
        .post(app.url("/mcp"))
        .timeout(Duration::from_secs(30))
        .header("host", host)
        .header("x-api-token", &app.token)
        .header("accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                       "clientInfo": {"name": "allowed-host-test", "version": "0"}}}))
        .send()
        .await
        .expect("the hub answers")
        .status()
}

#[tokio::test]
async fn mcp_accepts_an_allowed_host_and_refuses_any_other() {
    let app = spawn_app_with(|c| c.extra_allowed_hosts = vec!["hub.example.com".to_owned()]).await;
    let port = app.address.rsplit(':').next().unwrap().to_owned();
    assert_eq!(initialize_as(&app, "hub.example.com").await, StatusCode::OK);
    assert_eq!(
        initialize_as(&app, &format!("hub.example.com:{port}")).await,
        StatusCode::OK,
        "with the port too"
    );
    assert_eq!(
        initialize_as(&app, &format!("localhost:{port}")).await,
        StatusCode::OK,
        "loopback names stay allowed"
    );
    let refused = initialize_as(&app, "attacker.example.net").await;
    assert_eq!(
        refused,
        StatusCode::FORBIDDEN,
        "a host not listed is refused"
    );
}

#[tokio::test]
async fn without_allowed_hosts_only_loopback_names_reach_mcp() {
    let app = spawn_app_with(|_| {}).await;
    assert_eq!(
        initialize_as(&app, "hub.example.com").await,
        StatusCode::FORBIDDEN
    );
}
