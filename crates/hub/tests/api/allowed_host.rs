//! `--allowed-host`: `/mcp` accepts the loopback names and the hosts it lists, and refuses every
//! other `Host` (DNS rebinding).

use std::time::Duration;

use pdchannels_testkit::TestHub;
use reqwest::StatusCode;
use serde_json::{Value, json};

/// POSTs an MCP `initialize` to `/mcp` as if the hub were reached under `host`.
async fn initialize_as(app: &TestHub, host: &str) -> StatusCode {
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
    let app =
        TestHub::start_with(|c| c.extra_allowed_hosts = vec!["hub.example.com".to_owned()]).await;
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
    let app = TestHub::start_with(|_| {}).await;
    assert_eq!(
        initialize_as(&app, "hub.example.com").await,
        StatusCode::FORBIDDEN
    );
}

/// POSTs an MCP `initialize` with `host` and, if given, `origin`; answers the status and body.
async fn initialize_from(app: &TestHub, host: &str, origin: Option<&str>) -> (u16, Value) {
    let mut request = app
        .client
        .post(app.url("/mcp"))
        .timeout(Duration::from_secs(30))
        .header("host", host)
        .header("x-api-token", &app.token)
        .header("accept", "application/json, text/event-stream");
    if let Some(origin) = origin {
        request = request.header("origin", origin);
    }
    let response = request
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                       "clientInfo": {"name": "allowed-origin-test", "version": "0"}}}))
        .send()
        .await
        .expect("the hub answers");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = if content_type.starts_with("application/json") {
        response.json().await.unwrap()
    } else {
        Value::Null
    };
    (status, body)
}

/// Behind a proxy, a 403 must say which header was refused and which flag allows it.
#[tokio::test]
async fn a_refused_host_or_origin_is_named_with_the_flag_that_allows_it() {
    let app = TestHub::start_with(|_| {}).await;
    let (status, body) = initialize_from(&app, "hub.example.com", None).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["data"]["header"], json!("Host"), "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("--allowed-host hub.example.com"),
        "{message}"
    );

    let (status, body) = initialize_from(&app, "127.0.0.1", Some("https://app.example.com")).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["data"]["header"], json!("Origin"), "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("--mcp-allowed-origin https://app.example.com"),
        "{message}"
    );
}

#[tokio::test]
async fn mcp_allowed_origin_lets_that_browser_origin_in_and_no_other() {
    let app = TestHub::start_with(|c| {
        c.mcp_allowed_origins = vec![
            "https://app.example.com".to_owned(),
            "http://localhost:*".to_owned(),
        ];
    })
    .await;
    let port = app.address.rsplit(':').next().unwrap().to_owned();
    let own = format!("http://127.0.0.1:{port}");
    for origin in [
        "https://app.example.com",
        "https://app.example.com:443",
        "http://localhost:3000",
        own.as_str(),
    ] {
        let (status, body) = initialize_from(&app, "127.0.0.1", Some(origin)).await;
        assert_eq!(status, 200, "{origin}: {body}");
    }
    for origin in ["http://app.example.com", "https://evil.example.com", "null"] {
        let (status, body) = initialize_from(&app, "127.0.0.1", Some(origin)).await;
        assert_eq!(status, 403, "{origin}: {body}");
    }
}
