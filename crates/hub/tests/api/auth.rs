//! Tokens as Pipedrive accepts them, and every way of failing.

use serde_json::json;

use crate::helpers::body;
use pdchannels_testkit::TestHub;

#[tokio::test]
async fn the_three_token_forms_are_accepted() {
    let app = TestHub::start().await;
    let payload = json!({"name": "x", "provider_channel_id": "wa"});
    let header = app
        .client
        .post(app.url("/v1/channels"))
        .header("x-api-token", &app.token)
        .json(&payload)
        .send()
        .await
        .unwrap();
    assert_eq!(header.status(), 200);
    let query = app
        .client
        .post(app.url(&format!("/v1/channels?api_token={}", app.token)))
        .json(&payload)
        .send()
        .await
        .unwrap();
    assert_eq!(query.status(), 200);
    let bearer = app
        .client
        .post(app.url("/v1/channels"))
        .bearer_auth(&app.token)
        .json(&payload)
        .send()
        .await
        .unwrap();
    assert_eq!(bearer.status(), 200);
}

#[tokio::test]
async fn missing_wrong_and_malformed_tokens_get_pipedrives_401() {
    let app = TestHub::start().await;
    let requests = [
        app.client.get(app.url("/v1/channels")),
        app.client
            .get(app.url("/v1/channels"))
            .header("x-api-token", "pdc_wrong"),
        app.client.get(app.url("/v1/channels?api_token=")),
        app.client
            .get(app.url("/v1/channels"))
            .header("authorization", "Basic abc"),
        app.client.get(app.url("/metrics")),
        app.client.post(app.url("/mcp")),
    ];
    for request in requests {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401);
        let b = body(response).await;
        assert_eq!(b["success"], json!(false));
        assert_eq!(b["error"], json!("unauthorized access"));
        assert_eq!(b["errorCode"], json!(401));
        assert!(
            b["error_info"]
                .as_str()
                .unwrap()
                .contains("pdchannels token create")
        );
    }
}

#[tokio::test]
async fn a_revoked_token_stops_working() {
    let app = TestHub::start().await;
    let extra = app.store.create_token("temporary").await.unwrap();
    let secret = secrecy::ExposeSecret::expose_secret(&extra.secret).to_owned();
    assert!(app.store.revoke_token(&extra.info.id).await.unwrap());
    let response = app
        .client
        .get(app.url("/v1/channels"))
        .header("x-api-token", &secret)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
}

#[tokio::test]
async fn healthz_needs_no_token_and_metrics_count_requests() {
    use pdchannels_testkit::sample;
    let app = TestHub::start().await;
    let health = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    app.add_channel("wa").await;
    // Every hub of this test binary shares one metrics recorder and other tests run at the same
    // time, so this compares values before and after and asserts lower bounds; the exact counts
    // are asserted against a hub of its own process (crates/cli/tests/serve.rs).
    let before = app.get("/metrics").await.text().await.unwrap();
    assert_eq!(
        app.receive(&crate::helpers::message("m1", "c1", "sent"))
            .await
            .status(),
        200
    );
    let after = app.get("/metrics").await.text().await.unwrap();
    let delta = |name: &str, labels: &[(&str, &str)]| {
        sample(&after, name, labels) - sample(&before, name, labels)
    };
    let receive = ("route", "/v1/channels/messages/receive");
    assert!(
        delta(
            "pdchannels_http_requests_total",
            &[receive, ("method", "POST"), ("status", "200")]
        ) >= 1.0,
        "{after}"
    );
    assert!(
        delta("pdchannels_receive_duration_seconds_count", &[]) >= 1.0,
        "{after}"
    );
    assert!(
        delta(
            "pdchannels_messages_stored_total",
            &[("outcome", "created")]
        ) >= 1.0,
        "{after}"
    );
}

#[test]
fn token_secrets_never_show_in_debug_output() {
    let secret: secrecy::SecretString = "pdc_0123456789abcdef".to_owned().into();
    assert!(!format!("{secret:?}").contains("0123456789"));
}

/// Sends `request` (raw bytes, so the query can hold what no URL library would write) and
/// answers the whole response as text; fails instead of hanging if the hub never answers.
async fn raw_exchange(address: &str, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let host = address.trim_start_matches("http://");
        let mut stream = tokio::net::TcpStream::connect(host).await.unwrap();
        stream.write_all(request).await.unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.unwrap();
        String::from_utf8_lossy(&response).into_owned()
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), exchange)
        .await
        .expect("the hub answers within 10 s")
}

/// Regression (issue 8 item 5): a malformed percent-escape next to non-ASCII bytes in
/// `?api_token=` panicked in the hand-written decoder and the connection dropped unanswered.
#[tokio::test]
async fn malformed_query_tokens_get_the_401_envelope_not_a_dropped_connection() {
    let app = TestHub::start().await;
    let queries: [&[u8]; 7] = [
        b"api_token=%E9%%C3%A9",
        b"api_token=%x\xC3\xA9",
        b"api_token=%\xC3\xA9",
        b"api_token=\xC3\xA9%%41\xE2\x82\xAC%",
        b"api_token=%",
        b"api_token=%%%%",
        b"api_token=%zz&api_token=x",
    ];
    for query in queries {
        let mut request = b"GET /v1/channels?".to_vec();
        request.extend_from_slice(query);
        request.extend_from_slice(b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
        let response = raw_exchange(&app.address, &request).await;
        let shown = String::from_utf8_lossy(query);
        assert!(response.starts_with("HTTP/1.1 401 "), "{shown}: {response}");
        let body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
        let body: serde_json::Value = serde_json::from_str(body).expect("a JSON body");
        assert_eq!(body["error"], json!("unauthorized access"), "{shown}");
        assert_eq!(body["errorCode"], json!(401), "{shown}");
    }
    // The hub still answers a valid token afterwards.
    let ok = raw_exchange(
        &app.address,
        format!(
            "GET /v1/channels?api_token={} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
            app.token
        )
        .as_bytes(),
    )
    .await;
    assert!(ok.starts_with("HTTP/1.1 200 "), "{ok}");
}

/// A token that is wrong or revoked gets a hint of its own, not the "send a token" one meant
/// for a request without any; neither repeats the token sent.
#[tokio::test]
async fn wrong_and_revoked_tokens_get_their_own_hints_without_echoing_the_token() {
    let app = TestHub::start().await;
    let info = |token: Option<&str>| {
        let mut request = app.client.get(app.url("/v1/channels"));
        if let Some(token) = token {
            request = request.header("x-api-token", token);
        }
        async move {
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 401);
            let b = body(response).await;
            assert_eq!(b["error"], json!("unauthorized access"), "{b}");
            b["error_info"].as_str().unwrap().to_owned()
        }
    };
    let missing = info(None).await;
    assert!(missing.contains("Send an API token"), "{missing}");

    let wrong = "pdc_not-a-token-of-this-hub";
    let unknown = info(Some(wrong)).await;
    assert!(unknown.contains("not one this hub issued"), "{unknown}");
    assert!(unknown.contains("pdchannels token list"), "{unknown}");
    assert!(
        !unknown.contains(wrong),
        "the token is never echoed: {unknown}"
    );

    let extra = app.store.create_token("old").await.unwrap();
    let secret = secrecy::ExposeSecret::expose_secret(&extra.secret).to_owned();
    assert!(app.store.revoke_token(&extra.info.id).await.unwrap());
    let revoked = info(Some(&secret)).await;
    let year = pdchannels_model::Timestamp::now().to_string()[..4].to_owned();
    assert!(revoked.contains(&format!("revoked on {year}")), "{revoked}");
    assert!(revoked.contains("pdchannels token create"), "{revoked}");
    assert!(
        !revoked.contains(&secret),
        "the token is never echoed: {revoked}"
    );
}
