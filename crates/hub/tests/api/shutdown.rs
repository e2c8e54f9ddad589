//! Graceful shutdown: in-flight requests finish, nothing acknowledged is lost.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use pdchannels_store::Store;
use pdchannels_testkit::HeldRequest;

use crate::helpers::message;
use pdchannels_testkit::TestHub;

/// How long the test lets the hub take to stop: well above its own drain bound (10 s), so a
/// slow machine cannot turn a drain that works into a failure.
const STOP_DEADLINE: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_in_flight_at_shutdown_finishes_with_200_and_is_stored() {
    let app = TestHub::start().await;
    app.add_channel("wa").await;
    let addr = app.address.trim_start_matches("http://").to_owned();
    let held = HeldRequest::start(
        &addr,
        "/v1/channels/messages/receive",
        &app.token,
        &message("in-flight", "c1", "sent"),
    )
    .await;

    app.shutdown.cancel();
    // Shutdown has begun once the hub stops accepting connections.
    let deadline = Instant::now() + STOP_DEADLINE;
    while tokio::net::TcpStream::connect(&addr).await.is_ok() {
        assert!(
            Instant::now() < deadline,
            "the hub still accepts connections after shutdown began"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let (status, body) = held.finish().await;
    assert_eq!(status, 200, "the request in flight is answered: {body}");
    assert_eq!(body["data"]["id"], "in-flight");
    let stopped = tokio::time::timeout(STOP_DEADLINE, app.server).await;
    assert!(
        stopped.is_ok(),
        "the hub stops once the request is answered"
    );

    let reopened = Store::connect(app.store.database()).await.unwrap();
    assert!(
        reopened.message("wa", "in-flight").await.unwrap().is_some(),
        "the message answered during shutdown is on disk"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_with_requests_in_flight_loses_nothing_acknowledged() {
    let app = TestHub::start().await;
    app.add_channel("wa").await;
    let client = reqwest::Client::builder()
        .timeout(STOP_DEADLINE)
        .build()
        .unwrap();
    let answered = Arc::new(AtomicUsize::new(0));
    let mut senders = Vec::new();
    for w in 0..16 {
        let client = client.clone();
        let url = app.url("/v1/channels/messages/receive");
        let token = app.token.clone();
        let answered = answered.clone();
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
                answered.fetch_add(1, Ordering::Relaxed);
            }
            acknowledged
        }));
    }
    // Shut down under load: once the senders are well under way, not after a guessed delay.
    let deadline = Instant::now() + STOP_DEADLINE;
    while answered.load(Ordering::Relaxed) < 100 {
        assert!(Instant::now() < deadline, "the hub answers nothing");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    app.shutdown.cancel();
    let stopped = tokio::time::timeout(STOP_DEADLINE, app.server).await;
    assert!(stopped.is_ok(), "the hub stops within its drain bound");
    let mut acknowledged = Vec::new();
    for s in senders {
        acknowledged.extend(s.await.unwrap());
    }
    assert!(
        acknowledged.len() >= 100,
        "{} acknowledged",
        acknowledged.len()
    );

    let reopened = Store::connect(app.store.database()).await.unwrap();
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

    let app = TestHub::start().await;
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(app.url("/mcp"))
            .auth_header(app.token.clone()),
    );
    let client = tokio::time::timeout(STOP_DEADLINE, ().serve(transport))
        .await
        .expect("the MCP session starts in time")
        .unwrap();
    tokio::time::timeout(STOP_DEADLINE, client.list_all_tools())
        .await
        .expect("tools/list is answered in time")
        .unwrap();
    app.shutdown.cancel();
    // Below the drain bound (10 s): an idle stream must not make the hub wait that out.
    let stopped = tokio::time::timeout(Duration::from_secs(8), app.server).await;
    assert!(
        stopped.is_ok(),
        "an open MCP session must not stall shutdown"
    );
    drop(client);
}
