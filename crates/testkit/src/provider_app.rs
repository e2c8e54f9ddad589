//! A provider app on 127.0.0.1 that keeps to the documented messaging-manifest contract, and can
//! be told to misbehave the way Pipedrive's own example app really does (HTML error pages, bare
//! objects, a cursor that never ends, no deleteChannelById). It records every call it gets.
//!
//! ```no_run
//! # async fn demo() {
//! use pdchannels_testkit::ProviderApp;
//! let app = ProviderApp::start().await;
//! app.add_conversation("wa", serde_json::json!({"id": "c1", "messages": []}));
//! let manifest = app.manifest(); // its URLs, for `app add`
//! # }
//! ```

use std::sync::{Arc, Mutex};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

/// The client id the fixture expects in Basic auth.
pub const APP_CLIENT_ID: &str = "fixture-client";
/// The client secret the fixture expects in Basic auth.
pub const APP_CLIENT_SECRET: &str = "fixture-secret";

/// The `Authorization` header the app expects: Basic with its client id and secret.
pub fn app_basic_auth() -> String {
    let pair = format!("{APP_CLIENT_ID}:{APP_CLIENT_SECRET}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

/// A reply the app got through postMessage: its form parts, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostedMessage {
    /// The channel in the path.
    pub channel: String,
    /// Every part: (name, value), in the order sent.
    pub parts: Vec<(String, String)>,
    /// The `Idempotency-Key` header.
    pub idempotency_key: Option<String>,
    /// The id the app answered.
    pub answered_id: String,
}

impl PostedMessage {
    /// The values of the parts called `name`.
    pub fn values(&self, name: &str) -> Vec<&str> {
        self.parts
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// One call the app got.
#[derive(Debug, Clone)]
pub struct AppRequest {
    /// GET, POST, DELETE.
    pub method: String,
    /// The path as sent (percent-encoded).
    pub path: String,
    /// The query string.
    pub query: Option<String>,
    /// The `Authorization` header.
    pub authorization: Option<String>,
}

/// How the app misbehaves, when told to.
#[derive(Debug, Clone, Default)]
pub struct Misbehaviour {
    /// Error pages in HTML, as Express sends them, instead of the JSON envelope.
    pub html_errors: bool,
    /// getConversationById answers the bare conversation, not in an envelope.
    pub bare_objects: bool,
    /// getConversations answers `additional_data.after: "c-next"` on every page, forever.
    pub endless_cursor: bool,
    /// The next N calls are answered with this status (and the envelope of its code).
    pub fail_next: Option<(u16, &'static str, usize)>,
    /// A 429 carries this `retry_by`.
    pub retry_by: Option<String>,
    /// getConversationById answers the channel's first conversation, whatever id was asked.
    pub wrong_id: bool,
    /// Every read answers this late.
    pub delay: std::time::Duration,
    /// deleteChannelById answers Express's 404 page, as the example app does (it lists the URL
    /// in its manifest and has no route for it).
    pub no_delete: bool,
}

#[derive(Default)]
struct Inner {
    /// (channel, conversation object) in the order added.
    conversations: Vec<(String, Value)>,
    requests: Vec<AppRequest>,
    misbehaviour: Misbehaviour,
    posted: Vec<PostedMessage>,
    /// Report each new message to this hub (URL, token) by a receive before answering
    /// postMessage: the race the contract allows.
    report_first: Option<(String, String)>,
    /// Older pages of messages: (channel, conversation, cursor) → (messages, next cursor).
    older: Vec<OlderPage>,
}

/// A page of older messages, served by getConversationById with `after` = `cursor`.
#[derive(Clone)]
struct OlderPage {
    channel: String,
    conversation: String,
    cursor: String,
    messages: Value,
    next: Option<String>,
}

/// The running app.
pub struct ProviderApp {
    /// `http://127.0.0.1:PORT`.
    pub address: String,
    inner: Arc<Mutex<Inner>>,
    server: JoinHandle<()>,
}

impl Drop for ProviderApp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

type Shared = Arc<Mutex<Inner>>;

/// The app's state, even after a handler panicked holding it.
fn lock(inner: &Shared) -> std::sync::MutexGuard<'_, Inner> {
    inner
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl ProviderApp {
    /// Starts the app on a free port.
    pub async fn start() -> Self {
        let inner: Shared = Arc::default();
        let router = Router::new()
            .route("/channels/{channel}/conversations", get(conversations))
            .route(
                "/channels/{channel}/conversations/{conversation}",
                get(conversation),
            )
            .route(
                "/channels/{channel}/messages",
                axum::routing::post(post_message),
            )
            .route("/channels/{channel}/messages/{message}", get(message))
            .route("/channels/{channel}/senders/{sender}", get(sender))
            .route("/channels/{channel}/templates", get(templates))
            .route("/channels/{channel}", axum::routing::delete(delete_channel))
            .fallback(not_found)
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free port");
        let address = format!("http://{}", listener.local_addr().expect("bound"));
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Self {
            address,
            inner,
            server,
        }
    }

    /// The app's manifest: every endpoint of the contract under this address, getMessageById in
    /// the OpenAPI's short form.
    pub fn manifest(&self) -> Value {
        let base = &self.address;
        json!({"version": "v202101", "endpoints": {
            "getConversations": format!("{base}/channels/:providerChannelId/conversations"),
            "getConversationById": format!("{base}/channels/:providerChannelId/conversations/:sourceConversationId"),
            "postMessage": format!("{base}/channels/:providerChannelId/messages"),
            "getSenderById": format!("{base}/channels/:providerChannelId/senders/:senderId"),
            "getMessageById": format!("{base}/channels/{{providerChannelId}}/messages/{{sourceMessageId}}"),
            "getTemplates": format!("{base}/channels/:providerChannelId/templates"),
            "deleteChannelById": format!("{base}/channels/:providerChannelId"),
        }})
    }

    /// Adds a conversation of `channel`, served by both reads.
    pub fn add_conversation(&self, channel: &str, conversation: Value) {
        self.lock()
            .conversations
            .push((channel.to_owned(), conversation));
    }

    /// Serves `messages` (a JSON list) as the page of `conversation`'s older messages asked for
    /// with `after=cursor`, pointing on to `next`.
    pub fn add_older_page(
        &self,
        channel: &str,
        conversation: &str,
        cursor: &str,
        messages: Value,
        next: Option<&str>,
    ) {
        self.lock().older.push(OlderPage {
            channel: channel.to_owned(),
            conversation: conversation.to_owned(),
            cursor: cursor.to_owned(),
            messages,
            next: next.map(str::to_owned),
        });
    }

    /// Sets how the app misbehaves from now on.
    pub fn misbehave(&self, misbehaviour: Misbehaviour) {
        self.lock().misbehaviour = misbehaviour;
    }

    /// Every reply postMessage got.
    pub fn posted(&self) -> Vec<PostedMessage> {
        self.lock().posted.clone()
    }

    /// From now on, postMessage reports each new message to the hub at `hub` (with `token`)
    /// with a receive of status `delivered` before it answers.
    pub fn report_before_answering(&self, hub: &str, token: &str) {
        self.lock().report_first = Some((hub.to_owned(), token.to_owned()));
    }

    /// Every call so far.
    pub fn requests(&self) -> Vec<AppRequest> {
        self.lock().requests.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        lock(&self.inner)
    }
}

/// Records the call, checks Basic auth, and applies `fail_next`: `Some(response)` if the call
/// is answered here.
fn gate(inner: &Shared, method: &Method, uri: &Uri, headers: &HeaderMap) -> Option<Response> {
    let mut inner = lock(inner);
    let authorization = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    inner.requests.push(AppRequest {
        method: method.to_string(),
        path: uri.path().to_owned(),
        query: uri.query().map(str::to_owned),
        authorization: authorization.clone(),
    });
    let expected = app_basic_auth();
    let html = inner.misbehaviour.html_errors;
    if authorization.as_deref() != Some(expected.as_str()) {
        return Some(refusal(html, 401, "UNAUTHORIZED", "Unauthorized", None));
    }
    if let Some((status, code, left)) = inner.misbehaviour.fail_next
        && left > 0
    {
        inner.misbehaviour.fail_next = (left > 1).then_some((status, code, left - 1));
        let retry_by = inner.misbehaviour.retry_by.clone();
        return Some(refusal(html, status, code, "told to fail", retry_by));
    }
    None
}

/// The documented error envelope, or Express's HTML page.
fn refusal(
    html: bool,
    status: u16,
    code: &str,
    message: &str,
    retry_by: Option<String>,
) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if html {
        let page = format!(
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head><title>Error</title></head>\n<body><pre>{message}</pre></body>\n</html>\n"
        );
        return (status, [("content-type", "text/html; charset=utf-8")], page).into_response();
    }
    let mut data = json!({"message": message, "code": code});
    if let Some(by) = retry_by {
        data["retry_by"] = json!(by);
    }
    (status, Json(json!({"success": false, "data": data}))).into_response()
}

async fn conversations(
    State(inner): State<Shared>,
    Path(channel): Path<String>,
    Query(query): Query<std::collections::HashMap<String, String>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = gate(&inner, &method, &uri, &headers) {
        return refused;
    }
    delay(&inner).await;
    let inner = lock(&inner);
    let limit: usize = query
        .get("conversations_limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(30);
    let all: Vec<&Value> = inner
        .conversations
        .iter()
        .filter(|(c, _)| *c == channel)
        .map(|(_, v)| v)
        .collect();
    // The cursor is the index of the next conversation.
    let start: usize = query.get("after").and_then(|a| a.parse().ok()).unwrap_or(0);
    let page: Vec<Value> = all
        .iter()
        .skip(start)
        .take(limit)
        .map(|v| (*v).clone())
        .collect();
    let after = if inner.misbehaviour.endless_cursor {
        Some("c-next".to_owned())
    } else {
        (start + page.len() < all.len()).then(|| (start + page.len()).to_string())
    };
    Json(json!({"success": true, "data": page, "additional_data": {"after": after}}))
        .into_response()
}

async fn conversation(
    State(inner): State<Shared>,
    Path((channel, id)): Path<(String, String)>,
    Query(query): Query<std::collections::HashMap<String, String>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = gate(&inner, &method, &uri, &headers) {
        return refused;
    }
    delay(&inner).await;
    let inner = lock(&inner);
    let mut found = inner
        .conversations
        .iter()
        .find(|(c, v)| *c == channel && (inner.misbehaviour.wrong_id || v["id"] == id))
        .map(|(_, v)| v.clone());
    if let (Some(conversation), Some(after)) = (found.as_mut(), query.get("after")) {
        let page = inner
            .older
            .iter()
            .find(|p| p.channel == channel && p.conversation == id && p.cursor == *after);
        conversation["messages"] = page.map_or(json!([]), |p| p.messages.clone());
        conversation["next_messages_cursor"] = json!(page.and_then(|p| p.next.clone()));
    }
    match found {
        Some(conversation) if inner.misbehaviour.bare_objects => Json(conversation).into_response(),
        // The example app also sets `additional_data.after` here, to junk.
        Some(conversation) => Json(
            json!({"success": true, "data": conversation, "additional_data": {"after": "c-next"}}),
        )
        .into_response(),
        None => refusal(
            inner.misbehaviour.html_errors,
            404,
            "NOT_FOUND",
            &format!("no conversation {id}"),
            None,
        ),
    }
}

async fn not_found(
    State(inner): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = gate(&inner, &method, &uri, &headers) {
        return refused;
    }
    express_404(&method, &uri)
}

/// Express's answer to a route it does not have.
fn express_404(method: &Method, uri: &Uri) -> Response {
    let page = format!(
        "<!DOCTYPE html><html><body><pre>Cannot {method} {}</pre></body></html>",
        uri.path()
    );
    (
        StatusCode::NOT_FOUND,
        [("content-type", "text/html; charset=utf-8")],
        page,
    )
        .into_response()
}

async fn post_message(
    State(inner): State<Shared>,
    Path(channel): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    mut form: axum::extract::Multipart,
) -> Response {
    if let Some(refused) = gate(&inner, &method, &uri, &headers) {
        return refused;
    }
    let mut parts = Vec::new();
    while let Ok(Some(field)) = form.next_field().await {
        let name = field.name().unwrap_or_default().to_owned();
        let value = field.text().await.unwrap_or_default();
        parts.push((name, value));
    }
    let (id, report) = {
        let mut inner = lock(&inner);
        let id = format!("msg-pd-{}", inner.posted.len() + 1);
        inner.posted.push(PostedMessage {
            channel: channel.clone(),
            parts: parts.clone(),
            idempotency_key: headers
                .get("idempotency-key")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            answered_id: id.clone(),
        });
        (id, inner.report_first.clone())
    };
    if let Some((hub, token)) = report {
        let part = |name: &str| {
            parts
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        let receive = json!({
            "id": id, "channel_id": channel, "conversation_id": part("conversationId"),
            "sender_id": part("senderId"), "message": part("message"), "status": "delivered",
            "created_at": "2024-05-01 10:00",
        });
        let _ = reqwest::Client::new()
            .post(format!("{hub}/v1/channels/messages/receive"))
            .bearer_auth(token)
            .json(&receive)
            .send()
            .await;
    }
    Json(json!({"success": true, "data": {"id": id}})).into_response()
}

/// Waits the misbehaviour's delay (outside the lock).
async fn delay(inner: &Shared) {
    let wait = lock(inner).misbehaviour.delay;
    if !wait.is_zero() {
        tokio::time::sleep(wait).await;
    }
}

/// getSenderById: a name and an avatar made from the id; 404 for ids starting `unknown`.
async fn sender(
    State(inner): State<Shared>,
    Path((_channel, id)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = gate(&inner, &method, &uri, &headers) {
        return refused;
    }
    delay(&inner).await;
    let (html, bare) = {
        let inner = lock(&inner);
        (
            inner.misbehaviour.html_errors,
            inner.misbehaviour.bare_objects,
        )
    };
    if id.starts_with("unknown") {
        return refusal(html, 404, "NOT_FOUND", &format!("no sender {id}"), None);
    }
    let data = json!({"id": id, "name": format!("Sender {id}"),
                      "avatar_url": format!("https://avatars.example/{id}.png")});
    if bare {
        Json(data).into_response()
    } else {
        Json(json!({"success": true, "data": data})).into_response()
    }
}

/// getMessageById: the stored message, bare as the example app answers it, each attachment's
/// `url` given a fresh `?v=N` (N: how many times this was asked), as a provider renews links.
async fn message(
    State(inner): State<Shared>,
    Path((channel, id)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = gate(&inner, &method, &uri, &headers) {
        return refused;
    }
    delay(&inner).await;
    let inner = lock(&inner);
    let asked = inner
        .requests
        .iter()
        .filter(|r| r.path == uri.path())
        .count();
    let found = inner
        .conversations
        .iter()
        .filter(|(c, _)| *c == channel)
        .filter_map(|(_, v)| v["messages"].as_array())
        .flatten()
        .find(|m| m["id"] == id.as_str())
        .cloned();
    let Some(mut found) = found else {
        return refusal(
            inner.misbehaviour.html_errors,
            404,
            "NOT_FOUND",
            &format!("no message {id}"),
            None,
        );
    };
    if let Some(attachments) = found["attachments"].as_array_mut() {
        for attachment in attachments {
            if let Some(url) = attachment["url"].as_str() {
                let base = url.split('?').next().unwrap_or(url).to_owned();
                attachment["url"] = json!(format!("{base}?v={asked}"));
            }
        }
    }
    Json(found).into_response()
}

/// getTemplates: the example app's two templates, the second with a `{{1}}` placeholder.
async fn templates(
    State(inner): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = gate(&inner, &method, &uri, &headers) {
        return refused;
    }
    delay(&inner).await;
    Json(json!({"success": true, "data": {"templates": [
        {"id": "tpl-1", "name": "Welcome", "content": "Hello! How can we help?", "language": "en"},
        {"id": "tpl-2", "name": "Follow-up", "content": "Hi {{1}}, any news?", "language": "en"},
    ]}}))
    .into_response()
}

/// deleteChannelById: done, or Express's 404 page when told `no_delete`.
async fn delete_channel(
    State(inner): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = gate(&inner, &method, &uri, &headers) {
        return refused;
    }
    let no_delete = lock(&inner).misbehaviour.no_delete;
    if no_delete {
        return express_404(&method, &uri);
    }
    Json(json!({"success": true})).into_response()
}
