//! Graceful shutdown: in-flight requests finish, nothing acknowledged is lost.

use std::time::Duration;

use pdchannels_store::Store;

use crate::helpers::{message, spawn_app};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_with_requests_in_flight_loses_nothing_acknowledged() {
    let app = spawn_app().await;
    app.add_channel("wa").await;
    let mut senders = Vec::new();
    for w in 0..16 {
        let client = app.client.clone();
        let url = app.url("/v1/channels/messages/receive");
        let token = app.token.clone();
        senders.push(tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            for i in 0..200 {
                let id = format!("w{w}-{i}");
                let sent = client
                    .post(&url)
                    .header("x-api-token", &token)
                    .json(&message(&id, &format!("c{w}"), "sent"))
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status() == 200 => acknowledged.push(id),
                    _ => break,
                }
            }
            acknowledged
        }));
    }
    tokio::time::sleep(Duration::from_millis(150)).await;
    app.shutdown.cancel();
    let stopped = tokio::time::timeout(Duration::from_secs(10), app.server).await;
    assert!(stopped.is_ok(), "the hub stops within its drain bound");
    let mut acknowledged = Vec::new();
    for s in senders {
        acknowledged.extend(s.await.unwrap());
    }
    assert!(!acknowledged.is_empty());

    let reopened = Store::open(&app.dir.path().join("hub.db")).await.unwrap();
    for id in &acknowledged {
        assert!(
            reopened.message("wa", id).await.unwrap().is_some(),
            "acknowledged message {id} is stored"
        );
    }
}

#[tokio::test]
async fn an_idle_mcp_stream_does_not_hold_shutdown() {
    use rmcp::ServiceExt;
    use rmcp::transport::StreamableHttpClientTransport;
    use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;

    let app = spawn_app().await;
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(app.url("/mcp"))
            .auth_header(app.token.clone()),
    );
    let client = ().serve(transport).await.unwrap();
    client.list_all_tools().await.unwrap();
    app.shutdown.cancel();
    let stopped = tokio::time::timeout(Duration::from_secs(5), app.server).await;
    assert!(
        stopped.is_ok(),
        "an open MCP session must not stall shutdown"
    );
    drop(client);
}
