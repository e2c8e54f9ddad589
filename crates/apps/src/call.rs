//! One call to a provider app, as Pipedrive made it: Basic auth with the app's client id and
//! secret, ids percent-encoded as one path segment, JSON accepted, no redirect to another host,
//! the answer's size capped; and what the answer means, read leniently (bare objects, HTML error
//! pages, `text/plain`).

use std::time::Duration;

use base64::Engine;
use pdchannels_model::manifest::Endpoint;
use pdchannels_store::AppCredentials;
use secrecy::ExposeSecret;
use serde_json::Value;

/// How long a connection to an app may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The most of an answer read: getConversations may carry 900 messages.
const MAX_ANSWER_BYTES: usize = 50 * 1024 * 1024;

/// How much of an answer is kept for whoever debugs a call.
const EXCERPT_CHARS: usize = 2_000;

/// The HTTP client the hub calls apps with (its own, not the relay's).
#[derive(Clone)]
pub struct AppClient {
    http: reqwest::Client,
}

impl Default for AppClient {
    fn default() -> Self {
        Self::new()
    }
}

/// What an app's answer means for the hub.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// Success: the `data` of the envelope, or the bare object (getMessageById's form).
    Data(Value),
    /// The app refused the call; whether and when to try again depends on `refusal`.
    Refused(Refusal),
    /// The call did not get an answer that counts (connection refused or reset, timeout, 5xx,
    /// a 2xx that says nothing readable): tried again later.
    Failed(String),
}

/// A refusal from an app, as its envelope (`{"success":false,"data":{"message","code"}}`) or
/// its status says.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    /// Its HTTP status.
    pub status: u16,
    /// `data.code`, when the app said one.
    pub code: Option<String>,
    /// What it said (`data.message`, or the start of its page).
    pub message: String,
    /// For a 429: when to call again (ms since the epoch), from `data.retry_by` or `Retry-After`.
    pub retry_at_ms: Option<i64>,
}

impl Refusal {
    /// 401 `UNAUTHORIZED` (or a 401 without a code): the app refuses our credentials.
    pub fn credentials_refused(&self) -> bool {
        self.status == 401 && self.code.as_deref() != Some("ACCOUNT_SUSPENDED")
    }

    /// 401 `ACCOUNT_SUSPENDED`: the account behind the channel is suspended.
    pub fn suspended(&self) -> bool {
        self.code.as_deref() == Some("ACCOUNT_SUSPENDED")
    }

    /// One line: status, code and message.
    pub fn describe(&self) -> String {
        match &self.code {
            Some(code) => format!("{} {code}: {}", self.status, self.message),
            None => format!("{}: {}", self.status, self.message),
        }
    }
}

/// An answer with what the hub keeps of it.
#[derive(Debug, Clone)]
pub struct Called {
    /// What it means.
    pub answer: Answer,
    /// The envelope's `additional_data` (getConversations' `after` cursor), if any.
    pub additional: Option<Value>,
    /// The HTTP status, if the app answered.
    pub status: Option<u16>,
    /// The start of the body, for `app calls` and whoever debugs.
    pub excerpt: Option<String>,
}

impl AppClient {
    /// A client that follows redirects only within the same host (never to another, where the
    /// app's credentials would go), at most 3.
    pub fn new() -> Self {
        let policy = reqwest::redirect::Policy::custom(|attempt| {
            let same_host = attempt.previous().first().is_some_and(|first| {
                first.host_str() == attempt.url().host_str()
                    && first.port_or_known_default() == attempt.url().port_or_known_default()
            });
            if same_host && attempt.previous().len() <= 3 {
                attempt.follow()
            } else {
                attempt.stop()
            }
        });
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .redirect(policy)
            .user_agent(concat!("pdchannels/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("a TLS backend is available");
        Self { http }
    }

    /// Calls `endpoint` of `app` with GET (or DELETE for deleteChannelById), its URL's
    /// placeholders filled from `values` and `query` appended. `None` when the app's manifest
    /// does not have the endpoint.
    pub async fn get(
        &self,
        app: &AppCredentials,
        endpoint: Endpoint,
        values: &[(&str, &str)],
        query: &[(&str, String)],
    ) -> Option<Called> {
        let mut url = match app.manifest.url(endpoint, values)? {
            Ok(url) => url,
            Err(why) => return Some(unsendable(&why)),
        };
        if !query.is_empty() {
            let mut pairs = url.query_pairs_mut();
            for (name, value) in query {
                pairs.append_pair(name, value);
            }
        }
        let method = if endpoint == Endpoint::DeleteChannelById {
            reqwest::Method::DELETE
        } else {
            reqwest::Method::GET
        };
        let request = self
            .http
            .request(method, url.clone())
            .timeout(timeout(endpoint))
            .header(reqwest::header::AUTHORIZATION, basic_auth(app))
            .header(reqwest::header::ACCEPT, "application/json");
        let called = send(request, &secrets_of(app)).await;
        metrics::counter!(
            "pdchannels_app_calls_total",
            "endpoint" => endpoint.key(),
            "outcome" => outcome_label(&called.answer),
        )
        .increment(1);
        // The URL without credentials (there are none in it: they go in a header).
        tracing::info!(app = %app.name, endpoint = endpoint.key(), url = %url, status = ?called.status, outcome = outcome_label(&called.answer), "called a provider app");
        Some(called)
    }
}

impl AppClient {
    /// postMessage: the reply as `multipart/form-data` (`message`, `senderId`,
    /// `conversationId`, one `recipientIds[]` part per recipient), with an `Idempotency-Key`
    /// (the reply's local id; harmless to apps that ignore it). Made once: it is not idempotent,
    /// so a failure is the caller's to retry on request. `None` without the endpoint.
    pub async fn post_message(
        &self,
        app: &AppCredentials,
        outgoing: &pdchannels_store::Outgoing,
    ) -> Option<Called> {
        let url = match app.manifest.url(
            Endpoint::PostMessage,
            &[("providerChannelId", &outgoing.channel_id)],
        )? {
            Ok(url) => url,
            Err(why) => return Some(unsendable(&why)),
        };
        let mut form = reqwest::multipart::Form::new()
            .text("message", outgoing.message.clone())
            .text("senderId", outgoing.sender_id.clone())
            .text("conversationId", outgoing.conversation_id.clone());
        for recipient in &outgoing.recipient_ids {
            form = form.text("recipientIds[]", recipient.clone());
        }
        let request = self
            .http
            .post(url.clone())
            .timeout(timeout(Endpoint::PostMessage))
            .header(reqwest::header::AUTHORIZATION, basic_auth(app))
            .header(reqwest::header::ACCEPT, "application/json")
            .header("idempotency-key", &outgoing.local_id)
            .multipart(form);
        let called = send(request, &secrets_of(app)).await;
        metrics::counter!(
            "pdchannels_app_calls_total",
            "endpoint" => Endpoint::PostMessage.key(),
            "outcome" => outcome_label(&called.answer),
        )
        .increment(1);
        tracing::info!(app = %app.name, endpoint = "postMessage", url = %url, status = ?called.status, outcome = outcome_label(&called.answer), "called a provider app");
        Some(called)
    }
}

/// A call that cannot be made: an id no URL can carry. Answered as a refusal, so the call ends
/// with the reason rather than being tried again.
fn unsendable(why: &str) -> Called {
    Called {
        answer: Answer::Refused(Refusal {
            status: 400,
            code: Some("UNSENDABLE_ID".to_owned()),
            message: format!("not sent: {why}"),
            retry_at_ms: None,
        }),
        additional: None,
        status: None,
        excerpt: None,
    }
}

/// `Authorization: Basic base64(client_id:client_secret)`.
fn basic_auth(app: &AppCredentials) -> String {
    let pair = format!("{}:{}", app.client_id, app.client_secret.expose_secret());
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

/// Each endpoint's total time (provider-apps research: the app may call its own provider).
fn timeout(endpoint: Endpoint) -> Duration {
    match endpoint {
        Endpoint::GetConversations => Duration::from_secs(30),
        Endpoint::PostMessage => Duration::from_secs(15),
        _ => Duration::from_secs(10),
    }
}

fn outcome_label(answer: &Answer) -> &'static str {
    match answer {
        Answer::Data(_) => "ok",
        Answer::Refused(_) => "refused",
        Answer::Failed(_) => "failed",
    }
}

/// What must never be repeated from an app's answer: an app that echoes the request (some
/// error pages do) would otherwise hand the hub's credentials to whoever reads its words.
fn secrets_of(app: &AppCredentials) -> [String; 2] {
    let header = basic_auth(app);
    let encoded = header.trim_start_matches("Basic ").to_owned();
    [app.client_secret.expose_secret().to_owned(), encoded]
}

/// `text` with every secret in `secrets` replaced by `***`.
fn redact(text: &str, secrets: &[String]) -> String {
    secrets
        .iter()
        .filter(|s| !s.is_empty())
        .fold(text.to_owned(), |text, secret| {
            text.replace(secret.as_str(), "***")
        })
}

/// Whether the hub may call `app` now: not while it refuses the hub's credentials, nor before
/// the time it asked the hub to wait until. `Err` says why, for whoever asked.
pub fn callable(app: &AppCredentials) -> Result<(), String> {
    if app.credentials_invalid_at_ms.is_some() {
        return Err(format!(
            "the app {} refuses the hub's credentials; `pdchannels app add {} --replace` gives new ones",
            app.name, app.name
        ));
    }
    if let Some(until) = app.paused_until_ms.filter(|until| *until > now_ms()) {
        let at = pdchannels_model::Timestamp::from_unix_millis(until)
            .map_or_else(|| until.to_string(), |t| t.to_string());
        return Err(format!(
            "the app {} asked the hub to wait until {at}",
            app.name
        ));
    }
    Ok(())
}

/// The app a channel belongs to, with its credentials; `None` when it belongs to none (or its
/// app is gone).
pub async fn app_of_channel(
    store: &pdchannels_store::Store,
    channel_id: &str,
) -> Result<Option<AppCredentials>, pdchannels_store::StoreError> {
    match store.channel_app(channel_id).await? {
        Some(name) => store.app_credentials(&name).await,
        None => Ok(None),
    }
}

/// Remembers what a refusal says about the app, for every later call (queued or on demand): a
/// 401 `UNAUTHORIZED` stops calls until new credentials, a 429 pauses them until its time.
pub async fn remember_refusal(
    store: &pdchannels_store::Store,
    app: &str,
    refusal: &Refusal,
) -> Result<(), pdchannels_store::StoreError> {
    let said = refusal.describe();
    if refusal.credentials_refused() {
        store
            .set_app_state(app, &pdchannels_store::AppState::CredentialsInvalid(said))
            .await
    } else if let Some(at_ms) = refusal.retry_at_ms {
        store
            .set_app_state(app, &pdchannels_store::AppState::PausedUntil(at_ms, said))
            .await
    } else {
        Ok(())
    }
}

/// Sends a request and reads what its answer means, with `secrets` never repeated from it.
pub(crate) async fn send(request: reqwest::RequestBuilder, secrets: &[String]) -> Called {
    let response = match request.send().await {
        Ok(response) => response,
        Err(e) => {
            return Called {
                answer: Answer::Failed(transport_error(&e)),
                additional: None,
                status: None,
                excerpt: None,
            };
        }
    };
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok());
    let body = match read_capped(response).await {
        Ok(body) => body,
        Err(why) => {
            return Called {
                answer: Answer::Failed(why),
                additional: None,
                status: Some(status),
                excerpt: None,
            };
        }
    };
    let text = redact(&String::from_utf8_lossy(&body), secrets);
    let excerpt: String = text.chars().take(EXCERPT_CHARS).collect();
    let answer = meaning(status, &text, retry_after);
    let additional = matches!(answer, Answer::Data(_))
        .then(|| serde_json::from_str::<Value>(&text).ok())
        .flatten()
        .and_then(|j| j.get("additional_data").cloned());
    Called {
        answer,
        additional,
        status: Some(status),
        excerpt: Some(excerpt),
    }
}

fn transport_error(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "the app did not answer in time".to_owned()
    } else if e.is_connect() {
        "could not connect to the app".to_owned()
    } else if e.is_redirect() {
        "the app redirected too often".to_owned()
    } else {
        // reqwest's words name the URL, which holds no credentials.
        format!("the call to the app failed: {e}")
    }
}

async fn read_capped(mut response: reqwest::Response) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                    return Err(format!(
                        "the app's answer is larger than {} MiB",
                        MAX_ANSWER_BYTES / (1024 * 1024)
                    ));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(e) => {
                return Err(format!(
                    "the app's answer broke off: {}",
                    transport_error(&e)
                ));
            }
        }
    }
}

/// What an answer means, from its status and body. Public for the fuzz target
/// (`fuzz/fuzz_targets/app_answers.rs`).
pub fn meaning(status: u16, body: &str, retry_after_secs: Option<i64>) -> Answer {
    let json: Option<Value> = serde_json::from_str(body).ok();
    if (200..300).contains(&status) {
        return match json {
            Some(Value::Object(object)) => match object.get("success") {
                Some(Value::Bool(false)) => Answer::Failed(format!(
                    "the app answered {status} with success false: {}",
                    app_message(&Value::Object(object.clone())).unwrap_or_default()
                )),
                // The envelope's data; an object without `success` is a bare answer.
                Some(_) => Answer::Data(object.get("data").cloned().unwrap_or(Value::Null)),
                None => Answer::Data(Value::Object(object)),
            },
            Some(other) => Answer::Data(other),
            None if status == 204 || body.trim().is_empty() => Answer::Data(Value::Null),
            None => Answer::Failed(format!(
                "the app answered {status} with a body that is not JSON: {}",
                first_line(body)
            )),
        };
    }
    if status >= 500 || status == 408 {
        return Answer::Failed(format!(
            "the app answered {status}: {}",
            json.as_ref()
                .and_then(app_message)
                .unwrap_or_else(|| first_line(body))
        ));
    }
    let code = json.as_ref().and_then(|j| {
        j.pointer("/data/code")
            .or_else(|| j.get("code"))
            .and_then(Value::as_str)
            .map(str::to_owned)
    });
    let retry_at_ms = (status == 429).then(|| {
        let now = now_ms();
        let by = json
            .as_ref()
            .and_then(|j| j.pointer("/data/retry_by").or_else(|| j.get("retry_by")))
            .and_then(Value::as_str)
            .and_then(|t| {
                time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
            })
            .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64);
        // A time already past (or a negative Retry-After) says nothing: the default then,
        // rather than calling again at once.
        let wait = by
            .map(|at| at - now)
            .or(retry_after_secs.map(|s| s.saturating_mul(1_000)))
            .filter(|wait| *wait > 0)
            .unwrap_or(60_000);
        // At least a second, at most an hour: an app's clock or header may be wrong.
        now + wait.clamp(1_000, 3_600_000)
    });
    Answer::Refused(Refusal {
        status,
        code,
        message: json
            .as_ref()
            .and_then(app_message)
            .unwrap_or_else(|| first_line(body)),
        retry_at_ms,
    })
}

/// `data.message`, or a top-level `message` (the example app's own shape).
fn app_message(json: &Value) -> Option<String> {
    json.pointer("/data/message")
        .or_else(|| json.get("message"))
        .or_else(|| json.get("error"))
        .and_then(Value::as_str)
        .map(|m| m.chars().take(300).collect())
}

/// The start of a body that is not JSON (an HTML error page, `text/plain`), tags dropped.
fn first_line(body: &str) -> String {
    let mut text = String::new();
    let mut in_tag = false;
    for c in body.chars() {
        match c {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                text.push(' ');
            }
            _ if !in_tag => text.push(c),
            _ => {}
        }
    }
    let words: Vec<&str> = text.split_whitespace().collect();
    let line: String = words.join(" ").chars().take(200).collect();
    if line.is_empty() {
        "(an empty answer)".to_owned()
    } else {
        line
    }
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn answers_are_read_leniently() {
        assert_eq!(
            meaning(200, r#"{"success":true,"data":[1]}"#, None),
            Answer::Data(json!([1]))
        );
        // getMessageById's bare object.
        assert_eq!(
            meaning(200, r#"{"id":"m1","status":"sent"}"#, None),
            Answer::Data(json!({"id": "m1", "status": "sent"}))
        );
        assert!(matches!(
            meaning(200, "<html>ok</html>", None),
            Answer::Failed(_)
        ));
        assert!(matches!(
            meaning(200, r#"{"success":false,"data":{"message":"no"}}"#, None),
            Answer::Failed(m) if m.contains("no")
        ));
        assert_eq!(meaning(204, "", None), Answer::Data(Value::Null));
    }

    #[test]
    fn refusals_keep_the_apps_code_and_words_even_from_html() {
        let Answer::Refused(r) = meaning(
            401,
            r#"{"success":false,"data":{"message":"gone","code":"ACCOUNT_SUSPENDED"}}"#,
            None,
        ) else {
            panic!()
        };
        assert!(r.suspended() && !r.credentials_refused());
        let Answer::Refused(r) = meaning(
            404,
            "<!DOCTYPE html><html><body><pre>Cannot DELETE /channels/x</pre></body></html>",
            None,
        ) else {
            panic!()
        };
        assert_eq!(r.message, "Cannot DELETE /channels/x");
        assert!(matches!(
            meaning(500, "Internal Server Error", None),
            Answer::Failed(m) if m.contains("500") && m.contains("Internal Server Error")
        ));
        let Answer::Refused(r) =
            meaning(401, r#"{"success":false,"message":"Unauthorized"}"#, None)
        else {
            panic!()
        };
        assert!(r.credentials_refused());
        assert_eq!(r.message, "Unauthorized");
    }

    #[test]
    fn a_429_says_when_to_call_again_within_bounds() {
        let now = now_ms();
        let Answer::Refused(r) = meaning(
            429,
            r#"{"success":false,"data":{"code":"RATE_LIMIT_EXCEEDED","retry_by":"2999-01-01T00:00:00Z"}}"#,
            None,
        ) else {
            panic!()
        };
        let at = r.retry_at_ms.unwrap();
        assert!(at <= now + 3_600_000 + 1_000, "capped at an hour");
        let Answer::Refused(r) = meaning(429, "slow down", Some(5)) else {
            panic!()
        };
        let at = r.retry_at_ms.unwrap();
        assert!((now + 4_000..now + 7_000).contains(&at));
        let Answer::Refused(r) = meaning(429, "", None) else {
            panic!()
        };
        assert!(r.retry_at_ms.unwrap() >= now + 59_000, "60 s by default");
        // A retry_by in the past, a negative Retry-After: the default, not at once (found by
        // an outside test: the hub called every second).
        let past = r#"{"data":{"retry_by":"2001-01-01T00:00:00Z"}}"#;
        let Answer::Refused(r) = meaning(429, past, Some(-10)) else {
            panic!()
        };
        assert!(r.retry_at_ms.unwrap() >= now + 59_000);
    }
}
