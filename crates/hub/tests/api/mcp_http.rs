//! MCP over Streamable HTTP at /mcp with an rmcp client: the same tools over the same store.

use pdchannels_testkit::TestHub;
use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::json;

async fn connect(app: &TestHub) -> rmcp::service::RunningService<rmcp::RoleClient, ()> {
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(app.url("/mcp"))
            .auth_header(app.token.clone()),
    );
    ().serve(transport).await.unwrap()
}

fn args(value: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    match value {
        serde_json::Value::Object(map) => map,
        other => panic!("tool arguments are an object, got {other}"),
    }
}

#[tokio::test]
async fn tools_over_http_act_on_the_hubs_store() {
    let app = TestHub::start().await;
    let client = connect(&app).await;
    let info = client.peer_info().unwrap();
    assert_eq!(info.server_info.as_ref().unwrap().name, "pdchannels");
    let tools = client.list_all_tools().await.unwrap();
    assert_eq!(
        tools.len(),
        8,
        "the Channels tools, the conversation tools and the templates"
    );

    let created = client
        .call_tool(
            CallToolRequestParams::new("channels_create")
                .with_arguments(args(json!({"name": "WA", "provider_channel_id": "wa"}))),
        )
        .await
        .unwrap();
    assert_eq!(created.is_error, Some(false));
    let received = client
        .call_tool(
            CallToolRequestParams::new("channels_receive_message")
                .with_arguments(args(crate::helpers::message("m1", "c1", "sent"))),
        )
        .await
        .unwrap();
    assert_eq!(received.is_error, Some(false));
    // The HTTP API sees what the MCP tool stored.
    let response = app.get("/v1/channels/wa/conversations/c1").await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["data"]["messages"][0]["id"], json!("m1"));

    let invalid = client
        .call_tool(
            CallToolRequestParams::new("channels_receive_message").with_arguments(args(json!({}))),
        )
        .await
        .unwrap();
    assert_eq!(invalid.is_error, Some(true));
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn mcp_refuses_foreign_hosts_and_origins() {
    let app = TestHub::start().await;
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}});
    let request = |host: Option<&str>, origin: Option<&str>| {
        let mut r = app
            .client
            .post(app.url("/mcp"))
            .bearer_auth(&app.token)
            .header("accept", "application/json, text/event-stream")
            .json(&init);
        if let Some(h) = host {
            r = r.header("host", h);
        }
        if let Some(o) = origin {
            r = r.header("origin", o);
        }
        r.send()
    };
    let evil = request(Some("evil.example.com"), Some("http://evil.example.com"))
        .await
        .unwrap();
    assert!(evil.status().is_client_error(), "{}", evil.status());
    let evil_origin = request(None, Some("http://evil.example.com"))
        .await
        .unwrap();
    assert!(
        evil_origin.status().is_client_error(),
        "{}",
        evil_origin.status()
    );
    let own_origin = request(None, Some(&app.address)).await.unwrap();
    assert!(own_origin.status().is_success(), "{}", own_origin.status());
}

#[tokio::test]
async fn unknown_methods_are_answered_at_once_even_before_initialize() {
    let app = TestHub::start().await;
    let started = std::time::Instant::now();
    let response = app
        .client
        .post(app.url("/mcp"))
        .bearer_auth(&app.token)
        .header("accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "no/such/method", "params": {}}))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    assert!(started.elapsed() < std::time::Duration::from_secs(1));
    assert!(
        status.is_client_error() || text.contains("-32601"),
        "{status} {text}"
    );
}
