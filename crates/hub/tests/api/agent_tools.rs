//! The agents' conversation tools over MCP at /mcp, end to end: a hub with the provider-app
//! fixture, an rmcp client reading a synced conversation and answering in it.

use std::time::{Duration, Instant};

use pdchannels_model::manifest::Manifest;
use pdchannels_store::NewApp;
use pdchannels_testkit::{APP_CLIENT_ID, APP_CLIENT_SECRET, Misbehaviour, ProviderApp, TestHub};
use rmcp::RoleClient;
use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::RunningService;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use crate::helpers::message;

struct Agent {
    client: RunningService<RoleClient, ()>,
}

impl Agent {
    async fn connect(hub: &TestHub) -> Self {
        let transport = StreamableHttpClientTransport::from_config(
            StreamableHttpClientTransportConfig::with_uri(hub.url("/mcp"))
                .auth_header(hub.token.clone()),
        );
        Self {
            client: ().serve(transport).await.unwrap(),
        }
    }

    async fn call(&self, tool: &'static str, arguments: Value) -> CallToolResult {
        let Value::Object(arguments) = arguments else {
            panic!("arguments are an object")
        };
        self.client
            .call_tool(CallToolRequestParams::new(tool).with_arguments(arguments))
            .await
            .unwrap()
    }

    /// The structured content of a call that must succeed.
    async fn ok(&self, tool: &'static str, arguments: Value) -> Value {
        let result = self.call(tool, arguments).await;
        assert_eq!(result.is_error, Some(false), "{result:?}");
        result.structured_content.unwrap()
    }

    /// The text and structured content of a call that must fail.
    async fn refused(&self, tool: &'static str, arguments: Value) -> (String, Value) {
        let result = self.call(tool, arguments).await;
        assert_eq!(result.is_error, Some(true), "{result:?}");
        let text = result
            .content
            .iter()
            .filter_map(|c| c.as_text().map(|t| t.text.clone()))
            .collect::<String>();
        (text, result.structured_content.unwrap())
    }
}

/// Conversation `c1` of the fixture: `messages` messages from `cust-1`, participants agent-1
/// and cust-1.
fn conversation_c1(messages: usize) -> Value {
    json!({
        "id": "c1", "link": "https://wa.example/c1", "status": "open", "seen": false,
        "participants": [
            {"id": "agent-1", "name": "Agent Smith", "role": "source_user"},
            {"id": "cust-1", "name": "Ada Customer", "role": "end_user"},
        ],
        "messages": (0..messages).map(|i| json!({
            "id": format!("m{i:03}"), "status": "sent", "sender_id": "cust-1",
            "created_at": format!("2024-05-01T10:{:02}:{:02}.000Z", i / 60, i % 60),
            "message": format!("question {i}"),
        })).collect::<Vec<_>>(),
    })
}

/// A hub with the fixture app, and channel `wa-1` synced from it with conversation `c1`
/// (`messages` messages from `cust-1`, participants agent-1 and cust-1).
async fn synced_hub(app: &ProviderApp, messages: usize) -> TestHub {
    synced_hub_with(app, conversation_c1(messages), messages, json!({})).await
}

/// A hub with the fixture app, and channel `wa-1` (with `channel` fields added) synced from
/// it with `conversation`, once `messages` messages are stored.
async fn synced_hub_with(
    app: &ProviderApp,
    conversation: Value,
    messages: usize,
    channel: Value,
) -> TestHub {
    let hub = TestHub::start().await;
    let new = NewApp {
        name: "wa".into(),
        client_id: APP_CLIENT_ID.into(),
        client_secret: APP_CLIENT_SECRET.to_owned().into(),
        manifest: Manifest::parse(&app.manifest()).unwrap(),
        manifest_source: "fixture".into(),
        backfill_pages: 1,
    };
    assert!(hub.store.add_app(&new, false).await.unwrap());
    let token = hub.store.create_app_token("wa", Some("wa")).await.unwrap();
    app.add_conversation("wa-1", conversation);
    let mut body = json!({"name": "WhatsApp", "provider_channel_id": "wa-1"});
    if let (Some(body), Value::Object(extra)) = (body.as_object_mut(), channel) {
        body.extend(extra);
    }
    let answer = hub
        .client
        .post(hub.url("/v1/channels"))
        .bearer_auth(token.secret.expose_secret())
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let until = Instant::now() + Duration::from_secs(10);
    while hub.store.count_messages().await.unwrap() < messages as i64 {
        assert!(Instant::now() < until, "the channel was never synced");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    hub
}

#[tokio::test]
async fn an_agent_reads_a_conversation_page_by_page_and_answers_in_it() {
    let app = ProviderApp::start().await;
    let hub = synced_hub(&app, 45).await;
    let agent = Agent::connect(&hub).await;
    let names: Vec<String> = agent
        .client
        .list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    for tool in [
        "channels_list_conversations",
        "channels_get_conversation",
        "channels_send_message",
    ] {
        assert!(names.iter().any(|n| n == tool), "{tool} in {names:?}");
    }

    let list = agent
        .ok("channels_list_conversations", json!({"channel_id": "wa-1"}))
        .await;
    assert_eq!(list["data"][0]["conversation_id"], "c1");
    assert_eq!(list["data"][0]["message_count"], 45);

    // The latest 30, oldest of them first; then the 15 before them.
    let latest = agent
        .ok(
            "channels_get_conversation",
            json!({"channel_id": "wa-1", "conversation_id": "c1"}),
        )
        .await;
    let data = &latest["data"];
    assert_eq!(data["link"], "https://wa.example/c1");
    assert_eq!(data["participants"][1]["name"], "Ada Customer");
    assert_eq!(data["participants"][1]["role"], "end_user");
    let messages = data["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 30);
    assert_eq!(messages[0]["id"], "m015");
    assert_eq!(messages[29]["id"], "m044");
    let cursor = latest["additional_data"]["older_cursor"].as_str().unwrap();
    let older = agent
        .ok(
            "channels_get_conversation",
            json!({"channel_id": "wa-1", "conversation_id": "c1", "cursor": cursor, "limit": 100}),
        )
        .await;
    let messages = older["data"]["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 15);
    assert_eq!(messages[0]["id"], "m000");
    assert!(older["additional_data"].get("older_cursor").is_none());

    let sent = agent
        .ok(
            "channels_send_message",
            json!({"channel_id": "wa-1", "conversation_id": "c1", "message": "It is in stock."}),
        )
        .await;
    assert_eq!(sent["data"]["status"], "sent");
    let posted = &app.posted()[0];
    assert_eq!(posted.values("message"), ["It is in stock."]);
    assert_eq!(posted.values("recipientIds[]"), ["cust-1"]);
    let latest = agent
        .ok(
            "channels_get_conversation",
            json!({"channel_id": "wa-1", "conversation_id": "c1", "limit": 1}),
        )
        .await;
    assert_eq!(latest["data"]["messages"][0]["id"], sent["data"]["id"]);
    assert_eq!(latest["data"]["messages"][0]["sender_id"], "agent-1");
}

#[tokio::test]
async fn a_reply_the_app_does_not_take_is_shown_as_unsent_and_sent_again_on_request() {
    let app = ProviderApp::start().await;
    let hub = synced_hub(&app, 1).await;
    let agent = Agent::connect(&hub).await;
    app.misbehave(Misbehaviour {
        fail_next: Some((503, "UNAVAILABLE", 1)),
        ..Misbehaviour::default()
    });
    let (text, body) = agent
        .refused(
            "channels_send_message",
            json!({"channel_id": "wa-1", "conversation_id": "c1", "message": "Hello?"}),
        )
        .await;
    assert_eq!(
        body["additional_data"]["code"],
        "APP_DID_NOT_TAKE_THE_REPLY"
    );
    assert!(text.contains("retry = \"out_"), "{text}");
    let read = agent
        .ok(
            "channels_get_conversation",
            json!({"channel_id": "wa-1", "conversation_id": "c1"}),
        )
        .await;
    let unsent = &read["data"]["unsent"][0];
    assert_eq!(unsent["state"], "failed");
    assert_eq!(unsent["message"], "Hello?");
    assert!(
        unsent["failure"].as_str().unwrap().contains("503"),
        "{unsent}"
    );
    assert!(app.posted().is_empty(), "never sent again on its own");

    let local_id = unsent["local_id"].as_str().unwrap();
    let sent = agent
        .ok(
            "channels_send_message",
            json!({"channel_id": "wa-1", "conversation_id": "c1", "retry": local_id}),
        )
        .await;
    assert_eq!(sent["data"]["local_id"], local_id);
    assert_eq!(app.posted()[0].values("message"), ["Hello?"]);
    let read = agent
        .ok(
            "channels_get_conversation",
            json!({"channel_id": "wa-1", "conversation_id": "c1"}),
        )
        .await;
    assert_eq!(read["data"]["unsent"], json!([]));
}

#[tokio::test]
async fn bad_calls_say_which_argument_and_change_nothing() {
    let app = ProviderApp::start().await;
    let hub = synced_hub(&app, 1).await;
    let agent = Agent::connect(&hub).await;
    let cases = [
        (
            "channels_list_conversations",
            json!({}),
            "channel_id",
            "INVALID_ARGUMENTS",
        ),
        (
            "channels_list_conversations",
            json!({"channel_id": "wa-1", "limit": 0}),
            "limit",
            "INVALID_ARGUMENTS",
        ),
        (
            "channels_list_conversations",
            json!({"channel_id": "wa-1", "cursor": "zz"}),
            "cursor",
            "INVALID_ARGUMENTS",
        ),
        (
            "channels_list_conversations",
            json!({"channel_id": "wa-1", "chanel": "x"}),
            "chanel",
            "INVALID_ARGUMENTS",
        ),
        // A NUL (which PostgreSQL's text cannot hold) is refused as an argument, not a 503.
        (
            "channels_get_conversation",
            json!({"channel_id": "wa-1", "conversation_id": "c\u{0}1"}),
            "conversation_id",
            "INVALID_ARGUMENTS",
        ),
        (
            "channels_get_conversation",
            json!({"channel_id": "wa-1", "conversation_id": 5}),
            "conversation_id",
            "INVALID_ARGUMENTS",
        ),
        (
            "channels_send_message",
            json!({"channel_id": "wa-1", "conversation_id": "c1"}),
            "message",
            "INVALID_ARGUMENTS",
        ),
        (
            "channels_send_message",
            json!({"channel_id": "wa-1", "conversation_id": "c1", "message": " "}),
            "message",
            "INVALID_ARGUMENTS",
        ),
    ];
    for (tool, arguments, path, code) in cases {
        let (text, body) = agent.refused(tool, arguments.clone()).await;
        assert_eq!(
            body["additional_data"]["code"], code,
            "{tool} {arguments}: {body}"
        );
        assert_eq!(
            body["additional_data"]["errors"][0]["path"], path,
            "{tool} {arguments}: {body}"
        );
        assert!(text.contains(&format!("`{path}`")), "{text}");
    }
    for (tool, arguments) in [
        ("channels_list_conversations", json!({"channel_id": "nope"})),
        (
            "channels_get_conversation",
            json!({"channel_id": "wa-1", "conversation_id": "nope"}),
        ),
        (
            "channels_send_message",
            json!({"channel_id": "wa-1", "conversation_id": "nope", "message": "x"}),
        ),
    ] {
        let (_, body) = agent.refused(tool, arguments.clone()).await;
        assert_eq!(
            body["additional_data"]["code"], "NOT_FOUND",
            "{tool} {arguments}"
        );
    }

    // A channel of no app: nothing can be sent, and the agent is told why.
    hub.add_channel("plain").await;
    let mut m = message("p1", "pc", "sent");
    m["channel_id"] = json!("plain");
    hub.receive(&m).await;
    let (text, body) = agent
        .refused(
            "channels_send_message",
            json!({"channel_id": "plain", "conversation_id": "pc", "message": "x"}),
        )
        .await;
    assert_eq!(body["additional_data"]["code"], "CANNOT_SEND");
    assert!(text.contains("channels link plain"), "{text}");
    assert!(app.posted().is_empty());
    assert_eq!(hub.store.count_messages().await.unwrap(), 2);
}

/// Older messages than the hub stores are asked of the app when an agent reads more than is
/// stored, page by page along the app's cursor, and the asking stops when the cursor repeats.
#[tokio::test]
async fn an_agent_reading_past_the_stored_messages_gets_older_ones_from_the_app() {
    let app = ProviderApp::start().await;
    let mut c1 = conversation_c1(2);
    c1["next_messages_cursor"] = json!("p2");
    let older = |from: usize, n: usize| {
        Value::Array((from..from + n).map(|i| json!({
            "id": format!("old{i:03}"), "status": "read", "sender_id": "cust-1",
            "created_at": format!("2024-04-01T10:00:{:02}.000Z", 59 - i), "message": format!("old {i}"),
        })).collect())
    };
    app.add_older_page("wa-1", "c1", "p2", older(0, 3), Some("p3"));
    // The last page points to itself: an app whose cursor never ends.
    app.add_older_page("wa-1", "c1", "p3", older(3, 1), Some("p3"));
    let hub = synced_hub_with(&app, c1, 2, json!({})).await;
    let agent = Agent::connect(&hub).await;

    let read = agent
        .ok(
            "channels_get_conversation",
            json!({"channel_id": "wa-1", "conversation_id": "c1", "limit": 10}),
        )
        .await;
    let ids: Vec<&str> = read["data"]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        ["old003", "old002", "old001", "old000", "m000", "m001"],
        "oldest first"
    );
    let asked: Vec<Option<String>> = app
        .requests()
        .into_iter()
        .filter(|r| r.path == "/channels/wa-1/conversations/c1")
        .map(|r| r.query)
        .collect();
    assert_eq!(
        asked,
        [
            Some("messages_limit=30&after=p2".to_owned()),
            // That page points to itself: the hub takes its message and asks no more.
            Some("messages_limit=30&after=p3".to_owned()),
        ]
    );
    let again = agent
        .ok(
            "channels_get_conversation",
            json!({"channel_id": "wa-1", "conversation_id": "c1", "limit": 10}),
        )
        .await;
    assert_eq!(again["data"]["messages"].as_array().unwrap().len(), 6);
    assert_eq!(
        app.requests()
            .iter()
            .filter(|r| r.path == "/channels/wa-1/conversations/c1")
            .count(),
        2,
        "no more asking once the app's cursor repeats"
    );
    agent.client.cancel().await.unwrap();
}

/// A channel's templates come from its app, are kept, and each way there are none is said.
#[tokio::test]
async fn an_agent_lists_a_channels_templates_from_its_app() {
    let app = ProviderApp::start().await;
    let hub = synced_hub_with(
        &app,
        conversation_c1(1),
        1,
        json!({"template_support": true}),
    )
    .await;
    let agent = Agent::connect(&hub).await;
    let listed = agent
        .ok("channels_list_templates", json!({"channel_id": "wa-1"}))
        .await;
    assert_eq!(listed["data"][1]["content"], "Hi {{1}}, any news?");
    assert_eq!(listed["data"].as_array().unwrap().len(), 2);
    // Kept: the REST route answers from the same cache, without asking the app again.
    let rest: Value = hub
        .client
        .get(hub.url("/v1/channels/wa-1/templates"))
        .bearer_auth(&hub.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(rest["data"], listed["data"]);
    assert_eq!(
        app.requests()
            .iter()
            .filter(|r| r.path.ends_with("/templates"))
            .count(),
        1
    );

    let (text, body) = agent
        .refused("channels_list_templates", json!({"channel_id": "nope"}))
        .await;
    assert_eq!(body["additional_data"]["code"], "NOT_FOUND", "{text}");
    let (text, body) = agent
        .refused("channels_list_templates", json!({"channel": "wa-1"}))
        .await;
    assert_eq!(
        body["additional_data"]["code"], "INVALID_ARGUMENTS",
        "{text}"
    );
    agent.client.cancel().await.unwrap();
}
