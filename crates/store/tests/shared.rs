//! What the store offers for live views and for several processes on one database: live updates
//! (on both backends, and across stores sharing a PostgreSQL database) and the rate-limit
//! counters every hub on PostgreSQL shares.

use std::time::Duration;

use pdchannels_model::{
    AddChannel, Channels, DeleteChannel, DeleteConversation, Limits, ReceiveMessage,
};
use pdchannels_store::{Store, StoreEvent, Subscription};
use pdchannels_testkit::{TestDatabase, on_both_backends};
use serde_json::json;

fn channel(id: &str) -> AddChannel {
    AddChannel::parse(
        &json!({"name": format!("Channel {id}"), "provider_channel_id": id}),
        &Limits::default(),
    )
    .unwrap()
}

fn message(id: &str, conversation: &str, status: &str) -> ReceiveMessage {
    ReceiveMessage::parse(
        &json!({
            "id": id, "channel_id": "wa", "sender_id": "customer-1",
            "conversation_id": conversation, "message": "hello", "status": status,
            "created_at": "2024-05-01 10:00",
        }),
        &Limits::default(),
    )
    .unwrap()
}

fn stored(conversation: &str, id: &str, new: bool) -> StoreEvent {
    StoreEvent::MessageStored {
        channel_id: "wa".into(),
        conversation_id: conversation.into(),
        message_id: id.into(),
        new,
    }
}

/// The next event, failing the test if none comes within 5 seconds.
async fn next(events: &mut Subscription) -> StoreEvent {
    tokio::time::timeout(Duration::from_secs(5), events.next())
        .await
        .expect("an event within 5 s")
        .expect("the store is open")
}

/// Fails if an event comes within 300 ms.
async fn nothing_more(events: &mut Subscription) {
    if let Ok(event) = tokio::time::timeout(Duration::from_millis(300), events.next()).await {
        panic!("no event expected, got {event:?}");
    }
}

on_both_backends! {
    async fn every_change_is_an_event_once_durable_and_a_change_of_nothing_is_none(db) {
        let store = db.open().await;
        let mut events = store.subscribe().await.unwrap();

        store.add_channel(channel("wa")).await.unwrap();
        assert_eq!(next(&mut events).await, StoreEvent::ChannelAdded { channel_id: "wa".into() });

        store.receive_message(message("m1", "c1", "sent")).await.unwrap();
        assert_eq!(next(&mut events).await, stored("c1", "m1", true));
        // A newer status is a change; the same message again is not.
        store.receive_message(message("m1", "c1", "read")).await.unwrap();
        assert_eq!(next(&mut events).await, stored("c1", "m1", false));
        store.receive_message(message("m1", "c1", "read")).await.unwrap();
        nothing_more(&mut events).await;

        // A refused write (unknown channel) is no event either.
        let stray = ReceiveMessage::parse(
            &json!({"id": "m9", "channel_id": "nope", "sender_id": "s", "conversation_id": "c9",
                    "message": "x", "status": "sent", "created_at": "2024-05-01 10:00"}),
            &Limits::default(),
        )
        .unwrap();
        assert!(store.receive_message(stray).await.is_err());
        nothing_more(&mut events).await;

        let conversation = DeleteConversation::parse(
            &json!({"channel_id": "wa", "conversation_id": "c1"}),
            &Limits::default(),
        )
        .unwrap();
        store.delete_conversation(conversation).await.unwrap();
        assert_eq!(
            next(&mut events).await,
            StoreEvent::ConversationDeleted { channel_id: "wa".into(), conversation_id: "c1".into() }
        );
        let delete = DeleteChannel::parse(&json!({"id": "wa"}), &Limits::default()).unwrap();
        store.delete_channel(delete).await.unwrap();
        assert_eq!(next(&mut events).await, StoreEvent::ChannelDeleted { channel_id: "wa".into() });
        store.close().await;
    }

    async fn a_burst_of_concurrent_receives_is_one_event_each(db) {
        let store = db.open().await;
        store.add_channel(channel("wa")).await.unwrap();
        let mut events = store.subscribe().await.unwrap();
        let receives = (0..300).map(|i| {
            let store = store.clone();
            async move { store.receive_message(message(&format!("m{i}"), &format!("c{}", i % 7), "sent")).await }
        });
        for result in futures_util::future::join_all(receives).await {
            result.unwrap();
        }
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..300 {
            match next(&mut events).await {
                StoreEvent::MessageStored { message_id, new: true, .. } => assert!(seen.insert(message_id)),
                other => panic!("unexpected {other:?}"),
            }
        }
        nothing_more(&mut events).await;
        store.close().await;
    }
}

/// Two stores on one PostgreSQL database stand for two hubs: a subscriber of one hears what the
/// other wrote.
#[tokio::test]
async fn on_postgres_a_subscriber_hears_what_another_process_wrote() {
    let Some(db) = TestDatabase::postgres().await else {
        return;
    };
    let writer = db.open().await;
    let listener = Store::connect(db.database()).await.unwrap();
    let mut heard = listener.subscribe().await.unwrap();

    writer.add_channel(channel("wa")).await.unwrap();
    writer
        .receive_message(message("m1", "c1", "sent"))
        .await
        .unwrap();
    assert_eq!(
        next(&mut heard).await,
        StoreEvent::ChannelAdded {
            channel_id: "wa".into()
        }
    );
    assert_eq!(next(&mut heard).await, stored("c1", "m1", true));
    writer.close().await;
    listener.close().await;
}

/// The counters are one row per token, locked for each decision: decisions from two stores at
/// once (two hubs) never both see the same count.
#[tokio::test]
async fn on_postgres_rate_counters_are_shared_and_never_lose_a_count() {
    let Some(db) = TestDatabase::postgres().await else {
        return;
    };
    let a = db.open().await;
    let b = Store::connect(db.database()).await.unwrap();
    assert!(a.shares_rate_limits());
    let count = |store: &Store| {
        let store = store.clone();
        async move {
            store
                .update_rate_usage("tok_1", |usage, now| {
                    assert!(now > 1_700_000_000_000, "the database's clock in ms");
                    usage.spent_today += 1;
                    usage.spent_today
                })
                .await
                .unwrap()
                .unwrap()
        }
    };
    let counts = (0..100).map(|i| count(if i % 2 == 0 { &a } else { &b }));
    let mut seen: Vec<u64> = futures_util::future::join_all(counts).await;
    seen.sort_unstable();
    assert_eq!(
        seen,
        (1..=100).collect::<Vec<_>>(),
        "each decision saw its own count"
    );
    a.close().await;
    b.close().await;
}

#[tokio::test]
async fn on_sqlite_the_hub_keeps_its_own_counters() {
    let db = TestDatabase::sqlite();
    let store = db.open().await;
    assert!(!store.shares_rate_limits());
    assert_eq!(
        store.update_rate_usage("tok_1", |_, _| ()).await.unwrap(),
        None
    );
    store.close().await;
}

/// A PostgreSQL server that ends the hub's sessions (a restart, a failover, an administrator)
/// costs at most the writes in flight: the writer reconnects, and writes work again.
#[tokio::test]
async fn on_postgres_the_writer_reconnects_after_its_connection_is_ended() {
    let Some(db) = TestDatabase::postgres().await else {
        return;
    };
    let store = db.open().await;
    store.add_channel(channel("wa")).await.unwrap();
    let admin = pdchannels_testkit::test_postgres_url();
    let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&admin)
        .await
        .unwrap();
    let name = db.database().to_string();
    let name = name.rsplit('/').next().unwrap().to_owned();
    let ended: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
          WHERE datname = $1 AND pid <> pg_backend_pid()",
    )
    .bind(&name)
    .fetch_all(&mut admin)
    .await
    .unwrap();
    assert!(!ended.is_empty());

    // The first write after may fail (it finds the connection gone); the next ones work.
    let mut failures = Vec::new();
    for i in 0..5 {
        match store
            .receive_message(message(&format!("m{i}"), "c1", "sent"))
            .await
        {
            Ok(_) => break,
            Err(e) => failures.push(e.to_string()),
        }
    }
    assert!(failures.len() <= 1, "{failures:?}");
    for failure in &failures {
        assert!(
            failure.contains("reconnects by itself") || failure.contains("57P01"),
            "{failure}"
        );
        assert!(
            !failure.contains("--db PATH"),
            "a PostgreSQL failure is not a file's: {failure}"
        );
    }
    store
        .receive_message(message("after", "c1", "sent"))
        .await
        .unwrap();
    assert_eq!(store.write_failure().await, None, "healthy again");
    store.close().await;
}

/// Two processes updating the same messages in opposite orders make PostgreSQL pick deadlock
/// victims; a group that lost is sent again, so no caller sees the deadlock.
#[tokio::test]
async fn on_postgres_writes_that_lose_a_deadlock_are_sent_again_not_failed() {
    let Some(db) = TestDatabase::postgres().await else {
        return;
    };
    let a = db.open().await;
    let b = Store::connect(db.database()).await.unwrap();
    a.add_channel(channel("wa")).await.unwrap();
    let ids: Vec<String> = (0..40).map(|i| format!("m{i}")).collect();
    for id in &ids {
        a.receive_message(message(id, "c1", "sent")).await.unwrap();
    }
    let statuses = ["delivered", "read", "sent", "failed"];
    let mut writes = Vec::new();
    for round in 0..6 {
        for (i, id) in ids.iter().enumerate() {
            // Store a goes up the list, store b down it: opposite lock orders.
            let (store, id) = if (i + round) % 2 == 0 {
                (a.clone(), id.clone())
            } else {
                (b.clone(), ids[ids.len() - 1 - i].clone())
            };
            let status = statuses[(i + round) % statuses.len()];
            writes.push(async move {
                store
                    .receive_message(message(&id, "c1", status))
                    .await
                    .map(drop)
                    .map_err(|e| e.to_string())
            });
        }
    }
    let failed: Vec<String> = futures_util::future::join_all(writes)
        .await
        .into_iter()
        .filter_map(Result::err)
        .collect();
    assert!(
        failed.is_empty(),
        "{} failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(3)]
    );
    a.close().await;
    b.close().await;
}

on_both_backends! {
    async fn hubs_starting_at_once_on_a_new_database_create_one_first_token(db) {
        let stores = [db.open().await, db.open().await, db.open().await];
        let created = futures_util::future::join_all(
            stores.iter().map(|s| s.create_first_token("default")),
        )
        .await;
        let created: Vec<_> = created.into_iter().filter_map(Result::unwrap).collect();
        assert_eq!(created.len(), 1, "one first token between them");
        assert_eq!(stores[0].list_tokens().await.unwrap().len(), 1);
        assert!(stores[1].create_first_token("default").await.unwrap().is_none());
        for store in &stores {
            store.close().await;
        }
    }
}
