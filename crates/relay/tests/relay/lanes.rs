//! A call that keeps failing holds back its own conversation only, however many calls queue
//! behind it, and ends dead after the configured bound, saying why.

use std::time::Duration;

use pdchannels_client::UpstreamRequest;
use pdchannels_relay::RelayConfig;
use pdchannels_store::{NewOutboxEntry, Store};

use super::proxy::{Fault, Proxy};
use super::{local_relay_with, message, spawn_upstream, test_config};

pub(super) async fn enqueue(store: &Store, id: &str, conversation: &str) -> i64 {
    let m = message(id, conversation, "2024-05-01T10:00:00.000Z");
    store
        .outbox()
        .enqueue(NewOutboxEntry {
            operation: pdchannels_model::Operation::ReceiveMessage,
            channel_key: "wa".into(),
            conversation_key: Some(conversation.into()),
            request: serde_json::to_value(UpstreamRequest::receive_message(&m)).unwrap(),
            idempotency_key: None,
        })
        .await
        .unwrap()
}

/// The upstream answers 500 to every call carrying message `poison`.
async fn poisoned_proxy(upstream: &str) -> Proxy {
    Proxy::spawn_by_request(upstream, |seen| {
        if seen.carries("\"poison\"") {
            Fault::Status(500)
        } else {
            Fault::Pass
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_head_with_600_calls_behind_it_holds_back_only_its_conversation() {
    let upstream = spawn_upstream().await;
    let proxy = poisoned_proxy(&upstream.address).await;
    let local = local_relay_with(&proxy.address, &upstream.token, test_config()).await;

    enqueue(&local.store, "poison", "stuck").await;
    for i in 0..600 {
        enqueue(&local.store, &format!("behind-{i}"), "stuck").await;
    }
    enqueue(&local.store, "free", "other").await;
    local.relay.wake();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while upstream
        .store
        .message("wa", "free")
        .await
        .unwrap()
        .is_none()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the other conversation's call was not delivered: {:?}",
            local.store.outbox().stats().await.unwrap()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The stuck conversation keeps its order: nothing behind the failing head went out.
    assert_eq!(upstream.store.count_messages().await.unwrap(), 1);
    assert!(proxy.requests() >= 2, "the failing head was tried");
    local.stop.cancel();
}

#[tokio::test]
async fn a_call_failing_max_attempts_times_ends_dead_saying_why_and_its_conversation_goes_on() {
    let upstream = spawn_upstream().await;
    let proxy = poisoned_proxy(&upstream.address).await;
    let local = local_relay_with(
        &proxy.address,
        &upstream.token,
        RelayConfig {
            max_attempts: Some(3),
            ..test_config()
        },
    )
    .await;
    let poison = enqueue(&local.store, "poison", "c1").await;
    enqueue(&local.store, "next", "c1").await;
    local.relay.wake();

    super::wait_until_drained(&local.store, Duration::from_secs(20)).await;
    let dead = local
        .store
        .outbox()
        .list(Some(pdchannels_store::OutboxState::Dead), 0, 10)
        .await
        .unwrap();
    assert_eq!(dead.len(), 1, "{dead:#?}");
    assert_eq!((dead[0].id, dead[0].attempts), (poison, 3));
    let why = dead[0].last_error.as_deref().unwrap();
    assert!(
        why.contains("gave up after 3 failed attempts")
            && why.contains("--max-attempts 3")
            && why.contains("upstream answered 500")
            && why.contains(&format!(
                "Fix the cause, then `pdchannels --db {} outbox retry {poison}`",
                local.store.database()
            )),
        "{why}"
    );
    assert!(
        upstream
            .store
            .message("wa", "next")
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn a_call_failing_longer_than_give_up_after_ends_dead_saying_why() {
    let upstream = spawn_upstream().await;
    let proxy = poisoned_proxy(&upstream.address).await;
    let local = local_relay_with(
        &proxy.address,
        &upstream.token,
        RelayConfig {
            give_up_after: Some(Duration::from_millis(300)),
            ..test_config()
        },
    )
    .await;
    let poison = enqueue(&local.store, "poison", "c1").await;
    local.relay.wake();

    super::wait_until_drained(&local.store, Duration::from_secs(20)).await;
    let dead = local.store.outbox().entry(poison).await.unwrap().unwrap();
    assert_eq!(dead.state, pdchannels_store::OutboxState::Dead);
    let why = dead.last_error.as_deref().unwrap();
    assert!(
        why.contains("--give-up-after 300ms") && why.contains("upstream answered 500"),
        "{why}"
    );
    assert!(dead.attempts >= 2, "{dead:?}");
}
