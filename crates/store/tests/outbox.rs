//! The outbox's order rules, leases and settlements, on a real SQLite file.

use pdchannels_store::{NewOutboxEntry, Settlement, Store};
use serde_json::json;

async fn open() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("outbox.db")).await.unwrap();
    (store, dir)
}

fn entry(channel: &str, conversation: Option<&str>, n: u32) -> NewOutboxEntry {
    NewOutboxEntry {
        operation: if conversation.is_some() {
            "receive_message"
        } else {
            "add_channel"
        },
        channel_key: channel.to_owned(),
        conversation_key: conversation.map(str::to_owned),
        request: json!({"method": "POST", "path": "/x", "body": {"n": n, "c": conversation}}),
        idempotency_key: None,
    }
}

#[tokio::test]
async fn every_call_is_a_row_of_its_own_however_alike() {
    let (store, _dir) = open().await;
    let a = store.enqueue(entry("wa", Some("c1"), 1)).await.unwrap();
    let b = store.enqueue(entry("wa", Some("c1"), 1)).await.unwrap();
    assert_ne!(a, b, "the same bytes again are a new call");
    assert_eq!(store.outbox_stats().await.unwrap().pending, 2);
}

#[tokio::test]
async fn only_a_call_with_an_idempotency_key_already_queued_is_collapsed() {
    let (store, _dir) = open().await;
    let keyed = |key: &str| NewOutboxEntry {
        idempotency_key: Some(key.to_owned()),
        ..entry("wa", Some("c1"), 1)
    };
    let a = store.enqueue(keyed("import:1:abc")).await.unwrap();
    store
        .settle(a, Settlement::Delivered("{}".into()))
        .await
        .unwrap();
    assert_eq!(store.enqueue(keyed("import:1:abc")).await.unwrap(), a);
    let other = store.enqueue(keyed("import:2:def")).await.unwrap();
    assert_ne!(other, a);
    let stats = store.outbox_stats().await.unwrap();
    assert_eq!((stats.delivered, stats.pending), (1, 1));
}

#[tokio::test]
async fn one_call_per_conversation_at_a_time_in_acceptance_order() {
    let (store, _dir) = open().await;
    let c1a = store.enqueue(entry("wa", Some("c1"), 1)).await.unwrap();
    let c1b = store.enqueue(entry("wa", Some("c1"), 2)).await.unwrap();
    let c2a = store.enqueue(entry("wa", Some("c2"), 3)).await.unwrap();
    let claimed: Vec<_> = store
        .claim(10, 60_000)
        .await
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(claimed, [c1a, c2a], "c1's second call waits for its first");
    assert!(
        store.claim(10, 60_000).await.unwrap().is_empty(),
        "leased calls are not claimed twice"
    );
    store
        .settle(c1a, Settlement::Delivered("{}".into()))
        .await
        .unwrap();
    let claimed: Vec<_> = store
        .claim(10, 60_000)
        .await
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(claimed, [c1b]);
}

#[tokio::test]
async fn channel_wide_calls_wait_for_and_hold_back_the_channels_conversations() {
    let (store, _dir) = open().await;
    let create = store.enqueue(entry("wa", None, 0)).await.unwrap();
    let m1 = store.enqueue(entry("wa", Some("c1"), 1)).await.unwrap();
    let other = store.enqueue(entry("fb", Some("c1"), 2)).await.unwrap();
    let claimed: Vec<_> = store
        .claim(10, 60_000)
        .await
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(claimed, [create, other]);
    store
        .settle(create, Settlement::Delivered("{}".into()))
        .await
        .unwrap();
    let claimed: Vec<_> = store
        .claim(10, 60_000)
        .await
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(claimed, [m1]);
}

#[tokio::test]
async fn a_retry_waits_until_due_and_keeps_its_conversation_waiting() {
    let (store, _dir) = open().await;
    let first = store.enqueue(entry("wa", Some("c1"), 1)).await.unwrap();
    store.enqueue(entry("wa", Some("c1"), 2)).await.unwrap();
    store.claim(10, 60_000).await.unwrap();
    let later = pdchannels_model::Timestamp::now().unix_millis() + 60_000;
    store
        .settle(
            first,
            Settlement::RetryAt {
                at: later,
                error: "upstream 503".into(),
                in_doubt: false,
            },
        )
        .await
        .unwrap();
    assert!(store.claim(10, 60_000).await.unwrap().is_empty());
    let shown = store.outbox_entry(first).await.unwrap().unwrap();
    assert_eq!(shown.last_error.as_deref(), Some("upstream 503"));
    assert_eq!(shown.attempts, 1);
    assert!(store.retry_outbox(first).await.unwrap());
    assert_eq!(store.claim(10, 60_000).await.unwrap()[0].id, first);
}

#[tokio::test]
async fn dead_calls_release_their_conversation_and_can_be_retried_or_dropped() {
    let (store, _dir) = open().await;
    let first = store.enqueue(entry("wa", Some("c1"), 1)).await.unwrap();
    let second = store.enqueue(entry("wa", Some("c1"), 2)).await.unwrap();
    store.claim(10, 60_000).await.unwrap();
    store
        .settle(first, Settlement::Dead("400 INVALID".into()))
        .await
        .unwrap();
    assert_eq!(store.claim(10, 60_000).await.unwrap()[0].id, second);
    let stats = store.outbox_stats().await.unwrap();
    assert_eq!((stats.pending, stats.dead), (1, 1));
    assert_eq!(
        store.outbox_list(Some("dead"), 0, 10).await.unwrap()[0].id,
        first
    );
    assert!(store.drop_outbox(first).await.unwrap());
    assert!(!store.drop_outbox(first).await.unwrap());
}

#[tokio::test]
async fn an_expired_lease_is_claimed_again() {
    let (store, _dir) = open().await;
    let id = store.enqueue(entry("wa", Some("c1"), 1)).await.unwrap();
    assert_eq!(store.claim(10, 0).await.unwrap()[0].id, id);
    let again = store.claim(10, 60_000).await.unwrap();
    assert_eq!(
        again[0].id, id,
        "a relay that died mid-send gives its calls back"
    );
    assert_eq!(again[0].attempts, 2);
}

#[tokio::test]
async fn leases_are_released_only_for_the_owners_named() {
    let (store, _dir) = open().await;
    let id = store.enqueue(entry("wa", Some("c1"), 1)).await.unwrap();
    assert_eq!(store.claim(10, 60_000).await.unwrap()[0].id, id);
    let me = pdchannels_store::lease_owner::this_process().to_owned();
    assert_eq!(store.lease_owners().await.unwrap(), vec![me.clone()]);

    assert!(!store.release_leases_of(&["1:1".to_owned()]).await.unwrap());
    assert!(
        store.claim(10, 60_000).await.unwrap().is_empty(),
        "another owner's lease holds"
    );
    assert!(store.release_leases_of(&[me]).await.unwrap());
    assert_eq!(store.claim(10, 60_000).await.unwrap()[0].id, id);
}
