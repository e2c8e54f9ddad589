//! Payloads and answers the API tests share. The hub itself is started with
//! `pdchannels_testkit::TestHub`, the one way tests start a hub.

use reqwest::Response;
use serde_json::{Value, json};

/// A valid receive payload for channel `wa`.
pub fn message(id: &str, conversation: &str, status: &str) -> Value {
    json!({
        "id": id, "channel_id": "wa", "sender_id": "customer-1", "conversation_id": conversation,
        "message": format!("text of {id}"), "status": status, "created_at": "2024-05-01 10:00",
        "attachments": []
    })
}

pub async fn body(response: Response) -> Value {
    response.json().await.unwrap()
}
