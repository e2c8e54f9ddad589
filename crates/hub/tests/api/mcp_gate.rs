//! /mcp's gate over real HTTP: JSON-RPC errors for faulty bodies, bounded sessions that belong
//! to their token, idle expiry, and tool calls counted against the token's rate limits.
//! Every client here has a deadline, so a missing answer fails the test instead of hanging it.

use std::time::{Duration, Instant};

use pdchannels_hub::{McpSessionLimits, RateLimits};
use pdchannels_testkit::TestHub;
use reqwest::{Client, Response};
use secrecy::ExposeSecret;
use serde_json::{Value, json};

const DEADLINE: Duration = Duration::from_secs(10);

fn client() -> Client {
    Client::builder().timeout(DEADLINE).build().unwrap()
}

async fn post(app: &TestHub, token: &str, session: Option<&str>, body: Vec<u8>) -> Response {
    let mut request = client()
        .post(app.url("/mcp"))
        .bearer_auth(token)
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .body(body);
    if let Some(session) = session {
        request = request.header("mcp-session-id", session);
    }
    request.send().await.unwrap()
}

fn initialize_body() -> Vec<u8> {
    json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "gate-test", "version": "0"}}})
    .to_string()
    .into_bytes()
}

/// Opens a session for `token`: its id, or the refusal.
async fn open_session(app: &TestHub, token: &str) -> Result<String, Response> {
    let response = post(app, token, None, initialize_body()).await;
    if response.status() != 200 {
        return Err(response);
    }
    let id = response.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    response.text().await.unwrap();
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let ack = post(app, token, Some(&id), initialized.to_string().into_bytes()).await;
    assert!(ack.status().is_success(), "{}", ack.status());
    Ok(id)
}

async fn close_session(app: &TestHub, token: &str, id: &str) -> Response {
    client()
        .delete(app.url("/mcp"))
        .bearer_auth(token)
        .header("mcp-session-id", id)
        .send()
        .await
        .unwrap()
}

/// A JSON-RPC error answer: its status, and its body (which must be application/json).
async fn json_error(response: Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("application/json"),
        "{status} {content_type}"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["jsonrpc"], "2.0", "{body}");
    (status, body)
}

/// The JSON-RPC answer carried by an SSE response.
async fn sse_answer(response: Response) -> Value {
    let text = response.text().await.unwrap();
    text.lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .filter_map(|data| serde_json::from_str::<Value>(data.trim()).ok())
        .find(|frame| frame.get("id").is_some())
        .unwrap_or_else(|| panic!("no JSON-RPC answer in {text:?}"))
}

async fn second_token(app: &TestHub) -> String {
    let token = app.store.create_token("other").await.unwrap();
    token.secret.expose_secret().to_owned()
}

#[tokio::test]
async fn malformed_json_and_batches_are_400_with_a_json_rpc_error() {
    let app = TestHub::start().await;
    for (what, body, code) in [
        ("not JSON", b"{not json".to_vec(), -32700),
        ("empty", Vec::new(), -32700),
        (
            "a lone surrogate",
            br#"{"jsonrpc":"2.0","id":3,"method":"ping","params":{"a":"\ud800"}}"#.to_vec(),
            -32700,
        ),
        (
            "a batch",
            br#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#.to_vec(),
            -32600,
        ),
        (
            "tools/call without a name",
            br#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"arguments":{}}}"#.to_vec(),
            -32602,
        ),
    ] {
        let (status, body) = json_error(post(&app, &app.token, None, body).await).await;
        assert_eq!(status, 400, "{what}: {body}");
        assert_eq!(body["error"]["code"], code, "{what}: {body}");
    }
    let (_, body) = json_error(
        post(
            &app,
            &app.token,
            None,
            br#"{"jsonrpc":"2.0","id":3,"method":"ping","params":{"a":"\ud800"}}"#.to_vec(),
        )
        .await,
    )
    .await;
    assert_eq!(body["id"], 3, "the id read before the fault is answered");
}

#[tokio::test]
async fn sessions_are_capped_per_token_and_a_delete_frees_a_slot() {
    let app = TestHub::start_with(|c| {
        c.mcp_sessions = McpSessionLimits {
            max_per_token: 2,
            ..McpSessionLimits::default()
        }
    })
    .await;
    let first = open_session(&app, &app.token).await.unwrap();
    open_session(&app, &app.token).await.unwrap();
    let refused = open_session(&app, &app.token).await.unwrap_err();
    let (status, body) = json_error(refused).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["id"], 1);
    assert_eq!(body["error"]["data"]["code"], "TOO_MANY_SESSIONS_FOR_TOKEN");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("DELETE /mcp"), "{message}");
    assert!(
        message.contains("--max-mcp-sessions-per-token"),
        "{message}"
    );

    // Another token still has its own share.
    let other = second_token(&app).await;
    open_session(&app, &other).await.unwrap();

    assert_eq!(close_session(&app, &app.token, &first).await.status(), 204);
    open_session(&app, &app.token).await.unwrap();
}

#[tokio::test]
async fn sessions_are_capped_in_all() {
    let app = TestHub::start_with(|c| {
        c.mcp_sessions = McpSessionLimits {
            max_total: 2,
            ..McpSessionLimits::default()
        }
    })
    .await;
    let other = second_token(&app).await;
    let first = open_session(&app, &app.token).await.unwrap();
    open_session(&app, &other).await.unwrap();
    let (status, body) = json_error(open_session(&app, &other).await.unwrap_err()).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["data"]["code"], "TOO_MANY_SESSIONS");
    assert_eq!(close_session(&app, &app.token, &first).await.status(), 204);
    open_session(&app, &other).await.unwrap();
}

#[tokio::test]
async fn an_idle_session_expires_and_frees_its_slot() {
    let app = TestHub::start_with(|c| {
        c.mcp_sessions = McpSessionLimits {
            max_per_token: 1,
            idle_timeout: Duration::from_millis(300),
            ..McpSessionLimits::default()
        }
    })
    .await;
    let idle = open_session(&app, &app.token).await.unwrap();
    // Poll, with a deadline, until the idle session is gone and its slot taken by a new one.
    let started = Instant::now();
    let fresh = loop {
        match open_session(&app, &app.token).await {
            Ok(id) => break id,
            Err(refused) => assert_eq!(refused.status(), 429),
        }
        assert!(
            started.elapsed() < DEADLINE,
            "the idle session never freed its slot"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_ne!(fresh, idle);
    let ping = json!({"jsonrpc": "2.0", "id": 2, "method": "ping"});
    let gone = post(&app, &app.token, Some(&idle), ping.to_string().into_bytes()).await;
    let (status, body) = json_error(gone).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], -32001);
}

#[tokio::test]
async fn another_token_cannot_use_a_session() {
    let app = TestHub::start().await;
    let other = second_token(&app).await;
    let id = open_session(&app, &app.token).await.unwrap();
    let list = json!({"jsonrpc": "2.0", "id": 5, "method": "tools/list"});
    let stolen = post(&app, &other, Some(&id), list.to_string().into_bytes()).await;
    let (status, body) = json_error(stolen).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], -32001);
    let unknown = post(
        &app,
        &other,
        Some("no-such-session"),
        list.to_string().into_bytes(),
    )
    .await;
    let (unknown_status, unknown_body) = json_error(unknown).await;
    assert_eq!(
        (unknown_status, &unknown_body["error"]),
        (status, &body["error"]),
        "another token's session looks exactly like an unknown one"
    );
    let delete = close_session(&app, &other, &id).await;
    assert_eq!(delete.status(), 404);
    // The owner still uses it.
    let own = post(&app, &app.token, Some(&id), list.to_string().into_bytes()).await;
    assert_eq!(own.status(), 200);
    assert_eq!(
        sse_answer(own).await["result"]["tools"]
            .as_array()
            .unwrap()
            .len(),
        8,
        "the four Channels tools and the agents' four"
    );
}

#[tokio::test]
async fn many_sessions_stay_within_the_global_cap() {
    let app = TestHub::start_with(|c| {
        c.mcp_sessions = McpSessionLimits {
            max_total: 100,
            max_per_token: 10_000,
            ..McpSessionLimits::default()
        }
    })
    .await;
    let mut opened = 0;
    for _ in 0..2000 {
        let response = post(&app, &app.token, None, initialize_body()).await;
        match response.status().as_u16() {
            200 => opened += 1,
            503 => {}
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(opened, 100, "never more sessions than --max-mcp-sessions");
}

fn tool_call(id: u64, tool: &str, arguments: &Value) -> Vec<u8> {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
           "params": {"name": tool, "arguments": arguments}})
    .to_string()
    .into_bytes()
}

#[tokio::test]
async fn tool_calls_share_the_tokens_burst_limit_with_rest() {
    let app = TestHub::start_with(|c| {
        c.rate_limits = RateLimits {
            per_window: Some(3),
            daily_budget: None,
        }
    })
    .await;
    let session = open_session(&app, &app.token).await.unwrap();
    assert_eq!(app.get("/v1/channels").await.status(), 200);
    assert_eq!(app.get("/v1/channels").await.status(), 200);
    let create = json!({"name": "WA", "provider_channel_id": "wa"});
    let third = post(
        &app,
        &app.token,
        Some(&session),
        tool_call(7, "channels_create", &create),
    )
    .await;
    assert_eq!(third.status(), 200);
    assert_eq!(third.headers()["x-ratelimit-remaining"], "0");
    assert_eq!(sse_answer(third).await["result"]["isError"], false);

    let over = post(
        &app,
        &app.token,
        Some(&session),
        tool_call(8, "channels_create", &create),
    )
    .await;
    assert!(over.headers().get("retry-after").is_some());
    assert_eq!(over.headers()["x-ratelimit-limit"], "3");
    let (status, body) = json_error(over).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["id"], 8);
    assert_eq!(body["error"]["data"]["code"], "RATE_LIMIT_EXCEEDED");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("retry in"),
        "{body}"
    );
    // And REST is over the limit too: one budget.
    assert_eq!(app.get("/v1/channels").await.status(), 429);
}

#[tokio::test]
async fn tool_calls_spend_the_daily_budget_at_their_routes_cost() {
    let app = TestHub::start_with(|c| {
        c.rate_limits = RateLimits {
            per_window: None,
            daily_budget: Some(26),
        }
    })
    .await;
    let session = open_session(&app, &app.token).await.unwrap();
    app.add_channel("wa").await; // 10 over REST
    let receive = tool_call(
        1,
        "channels_receive_message",
        &crate::helpers::message("m1", "c1", "sent"),
    );
    let first = post(&app, &app.token, Some(&session), receive.clone()).await; // 20
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()["x-daily-ratelimit-token-remaining"], "6");
    let (status, body) = json_error(post(&app, &app.token, Some(&session), receive).await).await;
    assert_eq!(status, 429, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("daily token budget")
    );
    // A delete costs 6: it still fits.
    let delete = tool_call(
        3,
        "channels_delete_conversation",
        &json!({"channel_id": "wa", "conversation_id": "c1"}),
    );
    assert_eq!(
        post(&app, &app.token, Some(&session), delete)
            .await
            .status(),
        200
    );
}

/// What rmcp refuses by itself (no session, a wrong Accept or Content-Type, a method it does
/// not take) still comes back as a JSON-RPC error in JSON, never a plain-text page.
#[tokio::test]
async fn every_refusal_rmcp_makes_itself_is_a_json_rpc_error() {
    let app = TestHub::start().await;
    let list = br#"{"jsonrpc":"2.0","id":5,"method":"tools/list"}"#.to_vec();
    let cases: Vec<(&str, reqwest::RequestBuilder)> = vec![
        (
            "POST without a session",
            app.client
                .post(app.url("/mcp"))
                .header("accept", "application/json, text/event-stream")
                .header("content-type", "application/json")
                .body(list.clone()),
        ),
        ("GET without a session", app.client.get(app.url("/mcp"))),
        ("PUT", app.client.put(app.url("/mcp"))),
        (
            "POST without Accept",
            app.client
                .post(app.url("/mcp"))
                .header("content-type", "application/json")
                .body(list.clone()),
        ),
        (
            "POST as text/plain",
            app.client
                .post(app.url("/mcp"))
                .header("accept", "application/json, text/event-stream")
                .header("content-type", "text/plain")
                .body(list.clone()),
        ),
    ];
    for (what, request) in cases {
        let response = request
            .header("authorization", format!("Bearer {}", app.token))
            .send()
            .await
            .unwrap();
        let status = response.status();
        assert!(status.is_client_error(), "{what}: {status}");
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert!(
            content_type.starts_with("application/json"),
            "{what}: {status} {content_type}"
        );
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["jsonrpc"], "2.0", "{what}: {body}");
        assert!(body["error"]["message"].is_string(), "{what}: {body}");
    }
}
