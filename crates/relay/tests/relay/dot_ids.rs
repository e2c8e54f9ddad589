//! Ids `.` and `..` in a URL path: every URL parser resolves them away, even percent-encoded, so
//! `DELETE .../conversations/..` would delete the whole channel. The relay refuses them before
//! anything is queued, and never sends a queued call whose path holds one.

use std::time::Duration;

use pdchannels_client::UpstreamRequest;
use pdchannels_model::{Channels, ChannelsError, DeleteConversation, Limits, ReceiveOutcome};
use pdchannels_relay::RelayedChannels;
use pdchannels_store::NewOutboxEntry;
use serde_json::json;

use super::{Upstream, local_relay, message, spawn_upstream};

/// The upstream's conversations of `wa`, by id.
async fn conversations(upstream: &Upstream) -> Vec<String> {
    let page = upstream
        .store
        .list_conversations("wa", None, 100)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("channel wa still exists upstream"));
    let mut ids: Vec<String> = page.iter().map(|c| c.conversation_id.clone()).collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn a_dot_conversation_id_never_reaches_another_path() {
    let upstream = spawn_upstream().await;
    let local = local_relay(&upstream.address, &upstream.token, Duration::from_secs(5)).await;
    let channels = RelayedChannels::new(local.relay.clone());
    // In a receive the ids travel in the body: they arrive as they are.
    for (id, conversation) in [("m1", ".."), ("m2", "."), ("m3", "c1")] {
        let received = channels
            .receive_message(message(id, conversation, "2024-05-01 10:00"))
            .await
            .unwrap();
        assert!(matches!(received.outcome, ReceiveOutcome::Delivered { .. }));
    }
    assert_eq!(conversations(&upstream).await, [".", "..", "c1"]);

    for conversation in ["..", "."] {
        let request = DeleteConversation::parse(
            &json!({"channel_id": "wa", "conversation_id": conversation}),
            &Limits::default(),
        )
        .unwrap();
        let err = channels.delete_conversation(request).await.unwrap_err();
        let ChannelsError::Invalid { problems, .. } = &err else {
            panic!("expected a refusal, got {err:?}")
        };
        let problem = &problems.as_slice()[0];
        assert_eq!(problem.path, "conversation_id");
        assert!(
            problem.reason.contains("cannot be relayed")
                && problem.reason.contains("nothing was queued"),
            "{problem:?}"
        );
    }
    // A call queued before ids were checked (its path holds the bare `..`) is not sent either.
    let stale = local
        .store
        .outbox()
        .enqueue(NewOutboxEntry {
            operation: pdchannels_model::Operation::DeleteConversation,
            channel_key: "wa".into(),
            conversation_key: Some("..".into()),
            request: serde_json::to_value(UpstreamRequest {
                method: "DELETE".into(),
                path: "/channels/wa/conversations/..".into(),
                body: None,
            })
            .unwrap(),
            idempotency_key: None,
        })
        .await
        .unwrap();
    local.relay.wake();
    super::wait_until_drained(&local.store, Duration::from_secs(10)).await;
    let entry = local.store.outbox().entry(stale).await.unwrap().unwrap();
    assert_eq!(entry.state, pdchannels_store::OutboxState::Dead);
    assert!(
        entry
            .last_error
            .as_deref()
            .unwrap_or_default()
            .contains("dot segment"),
        "{entry:?}"
    );

    // The channel and all three conversations are still there.
    assert_eq!(conversations(&upstream).await, [".", "..", "c1"]);
    assert_eq!(upstream.store.count_messages().await.unwrap(), 3);
    assert_eq!(
        local.store.outbox().stats().await.unwrap().delivered,
        3,
        "only the receives were sent"
    );
    local.stop.cancel();
}
