//! Logging in to the inbox and keeping the session: a browser never holds an API token, only a
//! session cookie (`HttpOnly`, `SameSite=Strict`, `Secure` behind TLS) whose SHA-256 the store
//! keeps. Every POST must come from the inbox's own pages: its `Host` and `Origin` are checked as
//! `/mcp` checks them, and it carries the session's form token.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Form, FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use secrecy::ExposeSecret;
use serde::Deserialize;

use crate::dns_rebinding::AllowedPeers;
use crate::state::AppState;

/// The cookie holding the session.
const COOKIE: &str = "pdchannels_inbox";

/// How long a session lasts.
const SESSION_MS: i64 = 12 * 60 * 60 * 1000;

/// Who may post to the inbox (the hub's own names and origins).
#[derive(Clone)]
pub struct InboxPeers(pub Arc<AllowedPeers>);

/// A logged-in request, with its session's form token.
pub struct Viewer {
    /// The API token the session acts as: whose read state the pages show.
    pub token_id: String,
    pub csrf: String,
    /// When the session ends (ms since the epoch): a live stream ends then too.
    pub expires_at_ms: i64,
    /// The cookie's secret that named this session.
    pub secret: String,
}

/// Not logged in: to the login page.
pub struct LogInFirst;

impl IntoResponse for LogInFirst {
    fn into_response(self) -> Response {
        Redirect::to("/inbox/login").into_response()
    }
}

impl FromRequestParts<AppState> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, Response> {
        // A browser may send several cookies of this name (another page on the same host can
        // set one with a narrower `Path`, which comes first): the first that names a live
        // session counts, so a stray one does not hide the person's own. (One that names a
        // live session of its own does: browsers do not keep cookies apart by port, and the
        // README says to give the inbox a host name of its own.)
        for secret in cookies(&parts.headers).take(MAX_SESSION_COOKIES) {
            match app.store.inbox_session(&secret).await {
                Ok(Some(session)) => {
                    return Ok(Viewer {
                        token_id: session.token_id,
                        csrf: session.csrf,
                        expires_at_ms: session.expires_at_ms,
                        secret,
                    });
                }
                Ok(None) => {}
                Err(e) => return Err(unavailable(&e.to_string())),
            }
        }
        Err(LogInFirst.into_response())
    }
}

/// The most session cookies of one request looked up (each is a read of the store).
const MAX_SESSION_COOKIES: usize = 4;

/// The values of the request's session cookies, in the order the browser sent them.
fn cookies(headers: &HeaderMap) -> impl Iterator<Item = String> + '_ {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(name, value)| *name == COOKIE && !value.is_empty())
        .map(|(_, value)| value.to_owned())
}

/// A POST that the inbox's own page sent: allowed `Host` and `Origin`, and the session's form
/// token (when there is a session).
pub fn check_post(
    app: &AppState,
    uri: &Uri,
    headers: &HeaderMap,
    expected_csrf: Option<&str>,
    sent_csrf: Option<&str>,
) -> Result<(), Refused> {
    if let Err(refusal) = app.inbox_peers.0.check(uri, headers) {
        return Err(Refused(explain(&refusal)));
    }
    if let Some(expected) = expected_csrf
        && sent_csrf != Some(expected)
    {
        return Err(Refused(
            "The form is out of date or did not come from the inbox: reload the page and try again."
                .to_owned(),
        ));
    }
    Ok(())
}

/// Why a POST from another name or site is refused, in the inbox's words.
fn explain(refusal: &crate::dns_rebinding::Refusal) -> String {
    use crate::dns_rebinding::Refusal;
    match refusal {
        Refusal::Host(host) => format!(
            "The inbox was reached by the name {host:?}, which this hub does not answer forms under (only loopback names by default; a protection against DNS rebinding). If people reach the hub by that name (a reverse proxy, a real DNS name), start it with --allowed-host set to that name."
        ),
        Refusal::Origin(origin) if origin == "null" => "Your browser did not say which page sent this form (Origin: null), so the inbox cannot tell it from another site's. Reload the inbox and send it again; if it happens every time, an extension or a privacy setting is hiding the origin of this site.".to_owned(),
        Refusal::Origin(origin) => format!(
            "This form came from {origin:?}, not from the inbox's own pages, and another site may not post to the inbox. If the inbox is served there on purpose, start the hub with --mcp-allowed-origin {origin}; otherwise reload the inbox and send the form from it."
        ),
    }
}

/// A POST the inbox refuses (403), and why.
pub struct Refused(String);

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        (StatusCode::FORBIDDEN, Html(page_text("Refused", &self.0))).into_response()
    }
}

pub fn unavailable(why: &str) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Html(page_text(
            "The hub's database did not answer",
            &format!("{why}. Try again in a moment."),
        )),
    )
        .into_response()
}

/// A one-paragraph page, escaped.
fn page_text(title: &str, text: &str) -> String {
    let escape = |s: &str| {
        askama::filters::escape(s, askama::filters::Html)
            .map_or_else(|_| String::new(), |e| e.to_string())
    };
    format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><link rel=\"stylesheet\" href=\"/inbox/assets/inbox.css\"><link rel=\"icon\" href=\"/inbox/assets/icon.svg\" type=\"image/svg+xml\"></head><body><main class=\"login\"><h1>{}</h1><p>{}</p><p><a href=\"/inbox\">Back to the inbox</a></p></main></body></html>",
        escape(title),
        escape(title),
        escape(text)
    )
}

#[derive(Template)]
#[template(path = "inbox/login.html")]
struct LoginPage {
    error: Option<String>,
}

/// `GET /inbox/login`
pub async fn login_page() -> Response {
    render(StatusCode::OK, &LoginPage { error: None })
}

pub fn render(status: StatusCode, page: &impl Template) -> Response {
    match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Html(page_text("The page could not be made", &e.to_string())),
        )
            .into_response(),
    }
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    token: String,
}

/// `POST /inbox/login`: a pasted API token opens a session.
pub async fn log_in(
    State(app): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    if let Err(refused) = check_post(&app, &uri, &headers, None, None) {
        return refused.into_response();
    }
    match app.store.verify_token(form.token.trim()).await {
        Ok(Some(token_id)) => open_session(&app, &headers, &token_id).await,
        Ok(None) => render(
            StatusCode::UNAUTHORIZED,
            &LoginPage {
                error: Some(
                    "That is not an active API token of this hub. `pdchannels token create` makes one; `pdchannels token list` shows them.".to_owned(),
                ),
            },
        ),
        Err(e) => unavailable(&e.to_string()),
    }
}

/// `GET /inbox/login/{link}`: a one-time link from `pdchannels inbox link` opens a session.
pub async fn log_in_with_link(
    State(app): State<AppState>,
    Path(link): Path<String>,
    headers: HeaderMap,
) -> Response {
    match app.store.use_login_link(&link).await {
        Ok(Some(token_id)) => open_session(&app, &headers, &token_id).await,
        Ok(None) => render(
            StatusCode::UNAUTHORIZED,
            &LoginPage {
                error: Some(
                    "That login link is used, expired (links last 10 minutes) or not one of this hub's. `pdchannels inbox link` makes a new one.".to_owned(),
                ),
            },
        ),
        Err(e) => unavailable(&e.to_string()),
    }
}

async fn open_session(app: &AppState, headers: &HeaderMap, token_id: &str) -> Response {
    let session = match app.store.open_inbox_session(token_id, SESSION_MS).await {
        Ok(session) => session,
        Err(e) => return unavailable(&e.to_string()),
    };
    // Behind a TLS proxy the cookie is never sent over plain HTTP.
    let secure = headers
        .get("x-forwarded-proto")
        .is_some_and(|p| p.as_bytes().eq_ignore_ascii_case(b"https"));
    let cookie = format!(
        "{COOKIE}={}; Path=/inbox; HttpOnly; SameSite=Strict; Max-Age={}{}",
        session.secret.expose_secret(),
        SESSION_MS / 1000,
        if secure { "; Secure" } else { "" }
    );
    ([(header::SET_COOKIE, cookie)], Redirect::to("/inbox")).into_response()
}

#[derive(Deserialize)]
pub struct LogoutForm {
    #[serde(default)]
    csrf: String,
}

/// `POST /inbox/logout`
pub async fn log_out(
    State(app): State<AppState>,
    viewer: Viewer,
    uri: Uri,
    headers: HeaderMap,
    Form(form): Form<LogoutForm>,
) -> Response {
    if let Err(refused) = check_post(&app, &uri, &headers, Some(&viewer.csrf), Some(&form.csrf)) {
        return refused.into_response();
    }
    if let Err(e) = app.store.end_inbox_session(&viewer.secret).await {
        return unavailable(&e.to_string());
    }
    let gone = format!("{COOKIE}=; Path=/inbox; HttpOnly; SameSite=Strict; Max-Age=0");
    ([(header::SET_COOKIE, gone)], Redirect::to("/inbox/login")).into_response()
}
