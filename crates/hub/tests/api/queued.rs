//! A relaying hub whose upstream is down: every operation, over REST and over MCP, answers a
//! call accepted into the outbox the same way (202, `success: true`, `additional_data.queued`),
//! and a message received over MCP is counted like one received over REST.

use std::time::Duration;

use pdchannels_client::{ChannelsClient, Credentials};
use pdchannels_relay::{Delivery, Relay, RelayConfig, RelayedChannels};
use pdchannels_store::Store;
use pdchannels_testkit::{TestHub, sample};
use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Value, json};

use crate::helpers::{body, message};

/// A hub relaying to an address where nothing listens, its relay worker running.
async fn spawn_relaying_to_nowhere() -> TestHub {
    // A port that was free a moment ago: connecting to it is refused.
    let nowhere = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let upstream = format!("http://{}", nowhere.local_addr().unwrap());
    drop(nowhere);
    spawn_relaying_to(&upstream, "upstream-token").await
}

/// A hub relaying to `upstream` (`http://host:port`) with `token`, its relay worker running.
async fn spawn_relaying_to(upstream: &str, token: &str) -> TestHub {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("hub.db")).await.unwrap();
    let client = ChannelsClient::builder(format!("{upstream}/v1"))
        .credentials(Credentials::ApiToken(token.to_owned().into()))
        .build()
        .unwrap();
    let relay = Relay::new(
        store.clone(),
        client,
        RelayConfig {
            // Calls held behind a failed one wait this long before they are answered "queued".
            deliver_timeout: Duration::from_secs(1),
            // The first retry comes after the caller's deadline: it is told "queued" at once.
            retry_base: Duration::from_secs(60),
            ..RelayConfig::default()
        },
    );
    let mut hub = TestHub::builder()
        .store(store)
        .channels(Delivery::Upstream(RelayedChannels::new(relay.clone())))
        .start()
        .await;
    hub.dir = Some(dir);
    let stop = hub.shutdown.clone();
    tokio::spawn(async move { relay.run(stop).await });
    hub
}

/// The queued answer's shape; answers its reason.
fn assert_queued(body: &Value) -> String {
    assert_eq!(body["success"], true, "{body}");
    assert!(
        body["additional_data"]["queued"]["outbox_id"].is_i64(),
        "{body}"
    );
    body["additional_data"]["queued"]["reason"]
        .as_str()
        .unwrap_or_else(|| panic!("a reason: {body}"))
        .to_owned()
}

#[tokio::test]
async fn every_operation_answers_a_queued_call_alike() {
    let app = spawn_relaying_to_nowhere().await;

    let added = app
        .post_json(
            "/v1/channels",
            &json!({"name": "WA", "provider_channel_id": "wa"}),
        )
        .await;
    assert_eq!(added.status(), 202);
    let added = body(added).await;
    let reason = assert_queued(&added);
    assert!(reason.contains("connect"), "names the failure: {reason}");
    assert_eq!(
        added["data"],
        Value::Null,
        "the upstream alone knows the id"
    );

    let received = app.receive(&message("m1", "c1", "sent")).await;
    assert_eq!(received.status(), 202);
    let received = body(received).await;
    assert_queued(&received);
    assert_eq!(received["data"]["id"], "m1", "{received}");

    for path in ["/v1/channels/wa/conversations/c1", "/v1/channels/wa"] {
        let deleted = app.delete(path).await;
        assert_eq!(deleted.status(), 202, "{path}");
        assert_queued(&body(deleted).await);
    }
}

#[tokio::test]
async fn mcp_tools_answer_queued_calls_as_successes_and_count_messages_like_rest() {
    let app = spawn_relaying_to_nowhere().await;
    let metrics = || async {
        app.client
            .get(app.url("/metrics"))
            .header("x-api-token", &app.token)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    let queued_count = |text: &str| {
        sample(
            text,
            "pdchannels_messages_stored_total",
            &[("outcome", "queued")],
        )
    };
    let before = queued_count(&metrics().await);

    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(app.url("/mcp"))
            .auth_header(app.token.clone()),
    );
    let client = ().serve(transport).await.unwrap();
    let call = |name: &'static str, arguments: Value| {
        let Value::Object(arguments) = arguments else {
            panic!("arguments are an object")
        };
        client.call_tool(CallToolRequestParams::new(name).with_arguments(arguments))
    };

    let created = call(
        "channels_create",
        json!({"name": "WA", "provider_channel_id": "wa"}),
    )
    .await
    .unwrap();
    assert_eq!(created.is_error, Some(false), "{created:?}");
    assert_queued(created.structured_content.as_ref().unwrap());

    let received = call("channels_receive_message", message("m1", "c1", "sent"))
        .await
        .unwrap();
    assert_eq!(received.is_error, Some(false), "{received:?}");
    assert_queued(received.structured_content.as_ref().unwrap());

    let deleted = call("channels_delete", json!({"id": "wa"})).await.unwrap();
    assert_eq!(deleted.is_error, Some(false), "{deleted:?}");
    assert_queued(deleted.structured_content.as_ref().unwrap());

    let after = queued_count(&metrics().await);
    assert!(
        after - before >= 1.0,
        "the MCP receive is counted: {before} -> {after}"
    );
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn a_call_held_behind_another_says_which_and_why_that_one_waits() {
    let app = spawn_relaying_to_nowhere().await;

    let first = app.receive(&message("m1", "c1", "sent")).await;
    assert_eq!(first.status(), 202);
    let first = body(first).await;
    let first_id = &first["additional_data"]["queued"]["outbox_id"];
    let reason = assert_queued(&first);
    assert!(
        reason.contains("cannot reach") && reason.contains("retrying in"),
        "its own failure and when it is retried: {reason}"
    );

    let second = app.receive(&message("m2", "c1", "sent")).await;
    assert_eq!(second.status(), 202);
    let reason = assert_queued(&body(second).await);
    assert!(
        reason.starts_with(&format!(
            "held behind call {first_id} of the same conversation"
        )),
        "{reason}"
    );
    assert!(
        reason.contains("cannot reach") && reason.contains("retrying in"),
        "why that call waits: {reason}"
    );

    // A channel-wide call (deleting the channel) holds back what comes after it in the channel.
    let deleted = app.delete("/v1/channels/wa").await;
    assert_eq!(deleted.status(), 202);
    let delete_id = body(deleted).await["additional_data"]["queued"]["outbox_id"].clone();
    let third = app.receive(&message("m3", "c2", "sent")).await;
    assert_eq!(third.status(), 202);
    let reason = assert_queued(&body(third).await);
    assert!(
        reason.starts_with(&format!("held behind call {delete_id} of the same channel")),
        "{reason}"
    );
}

#[tokio::test]
async fn an_upstream_refusing_our_token_is_a_502_naming_its_401_not_the_callers_401() {
    let upstream = TestHub::start().await;
    upstream.add_channel("wa").await;
    let app = spawn_relaying_to(&upstream.address, "pdc_not_a_token_of_the_upstream").await;

    let answer = app.receive(&message("m1", "c1", "sent")).await;
    assert_eq!(answer.status(), 502, "the caller's own token is fine");
    let answer = body(answer).await;
    assert_eq!(answer["success"], false, "{answer}");
    assert_eq!(
        answer["additional_data"]["code"], "UPSTREAM_REJECTED",
        "{answer}"
    );
    let error = answer["error"].as_str().unwrap();
    assert!(
        error.contains("401"),
        "names the upstream's status: {answer}"
    );
    assert!(
        error.contains("upstream token"),
        "says whose token to check: {answer}"
    );
}

/// A hub that relays stores no conversations: its MCP endpoint lists the four Channels tools and
/// none of the agents' read, reply or template tools (which would find nothing here).
#[tokio::test]
async fn a_relaying_hub_lists_only_the_four_channels_tools() {
    let app = spawn_relaying_to_nowhere().await;
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(app.url("/mcp"))
            .auth_header(app.token.clone()),
    );
    let client = ().serve(transport).await.unwrap();
    let mut names: Vec<String> = client
        .list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "channels_create",
            "channels_delete",
            "channels_delete_conversation",
            "channels_receive_message"
        ]
    );
    let refused = client
        .call_tool(CallToolRequestParams::new("channels_list_templates"))
        .await;
    assert!(refused.is_err(), "an unlisted tool is refused: {refused:?}");
    client.cancel().await.unwrap();
}
