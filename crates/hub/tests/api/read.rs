//! Our read API: stable cursor pagination and clear 400s.

use serde_json::{Value, json};

use crate::helpers::{body, message};
use pdchannels_testkit::TestHub;

async fn all_pages(app: &pdchannels_testkit::TestHub, path: &str, limit: u32) -> Vec<Vec<Value>> {
    let mut pages = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let url = match &cursor {
            Some(c) => format!("{path}?limit={limit}&cursor={c}"),
            None => format!("{path}?limit={limit}"),
        };
        let response = app.get(&url).await;
        assert_eq!(response.status(), 200, "{url}");
        let b = body(response).await;
        pages.push(
            b["data"]
                .as_array()
                .cloned()
                .unwrap_or_else(|| vec![b["data"].clone()]),
        );
        match b["additional_data"]["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return pages,
        }
    }
}

fn now_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

#[tokio::test]
async fn without_a_limit_a_page_holds_50() {
    let app = TestHub::start().await;
    for i in 0..51 {
        app.add_channel(&format!("ch{i:02}")).await;
    }
    let first = body(app.get("/v1/channels").await).await;
    assert_eq!(first["data"].as_array().unwrap().len(), 50);
    assert_eq!(first["additional_data"]["limit"], json!(50));
    let cursor = first["additional_data"]["next_cursor"]
        .as_str()
        .expect("a next page")
        .to_owned();
    let rest = body(app.get(&format!("/v1/channels?cursor={cursor}")).await).await;
    assert_eq!(rest["data"].as_array().unwrap().len(), 1);
    assert_eq!(rest["data"][0]["provider_channel_id"], json!("ch50"));
    assert!(
        rest["additional_data"]
            .get("next_cursor")
            .is_none_or(Value::is_null)
    );
}

#[tokio::test]
async fn conversations_are_listed_newest_activity_first_across_pages() {
    let app = TestHub::start().await;
    app.add_channel("wa").await;
    for i in 0..7 {
        assert_eq!(
            app.receive(&message(&format!("m{i}"), &format!("c{i}"), "sent"))
                .await
                .status(),
            200
        );
    }
    // c2 gets new activity: it moves to the front. Its stamp must be a later millisecond than
    // c6's creation, so wait (on the clock, not a guessed delay) until the millisecond changes.
    let stored_by = now_ms();
    while now_ms() <= stored_by {
        tokio::task::yield_now().await;
    }
    assert_eq!(
        app.receive(&message("m2", "c2", "read")).await.status(),
        200
    );
    let pages = all_pages(&app, "/v1/channels/wa/conversations", 3).await;
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [3, 3, 1]);
    let order: Vec<_> = pages
        .concat()
        .iter()
        .map(|c| c["conversation_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(order[0], "c2");
    let mut unique = order.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        unique.len(),
        7,
        "every conversation exactly once: {order:?}"
    );
}

#[tokio::test]
async fn a_conversation_pages_its_messages_in_order() {
    let app = TestHub::start().await;
    app.add_channel("wa").await;
    for i in 0..5 {
        let mut m = message(&format!("m{i}"), "c1", "sent");
        m["created_at"] = json!(format!("2024-05-01 10:0{i}"));
        if i == 3 {
            m["sender_id"] = json!("agent");
        }
        assert_eq!(app.receive(&m).await.status(), 200);
    }
    let first = body(app.get("/v1/channels/wa/conversations/c1?limit=2").await).await;
    assert_eq!(
        first["data"]["participants"],
        json!(["customer-1", "agent"])
    );
    let ids: Vec<_> = first["data"]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].clone())
        .collect();
    assert_eq!(ids, [json!("m0"), json!("m1")]);
    let cursor = first["additional_data"]["next_cursor"].as_str().unwrap();
    let rest = body(
        app.get(&format!(
            "/v1/channels/wa/conversations/c1?limit=10&cursor={cursor}"
        ))
        .await,
    )
    .await;
    let ids: Vec<_> = rest["data"]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].clone())
        .collect();
    assert_eq!(ids, [json!("m2"), json!("m3"), json!("m4")]);
    assert!(rest["additional_data"]["next_cursor"].is_null());
}

#[tokio::test]
async fn channels_are_listed_with_a_cursor() {
    let app = TestHub::start().await;
    for id in ["a", "b", "c"] {
        app.add_channel(id).await;
    }
    let pages = all_pages(&app, "/api/v1/channels", 2).await;
    let ids: Vec<_> = pages
        .concat()
        .iter()
        .map(|c| c["provider_channel_id"].clone())
        .collect();
    assert_eq!(ids, [json!("a"), json!("b"), json!("c")]);
}

#[tokio::test]
async fn bad_cursors_and_limits_are_clear_400s() {
    let app = TestHub::start().await;
    app.add_channel("wa").await;
    for query in [
        "limit=0",
        "limit=501",
        "limit=ten",
        "cursor=zz",
        "cursor=00ff",
        "cursor=41",
    ] {
        let response = app
            .get(&format!("/v1/channels/wa/conversations?{query}"))
            .await;
        assert_eq!(response.status(), 400, "{query}");
        let b = body(response).await;
        assert_eq!(
            b["additional_data"]["code"],
            json!("INVALID_QUERY"),
            "{query}"
        );
    }
    let response = app.get("/v1/channels/nope/conversations").await;
    assert_eq!(response.status(), 404);
    let response = app.get("/v1/channels/wa/conversations/nope").await;
    assert_eq!(response.status(), 404);
    assert_eq!(
        body(response).await["error"],
        json!("Conversation not found.")
    );
}
