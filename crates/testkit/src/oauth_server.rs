//! A local OAuth authorization server that follows Pipedrive's documented contract
//! (Pipedrive's OAuth documentation): `GET /oauth/authorize` redirects with a
//! code and the state; `POST /oauth/token` takes form-encoded `grant_type=authorization_code` or
//! `refresh_token` with Basic client auth and answers `{access_token, token_type, refresh_token,
//! scope, expires_in, api_domain}`, or 400 `Invalid grant: ... is invalid`; `POST /oauth/revoke`
//! revokes a refresh token. Access tokens are real API tokens of the hub under test, so the hub's
//! own 401 is what a stale token meets. Pipedrive's server cannot run here; this one keeps to
//! what its documentation says and nothing more.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use pdchannels_store::Store;
use secrecy::ExposeSecret;
use serde_json::json;

pub const CLIENT_ID: &str = "pdchannels-test-app";
pub const CLIENT_SECRET: &str = "test-client-secret";

/// Handles to the running server.
#[derive(Clone)]
pub struct OAuthServer {
    pub url: String,
    inner: Arc<Inner>,
}

struct Inner {
    hub: Store,
    api_domain: String,
    /// What `expires_in` the next answers carry.
    expires_in: AtomicU64,
    /// How long a refresh takes (to let concurrent requests pile up behind it).
    refresh_delay_ms: AtomicU64,
    refresh_calls: AtomicUsize,
    /// Issue access tokens the hub already refuses (a resource server that keeps saying 401).
    issue_refused: std::sync::atomic::AtomicBool,
    codes: Mutex<HashMap<String, String>>,
    /// The refresh tokens that still work.
    refresh_tokens: Mutex<std::collections::HashSet<String>>,
    /// The hub token ids of every access token issued.
    access_tokens: Mutex<Vec<String>>,
    next: AtomicU64,
}

impl OAuthServer {
    /// Starts on a free port; tokens it issues are API tokens of the hub whose store is `hub`,
    /// and its `api_domain` is `api_domain`.
    pub async fn start(hub: Store, api_domain: &str) -> Self {
        let inner = Arc::new(Inner {
            hub,
            api_domain: api_domain.to_owned(),
            expires_in: AtomicU64::new(3599),
            refresh_delay_ms: AtomicU64::new(0),
            refresh_calls: AtomicUsize::new(0),
            issue_refused: std::sync::atomic::AtomicBool::new(false),
            codes: Mutex::default(),
            refresh_tokens: Mutex::default(),
            access_tokens: Mutex::default(),
            next: AtomicU64::new(1),
        });
        let router = Router::new()
            .route("/oauth/authorize", get(authorize))
            .route("/oauth/token", post(token))
            .route("/oauth/revoke", post(revoke))
            .with_state(inner.clone());
        let url = crate::loopback::serve_on_loopback(router).await;
        Self { url, inner }
    }

    pub fn set_expires_in(&self, seconds: u64) {
        self.inner.expires_in.store(seconds, Ordering::SeqCst);
    }

    pub fn set_refresh_delay(&self, delay: Duration) {
        self.inner
            .refresh_delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    pub fn issue_refused_tokens(&self, refused: bool) {
        self.inner.issue_refused.store(refused, Ordering::SeqCst);
    }

    pub fn refresh_calls(&self) -> usize {
        self.inner.refresh_calls.load(Ordering::SeqCst)
    }

    /// A code as if a user had approved the app (what the redirect carries).
    pub fn approve(&self, redirect_uri: &str) -> String {
        let code = format!("code-{}", self.inner.next.fetch_add(1, Ordering::SeqCst));
        self.inner
            .codes
            .lock()
            .unwrap()
            .insert(code.clone(), redirect_uri.to_owned());
        code
    }

    /// The hub stops accepting every access token issued so far (as when they expire early).
    pub async fn revoke_access_tokens(&self) {
        let ids: Vec<String> = self.inner.access_tokens.lock().unwrap().clone();
        for id in ids {
            self.inner.hub.revoke_token(&id).await.unwrap();
        }
    }

    pub fn endpoints(&self) -> pdchannels_client::oauth::OAuthEndpoints {
        pdchannels_client::oauth::OAuthEndpoints {
            authorize_url: format!("{}/oauth/authorize", self.url),
            token_url: format!("{}/oauth/token", self.url),
            revoke_url: Some(format!("{}/oauth/revoke", self.url)),
        }
    }
}

fn error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        Json(json!({"success": false, "error": error, "error_description": description})),
    )
        .into_response()
}

async fn authorize(
    State(inner): State<Arc<Inner>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if query.get("client_id").map(String::as_str) != Some(CLIENT_ID) {
        return (StatusCode::BAD_REQUEST, "unknown client_id").into_response();
    }
    let Some(redirect_uri) = query.get("redirect_uri") else {
        return (StatusCode::BAD_REQUEST, "redirect_uri is required").into_response();
    };
    let code = format!("code-{}", inner.next.fetch_add(1, Ordering::SeqCst));
    inner
        .codes
        .lock()
        .unwrap()
        .insert(code.clone(), redirect_uri.clone());
    let state = query.get("state").cloned().unwrap_or_default();
    Redirect::to(&format!("{redirect_uri}?code={code}&state={state}")).into_response()
}

fn client_authenticated(headers: &HeaderMap) -> bool {
    use base64::Engine;
    let credentials = format!("{CLIENT_ID}:{CLIENT_SECRET}");
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(credentials)
    );
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == expected)
}

async fn token(
    State(inner): State<Arc<Inner>>,
    headers: HeaderMap,
    form: Result<Form<HashMap<String, String>>, axum::extract::rejection::FormRejection>,
) -> Response {
    let is_form = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let (true, Ok(Form(form))) = (is_form, form) else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Invalid request: content must be application/x-www-form-urlencoded",
        );
    };
    if !client_authenticated(&headers) {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_client",
            "Invalid client: client is invalid",
        );
    }
    let refresh_token = match form.get("grant_type").map(String::as_str) {
        Some("authorization_code") => {
            let code = form.get("code").cloned().unwrap_or_default();
            let redirect = inner.codes.lock().unwrap().remove(&code);
            match redirect {
                None => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "invalid_grant",
                        "Invalid grant: authorization_code is invalid",
                    );
                }
                Some(uri) if Some(&uri) != form.get("redirect_uri") => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "invalid_request",
                        "Invalid request: redirect_uri is invalid",
                    );
                }
                Some(_) => format!("refresh-{}", inner.next.fetch_add(1, Ordering::SeqCst)),
            }
        }
        Some("refresh_token") => {
            inner.refresh_calls.fetch_add(1, Ordering::SeqCst);
            let delay = inner.refresh_delay_ms.load(Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(delay)).await;
            let presented = form.get("refresh_token").cloned().unwrap_or_default();
            if !inner.refresh_tokens.lock().unwrap().contains(&presented) {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "Invalid grant: refresh_token is invalid",
                );
            }
            presented
        }
        None => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "Missing parameter: grant_type",
            );
        }
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "Unsupported grant type: grant_type is invalid",
            );
        }
    };
    let access = inner.hub.create_token("oauth").await.unwrap();
    inner
        .refresh_tokens
        .lock()
        .unwrap()
        .insert(refresh_token.clone());
    inner
        .access_tokens
        .lock()
        .unwrap()
        .push(access.info.id.clone());
    if inner.issue_refused.load(Ordering::SeqCst) {
        inner.hub.revoke_token(&access.info.id).await.unwrap();
    }
    Json(json!({
        "access_token": access.secret.expose_secret(),
        "token_type": "Bearer",
        "refresh_token": refresh_token,
        "scope": "messengers-integration base",
        "expires_in": inner.expires_in.load(Ordering::SeqCst),
        "api_domain": inner.api_domain,
    }))
    .into_response()
}

async fn revoke(
    State(inner): State<Arc<Inner>>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    if !client_authenticated(&headers) {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_client",
            "Invalid client: client is invalid",
        );
    }
    let token = form.get("token").cloned().unwrap_or_default();
    inner.refresh_tokens.lock().unwrap().remove(&token);
    StatusCode::OK.into_response()
}
