//! An outside tester's attacks on the hub's reads of provider apps (getSenderById,
//! getMessageById behind `GET .../messages/{id}`, older messages in `channels_get_conversation`,
//! getTemplates behind `GET /v1/channels/{id}/templates`): malicious or broken apps, odd ids,
//! missing tokens, concurrent readers, a relaying hub. Each asserts what must hold; the eight
//! defects these tests found (a renewal undoing an edit or a delete, credentials echoed back,
//! unbounded templates, calls twice, a paused app called, a relaying hub's 404) are fixed.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use pdchannels_model::manifest::Manifest;
use pdchannels_store::NewApp;
use pdchannels_testkit::{
    APP_CLIENT_ID, APP_CLIENT_SECRET, Misbehaviour, ProviderApp, TestHub, app_basic_auth,
};
use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use crate::provider_apps::{add_channel, body_of, conversation, eventually, hub_with_app};

/// What a scripted app was asked: path, query, Authorization header.
type Seen = Arc<Mutex<Vec<(String, Option<String>, Option<String>)>>>;

/// A tiny app answering every request with what `answer(path)` says: for behaviours the
/// fixture cannot produce.
struct ScriptedApp {
    address: String,
    seen: Seen,
    server: JoinHandle<()>,
}

impl Drop for ScriptedApp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl ScriptedApp {
    async fn start(answer: impl Fn(&str) -> Response + Send + Sync + 'static) -> Self {
        let seen: Seen = Arc::default();
        let answer = Arc::new(answer);
        let recorded = seen.clone();
        let router = Router::new().fallback(move |uri: Uri, headers: HeaderMap| {
            let answer = answer.clone();
            let recorded = recorded.clone();
            async move {
                recorded.lock().unwrap().push((
                    uri.path().to_owned(),
                    uri.query().map(str::to_owned),
                    headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned),
                ));
                answer(uri.path())
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Self {
            address,
            seen,
            server,
        }
    }

    fn manifest(&self) -> Value {
        let base = &self.address;
        json!({"version": "v202101", "endpoints": {
            "getConversations": format!("{base}/channels/:providerChannelId/conversations"),
            "getConversationById": format!("{base}/channels/:providerChannelId/conversations/:sourceConversationId"),
            "postMessage": format!("{base}/channels/:providerChannelId/messages"),
            "getSenderById": format!("{base}/channels/:providerChannelId/senders/:senderId"),
            "getMessageById": format!("{base}/channels/:providerChannelId/messages/:sourceMessageId"),
            "getTemplates": format!("{base}/channels/:providerChannelId/templates"),
            "deleteChannelById": format!("{base}/channels/:providerChannelId"),
        }})
    }

    fn paths(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|(p, _, _)| p.clone())
            .collect()
    }
}

/// An app's answer: status and JSON.
fn answer(status: u16, body: &Value) -> Response {
    (
        StatusCode::from_u16(status).unwrap(),
        axum::Json(body.clone()),
    )
        .into_response()
}

/// The documented "nothing here" for the sync, so that only the tested call matters.
fn empty_sync(path: &str) -> Option<Response> {
    path.ends_with("/conversations")
        .then(|| answer(200, &json!({"success": true, "data": []})))
}

/// A hub with the scripted app as `wa`, and channel `wa-1` (template_support) of it.
async fn hub_with_scripted(app: &ScriptedApp) -> TestHub {
    let hub = TestHub::start().await;
    let new = NewApp {
        name: "wa".into(),
        client_id: APP_CLIENT_ID.into(),
        client_secret: APP_CLIENT_SECRET.to_owned().into(),
        manifest: Manifest::parse(&app.manifest()).unwrap(),
        manifest_source: "scripted".into(),
        backfill_pages: 1,
    };
    assert!(hub.store.add_app(&new, false).await.unwrap());
    let token = hub.store.create_app_token("wa", Some("wa")).await.unwrap();
    let added = hub
        .client
        .post(hub.url("/v1/channels"))
        .bearer_auth(token.secret.expose_secret())
        .json(&json!({"name": "WA", "provider_channel_id": "wa-1", "template_support": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(added.status(), 200);
    hub
}

/// A message of `wa-1` in `c1` whose one attachment's link expires.
fn expiring(id: &str, text: &str) -> Value {
    json!({"id": id, "channel_id": "wa-1", "sender_id": "cust-1", "conversation_id": "c1",
           "message": text, "status": "sent", "created_at": "2024-05-01T10:00:00Z",
           "attachments": [{"id": format!("{id}-a"), "type": "image/png",
                            "url": format!("https://files.example/{id}.png"), "name": "p.png",
                            "link_expires": true}]})
}

async fn receive(hub: &TestHub, message: &Value) {
    let answer = hub.receive(message).await;
    assert_eq!(answer.status(), 200, "{}", body_of(answer).await);
}

async fn get(hub: &TestHub, path: &str) -> (u16, Value) {
    let answer = hub
        .client
        .get(hub.url(path))
        .bearer_auth(&hub.token)
        .send()
        .await
        .unwrap();
    let status = answer.status().as_u16();
    let text = answer.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// The base64 of `client_id:client_secret`, as the hub sends it to the app.
fn basic_credentials() -> String {
    app_basic_auth().trim_start_matches("Basic ").to_owned()
}

/// The fixture app with `c1` of `wa-1` holding `messages`, synced into a hub.
async fn synced_fixture(app: &ProviderApp, messages: Value) -> TestHub {
    let mut c1 = conversation("c1", "cust-1", 0);
    c1["messages"] = messages;
    let n = c1["messages"].as_array().unwrap().len() as i64;
    app.add_conversation("wa-1", c1);
    let (hub, token) = hub_with_app(app, 1).await;
    add_channel(&hub, &token, "wa-1").await;
    eventually("synced", || async {
        hub.store.count_messages().await.unwrap() == n
    })
    .await;
    hub
}

fn fixture_file(id: &str, text: &str) -> Value {
    json!({"id": id, "status": "sent", "created_at": "2022-03-29T06:38:06.913Z", "message": text,
           "sender_id": "cust-1", "attachments": [{"id": format!("{id}-a"), "type": "image/png",
           "url": format!("https://files.example/{id}.png"), "name": "photo.png",
           "link_expires": true}]})
}

fn asked_about(app: &ProviderApp, path: &str) -> usize {
    app.requests().iter().filter(|r| r.path == path).count()
}

// ---------------------------------------------------------------- tokens

/// The new routes are behind the token like the rest, and a refused request asks no app.
#[tokio::test]
async fn the_new_routes_refuse_missing_and_wrong_tokens_and_ask_no_app() {
    let app = ProviderApp::start().await;
    let hub = synced_fixture(&app, json!([fixture_file("f1", "x")])).await;
    for path in [
        "/v1/channels/wa-1/templates",
        "/v1/channels/wa-1/conversations/c1/messages/f1",
        "/api/v1/channels/wa-1/conversations/c1/messages/f1",
    ] {
        let none = hub.client.get(hub.url(path)).send().await.unwrap();
        assert_eq!(none.status(), 401, "{path}");
        let wrong = hub
            .client
            .get(hub.url(path))
            .bearer_auth("not-a-token")
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), 401, "{path}");
        let query = hub
            .client
            .get(hub.url(&format!("{path}?api_token=wrong")))
            .send()
            .await
            .unwrap();
        assert_eq!(query.status(), 401, "{path}");
        // The app's own Basic credentials are not a hub token.
        let basic = hub
            .client
            .get(hub.url(path))
            .header("authorization", format!("Basic {}", basic_credentials()))
            .send()
            .await
            .unwrap();
        assert_eq!(basic.status(), 401, "{path}");
    }
    assert_eq!(asked_about(&app, "/channels/wa-1/messages/f1"), 0);
    assert_eq!(asked_about(&app, "/channels/wa-1/templates"), 0);
}

// ---------------------------------------------------------------- getMessageById

/// An answer about another message (other id, conversation, text, status, unknown fields) only
/// lends its attachments: the message stays the one stored, nothing else is planted.
#[tokio::test]
async fn an_answer_about_another_message_changes_only_the_attachments() {
    let app = ScriptedApp::start(|path| {
        if let Some(sync) = empty_sync(path) {
            return sync;
        }
        answer(
            200,
            &json!({"id": "planted", "conversation_id": "elsewhere", "channel_id": "other",
                    "message": "HACKED", "status": "failed", "sender_id": "attacker",
                    "created_at": "2030-01-01T00:00:00Z",
                    "attachments": [{"id": "new-a", "type": "image/png",
                                     "url": "https://files.example/new.png", "link_expires": true,
                                     "onclick": "alert(1)", "extra": {"deep": [1, 2, 3]}}]}),
        )
    })
    .await;
    let hub = hub_with_scripted(&app).await;
    receive(&hub, &expiring("m1", "original")).await;

    let (status, body) = get(&hub, "/v1/channels/wa-1/conversations/c1/messages/m1").await;
    assert_eq!(status, 200, "{body}");
    let data = &body["data"];
    assert_eq!(data["id"], "m1");
    assert_eq!(data["conversation_id"], "c1");
    assert_eq!(data["message"], "original");
    assert_eq!(data["sender_id"], "cust-1");
    assert_eq!(data["status"], "sent");
    assert_eq!(
        data["attachments"][0]["url"],
        "https://files.example/new.png"
    );
    assert!(data["attachments"][0].get("onclick").is_none(), "{body}");
    assert!(data["attachments"][0].get("extra").is_none(), "{body}");
    assert!(
        hub.store
            .message("wa-1", "planted")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        hub.store
            .message("other", "planted")
            .await
            .unwrap()
            .is_none()
    );
    let stored = hub.store.message("wa-1", "m1").await.unwrap().unwrap();
    assert_eq!(stored.message["message"], "original");
    assert_eq!(
        app.paths()
            .iter()
            .filter(|p| p.as_str() == "/channels/wa-1/messages/m1")
            .count(),
        1
    );
}

/// javascript: links, 10,000 attachments, a list that is not one, an HTML page, a redirect to
/// another host: the stored message is shown unchanged with a warning, and nothing else.
#[tokio::test]
async fn bad_fresh_links_keep_the_stored_message_and_warn() {
    let other = ScriptedApp::start(|_| answer(200, &json!({"attachments": []}))).await;
    let elsewhere = other.address.replace("127.0.0.1", "localhost");
    let app = ScriptedApp::start(move |path| {
        if let Some(sync) = empty_sync(path) {
            return sync;
        }
        let one = |url: &str| json!({"id": "a", "type": "image/png", "url": url});
        match path.rsplit('/').next().unwrap() {
            "js" => answer(200, &json!({"attachments": [one("javascript:alert(document.cookie)")]})),
            "data" => answer(200, &json!({"attachments": [one("data:text/html,<script>x</script>")]})),
            "many" => answer(
                200,
                &json!({"attachments": (0..10_000).map(|i| one(&format!("https://f.example/{i}"))).collect::<Vec<_>>()}),
            ),
            "notalist" => answer(200, &json!({"attachments": "https://f.example/x"})),
            "wrongtypes" => answer(200, &json!({"attachments": [{"id": 7, "type": [], "url": {"href": "https://x"}, "size": -1}]})),
            "html" => (
                StatusCode::OK,
                [("content-type", "text/html")],
                "<html><body>Login</body></html>",
            )
                .into_response(),
            "redirect" => (
                StatusCode::FOUND,
                [("location", format!("{elsewhere}/steal"))],
                "",
            )
                .into_response(),
            _ => answer(404, &json!({"success": false})),
        }
    })
    .await;
    let hub = hub_with_scripted(&app).await;
    for id in [
        "js",
        "data",
        "many",
        "notalist",
        "wrongtypes",
        "html",
        "redirect",
    ] {
        receive(&hub, &expiring(id, "kept")).await;
        let (status, body) = get(
            &hub,
            &format!("/v1/channels/wa-1/conversations/c1/messages/{id}"),
        )
        .await;
        assert_eq!(status, 200, "{id}: {body}");
        assert_eq!(
            body["data"]["attachments"][0]["url"],
            format!("https://files.example/{id}.png"),
            "{id}: {body}"
        );
        assert_eq!(
            body["data"]["attachments"].as_array().unwrap().len(),
            1,
            "{id}"
        );
        let warning = body["additional_data"]["warning"].as_str().unwrap_or("");
        assert!(!warning.is_empty(), "{id}: {body}");
        assert!(
            warning.len() < 64 * 1024,
            "{id}: a warning of {}",
            warning.len()
        );
        let stored = hub.store.message("wa-1", id).await.unwrap().unwrap();
        assert_eq!(
            stored.message["attachments"][0]["url"],
            format!("https://files.example/{id}.png"),
            "{id}"
        );
    }
    assert!(
        other.paths().is_empty(),
        "credentials followed a redirect to another host"
    );
}

/// Readers of one message at once: the app is asked once, every reader answered.
#[tokio::test]
async fn concurrent_reads_of_one_message_ask_the_app_once() {
    let app = ProviderApp::start().await;
    let hub = synced_fixture(&app, json!([fixture_file("f1", "x")])).await;
    app.misbehave(Misbehaviour {
        delay: Duration::from_millis(500),
        ..Misbehaviour::default()
    });
    let hub = Arc::new(hub);
    let readers: Vec<_> = (0..8)
        .map(|_| {
            let hub = hub.clone();
            tokio::spawn(async move {
                get(&hub, "/v1/channels/wa-1/conversations/c1/messages/f1").await
            })
        })
        .collect();
    for reader in readers {
        let (status, body) = reader.await.unwrap();
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["data"]["id"], "f1");
    }
    assert_eq!(asked_about(&app, "/channels/wa-1/messages/f1"), 1);
}

/// An edit received while the app renews a message's links is not undone by the renewal: the
/// renewal writes back the message as it was read before asking the app.
#[tokio::test]
async fn a_link_renewal_does_not_undo_an_edit_received_meanwhile() {
    let app = ProviderApp::start().await;
    let hub = Arc::new(synced_fixture(&app, json!([fixture_file("f1", "first words")])).await);
    app.misbehave(Misbehaviour {
        delay: Duration::from_millis(1500),
        ..Misbehaviour::default()
    });
    let reader = {
        let hub = hub.clone();
        tokio::spawn(
            async move { get(&hub, "/v1/channels/wa-1/conversations/c1/messages/f1").await },
        )
    };
    tokio::time::sleep(Duration::from_millis(400)).await;
    let mut edited = fixture_file("f1", "edited words");
    edited["channel_id"] = json!("wa-1");
    edited["conversation_id"] = json!("c1");
    edited["status"] = json!("delivered");
    receive(&hub, &edited).await;
    let stored = hub.store.message("wa-1", "f1").await.unwrap().unwrap();
    assert_eq!(stored.message["message"], "edited words");

    let (status, _) = reader.await.unwrap();
    assert_eq!(status, 200);
    let stored = hub.store.message("wa-1", "f1").await.unwrap().unwrap();
    assert_eq!(
        stored.message["message"], "edited words",
        "the renewal wrote back the text read before it asked the app"
    );
}

/// A conversation deleted while the app renews one of its messages' links stays deleted.
#[tokio::test]
async fn a_link_renewal_does_not_bring_back_a_deleted_conversation() {
    let app = ProviderApp::start().await;
    let hub = Arc::new(synced_fixture(&app, json!([fixture_file("f1", "secret words")])).await);
    app.misbehave(Misbehaviour {
        delay: Duration::from_millis(1500),
        ..Misbehaviour::default()
    });
    let reader = {
        let hub = hub.clone();
        tokio::spawn(
            async move { get(&hub, "/v1/channels/wa-1/conversations/c1/messages/f1").await },
        )
    };
    tokio::time::sleep(Duration::from_millis(400)).await;
    let deleted = hub.delete("/v1/channels/wa-1/conversations/c1").await;
    assert!(deleted.status().is_success(), "{}", deleted.status());
    assert!(hub.store.message("wa-1", "f1").await.unwrap().is_none());

    let _ = reader.await.unwrap();
    assert!(
        hub.store.message("wa-1", "f1").await.unwrap().is_none(),
        "the deleted message was stored again by the link renewal"
    );
    let (status, _) = get(&hub, "/v1/channels/wa-1/conversations/c1").await;
    assert_eq!(status, 404, "the deleted conversation is back");
}

/// Odd ids in the path: percent-encoded slashes, dot segments, NUL, unicode, very long ones.
/// No 5xx, no call to the app for what is not stored, and an id with a slash is sent to the app
/// as one encoded segment.
#[tokio::test]
async fn odd_ids_in_paths_are_answered_without_errors_or_calls() {
    let app = ProviderApp::start().await;
    let hub = synced_fixture(
        &app,
        json!([fixture_file("x/y", "slash"), fixture_file("é✓", "unicode")]),
    )
    .await;
    let long = "a".repeat(10_000);
    for path in [
        "/v1/channels/wa-1/conversations/c1/messages/%2F..%2F..%2Fadmin".to_owned(),
        "/v1/channels/wa-1/conversations/c1/messages/..".to_owned(),
        "/v1/channels/wa-1/conversations/c1/messages/%00".to_owned(),
        "/v1/channels/wa-1/conversations/c1/messages/%FF%FE".to_owned(),
        format!("/v1/channels/wa-1/conversations/c1/messages/{long}"),
        format!("/v1/channels/{long}/templates"),
        "/v1/channels/%2F/templates".to_owned(),
        "/v1/channels/wa-1%2F..%2Fother/templates".to_owned(),
        "/v1/channels/wa-1/conversations/c1%2Fx/messages/x%2Fy".to_owned(),
    ] {
        let (status, body) = get(&hub, &path).await;
        assert!(
            (400..500).contains(&status),
            "{}: {status} {body}",
            &path[..path.len().min(80)]
        );
    }
    let (status, body) = get(&hub, "/v1/channels/wa-1/conversations/c1/messages/x%2Fy").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["message"], "slash");
    let (status, body) = get(
        &hub,
        "/v1/channels/wa-1/conversations/c1/messages/%C3%A9%E2%9C%93",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let paths: Vec<String> = app
        .requests()
        .into_iter()
        .filter(|r| r.path.contains("/messages/"))
        .map(|r| r.path)
        .collect();
    assert_eq!(
        paths,
        [
            "/channels/wa-1/messages/x%2Fy",
            "/channels/wa-1/messages/%C3%A9%E2%9C%93"
        ]
    );
    assert!(
        !app.requests().iter().any(|r| r.path.contains("admin")),
        "a path from the URL reached the app"
    );
}

// ---------------------------------------------------------------- getTemplates

/// HTML, a redirect to another host, a body over the cap, JSON of the wrong shape: a clear
/// refusal or an empty list, never a 500, and no credentials to another host.
#[tokio::test]
async fn broken_template_answers_fail_cleanly() {
    let other = ScriptedApp::start(|_| answer(200, &json!({"templates": [{"id": "evil"}]}))).await;
    let elsewhere = other.address.replace("127.0.0.1", "localhost");
    let which = Arc::new(Mutex::new("html"));
    let chosen = which.clone();
    let app = ScriptedApp::start(move |path| {
        if let Some(sync) = empty_sync(path) {
            return sync;
        }
        match *chosen.lock().unwrap() {
            "html" => (
                StatusCode::OK,
                [("content-type", "text/html")],
                "<!DOCTYPE html><html>Cannot GET</html>",
            )
                .into_response(),
            "redirect" => (
                StatusCode::TEMPORARY_REDIRECT,
                [("location", format!("{elsewhere}/templates"))],
                "",
            )
                .into_response(),
            "huge" => (StatusCode::OK, "x".repeat(51 * 1024 * 1024)).into_response(),
            _ => answer(
                200,
                &json!({"success": true, "data": {"templates": {"id": "not a list"}}}),
            ),
        }
    })
    .await;
    let hub = hub_with_scripted(&app).await;
    for kind in ["html", "redirect", "huge"] {
        *which.lock().unwrap() = kind;
        let (status, body) = get(&hub, "/v1/channels/wa-1/templates").await;
        assert_eq!(status, 502, "{kind}: {body}");
        assert_eq!(body["additional_data"]["code"], "APP_FAILED", "{kind}");
        assert!(body.to_string().len() < 16 * 1024, "{kind}");
    }
    *which.lock().unwrap() = "shape";
    let (status, body) = get(&hub, "/v1/channels/wa-1/templates").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"], json!([]));
    assert!(other.paths().is_empty(), "credentials went to another host");
}

/// An app whose error page echoes the request's headers (a debug page, a misconfigured proxy)
/// must not hand the hub's credentials for the app to whoever reads through the hub: the
/// client secret, alone or in the Basic header, never appears in what the hub answers.
#[tokio::test]
async fn an_app_echoing_the_hubs_credentials_does_not_leak_them_to_readers() {
    let echo = format!(
        "Bad request: authorization was Basic {}",
        basic_credentials()
    );
    let secret_said = format!("client_secret={APP_CLIENT_SECRET} rejected");
    let app = ScriptedApp::start(move |path| {
        if let Some(sync) = empty_sync(path) {
            return sync;
        }
        if path.ends_with("/templates") {
            (StatusCode::INTERNAL_SERVER_ERROR, echo.clone()).into_response()
        } else {
            answer(
                403,
                &json!({"success": false, "data": {"code": "FORBIDDEN", "message": secret_said.clone()}}),
            )
        }
    })
    .await;
    let hub = hub_with_scripted(&app).await;
    receive(&hub, &expiring("m1", "x")).await;
    let (status, templates) = get(&hub, "/v1/channels/wa-1/templates").await;
    assert_eq!(status, 502, "{templates}");
    let (status, message) = get(&hub, "/v1/channels/wa-1/conversations/c1/messages/m1").await;
    assert_eq!(status, 200, "{message}");
    for shown in [templates.to_string(), message.to_string()] {
        assert!(!shown.contains(APP_CLIENT_SECRET), "{shown}");
        assert!(!shown.contains(&basic_credentials()), "{shown}");
    }
}

/// Templates an app may answer with but no message can carry: ids past the id limit or with
/// control characters, texts past the message limit, the same id many times. What the hub
/// serves (to people and to agents' contexts) keeps to the limits a message keeps to.
#[tokio::test]
async fn templates_are_held_to_the_limits_a_message_keeps_to() {
    let app = ScriptedApp::start(|path| {
        if let Some(sync) = empty_sync(path) {
            return sync;
        }
        let mut templates = vec![
            json!({"id": "i".repeat(10_000), "name": "long id", "content": "x"}),
            json!({"id": "bell\u{7}\u{1b}[2J", "name": "escape", "content": "x"}),
            json!({"id": "big", "name": "n".repeat(100_000), "content": "c".repeat(1024 * 1024)}),
            json!({"id": 1e300, "name": "float id", "content": "x"}),
        ];
        templates.extend((0..100).map(|_| json!({"id": "dup", "content": "same"})));
        answer(
            200,
            &json!({"success": true, "data": {"templates": templates}}),
        )
    })
    .await;
    let hub = hub_with_scripted(&app).await;
    let (status, body) = get(&hub, "/v1/channels/wa-1/templates").await;
    assert_eq!(status, 200, "{}", &body.to_string()[..200]);
    let templates = body["data"].as_array().unwrap();
    let limits = pdchannels_model::Limits::default();
    for t in templates {
        let id = t["id"].as_str().unwrap();
        assert!(
            id.chars().count() <= limits.max_id_chars,
            "an id of {} chars",
            id.len()
        );
        assert!(!id.chars().any(char::is_control), "{id:?}");
        let content = t["content"].as_str().unwrap_or("");
        assert!(
            content.len() <= limits.max_message_bytes,
            "a template of {} bytes",
            content.len()
        );
        let name = t["name"].as_str().unwrap_or("");
        assert!(name.chars().count() <= limits.max_name_chars);
    }
    let mut ids: Vec<&str> = templates.iter().filter_map(|t| t["id"].as_str()).collect();
    let all = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), all, "the same template id served more than once");
}

/// Readers of one channel's templates at once (a page of composers, agents): the app is asked
/// once, as the 10-minute cache intends, not once per reader.
#[tokio::test]
async fn concurrent_template_reads_ask_the_app_once() {
    let app = ProviderApp::start().await;
    let (hub, token) = hub_with_app(&app, 1).await;
    let added = hub
        .client
        .post(hub.url("/v1/channels"))
        .bearer_auth(&token)
        .json(&json!({"name": "t", "provider_channel_id": "tpl", "template_support": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(added.status(), 200);
    app.misbehave(Misbehaviour {
        delay: Duration::from_millis(500),
        ..Misbehaviour::default()
    });
    let hub = Arc::new(hub);
    let readers: Vec<_> = (0..8)
        .map(|_| {
            let hub = hub.clone();
            tokio::spawn(async move { get(&hub, "/v1/channels/tpl/templates").await })
        })
        .collect();
    for reader in readers {
        let (status, body) = reader.await.unwrap();
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["data"].as_array().unwrap().len(), 2);
    }
    assert_eq!(asked_about(&app, "/channels/tpl/templates"), 1);
}

/// A relaying hub stores no channels: its templates route says so (409 `RELAYING_HUB`, as its
/// message route and the rest of its read API do) rather than "channel not found".
#[tokio::test]
async fn a_relaying_hub_says_so_for_templates() {
    use pdchannels_client::{ChannelsClient, Credentials};
    use pdchannels_relay::{Delivery, Relay, RelayConfig, RelayedChannels};
    let nowhere = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let upstream = format!("http://{}", nowhere.local_addr().unwrap());
    drop(nowhere);
    let dir = tempfile::tempdir().unwrap();
    let store = pdchannels_store::Store::open(&dir.path().join("hub.db"))
        .await
        .unwrap();
    let client = ChannelsClient::builder(format!("{upstream}/v1"))
        .credentials(Credentials::ApiToken("t".to_owned().into()))
        .build()
        .unwrap();
    let relay = Relay::new(store.clone(), client, RelayConfig::default());
    let mut hub = TestHub::builder()
        .store(store)
        .channels(Delivery::Upstream(RelayedChannels::new(relay)))
        .start()
        .await;
    hub.dir = Some(dir);
    let (status, body) = get(&hub, "/v1/channels/wa-1/conversations/c1/messages/m1").await;
    assert_eq!(
        (status, body["additional_data"]["code"].as_str()),
        (409, Some("RELAYING_HUB")),
        "{body}"
    );
    let (status, body) = get(&hub, "/v1/channels/wa-1/templates").await;
    assert_eq!(
        (status, body["additional_data"]["code"].as_str()),
        (409, Some("RELAYING_HUB")),
        "{body}"
    );
}

// ---------------------------------------------------------------- older messages over MCP

async fn read_conversation(hub: &TestHub, limit: u32) -> Value {
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(hub.url("/mcp"))
            .auth_header(hub.token.clone()),
    );
    let client = ().serve(transport).await.unwrap();
    let Value::Object(arguments) =
        json!({"channel_id": "wa-1", "conversation_id": "c1", "limit": limit})
    else {
        unreachable!()
    };
    let result = client
        .call_tool(
            CallToolRequestParams::new("channels_get_conversation").with_arguments(arguments),
        )
        .await
        .unwrap();
    client.cancel().await.unwrap();
    assert_eq!(result.is_error, Some(false), "{result:?}");
    result.structured_content.unwrap()
}

fn older_page(page: usize, n: usize) -> Value {
    Value::Array(
        (0..n)
            .map(|i| {
                json!({
                    "id": format!("p{page}-{i}"), "status": "read", "sender_id": "cust-1",
                    "created_at": format!("2021-01-{:02}T10:00:{:02}.000Z", 28 - page, 59 - i),
                    "message": format!("old {page}.{i}"),
                })
            })
            .collect(),
    )
}

fn older_asks(app: &ProviderApp) -> Vec<String> {
    app.requests()
        .into_iter()
        .filter(|r| r.path == "/channels/wa-1/conversations/c1")
        .filter_map(|r| r.query)
        .collect()
}

/// An app whose cursor never ends, with new ids on every page: one read asks a few pages,
/// never the whole endless chain.
#[tokio::test]
async fn an_endless_chain_of_older_pages_is_asked_a_few_pages_a_read() {
    let app = ProviderApp::start().await;
    for page in 0..20 {
        app.add_older_page(
            "wa-1",
            "c1",
            &format!("k{page}"),
            older_page(page, 2),
            Some(&format!("k{}", page + 1)),
        );
    }
    let mut c1 = conversation("c1", "cust-1", 1);
    c1["next_messages_cursor"] = json!("k0");
    app.add_conversation("wa-1", c1);
    let (hub, token) = hub_with_app(&app, 1).await;
    add_channel(&hub, &token, "wa-1").await;
    eventually("synced", || async {
        hub.store.count_messages().await.unwrap() == 1
    })
    .await;

    let read = read_conversation(&hub, 100).await;
    let asked = older_asks(&app);
    assert!(
        (1..=4).contains(&asked.len()),
        "{} pages asked in one read: {asked:?}",
        asked.len()
    );
    assert_eq!(
        read["data"]["messages"].as_array().unwrap().len(),
        1 + 2 * asked.len()
    );
    assert!(hub.store.count_messages().await.unwrap() <= 9);
}

/// Two agents reading past the stored messages at once: each cursor is asked once, and the
/// second answer (nothing new, since the first stored it) must not drop the cursor to pages the
/// app still holds.
#[tokio::test]
async fn concurrent_older_reads_ask_each_cursor_once_and_keep_the_rest_reachable() {
    let app = ProviderApp::start().await;
    app.add_older_page("wa-1", "c1", "k0", older_page(0, 3), Some("k1"));
    app.add_older_page("wa-1", "c1", "k1", older_page(1, 3), None);
    let mut c1 = conversation("c1", "cust-1", 2);
    c1["next_messages_cursor"] = json!("k0");
    app.add_conversation("wa-1", c1);
    let (hub, token) = hub_with_app(&app, 1).await;
    add_channel(&hub, &token, "wa-1").await;
    eventually("synced", || async {
        hub.store.count_messages().await.unwrap() == 2
    })
    .await;
    app.misbehave(Misbehaviour {
        delay: Duration::from_millis(700),
        ..Misbehaviour::default()
    });
    // Only the first page is asked for by each: limit 5 is met by 2 + 3.
    let hub = Arc::new(hub);
    let agents: Vec<_> = (0..2)
        .map(|_| {
            let hub = hub.clone();
            tokio::spawn(async move { read_conversation(&hub, 5).await })
        })
        .collect();
    for agent in agents {
        agent.await.unwrap();
    }
    let asked = older_asks(&app);
    assert_eq!(
        asked.iter().filter(|q| q.contains("after=k0")).count(),
        1,
        "{asked:?}"
    );
    let read = read_conversation(&hub, 20).await;
    assert_eq!(
        read["data"]["messages"].as_array().unwrap().len(),
        8,
        "the app's second page is no longer reachable: {read}"
    );
}

// ---------------------------------------------------------------- an app that said "wait"

/// An app that told the hub to wait (429 until a time) or refused its credentials (401) is not
/// called by the queue until then; the on-demand reads must not call it either (a reader gets
/// the stored message with a warning, or a clear refusal), else every read hammers an app that
/// asked for quiet, with credentials it refused.
#[tokio::test]
async fn on_demand_reads_respect_an_app_that_said_wait() {
    let app = ProviderApp::start().await;
    let mut c1 = conversation("c1", "cust-1", 0);
    c1["messages"] = json!([fixture_file("f0", "x"), fixture_file("f1", "y")]);
    app.add_conversation("wa-1", c1);
    let (hub, token) = hub_with_app(&app, 1).await;
    let added = hub
        .client
        .post(hub.url("/v1/channels"))
        .bearer_auth(&token)
        .json(&json!({"name": "WA", "provider_channel_id": "wa-1", "template_support": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(added.status(), 200);
    eventually("synced", || async {
        hub.store.count_messages().await.unwrap() == 2
    })
    .await;
    let until = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
        + 3_600_000;
    let states = [
        pdchannels_store::AppState::PausedUntil(until, "429 RATE_LIMITED".into()),
        pdchannels_store::AppState::CredentialsInvalid("401 UNAUTHORIZED".into()),
    ];
    for (i, state) in states.iter().enumerate() {
        hub.store.set_app_state("wa", state).await.unwrap();
        let before = app.requests().len();
        let (status, body) = get(
            &hub,
            &format!("/v1/channels/wa-1/conversations/c1/messages/f{i}"),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert!(
            body["additional_data"]["warning"].is_string(),
            "{state:?}: {body}"
        );
        let (status, body) = get(&hub, "/v1/channels/wa-1/templates").await;
        assert_ne!(status, 200, "{state:?}: {body}");
        let after: Vec<String> = app.requests()[before..]
            .iter()
            .map(|r| r.path.clone())
            .collect();
        assert!(after.is_empty(), "{state:?}: the app was called: {after:?}");
    }
}

/// An older page may name another conversation or channel in its messages: they are stored in
/// the conversation asked about, nothing is planted elsewhere.
#[tokio::test]
async fn older_pages_cannot_plant_messages_elsewhere() {
    let app = ProviderApp::start().await;
    let mut page = older_page(0, 2);
    for m in page.as_array_mut().unwrap() {
        m["conversation_id"] = json!("c2");
        m["channel_id"] = json!("other");
    }
    app.add_older_page("wa-1", "c1", "k0", page, None);
    let mut c1 = conversation("c1", "cust-1", 1);
    c1["next_messages_cursor"] = json!("k0");
    app.add_conversation("wa-1", c1);
    let (hub, token) = hub_with_app(&app, 1).await;
    add_channel(&hub, &token, "wa-1").await;
    eventually("synced", || async {
        hub.store.count_messages().await.unwrap() == 1
    })
    .await;
    let read = read_conversation(&hub, 10).await;
    assert_eq!(
        read["data"]["messages"].as_array().unwrap().len(),
        3,
        "{read}"
    );
    let stored = hub.store.message("wa-1", "p0-0").await.unwrap().unwrap();
    assert_eq!(stored.message["conversation_id"], "c1");
    assert!(hub.store.message("other", "p0-0").await.unwrap().is_none());
    let (status, _) = get(&hub, "/v1/channels/wa-1/conversations/c2").await;
    assert_eq!(status, 404);
}

/// An app that never answers costs a reader at most the call's timeout (10 s): the stored
/// message with a warning, a 502 for templates; the hub does not hang.
#[tokio::test]
async fn a_hung_app_costs_a_reader_at_most_the_call_timeout() {
    let app = ProviderApp::start().await;
    let mut c1 = conversation("c1", "cust-1", 0);
    c1["messages"] = json!([fixture_file("f1", "x")]);
    app.add_conversation("wa-1", c1);
    let (hub, token) = hub_with_app(&app, 1).await;
    let added = hub
        .client
        .post(hub.url("/v1/channels"))
        .bearer_auth(&token)
        .json(&json!({"name": "WA", "provider_channel_id": "wa-1", "template_support": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(added.status(), 200);
    eventually("synced", || async {
        hub.store.count_messages().await.unwrap() == 1
    })
    .await;
    app.misbehave(Misbehaviour {
        delay: Duration::from_secs(120),
        ..Misbehaviour::default()
    });
    let started = std::time::Instant::now();
    let ((m_status, message), (t_status, templates), (h_status, _)) = tokio::join!(
        get(&hub, "/v1/channels/wa-1/conversations/c1/messages/f1"),
        get(&hub, "/v1/channels/wa-1/templates"),
        // Other reads are not held meanwhile.
        async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let quick = std::time::Instant::now();
            let answer = get(&hub, "/v1/channels/wa-1/conversations/c1").await;
            assert!(quick.elapsed() < Duration::from_secs(2));
            answer
        },
    );
    assert!(
        started.elapsed() < Duration::from_secs(13),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(m_status, 200, "{message}");
    assert!(
        message["additional_data"]["warning"]
            .as_str()
            .unwrap()
            .contains("in time"),
        "{message}"
    );
    assert_eq!(t_status, 502, "{templates}");
    assert_eq!(h_status, 200);
}

// ---------------------------------------------------------------- getSenderById

/// A hostile getSenderById answer (another id, a 1 MB name with terminal escapes, a
/// javascript: avatar, extra fields): the name is cut to the limit and cleaned, the avatar
/// left out, the participant asked about kept, and the app asked once.
#[tokio::test]
async fn a_hostile_sender_answer_is_cleaned_and_asked_once() {
    let app = ScriptedApp::start(|path| {
        if path.ends_with("/conversations") {
            return answer(
                200,
                &json!({"success": true, "data": [{
                    "id": "c1", "link": "https://wa.example/c1", "status": "open", "seen": false,
                    "next_messages_cursor": null,
                    "participants": [{"id": "cust-1", "role": "end_user", "fetch_avatar": true}],
                    "messages": [{"id": "m1", "status": "sent", "created_at": "2024-05-01T10:00:00Z",
                                  "message": "hi", "sender_id": "cust-1"}],
                }]}),
            );
        }
        if path.contains("/senders/") {
            let name = format!("\u{1b}[2J\u{1b}]0;pwned\u{7}{}", "N".repeat(1024 * 1024));
            return answer(
                200,
                &json!({"success": true, "data": {"id": "admin", "name": name,
                        "avatar_url": "javascript:alert(1)", "role": "source_user",
                        "fetch_avatar": true}}),
            );
        }
        answer(404, &json!({"success": false}))
    })
    .await;
    let hub = hub_with_scripted(&app).await;
    eventually("the sender call is settled", || async {
        let calls = hub.store.app_calls(None, 50).await.unwrap();
        calls
            .iter()
            .any(|c| c.endpoint == "getSenderById" && c.state == "done")
    })
    .await;
    let people = hub.store.participant_details("wa-1", "c1").await.unwrap();
    assert_eq!(people.len(), 1, "{people:?}");
    let p = &people[0];
    assert_eq!(p.id, "cust-1");
    let name = p.name.as_deref().unwrap();
    assert!(!name.chars().any(char::is_control), "escapes kept");
    assert!(name.chars().count() <= pdchannels_model::Limits::default().max_name_chars);
    assert_eq!(p.avatar_url, None);
    assert_eq!(
        app.paths()
            .iter()
            .filter(|p| p.contains("/senders/"))
            .cloned()
            .collect::<Vec<_>>(),
        ["/channels/wa-1/senders/cust-1"]
    );
}
