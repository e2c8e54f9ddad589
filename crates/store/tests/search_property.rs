//! The inbox's search against SQLite's FTS5 index, for any text: whatever a person types never
//! makes the query fail, and a message's own text always finds its conversation (the words the
//! inbox looks for are cut as the index cuts them).

use pdchannels_model::{AddChannel, Channels, Limits, ReceiveMessage};
use pdchannels_store::{InboxFilter, Store};
use pdchannels_testkit::TestDatabase;
use proptest::prelude::*;
use serde_json::json;

struct Fixture {
    runtime: tokio::runtime::Runtime,
    store: Store,
    token: String,
    _db: TestDatabase,
}

fn fixture() -> Fixture {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let db = TestDatabase::sqlite();
    let (store, token) = runtime.block_on(async {
        let store = db.open().await;
        store
            .add_channel(
                AddChannel::parse(
                    &json!({"name": "wa", "provider_channel_id": "wa"}),
                    &Limits::default(),
                )
                .unwrap(),
            )
            .await
            .unwrap();
        let token = store.create_token("ada").await.unwrap().info.id;
        (store, token)
    });
    Fixture {
        runtime,
        store,
        token,
        _db: db,
    }
}

fn search(fixture: &Fixture, text: &str) -> Vec<String> {
    let filter = InboxFilter {
        search: Some(text.to_owned()),
        closed: None,
        ..InboxFilter::default()
    };
    fixture
        .runtime
        .block_on(fixture.store.inbox_rows(&fixture.token, &filter, None, 50))
        .unwrap_or_else(|e| panic!("the search {text:?} failed: {e}"))
        .into_iter()
        .map(|r| r.conversation_id)
        .collect()
}

/// Words of letters (Latin, accented, Greek, CJK) and digits between spaces and punctuation.
fn text() -> impl Strategy<Value = String> {
    let word = "[a-zA-Z0-9éüñçÅßΩλ中文字]{1,8}";
    let gap = "[ .,!?'\"*()\\-:^+/@#%_]{1,3}";
    proptest::collection::vec((word, gap), 1..6)
        .prop_map(|parts| parts.into_iter().map(|(w, g)| w + &g).collect())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn any_search_answers_and_a_messages_own_text_finds_it(
        typed in any::<String>(),
        written in text(),
        n in 0u32..1_000_000,
    ) {
        let fixture = fixture();
        search(&fixture, &typed);
        let conversation = format!("c{n}");
        fixture.runtime.block_on(async {
            let message = ReceiveMessage::parse(
                &json!({"id": format!("m{n}"), "channel_id": "wa", "conversation_id": conversation,
                        "sender_id": "s", "message": written, "status": "sent",
                        "created_at": "2024-01-01T10:00:00Z"}),
                &Limits::default(),
            )
            .unwrap();
            fixture.store.receive_message(message).await.unwrap();
        });
        prop_assert_eq!(search(&fixture, &written), vec![conversation.clone()], "{:?}", written);
        search(&fixture, &typed);
    }
}
