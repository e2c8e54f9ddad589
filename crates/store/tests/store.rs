//! The store against a real database: each test on a SQLite file in a temporary directory and
//! on a fresh PostgreSQL database (see `pdchannels_testkit::on_both_backends`).

use pdchannels_model::{
    AddChannel, Channels, ChannelsError, DeleteChannel, DeleteConversation, Limits, MessageStatus,
    ReceiveMessage, ReceiveOutcome,
};
use pdchannels_store::Store;
use pdchannels_testkit::{TestDatabase, on_both_backends};
use serde_json::{Value, json};

struct TestStore {
    store: Store,
    db: TestDatabase,
}

async fn open_store(db: TestDatabase) -> TestStore {
    TestStore {
        store: db.open().await,
        db,
    }
}

fn channel(id: &str) -> AddChannel {
    AddChannel::parse(
        &json!({"name": format!("Channel {id}"), "provider_channel_id": id}),
        &Limits::default(),
    )
    .unwrap()
}

fn payload(id: &str, conversation: &str, status: &str) -> Value {
    json!({
        "id": id, "channel_id": "wa", "sender_id": "customer-1", "conversation_id": conversation,
        "message": format!("text of {id}"), "status": status, "created_at": "2024-05-01 10:00",
    })
}

fn msg(value: &Value) -> ReceiveMessage {
    ReceiveMessage::parse(value, &Limits::default()).unwrap()
}

on_both_backends! {
    async fn a_message_creates_its_conversation_and_the_sender_joins(db) {
    let t = open_store(db).await;
    t.store.add_channel(channel("wa")).await.unwrap();
    let received = t
        .store
        .receive_message(msg(&payload("m1", "c1", "sent")))
        .await
        .unwrap();
    assert_eq!(received.outcome, ReceiveOutcome::Created);

    let mut other = payload("m2", "c1", "sent");
    other["sender_id"] = json!("agent-7");
    t.store.receive_message(msg(&other)).await.unwrap();

    let view = t.store.conversation("wa", "c1").await.unwrap().unwrap();
    assert_eq!(view.participants, ["customer-1", "agent-7"]);
    assert_eq!(view.messages.len(), 2);
    assert_eq!(view.messages[0].message["id"], "m1");
    assert_eq!(
        view.messages[0].message["created_at"],
        "2024-05-01T10:00:00.000Z"
    );
}
}

on_both_backends! {
    async fn receiving_the_same_payload_again_changes_nothing(db) {
    let t = open_store(db).await;
    t.store.add_channel(channel("wa")).await.unwrap();
    let first = t
        .store
        .receive_message(msg(&payload("m1", "c1", "sent")))
        .await
        .unwrap();
    let before = t.store.message("wa", "m1").await.unwrap().unwrap();
    let again = t
        .store
        .receive_message(msg(&payload("m1", "c1", "sent")))
        .await
        .unwrap();
    assert_eq!(again.outcome, ReceiveOutcome::Unchanged);
    assert_eq!(again.message, first.message);
    let after = t.store.message("wa", "m1").await.unwrap().unwrap();
    assert_eq!(before, after, "a replay must not even touch updated_at");
    assert_eq!(t.store.count_messages().await.unwrap(), 1);
}
}

on_both_backends! {
    async fn a_changed_payload_updates_the_message(db) {
    let t = open_store(db).await;
    t.store.add_channel(channel("wa")).await.unwrap();
    t.store
        .receive_message(msg(&payload("m1", "c1", "sent")))
        .await
        .unwrap();
    let mut edited = payload("m1", "c1", "sent");
    edited["message"] = json!("edited text");
    let received = t.store.receive_message(msg(&edited)).await.unwrap();
    assert_eq!(received.outcome, ReceiveOutcome::Updated);
    let stored = t.store.message("wa", "m1").await.unwrap().unwrap();
    assert_eq!(stored.message["message"], "edited text");
    assert_eq!(t.store.count_messages().await.unwrap(), 1);
}
}

on_both_backends! {
    async fn status_moves_forward_and_an_older_status_is_ignored(db) {
    let t = open_store(db).await;
    t.store.add_channel(channel("wa")).await.unwrap();
    let steps = [
        ("sent", ReceiveOutcome::Created, MessageStatus::Sent),
        ("read", ReceiveOutcome::Updated, MessageStatus::Read),
        ("delivered", ReceiveOutcome::Unchanged, MessageStatus::Read),
        ("failed", ReceiveOutcome::Unchanged, MessageStatus::Read),
        ("sent", ReceiveOutcome::Unchanged, MessageStatus::Read),
    ];
    for (status, outcome, stored) in steps {
        let r = t
            .store
            .receive_message(msg(&payload("m1", "c1", status)))
            .await
            .unwrap();
        assert_eq!(
            (r.outcome, r.message.status),
            (outcome, stored),
            "after {status}"
        );
    }
    let stored = t.store.message("wa", "m1").await.unwrap().unwrap();
    assert_eq!(stored.message["status"], "read");
}
}

on_both_backends! {
    async fn failed_may_follow_delivered_and_then_sticks(db) {
    let t = open_store(db).await;
    t.store.add_channel(channel("wa")).await.unwrap();
    for status in ["sent", "delivered", "failed", "read"] {
        t.store
            .receive_message(msg(&payload("m1", "c1", status)))
            .await
            .unwrap();
    }
    let stored = t.store.message("wa", "m1").await.unwrap().unwrap();
    assert_eq!(stored.message["status"], "failed");
}
}

on_both_backends! {
    async fn an_older_status_with_new_content_keeps_the_newer_status(db) {
    let t = open_store(db).await;
    t.store.add_channel(channel("wa")).await.unwrap();
    t.store
        .receive_message(msg(&payload("m1", "c1", "read")))
        .await
        .unwrap();
    let mut late = payload("m1", "c1", "delivered");
    late["message"] = json!("edited");
    let r = t.store.receive_message(msg(&late)).await.unwrap();
    assert_eq!(r.outcome, ReceiveOutcome::Updated);
    assert_eq!(r.message.status, MessageStatus::Read);
    assert_eq!(r.message.message.as_str(), "edited");
}
}

on_both_backends! {
    async fn a_message_cannot_move_to_another_conversation(db) {
    let t = open_store(db).await;
    t.store.add_channel(channel("wa")).await.unwrap();
    t.store
        .receive_message(msg(&payload("m1", "c1", "sent")))
        .await
        .unwrap();
    let err = t
        .store
        .receive_message(msg(&payload("m1", "c2", "read")))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ChannelsError::MessageInOtherConversation { .. }),
        "{err:?}"
    );
    assert_eq!(err.http_status(), 409);
    let stored = t.store.message("wa", "m1").await.unwrap().unwrap();
    assert_eq!(stored.message["conversation_id"], "c1");
    assert_eq!(stored.message["status"], "sent");
    assert!(t.store.conversation("wa", "c2").await.unwrap().is_none());
}
}

on_both_backends! {
    async fn an_unknown_channel_is_not_found_and_nothing_is_stored(db) {
    let t = open_store(db).await;
    let err = t
        .store
        .receive_message(msg(&payload("m1", "c1", "sent")))
        .await
        .unwrap_err();
    assert!(matches!(err, ChannelsError::ChannelNotFound { .. }));
    assert_eq!(err.to_string(), "Channel not found.");
    assert_eq!(t.store.count_messages().await.unwrap(), 0);
}
}

on_both_backends! {
    async fn adding_a_channel_twice_updates_it_and_keeps_its_id(db) {
    let t = open_store(db).await;
    let first = t.store.add_channel(channel("wa")).await.unwrap();
    let renamed = AddChannel::parse(
        &json!({"name": "Renamed", "provider_channel_id": "wa", "provider_type": "whatsapp"}),
        &Limits::default(),
    )
    .unwrap();
    let second = t.store.add_channel(renamed).await.unwrap();
    assert_eq!(first.id, second.id);
    assert_eq!(first.created_at, second.created_at);
    assert_eq!(second.name.as_str(), "Renamed");
}
}

on_both_backends! {
    async fn deleting_a_conversation_removes_its_messages_and_participants_only(db) {
    let t = open_store(db).await;
    t.store.add_channel(channel("wa")).await.unwrap();
    for (id, conv) in [("m1", "c1"), ("m2", "c1"), ("m3", "c2")] {
        t.store
            .receive_message(msg(&payload(id, conv, "sent")))
            .await
            .unwrap();
    }
    let request = DeleteConversation::parse(
        &json!({"channel_id": "wa", "conversation_id": "c1"}),
        &Limits::default(),
    )
    .unwrap();
    t.store.delete_conversation(request.clone()).await.unwrap();
    assert!(t.store.conversation("wa", "c1").await.unwrap().is_none());
    assert!(t.store.message("wa", "m1").await.unwrap().is_none());
    assert_eq!(t.store.count_messages().await.unwrap(), 1);
    let err = t.store.delete_conversation(request).await.unwrap_err();
    assert!(matches!(err, ChannelsError::ConversationNotFound { .. }));

    // The same message id may now start over in another conversation.
    t.store
        .receive_message(msg(&payload("m1", "c3", "sent")))
        .await
        .unwrap();
}
}

on_both_backends! {
    async fn deleting_a_channel_removes_everything_under_it(db) {
    let t = open_store(db).await;
    t.store.add_channel(channel("wa")).await.unwrap();
    t.store.add_channel(channel("fb")).await.unwrap();
    t.store
        .receive_message(msg(&payload("m1", "c1", "sent")))
        .await
        .unwrap();
    let mut kept = payload("m1", "c1", "sent");
    kept["channel_id"] = json!("fb");
    t.store.receive_message(msg(&kept)).await.unwrap();

    let delete = DeleteChannel::parse(&json!({"id": "wa"}), &Limits::default()).unwrap();
    t.store.delete_channel(delete.clone()).await.unwrap();
    assert_eq!(t.store.channel_counts("wa").await.unwrap(), None);
    assert_eq!(t.store.channel_counts("fb").await.unwrap(), Some((1, 1)));
    assert_eq!(t.store.count_messages().await.unwrap(), 1);
    assert!(matches!(
        t.store.delete_channel(delete).await.unwrap_err(),
        ChannelsError::ChannelNotFound { .. }
    ));
    let err = DeleteConversation::parse(
        &json!({"channel_id": "wa", "conversation_id": "c1"}),
        &Limits::default(),
    )
    .unwrap();
    assert!(matches!(
        t.store.delete_conversation(err).await.unwrap_err(),
        ChannelsError::ChannelNotFound { .. }
    ));
}
}

on_both_backends! {
    async fn acknowledged_writes_survive_reopening_the_database(db) {
    let t = open_store(db).await;
    t.store.add_channel(channel("wa")).await.unwrap();
    for i in 0..50 {
        t.store
            .receive_message(msg(&payload(&format!("m{i}"), "c1", "delivered")))
            .await
            .unwrap();
    }
    t.store.close().await;
    let err = t
        .store
        .receive_message(msg(&payload("late", "c1", "sent")))
        .await
        .unwrap_err();
    assert!(matches!(err, ChannelsError::Unavailable(_)));

    let reopened = Store::connect(t.db.database()).await.unwrap();
    assert_eq!(reopened.count_messages().await.unwrap(), 50);
    let view = reopened.conversation("wa", "c1").await.unwrap().unwrap();
    assert_eq!(view.messages.len(), 50);
    assert!(
        view.messages
            .iter()
            .all(|m| m.message["status"] == "delivered")
    );
    reopened.close().await;
}
}

on_both_backends! {
    async fn concurrent_writers_are_all_committed_exactly_once(db) {
    let t = open_store(db).await;
    t.store.add_channel(channel("wa")).await.unwrap();
    let groups_before = t.store.write_groups();
    let mut tasks = Vec::new();
    for w in 0..32 {
        let store = t.store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..50 {
                let m = msg(&payload(&format!("w{w}-m{i}"), &format!("c{w}"), "sent"));
                assert_eq!(
                    store.receive_message(m).await.unwrap().outcome,
                    ReceiveOutcome::Created
                );
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(t.store.count_messages().await.unwrap(), 32 * 50);
    assert_eq!(
        t.store.channel_counts("wa").await.unwrap(),
        Some((32, 1600))
    );
    // Group commit: 32 writers each waiting for its own fsync would take 1600 commits; the
    // writer takes whatever is queued into one, so far fewer happen. Without grouping this is
    // 1600 (checked by removing the grouping loop in `writer::run`).
    let groups = t.store.write_groups() - groups_before;
    assert!(
        groups <= 1600 / 4,
        "1600 concurrent writes took {groups} commits: they were not grouped"
    );
}
}

on_both_backends! {
    async fn a_group_mixing_failures_and_successes_answers_each_correctly(db) {
    let t = open_store(db).await;
    t.store.add_channel(channel("wa")).await.unwrap();
    t.store
        .receive_message(msg(&payload("m1", "c1", "sent")))
        .await
        .unwrap();
    // Sent together so the writer takes them as one group (a current-thread runtime: the
    // writer runs only once all three are queued).
    let mut unknown = payload("x", "c1", "sent");
    unknown["channel_id"] = json!("nope");
    let groups_before = t.store.write_groups();
    let (a, b, c) = tokio::join!(
        t.store.receive_message(msg(&payload("m2", "c1", "sent"))),
        t.store.receive_message(msg(&unknown)),
        t.store.receive_message(msg(&payload("m1", "c9", "sent"))),
    );
    assert_eq!(a.unwrap().outcome, ReceiveOutcome::Created);
    assert!(matches!(
        b.unwrap_err(),
        ChannelsError::ChannelNotFound { .. }
    ));
    assert!(matches!(
        c.unwrap_err(),
        ChannelsError::MessageInOtherConversation { .. }
    ));
    assert_eq!(
        t.store.write_groups() - groups_before,
        1,
        "the three writes were one group"
    );
    assert_eq!(t.store.count_messages().await.unwrap(), 2);
}
}

#[tokio::test]
async fn opening_a_path_in_a_missing_directory_says_which_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no/such/dir/channels.db");
    let err = Store::open(&path).await.unwrap_err();
    assert!(err.to_string().contains("no/such/dir/channels.db"), "{err}");
}

on_both_backends! {
    async fn the_same_id_twice_in_one_group_is_created_then_updated(db) {
    let t = open_store(db).await;
    t.store.add_channel(channel("wa")).await.unwrap();
    let groups_before = t.store.write_groups();
    let (first, second, other) = tokio::join!(
        t.store.receive_message(msg(&payload("m1", "c1", "sent"))),
        t.store.receive_message(msg(&payload("m1", "c1", "read"))),
        t.store.receive_message(msg(&payload("m2", "c1", "sent"))),
    );
    assert_eq!(first.unwrap().outcome, ReceiveOutcome::Created);
    assert_eq!(second.unwrap().outcome, ReceiveOutcome::Updated);
    assert_eq!(other.unwrap().outcome, ReceiveOutcome::Created);
    assert_eq!(t.store.write_groups() - groups_before, 1, "one group");
    let stored = t.store.message("wa", "m1").await.unwrap().unwrap();
    assert_eq!(stored.message["status"], "read");
    let view = t.store.conversation("wa", "c1").await.unwrap().unwrap();
    assert_eq!(view.messages.len(), 2);
}
}

on_both_backends! {
    async fn a_group_of_receives_and_other_writes_answers_each_as_in_order(db) {
    let t = open_store(db).await;
    t.store.add_channel(channel("wa")).await.unwrap();
    t.store
        .receive_message(msg(&payload("m1", "c1", "sent")))
        .await
        .unwrap();
    // One group: a channel added, then a receive into it; new messages (one id twice), a known
    // id with a newer status, a known id in another conversation. Its new messages are inserted
    // in one statement before the other writes: each is still answered as if applied in order.
    let mut into_added = payload("n1", "c1", "sent");
    into_added["channel_id"] = json!("tg");
    let groups_before = t.store.write_groups();
    let (added, into_added, m2, m3_sent, m3_read, m1, moved) = tokio::join!(
        t.store.add_channel(channel("tg")),
        t.store.receive_message(msg(&into_added)),
        t.store.receive_message(msg(&payload("m2", "c1", "sent"))),
        t.store.receive_message(msg(&payload("m3", "c2", "sent"))),
        t.store.receive_message(msg(&payload("m3", "c2", "read"))),
        t.store.receive_message(msg(&payload("m1", "c1", "read"))),
        t.store.receive_message(msg(&payload("m1", "c9", "sent"))),
    );
    added.unwrap();
    assert_eq!(into_added.unwrap().outcome, ReceiveOutcome::Created);
    assert_eq!(m2.unwrap().outcome, ReceiveOutcome::Created);
    assert_eq!(m3_sent.unwrap().outcome, ReceiveOutcome::Created);
    assert_eq!(m3_read.unwrap().outcome, ReceiveOutcome::Updated);
    assert_eq!(m1.unwrap().outcome, ReceiveOutcome::Updated);
    assert!(matches!(
        moved.unwrap_err(),
        ChannelsError::MessageInOtherConversation { .. }
    ));
    assert_eq!(t.store.write_groups() - groups_before, 1, "one group");
    assert_eq!(t.store.count_messages().await.unwrap(), 4);
    for (id, status) in [("m1", "read"), ("m3", "read")] {
        let stored = t.store.message("wa", id).await.unwrap().unwrap();
        assert_eq!(stored.message["status"], status, "{id}");
    }
    assert_eq!(
        t.store.channel_counts("wa").await.unwrap(),
        Some((2, 3))
    );
}
}

on_both_backends! {
    async fn a_group_of_known_ids_answers_unchanged_and_applies_edits_in_order(db) {
    let t = open_store(db).await;
    t.store.add_channel(channel("wa")).await.unwrap();
    for id in ["m1", "m2", "m3"] {
        t.store
            .receive_message(msg(&payload(id, "c1", "delivered")))
            .await
            .unwrap();
    }
    let mut edited = payload("m1", "c1", "delivered");
    edited["message"] = json!("edited");
    // One group: m2 again (unchanged), m3 with an older status (unchanged: the newer stays),
    // m1 edited and then m1 as stored (in that order, so the stored text wins), m2 in another
    // conversation (refused).
    let groups_before = t.store.write_groups();
    let (m2, m3, m1_edit, m1_back, moved) = tokio::join!(
        t.store
            .receive_message(msg(&payload("m2", "c1", "delivered"))),
        t.store.receive_message(msg(&payload("m3", "c1", "sent"))),
        t.store.receive_message(msg(&edited)),
        t.store
            .receive_message(msg(&payload("m1", "c1", "delivered"))),
        t.store.receive_message(msg(&payload("m2", "c9", "sent"))),
    );
    assert_eq!(m2.unwrap().outcome, ReceiveOutcome::Unchanged);
    let m3 = m3.unwrap();
    assert_eq!(m3.outcome, ReceiveOutcome::Unchanged);
    assert_eq!(m3.message.status, MessageStatus::Delivered);
    assert_eq!(m1_edit.unwrap().outcome, ReceiveOutcome::Updated);
    assert_eq!(m1_back.unwrap().outcome, ReceiveOutcome::Updated);
    assert!(matches!(
        moved.unwrap_err(),
        ChannelsError::MessageInOtherConversation { .. }
    ));
    assert_eq!(t.store.write_groups() - groups_before, 1, "one group");
    let stored = t.store.message("wa", "m1").await.unwrap().unwrap();
    assert_eq!(stored.message["message"], "text of m1");
}
}
