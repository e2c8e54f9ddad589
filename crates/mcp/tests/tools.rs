//! The MCP server in-process: an rmcp client talks to it over `tokio::io::duplex`, and the tools
//! act on a real SQLite store in a temporary directory.

use std::sync::Arc;

use pdchannels_apps::AppClient;
use pdchannels_mcp::{ChannelsServer, LocalHub};
use pdchannels_model::Limits;
use pdchannels_store::Store;
use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::RunningService;
use rmcp::{RoleClient, ServiceExt};
use serde_json::{Value, json};
use tempfile::TempDir;

struct TestServer {
    client: RunningService<RoleClient, ()>,
    store: Store,
    _dir: TempDir,
}

async fn spawn_server() -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("channels.db")).await.unwrap();
    let server = ChannelsServer::new(Arc::new(store.clone()), Limits::default())
        .with_local_hub(LocalHub::new(store.clone(), AppClient::new()));
    let (server_io, client_io) = tokio::io::duplex(64 * 1024);
    tokio::spawn(async move {
        let running = server.serve(server_io).await.unwrap();
        let _ = running.waiting().await;
    });
    let client = ().serve(client_io).await.unwrap();
    TestServer {
        client,
        store,
        _dir: dir,
    }
}

impl TestServer {
    async fn call(&self, tool: &'static str, arguments: Value) -> CallToolResult {
        let Value::Object(arguments) = arguments else {
            panic!("arguments must be an object")
        };
        self.client
            .call_tool(CallToolRequestParams::new(tool).with_arguments(arguments))
            .await
            .unwrap()
    }

    async fn create_channel(&self, id: &str) {
        let result = self
            .call(
                "channels_create",
                json!({"name": "WhatsApp", "provider_channel_id": id}),
            )
            .await;
        assert_eq!(result.is_error, Some(false), "{result:?}");
    }
}

fn text(result: &CallToolResult) -> String {
    result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("\n")
}

fn message(id: &str, conversation: &str, status: &str) -> Value {
    json!({
        "id": id, "channel_id": "wa", "sender_id": "customer", "conversation_id": conversation,
        "message": "Is the blue one in stock?", "status": status,
        "created_at": "2024-05-01T12:20:30.250+02:00",
    })
}

#[tokio::test]
async fn reports_itself_as_pdchannels_with_the_crate_version() {
    let t = spawn_server().await;
    let info = t.client.peer_info().unwrap();
    let server = info.server_info.as_ref().unwrap();
    assert_eq!(server.name, "pdchannels");
    assert_eq!(server.version, env!("CARGO_PKG_VERSION"));
    assert!(info.capabilities.tools.is_some());
    assert!(
        info.instructions
            .as_deref()
            .unwrap()
            .contains("channels_create")
    );
}

#[tokio::test]
async fn tools_list_is_the_contract() {
    let t = spawn_server().await;
    let tools = t.client.list_all_tools().await.unwrap();
    let names: Vec<_> = tools.iter().map(|t| t.name.to_string()).collect();
    assert_eq!(
        names.len(),
        8,
        "the four Channels tools, the conversation tools and the templates: {names:?}"
    );
    for tool in &tools {
        assert!(
            tool.output_schema.is_some(),
            "{} has an output schema",
            tool.name
        );
        assert!(tool.description.is_some());
    }
    let mut listed = serde_json::to_value(&tools).unwrap();
    listed
        .as_array_mut()
        .unwrap()
        .sort_by_key(|t| t["name"].as_str().unwrap().to_owned());
    insta::assert_json_snapshot!("tools_list", listed);
}

/// A client puts the whole list into the model's context: it stays under 16 KB (compact JSON, as
/// it goes over the wire).
#[tokio::test]
async fn the_whole_tools_list_fits_in_16_kb() {
    let t = spawn_server().await;
    let tools = t.client.list_all_tools().await.unwrap();
    let bytes = serde_json::to_vec(&tools).unwrap().len();
    assert!(bytes < 16 * 1024, "tools/list is {bytes} bytes");
}

/// What MCP clients other than the SDKs choke on: a `type` list (`["string", "null"]`), or a
/// schema that says nothing of its value's type.
#[tokio::test]
async fn every_tool_schema_is_portable_across_clients() {
    fn check(schema: &Value, at: &str, faults: &mut Vec<String>) {
        let Some(object) = schema.as_object() else {
            return;
        };
        if object.get("type").is_some_and(Value::is_array) {
            faults.push(format!("{at}: a type list {}", object["type"]));
        }
        let typed = ["type", "$ref", "anyOf", "oneOf", "allOf", "enum", "const"]
            .iter()
            .any(|k| object.contains_key(*k));
        if !typed {
            faults.push(format!("{at}: no type"));
        }
        for (key, value) in object {
            match key.as_str() {
                "properties" | "$defs" => {
                    for (name, inner) in value.as_object().into_iter().flatten() {
                        check(inner, &format!("{at}/{key}/{name}"), faults);
                    }
                }
                "anyOf" | "oneOf" | "allOf" => {
                    for (i, inner) in value.as_array().into_iter().flatten().enumerate() {
                        check(inner, &format!("{at}/{key}/{i}"), faults);
                    }
                }
                "items" | "additionalProperties" if value.is_object() => {
                    check(value, &format!("{at}/{key}"), faults);
                }
                _ => {}
            }
        }
    }
    let t = spawn_server().await;
    let mut faults = Vec::new();
    for tool in t.client.list_all_tools().await.unwrap() {
        let input = Value::Object(tool.input_schema.as_ref().clone());
        check(&input, &format!("{}:input", tool.name), &mut faults);
        let output = Value::Object(tool.output_schema.unwrap().as_ref().clone());
        check(&output, &format!("{}:output", tool.name), &mut faults);
        if tool.name == "channels_create" {
            let channel = &output["properties"]["data"]["anyOf"][0];
            let required = &channel["required"];
            assert!(
                required.as_array().unwrap().contains(&json!("avatar_url")),
                "a channel always carries avatar_url (null when none): {required}"
            );
            let avatar = &channel["properties"]["avatar_url"];
            assert!(
                avatar["anyOf"]
                    .as_array()
                    .is_some_and(|branches| branches.contains(&json!({"type": "null"}))),
                "avatar_url may be null: {avatar}"
            );
        }
    }
    assert!(faults.is_empty(), "{faults:#?}");
}

#[tokio::test]
async fn receive_stores_the_message_and_answers_like_the_api() {
    let t = spawn_server().await;
    t.create_channel("wa").await;
    let result = t
        .call("channels_receive_message", message("m1", "c1", "sent"))
        .await;
    assert_eq!(result.is_error, Some(false));
    let body = result.structured_content.clone().unwrap();
    assert_eq!(body["success"], json!(true));
    assert_eq!(body["data"]["id"], json!("m1"));
    assert_eq!(
        body["data"]["created_at"],
        json!("2024-05-01T10:20:30.250Z")
    );
    assert_eq!(body["data"]["attachments"], json!([]));
    assert_eq!(
        text(&result),
        "Stored new message `m1` in conversation `c1` of channel `wa` (status sent)."
    );
    let stored = t.store.message("wa", "m1").await.unwrap().unwrap();
    assert_eq!(stored.message, body["data"]);
}

#[tokio::test]
async fn replay_and_status_updates() {
    let t = spawn_server().await;
    t.create_channel("wa").await;
    t.call("channels_receive_message", message("m1", "c1", "sent"))
        .await;
    let replay = t
        .call("channels_receive_message", message("m1", "c1", "sent"))
        .await;
    assert!(text(&replay).starts_with("Message already stored unchanged"));
    let read = t
        .call("channels_receive_message", message("m1", "c1", "read"))
        .await;
    assert!(text(&read).starts_with("Updated message"));
    let late = t
        .call("channels_receive_message", message("m1", "c1", "delivered"))
        .await;
    assert_eq!(late.is_error, Some(false));
    assert_eq!(
        late.structured_content.unwrap()["data"]["status"],
        json!("read")
    );
    assert_eq!(t.store.count_messages().await.unwrap(), 1);
}

#[tokio::test]
async fn invalid_arguments_list_every_problem_and_store_nothing() {
    let t = spawn_server().await;
    t.create_channel("wa").await;
    let mut bad = message("m1", "c1", "seen");
    bad.as_object_mut().unwrap().remove("created_at");
    bad["conversationLink"] = json!("https://x.test");
    let result = t.call("channels_receive_message", bad).await;
    assert_eq!(result.is_error, Some(true));
    let text = text(&result);
    assert!(
        text.starts_with("channels_receive_message was not applied: 3 problems"),
        "{text}"
    );
    assert!(
        text.contains("- `conversationLink`: unknown field; did you mean `conversation_link`?")
    );
    assert!(text.contains("- `status`: must be one of"));
    assert!(text.contains("- `created_at`: required field is missing"));
    assert!(text.ends_with("(code INVALID_RECEIVE_MESSAGE_PAYLOAD)"));
    let body = result.structured_content.unwrap();
    assert_eq!(body["success"], json!(false));
    assert_eq!(
        body["additional_data"]["code"],
        json!("INVALID_RECEIVE_MESSAGE_PAYLOAD")
    );
    assert_eq!(
        body["additional_data"]["errors"].as_array().unwrap().len(),
        3
    );
    assert_eq!(t.store.count_messages().await.unwrap(), 0);
}

#[tokio::test]
async fn empty_arguments_name_every_required_field() {
    let t = spawn_server().await;
    let result = t.call("channels_receive_message", json!({})).await;
    assert_eq!(result.is_error, Some(true));
    let errors = &result.structured_content.unwrap()["additional_data"]["errors"];
    assert_eq!(errors.as_array().unwrap().len(), 7);
}

#[tokio::test]
async fn an_unknown_channel_says_to_create_it_first() {
    let t = spawn_server().await;
    let result = t
        .call("channels_receive_message", message("m1", "c1", "sent"))
        .await;
    assert_eq!(result.is_error, Some(true));
    let text = text(&result);
    assert!(text.contains("Channel not found."), "{text}");
    assert!(text.contains("Create it first (channels_create"), "{text}");
    assert_eq!(
        result.structured_content.unwrap()["additional_data"]["code"],
        json!("NOT_FOUND")
    );
}

#[tokio::test]
async fn a_message_moving_conversation_is_refused() {
    let t = spawn_server().await;
    t.create_channel("wa").await;
    t.call("channels_receive_message", message("m1", "c1", "sent"))
        .await;
    let result = t
        .call("channels_receive_message", message("m1", "c2", "sent"))
        .await;
    assert_eq!(result.is_error, Some(true));
    assert!(text(&result).contains("already belongs to conversation `c1`"));
    assert_eq!(
        result.structured_content.unwrap()["additional_data"]["code"],
        json!("MESSAGE_CONVERSATION_CONFLICT")
    );
}

#[tokio::test]
async fn create_validates_and_answers_the_channel() {
    let t = spawn_server().await;
    let result = t
        .call(
            "channels_create",
            json!({"name": "FB", "provider_channel_id": "fb-1", "provider_type": "facebook",
                   "avatar_url": "https://x.test/a.png", "template_support": false}),
        )
        .await;
    let data = &result.structured_content.unwrap()["data"];
    assert_eq!(data["provider_channel_id"], json!("fb-1"));
    assert_eq!(data["provider_type"], json!("facebook"));
    assert!(data["id"].as_str().unwrap().len() >= 32);

    let bad = t
        .call(
            "channels_create",
            json!({"name": "FB", "provider_type": "telegram"}),
        )
        .await;
    assert_eq!(bad.is_error, Some(true));
    let body = bad.structured_content.unwrap();
    assert_eq!(body["additional_data"]["code"], json!("INVALID_BODY"));
    let paths: Vec<_> = body["additional_data"]["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(paths, ["provider_channel_id", "provider_type"]);
}

#[tokio::test]
async fn delete_conversation_then_channel() {
    let t = spawn_server().await;
    t.create_channel("wa").await;
    t.call("channels_receive_message", message("m1", "c1", "sent"))
        .await;
    t.call("channels_receive_message", message("m2", "c2", "sent"))
        .await;

    let args = json!({"channel_id": "wa", "conversation_id": "c1"});
    let ok = t.call("channels_delete_conversation", args.clone()).await;
    assert_eq!(ok.is_error, Some(false));
    assert_eq!(ok.structured_content.unwrap(), json!({"success": true}));
    let again = t.call("channels_delete_conversation", args).await;
    assert_eq!(again.is_error, Some(true));
    assert!(text(&again).contains("Conversation not found."));

    let ok = t.call("channels_delete", json!({"id": "wa"})).await;
    assert_eq!(ok.structured_content.unwrap(), json!({"success": true}));
    assert_eq!(t.store.count_messages().await.unwrap(), 0);
    let again = t.call("channels_delete", json!({"id": "wa"})).await;
    assert_eq!(again.is_error, Some(true));
    assert!(text(&again).contains("Channel not found."));
    let gone = t
        .call(
            "channels_delete_conversation",
            json!({"channel_id": "wa", "conversation_id": "c2"}),
        )
        .await;
    assert!(text(&gone).contains("Channel not found."));
}

#[tokio::test]
async fn delete_arguments_are_validated() {
    let t = spawn_server().await;
    let result = t
        .call("channels_delete", json!({"id": "", "force": true}))
        .await;
    assert_eq!(result.is_error, Some(true));
    let text = text(&result);
    assert!(text.contains("- `force`: unknown field"), "{text}");
    assert!(text.contains("- `id`: must not be empty"), "{text}");
    let result = t
        .call("channels_delete_conversation", json!({"channel_id": "wa"}))
        .await;
    assert!(self::text(&result).contains("`conversation_id`: required field is missing"));
}

#[tokio::test]
async fn an_unknown_tool_is_a_protocol_error() {
    let t = spawn_server().await;
    let err = t
        .client
        .call_tool(CallToolRequestParams::new("channels_reply"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("-32602"), "{err}");
    assert!(err.to_string().contains("tool not found"), "{err}");
}
