//! Calls that repeat an earlier call byte for byte are calls of their own: each is sent, in
//! order, and the upstream ends as the sequence says (checked through its read API).

use std::time::Duration;

use pdchannels_model::{
    AddChannel, Channels, DeleteChannel, DeleteConversation, Limits, ReceiveMessage, ReceiveOutcome,
};
use pdchannels_relay::RelayedChannels;
use serde_json::{Value, json};

use super::{Local, Upstream, local_relay, spawn_upstream};

async fn relayed() -> (Upstream, Local, RelayedChannels) {
    let upstream = spawn_upstream().await;
    let local = local_relay(&upstream.address, &upstream.token, Duration::from_secs(10)).await;
    let channels = RelayedChannels::new(local.relay.clone());
    (upstream, local, channels)
}

/// `GET path` on the upstream's read API: its status and body.
async fn read(upstream: &Upstream, path: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .get(format!("{}{path}", upstream.address))
        .header("x-api-token", &upstream.token)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

fn text_message(id: &str, conversation: &str, text: &str) -> ReceiveMessage {
    ReceiveMessage::parse(
        &json!({"id": id, "channel_id": "wa", "sender_id": "s", "conversation_id": conversation,
                "message": text, "status": "sent", "created_at": "2024-05-01T10:00:00Z"}),
        &Limits::default(),
    )
    .unwrap()
}

async fn receive(channels: &RelayedChannels, message: ReceiveMessage) {
    let received = channels.receive_message(message).await.unwrap();
    assert!(
        matches!(received.outcome, ReceiveOutcome::Delivered { .. }),
        "{:?}",
        received.outcome
    );
}

async fn delete_conversation(channels: &RelayedChannels, conversation: &str) {
    let request = DeleteConversation::parse(
        &json!({"channel_id": "wa", "conversation_id": conversation}),
        &Limits::default(),
    )
    .unwrap();
    channels.delete_conversation(request).await.unwrap();
}

/// The texts of the upstream's messages in `conversation`, oldest first; `None` if the
/// conversation does not exist there.
async fn upstream_texts(upstream: &Upstream, conversation: &str) -> Option<Vec<String>> {
    let (status, body) = read(
        upstream,
        &format!("/v1/channels/wa/conversations/{conversation}"),
    )
    .await;
    if status == 404 {
        return None;
    }
    assert_eq!(status, 200, "{body}");
    Some(
        body["data"]["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["message"].as_str().unwrap().to_owned())
            .collect(),
    )
}

#[tokio::test]
async fn a_channel_added_deleted_and_added_again_exists_upstream() {
    let (upstream, local, channels) = relayed().await;
    let limits = Limits::default();
    let add = || {
        AddChannel::parse(
            &json!({"name": "Messenger", "provider_channel_id": "fb"}),
            &limits,
        )
        .unwrap()
    };
    channels.add_channel(add()).await.unwrap();
    channels
        .delete_channel(DeleteChannel::parse(&json!({"id": "fb"}), &limits).unwrap())
        .await
        .unwrap();
    channels.add_channel(add()).await.unwrap();

    let (_, body) = read(&upstream, "/v1/channels").await;
    let ids: Vec<&str> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["provider_channel_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["wa", "fb"], "{body}");
    // And the next receive into it is delivered, not rejected with 404.
    let mut m = text_message("m1", "c1", "hello");
    m.channel_id = pdchannels_model::ChannelId::parse("fb", &limits).unwrap();
    receive(&channels, m).await;
    assert_eq!(local.store.outbox().stats().await.unwrap().delivered, 4);
    local.stop.cancel();
}

#[tokio::test]
async fn an_edit_back_to_an_earlier_text_reaches_the_upstream() {
    let (upstream, local, channels) = relayed().await;
    for text in ["A", "B", "A"] {
        receive(&channels, text_message("m1", "c1", text)).await;
    }
    assert_eq!(
        upstream_texts(&upstream, "c1").await,
        Some(vec!["A".to_owned()])
    );
    assert_eq!(local.store.outbox().stats().await.unwrap().delivered, 3);
    local.stop.cancel();
}

#[tokio::test]
async fn a_message_received_again_after_its_conversation_was_deleted_is_sent_again() {
    let (upstream, local, channels) = relayed().await;
    receive(&channels, text_message("m1", "c1", "hello")).await;
    delete_conversation(&channels, "c1").await;
    assert_eq!(upstream_texts(&upstream, "c1").await, None);
    receive(&channels, text_message("m1", "c1", "hello")).await;
    assert_eq!(
        upstream_texts(&upstream, "c1").await,
        Some(vec!["hello".to_owned()])
    );
    local.stop.cancel();
}

#[tokio::test]
async fn a_conversation_deleted_a_second_time_is_deleted_again() {
    let (upstream, local, channels) = relayed().await;
    receive(&channels, text_message("m1", "c1", "hello")).await;
    delete_conversation(&channels, "c1").await;
    receive(&channels, text_message("m2", "c1", "again")).await;
    assert_eq!(
        upstream_texts(&upstream, "c1").await,
        Some(vec!["again".to_owned()])
    );
    delete_conversation(&channels, "c1").await;
    assert_eq!(upstream_texts(&upstream, "c1").await, None);
    assert_eq!(local.store.outbox().stats().await.unwrap().delivered, 4);
    local.stop.cancel();
}
