//! Our read API: stable cursor pagination and clear 400s.

use serde_json::{Value, json};

use crate::helpers::{body, message, spawn_app};

async fn all_pages(app: &crate::helpers::TestApp, path: &str, limit: u32) -> Vec<Vec<Value>> {
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

#[tokio::test]
async fn conversations_are_listed_newest_activity_first_across_pages() {
    let app = spawn_app().await;
    app.add_channel("wa").await;
    for i in 0..7 {
        app.receive(&message(&format!("m{i}"), &format!("c{i}"), "sent"))
            .await;
    }
    // c2 gets new activity: it moves to the front (a later millisecond than c6's creation).
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    app.receive(&message("m2", "c2", "read")).await;
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
    let app = spawn_app().await;
    app.add_channel("wa").await;
    for i in 0..5 {
        let mut m = message(&format!("m{i}"), "c1", "sent");
        m["created_at"] = json!(format!("2024-05-01 10:0{i}"));
        if i == 3 {
            m["sender_id"] = json!("agent");
        }
        app.receive(&m).await;
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
    let app = spawn_app().await;
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
    let app = spawn_app().await;
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
