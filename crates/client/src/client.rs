//! The client: one method per Channels operation, over any base URL.

use std::sync::Arc;
use std::time::Duration;

use pdchannels_model::{AddChannel, ChannelId, ConversationId, ReceiveMessage};
use reqwest::header::HeaderMap;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{ApiError, Error};
use crate::oauth::OAuthSession;
use crate::oauth::session::Issued;
use crate::pacing::{Pacer, Ticket};

/// One call to a Channels API, as data: what the outbox stores and the relay sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamRequest {
    /// `POST` or `DELETE`.
    pub method: String,
    /// The path under the base URL, e.g. `/channels/messages/receive`.
    pub path: String,
    /// The JSON body, for POSTs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
}

impl UpstreamRequest {
    /// `POST /channels/messages/receive`
    pub fn receive_message(message: &ReceiveMessage) -> Self {
        Self {
            method: "POST".to_owned(),
            path: "/channels/messages/receive".to_owned(),
            body: Some(serde_json::to_value(message).expect("a message always serializes")),
        }
    }

    /// `POST /channels`
    pub fn add_channel(request: &AddChannel) -> Self {
        Self {
            method: "POST".to_owned(),
            path: "/channels".to_owned(),
            body: Some(serde_json::to_value(request).expect("a request always serializes")),
        }
    }

    /// `DELETE /channels/{id}`
    pub fn delete_channel(id: &ChannelId) -> Self {
        Self {
            method: "DELETE".to_owned(),
            path: format!("/channels/{}", encode_segment(id.as_str())),
            body: None,
        }
    }

    /// `DELETE /channels/{channel-id}/conversations/{conversation-id}`
    pub fn delete_conversation(channel_id: &ChannelId, conversation_id: &ConversationId) -> Self {
        Self {
            method: "DELETE".to_owned(),
            path: format!(
                "/channels/{}/conversations/{}",
                encode_segment(channel_id.as_str()),
                encode_segment(conversation_id.as_str())
            ),
            body: None,
        }
    }
}

/// Whether `id` cannot be sent as a path segment at all: `.` and `..`. Every URL parser resolves
/// them away (RFC 3986 dot-segment removal), and the WHATWG URL standard that `url` and so
/// reqwest follow treats the percent-encoded `%2E` and `%2E%2E` as dot segments too, so there is
/// no spelling of these ids that reaches the upstream as a segment: `.../conversations/..` would
/// become `DELETE /channels/{channel}`, deleting the whole channel.
pub fn is_dot_segment(id: &str) -> bool {
    matches!(id, "." | "..")
}

/// The first segment of `path` that a URL parser would resolve away (see [`is_dot_segment`]),
/// spelled plainly or percent-encoded.
fn dot_segment(path: &str) -> Option<&str> {
    path.split('/').find(|segment| {
        matches!(
            segment.to_ascii_lowercase().as_str(),
            "." | ".." | "%2e" | "%2e%2e" | ".%2e" | "%2e."
        )
    })
}

/// Percent-encodes an id for a path segment (ids are opaque strings and may hold `/`).
fn encode_segment(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// How the client proves who it is.
#[derive(Clone)]
pub enum Credentials {
    /// An API token, sent as `x-api-token`.
    ApiToken(SecretString),
    /// An OAuth access token, sent as `Authorization: Bearer` (never refreshed).
    Bearer(SecretString),
    /// An OAuth login: its access token sent as `Authorization: Bearer`, refreshed before it
    /// expires and once after a 401.
    OAuth(OAuthSession),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::ApiToken(_) => "ApiToken([REDACTED])",
            Self::Bearer(_) => "Bearer([REDACTED])",
            Self::OAuth(_) => "OAuth([REDACTED])",
        })
    }
}

/// A client for one Channels API.
#[derive(Debug, Clone)]
pub struct ChannelsClient {
    http: reqwest::Client,
    base_url: Arc<str>,
    credentials: Credentials,
    timeout: Duration,
    pacer: Arc<Pacer>,
}

/// Builds a [`ChannelsClient`].
#[derive(Debug)]
pub struct ClientBuilder {
    base_url: String,
    credentials: Option<Credentials>,
    timeout: Duration,
}

impl ClientBuilder {
    /// The credentials to send.
    pub fn credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = Some(credentials);
        self
    }

    /// How long one request may take before it counts as failed (default 10 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Checks the base URL and builds the client.
    pub fn build(self) -> Result<ChannelsClient, String> {
        let base = self.base_url.trim_end_matches('/');
        let url = reqwest::Url::parse(base)
            .map_err(|e| format!("--upstream must be an absolute URL ({e}), got {base:?}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("--upstream must be http or https, got {base:?}"));
        }
        // A token in the URL (Pipedrive's own docs show `?api_token=`) would be printed in logs
        // and answers, and calls would go to paths under the query: refused, without echoing it.
        if url.query().is_some()
            || url.fragment().is_some()
            || !url.username().is_empty()
            || url.password().is_some()
        {
            return Err(format!(
                "--upstream must be the API's base URL alone, e.g. {}://{}{}, with no query, \
                 fragment or user:password in it; give the upstream's token with \
                 --upstream-token-file PATH (or PDCHANNELS_UPSTREAM_TOKEN)",
                url.scheme(),
                url.host_str().unwrap_or("HOST"),
                url.path().trim_end_matches('/')
            ));
        }
        let credentials = self.credentials.ok_or(
            "the upstream needs credentials: --upstream-token (or PDCHANNELS_UPSTREAM_TOKEN), or `pdchannels auth login`",
        )?;
        let http = reqwest::Client::builder()
            // Never follow a redirect: a 301/302 would turn the POST into a bodiless GET (whose
            // 2xx would count as delivered), and a 307 to another host would carry the API
            // token there. A 3xx is an error naming its `Location` (see `answer`).
            .redirect(reqwest::redirect::Policy::none())
            // Idle connections are dropped before a hub's own idle timeout (60 s by default)
            // closes them, so a call is not sent on a connection the server just closed.
            .pool_idle_timeout(Duration::from_secs(30))
            .timeout(self.timeout)
            .user_agent(concat!("pdchannels/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(ChannelsClient {
            http,
            base_url: base.into(),
            credentials,
            timeout: self.timeout,
            pacer: Arc::default(),
        })
    }
}

impl ChannelsClient {
    /// A builder for the API at `base_url`, e.g. `https://COMPANY.pipedrive.com/api/v1` or a
    /// hub's `http://127.0.0.1:8787/v1`.
    pub fn builder(base_url: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            base_url: base_url.into(),
            credentials: None,
            timeout: Duration::from_secs(10),
        }
    }

    /// The base URL.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// How many requests the client lets go within `span` at most, by the upstream's rate limit
    /// as learned so far (one while it is unknown, `usize::MAX` without one). The relay claims
    /// no more calls than it can send within a fraction of its lease.
    pub fn capacity(&self, span: Duration) -> usize {
        self.pacer.capacity(span)
    }

    /// Sends one request, paced to the upstream's rate limit. Answers the 200 body's `data`
    /// (`null` for deletes). With OAuth, a 401 refreshes the token and sends once more.
    pub async fn execute(&self, request: &UpstreamRequest) -> Result<Value, Error> {
        let url = format!("{}{}", self.base_url, request.path);
        // Calls queued before ids were checked may hold one: never let it reach another path.
        if let Some(segment) = dot_segment(&request.path) {
            return Err(Error::DotSegment {
                url,
                segment: segment.to_owned(),
            });
        }
        let mut rejected: Option<Issued> = None;
        loop {
            let ticket = match self.pacer.acquire().await {
                Ok(ticket) => ticket,
                Err(wait) => return Err(Error::Held { url, wait }),
            };
            // Tokens are taken after the pacer's wait, so they are fresh when they go out.
            let issued = match (&self.credentials, &rejected) {
                (Credentials::OAuth(session), None) => Some(session.issue().await),
                (Credentials::OAuth(session), Some(rejected)) => {
                    Some(session.after_unauthorized(rejected).await)
                }
                _ => None,
            };
            let issued = match issued.transpose() {
                Ok(issued) => issued,
                Err(e) => {
                    // The slot taken above goes unused (and a probe gets no answer to learn from).
                    self.pacer.abandon(ticket);
                    return Err(e.into());
                }
            };
            let (status, headers, body) = self.send(&url, request, issued.as_ref(), ticket).await?;
            if status == 401 && rejected.is_none() && issued.is_some() {
                tracing::info!(%url, "upstream answered 401; refreshing the OAuth token once");
                rejected = issued;
                continue;
            }
            return answer(url, status, &headers, body);
        }
    }

    /// One attempt (already paced): authenticated, answered with its status, headers and body.
    async fn send(
        &self,
        url: &str,
        request: &UpstreamRequest,
        issued: Option<&Issued>,
        ticket: Ticket,
    ) -> Result<(u16, HeaderMap, String), Error> {
        let mut builder = match request.method.as_str() {
            "DELETE" => self.http.delete(url),
            _ => self.http.post(url),
        };
        builder = match (&self.credentials, issued) {
            (Credentials::ApiToken(token), _) => {
                builder.header("x-api-token", token.expose_secret())
            }
            (Credentials::Bearer(token), _) => builder.bearer_auth(token.expose_secret()),
            (Credentials::OAuth(_), Some(issued)) => {
                builder.bearer_auth(issued.tokens.access_token.expose_secret())
            }
            (Credentials::OAuth(_), None) => builder,
        };
        if let Some(body) = &request.body {
            builder = builder.json(body);
        }
        let response = match builder.send().await {
            Ok(response) => response,
            Err(e) => {
                self.pacer.abandon(ticket);
                return Err(self.transport_error(url.to_owned(), e));
            }
        };
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        self.pacer
            .observe(ticket, status, &headers, retry_after(&headers));
        match response.text().await {
            Ok(body) => Ok((status, headers, body)),
            Err(e) => Err(self.transport_error(url.to_owned(), e)),
        }
    }
}

/// What an answer means: the 200's `data`, the deprecation, or the upstream's error.
fn answer(url: String, status: u16, headers: &HeaderMap, body: String) -> Result<Value, Error> {
    if (200..300).contains(&status) {
        return decode_success(&url, &body);
    }
    if (300..400).contains(&status) {
        return Err(Error::Redirected {
            url,
            status,
            location: location(headers),
        });
    }
    if matches!(status, 404 | 410) && is_gone(&url, &body) {
        return Err(Error::Deprecated { url, status });
    }
    Err(Error::Api(api_error(
        status,
        headers,
        retry_after(headers),
        body,
    )))
}

impl ChannelsClient {
    /// A request or its answer's body that failed in transit: a timeout, or a broken connection.
    /// The message leaves out reqwest's copy of the URL: the error names it once already.
    fn transport_error(&self, url: String, e: reqwest::Error) -> Error {
        let e = e.without_url();
        if e.is_timeout() {
            Error::Timeout {
                url,
                timeout: self.timeout,
            }
        } else {
            Error::Connect {
                url,
                message: error_chain(&e),
                after_connecting: !e.is_connect(),
            }
        }
    }
}

/// The text of an error and each of its sources, `: `-joined (reqwest's own text says only
/// "error sending request"; the cause, such as "Connection refused", is in its sources).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// A redirect's `Location`, as sent (bounded: it is the upstream's text, quoted in errors).
fn location(headers: &HeaderMap) -> String {
    match headers.get(reqwest::header::LOCATION) {
        None => "(no Location header)".to_owned(),
        Some(value) => {
            let text = String::from_utf8_lossy(value.as_bytes());
            let mut shown: String = text.chars().take(512).collect();
            if shown.len() < text.len() {
                shown.push_str("...");
            }
            shown
        }
    }
}

/// `Retry-After` in seconds, or else the rate-limit reset on a 429.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let seconds =
        |name: &str| -> Option<u64> { headers.get(name)?.to_str().ok()?.trim().parse().ok() };
    seconds("retry-after")
        .or_else(|| seconds("x-ratelimit-reset"))
        .map(Duration::from_secs)
}

#[derive(Deserialize)]
struct Success {
    success: bool,
    #[serde(default)]
    data: Value,
}

fn decode_success(url: &str, body: &str) -> Result<Value, Error> {
    let decoder = &mut serde_json::Deserializer::from_str(body);
    let success: Success =
        serde_path_to_error::deserialize(decoder).map_err(|e| Error::Decode {
            url: url.to_owned(),
            path: e.path().to_string(),
            message: e.inner().to_string(),
        })?;
    if !success.success {
        return Err(Error::Decode {
            url: url.to_owned(),
            path: "success".to_owned(),
            message: "a 2xx answer with success: false".to_owned(),
        });
    }
    Ok(success.data)
}

/// A Pipedrive host's 404/410 on a Channels route, not an answer of the (working) contract: our
/// own and Pipedrive's "not found" answers are envelopes naming the channel or conversation.
fn is_gone(url: &str, body: &str) -> bool {
    let pipedrive = reqwest::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(|h| h.ends_with("pipedrive.com")))
        .unwrap_or(false);
    pipedrive && !(body.contains("Channel not found") || body.contains("Conversation not found"))
}

fn api_error(
    status: u16,
    headers: &HeaderMap,
    retry_after: Option<Duration>,
    body: String,
) -> ApiError {
    let envelope: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let text = |v: &Value| v.as_str().map(str::to_owned);
    let error = text(&envelope["error"])
        .or_else(|| text(&envelope["data"]["message"]))
        .unwrap_or_else(|| {
            let reason = reqwest::StatusCode::from_u16(status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("error");
            format!("HTTP {status} {reason}")
        });
    let daily_budget_exhausted = status == 429
        && headers
            .get("x-daily-ratelimit-token-remaining")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() == "0");
    ApiError {
        status,
        code: text(&envelope["additional_data"]["code"])
            .or_else(|| text(&envelope["data"]["code"])),
        error,
        error_info: text(&envelope["error_info"]),
        retry_after: if status == 429 || status >= 500 {
            retry_after
        } else {
            None
        },
        daily_budget_exhausted,
        body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_upstream_url_carrying_a_secret_is_refused_without_echoing_it() {
        for url in [
            "http://127.0.0.1:8801/v1?api_token=QSECRET",
            "https://user:QSECRET@acme.pipedrive.com/api/v1",
            "https://acme.pipedrive.com/api/v1#QSECRET",
        ] {
            let error = ChannelsClient::builder(url)
                .credentials(Credentials::ApiToken("t".to_owned().into()))
                .build()
                .err()
                .unwrap_or_else(|| panic!("{url} is refused"));
            assert!(!error.contains("QSECRET"), "{error}");
            assert!(error.contains("--upstream-token-file"), "{error}");
        }
    }

    #[test]
    fn dot_segments_are_found_however_spelled() {
        for path in [
            "/channels/wa/conversations/..",
            "/channels/wa/conversations/%2E%2E",
            "/channels/%2e",
            "/channels/wa/conversations/.%2E",
        ] {
            assert!(dot_segment(path).is_some(), "{path}");
        }
        assert_eq!(dot_segment("/channels/wa/conversations/...x"), None);
        assert_eq!(dot_segment("/channels/a.b/conversations/c%2Ed"), None);
    }

    #[test]
    fn ids_are_encoded_in_paths() {
        assert_eq!(encode_segment("conv/1 a"), "conv%2F1%20a");
        assert_eq!(encode_segment("plain-id_1.x~"), "plain-id_1.x~");
    }

    #[test]
    fn deprecation_is_recognised_only_on_pipedrive_hosts() {
        assert!(is_gone(
            "https://acme.pipedrive.com/api/v1/channels",
            "<html>Not Found</html>"
        ));
        assert!(!is_gone(
            "https://acme.pipedrive.com/api/v1/channels",
            r#"{"error":"Channel not found."}"#
        ));
        assert!(!is_gone("http://127.0.0.1:8787/v1/channels", "Not Found"));
    }

    #[test]
    fn credentials_never_show_in_debug_output() {
        let c = Credentials::ApiToken("pdc_secret_value".to_owned().into());
        assert!(!format!("{c:?}").contains("secret_value"));
    }
}
