//! The errors axum and hyper would answer on their own (extractor rejections, 405, 413, 408)
//! come in the API's envelope with a hint, like every other error.

use serde_json::{Value, json};

use crate::helpers::body;
use pdchannels_testkit::TestHub;

/// Asserts an error envelope with `status` and `code`, and returns it.
async fn envelope(response: reqwest::Response, status: u16, code: &str) -> Value {
    assert_eq!(response.status(), status);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    let b = body(response).await;
    assert_eq!(b["success"], json!(false), "{b}");
    assert_eq!(b["data"], Value::Null, "{b}");
    assert_eq!(b["additional_data"]["code"], json!(code), "{b}");
    assert!(!b["error"].as_str().unwrap().is_empty(), "{b}");
    assert!(!b["error_info"].as_str().unwrap().is_empty(), "{b}");
    b
}

#[tokio::test]
async fn a_repeated_query_parameter_is_an_invalid_query_naming_it() {
    let app = TestHub::start().await;
    let response = app.get("/v1/channels?limit=1&limit=2").await;
    let b = envelope(response, 400, "INVALID_QUERY").await;
    assert_eq!(
        b["additional_data"]["errors"][0]["path"],
        json!("limit"),
        "{b}"
    );
    assert!(b["error"].as_str().unwrap().contains("duplicate"), "{b}");
}

#[tokio::test]
async fn a_path_that_is_not_utf8_is_an_invalid_path_naming_the_parameter() {
    let app = TestHub::start().await;
    let response = app.get("/v1/channels/%FF/conversations").await;
    let b = envelope(response, 400, "INVALID_PATH").await;
    assert_eq!(
        b["additional_data"]["errors"][0]["path"],
        json!("id"),
        "{b}"
    );

    let response = app.delete("/v1/channels/wa/conversations/%FF%FE").await;
    let b = envelope(response, 400, "INVALID_PATH").await;
    assert_eq!(
        b["additional_data"]["errors"][0]["path"],
        json!("conversation_id"),
        "{b}"
    );
}

#[tokio::test]
async fn a_wrong_method_is_a_405_envelope() {
    let app = TestHub::start().await;
    // Only standard methods here: the metrics test counts the `other` ones.
    for (method, path) in [
        (reqwest::Method::PUT, "/v1/channels"),
        (reqwest::Method::PATCH, "/api/v1/channels/messages/receive"),
        (reqwest::Method::POST, "/healthz"),
    ] {
        let response = app
            .client
            .request(method.clone(), app.url(path))
            .header("x-api-token", &app.token)
            .send()
            .await
            .unwrap();
        let b = envelope(response, 405, "METHOD_NOT_ALLOWED").await;
        assert!(
            b["error"].as_str().unwrap().contains(method.as_str()),
            "{b}"
        );
    }
}

async fn post_bytes(app: &TestHub, path: &str, bytes: usize) -> reqwest::Response {
    app.client
        .post(app.url(path))
        .header("x-api-token", &app.token)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(format!("\"{}\"", "x".repeat(bytes)))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_body_limit_is_configurable_and_its_413_names_the_flag() {
    let app = TestHub::start_with(|config| config.limits.max_body_bytes = 1000).await;
    for path in ["/v1/channels/messages/receive", "/mcp"] {
        let b = envelope(post_bytes(&app, path, 2000).await, 413, "PAYLOAD_TOO_LARGE").await;
        assert!(
            b["error"].as_str().unwrap().contains("1000 bytes"),
            "{path}: {b}"
        );
        assert!(
            b["error_info"]
                .as_str()
                .unwrap()
                .contains("--max-body-bytes"),
            "{path}: {b}"
        );
    }
    // Under the limit, the body is read (and refused for what it is, not its size).
    let response = post_bytes(&app, "/v1/channels/messages/receive", 500).await;
    envelope(response, 400, "INVALID_RECEIVE_MESSAGE_PAYLOAD").await;
}

/// What axum would answer bare (a 404 text, a 415 text, a 400 text for malformed JSON) comes in
/// the envelope with a hint, so a client behind a proxy can tell the hub's answer from the
/// proxy's.
#[tokio::test]
async fn unknown_paths_wrong_content_types_and_malformed_json_are_envelopes() {
    let app = TestHub::start().await;
    for path in ["/nope", "/v1/nope", "/v2/channels"] {
        let b = envelope(app.get(path).await, 404, "NOT_FOUND").await;
        assert!(b["error"].as_str().unwrap().contains(path), "{b}");
    }
    let wrong_type = app
        .client
        .post(app.url("/v1/channels"))
        .header("x-api-token", &app.token)
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    let b = envelope(wrong_type, 415, "INVALID_BODY").await;
    assert!(b["error"].as_str().unwrap().contains("text/plain"), "{b}");
    let malformed = app
        .client
        .post(app.url("/v1/channels/messages/receive"))
        .header("x-api-token", &app.token)
        .header("content-type", "application/json")
        .body("{\"id\": ")
        .send()
        .await
        .unwrap();
    let b = envelope(malformed, 400, "INVALID_RECEIVE_MESSAGE_PAYLOAD").await;
    assert!(b["error_info"].as_str().unwrap().contains("JSON"), "{b}");
}

#[tokio::test]
async fn a_wrong_method_on_healthz_says_get_only_not_the_channels_routes() {
    let app = TestHub::start().await;
    let response = app.client.post(app.url("/healthz")).send().await.unwrap();
    assert_eq!(response.status(), 405);
    let body = body(response).await;
    assert_eq!(
        body["additional_data"]["code"], "METHOD_NOT_ALLOWED",
        "{body}"
    );
    assert_eq!(body["error_info"], "/healthz takes GET only.", "{body}");
}
