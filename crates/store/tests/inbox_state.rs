//! The inbox's state in the store, on both backends: the conversation's last message from the
//! customer and from us (kept by the insert trigger, and counted again when an app says who is
//! who), unread per person, awaiting reply, close and reopen, search by words and names, what
//! changed since a moment, and replies a stopped hub left `sending`.

use pdchannels_model::manifest::Manifest;
use pdchannels_model::{AddChannel, Channels, Limits, ReceiveMessage};
use pdchannels_store::{ConversationDetails, InboxFilter, NewApp, ParticipantDetails, Store};
use pdchannels_testkit::on_both_backends;
use serde_json::json;

fn channel(id: &str) -> AddChannel {
    AddChannel::parse(
        &json!({"name": id, "provider_channel_id": id}),
        &Limits::default(),
    )
    .unwrap()
}

async fn receive(store: &Store, conversation: &str, id: &str, sender: &str, text: &str) {
    let message = ReceiveMessage::parse(
        &json!({"id": id, "channel_id": "wa", "conversation_id": conversation, "sender_id": sender,
                "message": text, "status": "sent", "created_at": "2024-01-01T10:00:00Z"}),
        &Limits::default(),
    )
    .unwrap();
    store.receive_message(message).await.unwrap();
}

/// `(conversation, unread, awaiting)` of the list `token` sees with `filter`.
async fn list(store: &Store, token: &str, filter: &InboxFilter) -> Vec<(String, bool, bool)> {
    store
        .inbox_rows(token, filter, None, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.conversation_id, r.unread, r.awaiting_reply))
        .collect()
}

fn app() -> NewApp {
    NewApp {
        name: "wa-app".into(),
        client_id: "client".into(),
        client_secret: "secret".to_owned().into(),
        manifest: Manifest::parse(&json!({"version": "v202101", "endpoints": {
            "getConversations": "http://a.example/c/:providerChannelId",
            "getConversationById": "http://a.example/c/:providerChannelId/:sourceConversationId",
            "postMessage": "http://a.example/m/:providerChannelId",
        }}))
        .unwrap(),
        manifest_source: "manifest.json".into(),
        backfill_pages: 1,
    }
}

fn search(text: &str) -> InboxFilter {
    InboxFilter {
        search: Some(text.into()),
        ..InboxFilter::default()
    }
}

on_both_backends! {
    async fn unread_is_per_person_and_awaiting_follows_who_wrote_last(db) {
        let store = db.open().await;
        store.add_channel(channel("wa")).await.unwrap();
        let ada = store.create_token("ada").await.unwrap().info.id;
        let bob = store.create_token("bob").await.unwrap().info.id;
        receive(&store, "c1", "m1", "cust", "hello").await;
        let all = InboxFilter::default();
        assert_eq!(list(&store, &ada, &all).await, [("c1".into(), true, true)]);
        assert_eq!(store.inbox_unread_count(&ada, None).await.unwrap(), 1);

        assert!(store.mark_inbox_read(&ada, "wa", "c1").await.unwrap());
        assert!(!store.mark_inbox_read(&ada, "wa", "nope").await.unwrap());
        assert_eq!(list(&store, &ada, &all).await, [("c1".into(), false, true)]);
        assert_eq!(list(&store, &bob, &all).await, [("c1".into(), true, true)], "per person");
        assert_eq!(store.inbox_unread_count(&ada, None).await.unwrap(), 0);

        // The channel itself writing is us (a reply sent before the app described anything).
        receive(&store, "c1", "m2", "wa", "our answer").await;
        assert_eq!(list(&store, &ada, &all).await, [("c1".into(), false, false)]);
        // Who wrote last is told by the time each message was stored, in ms: not the same ms.
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
        receive(&store, "c1", "m3", "cust", "thanks").await;
        assert_eq!(list(&store, &ada, &all).await, [("c1".into(), true, true)]);
        // The one being opened counts as read (its marker may not be written yet).
        assert_eq!(store.inbox_unread_count(&ada, Some(("wa", "c1"))).await.unwrap(), 0);
        assert_eq!(store.inbox_unread_count(&ada, Some(("wa", "c2"))).await.unwrap(), 1);
        assert_eq!(store.inbox_unread_count(&ada, Some(("nope", "c1"))).await.unwrap(), 1);

        assert!(store.mark_inbox_read(&ada, "wa", "c1").await.unwrap());
        assert!(store.mark_inbox_unread(&ada, "wa", "c1").await.unwrap());
        assert_eq!(list(&store, &ada, &all).await, [("c1".into(), true, true)]);
        let unread_only = InboxFilter { unread_only: true, ..InboxFilter::default() };
        assert_eq!(list(&store, &ada, &unread_only).await.len(), 1);
        assert!(store.mark_inbox_read(&ada, "wa", "c1").await.unwrap());
        assert!(list(&store, &ada, &unread_only).await.is_empty());

        // An app says `agent` is us: what agent wrote before counts as ours from then on.
        receive(&store, "c2", "m4", "cust2", "hi").await;
        receive(&store, "c2", "m5", "agent", "hello, how can I help?").await;
        assert_eq!(list(&store, &ada, &all).await[0], ("c2".into(), true, true));
        let described = store
            .describe_conversation(
                ConversationDetails {
                    channel_id: "wa".into(),
                    conversation_id: "c2".into(),
                    link: None,
                    state: Some("open".into()),
                    seen: None,
                    next_messages_cursor: None,
                    participants: vec![
                        ParticipantDetails { id: "agent".into(), role: Some("source_user".into()), ..ParticipantDetails::default() },
                        ParticipantDetails { id: "cust2".into(), role: Some("end_user".into()), ..ParticipantDetails::default() },
                    ],
                },
                false,
            )
            .await
            .unwrap();
        assert!(described);
        assert_eq!(list(&store, &ada, &all).await[0], ("c2".into(), true, false), "we wrote last");
        let awaiting = InboxFilter { awaiting_only: true, ..InboxFilter::default() };
        assert_eq!(list(&store, &ada, &awaiting).await, [("c1".into(), false, true)]);

        // Close and reopen.
        assert!(store.set_conversation_closed("wa", "c1", true).await.unwrap());
        assert!(!store.set_conversation_closed("wa", "nope", true).await.unwrap());
        let open = InboxFilter { closed: Some(false), ..InboxFilter::default() };
        let closed = InboxFilter { closed: Some(true), ..InboxFilter::default() };
        assert_eq!(list(&store, &ada, &open).await.len(), 1);
        assert_eq!(list(&store, &ada, &closed).await[0].0, "c1");
        assert!(store.set_conversation_closed("wa", "c1", false).await.unwrap());
        assert_eq!(list(&store, &ada, &open).await.len(), 2);

        // What changed since a moment: both conversations, newest first.
        let changed = store.inbox_changes_since(0, 10).await.unwrap();
        assert_eq!(changed, [("wa".to_owned(), "c2".to_owned()), ("wa".to_owned(), "c1".to_owned())]);
        assert!(store.inbox_changes_since(i64::MAX, 10).await.unwrap().is_empty());
        store.close().await;
    }

    async fn search_finds_words_prefixes_and_names_and_follows_edits_and_deletes(db) {
        let store = db.open().await;
        store.add_channel(channel("wa")).await.unwrap();
        let ada = store.create_token("ada").await.unwrap().info.id;
        receive(&store, "c1", "m1", "cust1", "Is the blue bicycle in stock?").await;
        receive(&store, "c2", "m2", "cust2", "Where is my order 1234?").await;
        receive(&store, "c3", "m3", "maria.lopez", "Café crème").await;
        let found = |text: &'static str| {
            let store = &store;
            let ada = &ada;
            async move {
                list(store, ada, &search(text)).await.into_iter().map(|r| r.0).collect::<Vec<_>>()
            }
        };
        assert_eq!(found("bicycle").await, ["c1"]);
        assert_eq!(found("Blue STOCK").await, ["c1"]);
        assert_eq!(found("bicy").await, ["c1"]);
        // Prefixes of 1 to 3 characters (SQLite answers them from FTS5's prefix indexes).
        assert_eq!(found("bic").await, ["c1"]);
        assert_eq!(found("blue st").await, ["c1"]);
        assert_eq!(found("b").await, ["c1"]);
        assert_eq!(found("12").await, ["c2"]);
        assert_eq!(found("ma").await, ["c3"], "a participant's id");
        assert_eq!(found("1234").await, ["c2"]);
        assert_eq!(found("maria").await, ["c3"], "a participant's id");
        assert!(found("bicycle order").await.is_empty(), "every word, in one message");
        for odd in ["\"", "*", "a OR b", "NEAR(a b)", "%", "_", "'; DROP TABLE messages; --", "!!"] {
            list(&store, &ada, &search(odd)).await;
        }
        // An edit: the old words are gone.
        receive(&store, "c1", "m1", "cust1", "Now a scooter").await;
        assert_eq!(found("scooter").await, ["c1"]);
        assert!(found("bicycle").await.is_empty());
        let gone = pdchannels_model::DeleteConversation::parse(
            &json!({"channel_id": "wa", "conversation_id": "c2"}),
            &Limits::default(),
        )
        .unwrap();
        store.delete_conversation(gone).await.unwrap();
        assert!(found("order").await.is_empty());
        store.close().await;
    }

    async fn a_reply_a_stopped_hub_left_sending_becomes_failed_and_can_be_retried(db) {
        let store = db.open().await;
        store.add_channel(channel("wa")).await.unwrap();
        assert!(store.add_app(&app(), false).await.unwrap());
        store.link_channel("wa", Some("wa-app")).await.unwrap();
        receive(&store, "c1", "m1", "cust", "hello").await;
        let outgoing = store.start_outgoing("wa", "c1", "on it", None, None).await.unwrap().unwrap();
        let now = pdchannels_model::Timestamp::now().unix_millis();
        assert_eq!(store.fail_abandoned_replies(now - 60_000).await.unwrap(), 0, "a recent one is left alone");
        assert_eq!(store.outgoing(&outgoing.local_id).await.unwrap().unwrap().state, "sending");
        assert_eq!(store.fail_abandoned_replies(now + 1_000).await.unwrap(), 1);
        let failed = store.outgoing(&outgoing.local_id).await.unwrap().unwrap();
        assert_eq!(failed.state, "failed");
        assert!(failed.failure.unwrap().contains("may or may not have reached"));
        assert_eq!(store.fail_abandoned_replies(now + 1_000).await.unwrap(), 0, "once");
        let again = store
            .start_outgoing("wa", "c1", "", None, Some(&outgoing.local_id))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(again.local_id, outgoing.local_id, "a retry takes it back");
        store.close().await;
    }
}
