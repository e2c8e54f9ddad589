//! The four Channels API routes: successes and every error the contract names.

use serde_json::json;

use crate::helpers::{body, message};
use pdchannels_testkit::TestHub;

#[tokio::test]
async fn add_channel_answers_the_contract_shape_under_both_base_paths() {
    let app = TestHub::start().await;
    for (path, id) in [("/v1/channels", "wa"), ("/api/v1/channels", "fb")] {
        let response = app
            .post_json(
                path,
                &json!({"name": "Sales", "provider_channel_id": id, "provider_type": "whatsapp"}),
            )
            .await;
        assert_eq!(response.status(), 200, "{path}");
        let body = body(response).await;
        assert_eq!(body["success"], json!(true));
        assert_eq!(body["data"]["provider_channel_id"], json!(id));
        assert_eq!(body["data"]["provider_type"], json!("whatsapp"));
        assert_eq!(body["data"]["template_support"], json!(false));
        assert!(body["data"]["id"].is_string());
    }
}

#[tokio::test]
async fn add_channel_with_a_bad_body_is_invalid_body_with_every_problem() {
    let app = TestHub::start().await;
    let response = app
        .post_json("/v1/channels", &json!({"name": "", "provider_type": "sms"}))
        .await;
    assert_eq!(response.status(), 400);
    let body = body(response).await;
    assert_eq!(body["success"], json!(false));
    assert_eq!(body["additional_data"]["code"], json!("INVALID_BODY"));
    let info = body["error_info"].as_str().unwrap();
    assert!(info.contains("`name`: must not be empty"), "{info}");
    assert!(
        info.contains("`provider_channel_id`: required field is missing"),
        "{info}"
    );
    assert!(info.contains("`provider_type`: must be one of"), "{info}");
    assert_eq!(
        body["additional_data"]["errors"].as_array().unwrap().len(),
        3
    );
}

#[tokio::test]
async fn receive_stores_and_echoes_the_normalised_message() {
    let app = TestHub::start().await;
    app.add_channel("wa").await;
    let mut payload = message("m1", "c1", "sent");
    payload["created_at"] = json!("2024-05-01T12:00:00+02:00");
    let response = app.receive(&payload).await;
    assert_eq!(response.status(), 200);
    let body = body(response).await;
    assert_eq!(
        body["data"]["created_at"],
        json!("2024-05-01T10:00:00.000Z")
    );
    assert_eq!(body["data"]["attachments"], json!([]));
    let stored = app.store.message("wa", "m1").await.unwrap().unwrap();
    assert_eq!(stored.message, body["data"]);
}

#[tokio::test]
async fn receive_replay_and_status_order() {
    let app = TestHub::start().await;
    app.add_channel("wa").await;
    let first = body(app.receive(&message("m1", "c1", "sent")).await).await;
    let replay = body(app.receive(&message("m1", "c1", "sent")).await).await;
    assert_eq!(first, replay);
    let read = body(app.receive(&message("m1", "c1", "read")).await).await;
    assert_eq!(read["data"]["status"], json!("read"));
    let late = app.receive(&message("m1", "c1", "delivered")).await;
    assert_eq!(late.status(), 200);
    assert_eq!(body(late).await["data"]["status"], json!("read"));
    assert_eq!(app.store.count_messages().await.unwrap(), 1);
}

#[tokio::test]
async fn receive_errors_each_get_their_status_and_code() {
    let app = TestHub::start().await;
    // Unknown channel.
    let response = app.receive(&message("m1", "c1", "sent")).await;
    assert_eq!(response.status(), 404);
    let b = body(response).await;
    assert_eq!(b["error"], json!("Channel not found."));
    assert_eq!(b["additional_data"]["code"], json!("NOT_FOUND"));

    app.add_channel("wa").await;
    // Invalid payload: every problem, in error_info and additional_data.errors.
    let response = app
        .receive(&json!({"id": "m1", "channel_id": "wa", "status": "seen", "conversationId": "x"}))
        .await;
    assert_eq!(response.status(), 400);
    let b = body(response).await;
    assert_eq!(
        b["additional_data"]["code"],
        json!("INVALID_RECEIVE_MESSAGE_PAYLOAD")
    );
    assert_eq!(b["additional_data"]["errors"].as_array().unwrap().len(), 6);
    assert!(
        b["error_info"]
            .as_str()
            .unwrap()
            .contains("did you mean `conversation_id`?")
    );

    // A message moving conversation.
    assert_eq!(
        app.receive(&message("m1", "c1", "sent")).await.status(),
        200
    );
    let response = app.receive(&message("m1", "c2", "sent")).await;
    assert_eq!(response.status(), 409);
    assert_eq!(
        body(response).await["additional_data"]["code"],
        json!("MESSAGE_CONVERSATION_CONFLICT")
    );
}

#[tokio::test]
async fn wrong_content_type_malformed_json_and_oversized_bodies_get_the_envelope() {
    let app = TestHub::start().await;
    let url = app.url("/v1/channels/messages/receive");
    let response = app
        .client
        .post(&url)
        .header("x-api-token", &app.token)
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 415);
    let b = body(response).await;
    assert_eq!(
        b["additional_data"]["code"],
        json!("INVALID_RECEIVE_MESSAGE_PAYLOAD")
    );
    assert!(
        b["error"]
            .as_str()
            .unwrap()
            .contains("Content-Type must be application/json")
    );

    let response = app
        .client
        .post(&url)
        .header("x-api-token", &app.token)
        .header("content-type", "application/json; charset=utf-8")
        .body("{\"id\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let b = body(response).await;
    assert!(
        b["error_info"].as_str().unwrap().contains("not valid JSON"),
        "{b}"
    );

    let huge = format!("{{\"message\": \"{}\"}}", "x".repeat(1024 * 1024 + 10));
    let response = app
        .client
        .post(&url)
        .header("x-api-token", &app.token)
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    assert_eq!(
        body(response).await["additional_data"]["code"],
        json!("PAYLOAD_TOO_LARGE")
    );
}

#[tokio::test]
async fn delete_conversation_and_channel() {
    let app = TestHub::start().await;
    app.add_channel("wa").await;
    assert_eq!(
        app.receive(&message("m1", "c1", "sent")).await.status(),
        200
    );
    assert_eq!(
        app.receive(&message("m2", "c2", "sent")).await.status(),
        200
    );

    let response = app.delete("/v1/channels/wa/conversations/c1").await;
    assert_eq!(response.status(), 200);
    assert_eq!(body(response).await, json!({"success": true}));
    let response = app.delete("/api/v1/channels/wa/conversations/c1").await;
    assert_eq!(response.status(), 404);
    assert_eq!(
        body(response).await["error"],
        json!("Conversation not found.")
    );

    let response = app.delete("/v1/channels/wa").await;
    assert_eq!(response.status(), 200);
    assert_eq!(body(response).await, json!({"success": true}));
    assert_eq!(app.store.count_messages().await.unwrap(), 0);
    let response = app.delete("/v1/channels/wa").await;
    assert_eq!(response.status(), 404);
    assert_eq!(body(response).await["error"], json!("Channel not found."));
    let response = app.delete("/v1/channels/wa/conversations/c2").await;
    assert_eq!(body(response).await["error"], json!("Channel not found."));
}

#[tokio::test]
async fn unknown_routes_get_the_envelope() {
    let app = TestHub::start().await;
    let response = app.get("/v2/channels").await;
    assert_eq!(response.status(), 404);
    let b = body(response).await;
    assert_eq!(b["success"], json!(false));
    assert!(b["error_info"].as_str().unwrap().contains("/v1"));
}

/// Regression (issue 8 item 4): a `created_at` past year 9999 in UTC panicked in the timestamp
/// code and the connection dropped; it is a 400 naming the field and the accepted range.
#[tokio::test]
async fn a_timestamp_past_year_9999_in_utc_is_a_400_naming_the_field() {
    let app = TestHub::start().await;
    app.add_channel("wa").await;
    let mut payload = message("m1", "c1", "sent");
    payload["created_at"] = json!("9999-12-31T23:59:59-01:00");
    let response = app.receive(&payload).await;
    assert_eq!(response.status(), 400);
    let b = body(response).await;
    assert_eq!(
        b["additional_data"]["code"],
        json!("INVALID_RECEIVE_MESSAGE_PAYLOAD")
    );
    let errors = b["additional_data"]["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{b}");
    assert_eq!(errors[0]["path"], json!("created_at"), "{b}");
    assert!(
        b["error_info"]
            .as_str()
            .unwrap()
            .contains("0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999Z"),
        "{b}"
    );
    // Nothing was stored, and the hub goes on answering.
    let conversations = app.get("/v1/channels/wa/conversations").await;
    assert_eq!(body(conversations).await["data"], json!([]));
}
