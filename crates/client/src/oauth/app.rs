//! The OAuth app: its client credentials, the endpoints, and the three form POSTs Pipedrive's
//! flow needs (code exchange, refresh, revoke), each with Basic client auth.

use std::time::Duration;

use pdchannels_model::Timestamp;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::Value;

use super::error::{OAuthError, remedy};
use super::tokens::TokenSet;

/// Pipedrive's authorization endpoint.
pub const PIPEDRIVE_AUTHORIZE_URL: &str = "https://oauth.pipedrive.com/oauth/authorize";
/// Pipedrive's token endpoint.
pub const PIPEDRIVE_TOKEN_URL: &str = "https://oauth.pipedrive.com/oauth/token";
/// Pipedrive's revocation endpoint (RFC 7009).
pub const PIPEDRIVE_REVOKE_URL: &str = "https://oauth.pipedrive.com/oauth/revoke";

/// Where the authorization server lives. Configurable so the flow runs against any server
/// that follows the contract, a local one in tests included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthEndpoints {
    /// The browser goes here to approve the app.
    pub authorize_url: String,
    /// Codes and refresh tokens are exchanged here.
    pub token_url: String,
    /// Refresh tokens are revoked here on logout, when there is one.
    pub revoke_url: Option<String>,
}

impl Default for OAuthEndpoints {
    fn default() -> Self {
        Self {
            authorize_url: PIPEDRIVE_AUTHORIZE_URL.to_owned(),
            token_url: PIPEDRIVE_TOKEN_URL.to_owned(),
            revoke_url: Some(PIPEDRIVE_REVOKE_URL.to_owned()),
        }
    }
}

/// An app registered with the authorization server.
#[derive(Clone)]
pub struct OAuthApp {
    client_id: String,
    client_secret: SecretString,
    endpoints: OAuthEndpoints,
    http: reqwest::Client,
}

impl std::fmt::Debug for OAuthApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthApp")
            .field("client_id", &self.client_id)
            .field("client_secret", &"[REDACTED]")
            .field("endpoints", &self.endpoints)
            .finish()
    }
}

/// The token endpoint's 200 body.
#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default = "bearer")]
    token_type: String,
    /// Pipedrive answers the same refresh token again; kept if an answer leaves it out.
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    scope: String,
    expires_in: u64,
    #[serde(default)]
    api_domain: Option<String>,
}

fn bearer() -> String {
    "Bearer".to_owned()
}

impl OAuthApp {
    /// The app `client_id` with its secret, at `endpoints`.
    pub fn new(client_id: String, client_secret: SecretString, endpoints: OAuthEndpoints) -> Self {
        let http = reqwest::Client::builder()
            // Never follow a redirect: it would carry the client secret (Basic auth) and the
            // tokens in the form to wherever the Location points. A 3xx is a refusal naming it.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(15))
            .user_agent(concat!("pdchannels/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        Self {
            client_id,
            client_secret,
            endpoints,
            http,
        }
    }

    /// The client id.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The client secret.
    pub fn client_secret(&self) -> &SecretString {
        &self.client_secret
    }

    /// The endpoints.
    pub fn endpoints(&self) -> &OAuthEndpoints {
        &self.endpoints
    }

    /// Where to send the browser: the authorize URL with `client_id`, `redirect_uri` and `state`.
    pub fn authorize_url(&self, redirect_uri: &str, state: &str) -> Result<String, String> {
        let url = reqwest::Url::parse_with_params(
            &self.endpoints.authorize_url,
            [
                ("client_id", self.client_id.as_str()),
                ("redirect_uri", redirect_uri),
                ("state", state),
            ],
        )
        .map_err(|e| {
            format!(
                "--authorize-url must be an absolute URL ({e}), got {:?}",
                self.endpoints.authorize_url
            )
        })?;
        Ok(url.into())
    }

    /// Exchanges an authorization code (from the redirect) for tokens.
    pub async fn exchange_code(
        &self,
        code: &str,
        redirect_uri: &str,
    ) -> Result<TokenSet, OAuthError> {
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
        ];
        let response: TokenResponse = self.token_call(&form).await?;
        if response.refresh_token.as_deref().is_none_or(str::is_empty) {
            return Err(OAuthError::Decode {
                url: self.endpoints.token_url.clone(),
                path: "refresh_token".to_owned(),
                message: "the code exchange answered no refresh token, so the login could not \
                          be kept fresh"
                    .to_owned(),
            });
        }
        Ok(self.token_set(response, None, None))
    }

    /// Exchanges the refresh token in `current` for a new access token.
    pub async fn refresh(&self, current: &TokenSet) -> Result<TokenSet, OAuthError> {
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", current.refresh_token.expose_secret()),
        ];
        let response: TokenResponse = self.token_call(&form).await?;
        Ok(self.token_set(
            response,
            Some(&current.refresh_token),
            current.api_domain.as_deref(),
        ))
    }

    /// Revokes a refresh token (RFC 7009), which uninstalls the app for the company. `Ok(false)`
    /// when there is no revocation endpoint to call.
    pub async fn revoke(&self, tokens: &TokenSet) -> Result<bool, OAuthError> {
        let Some(url) = &self.endpoints.revoke_url else {
            return Ok(false);
        };
        let form = [
            ("token", tokens.refresh_token.expose_secret()),
            ("token_type_hint", "refresh_token"),
        ];
        let (status, body) = self.post_form(url, &form).await?;
        if (200..300).contains(&status) {
            Ok(true)
        } else {
            Err(rejected(url, status, &body))
        }
    }

    fn token_set(
        &self,
        response: TokenResponse,
        previous_refresh: Option<&SecretString>,
        previous_domain: Option<&str>,
    ) -> TokenSet {
        let lifetime_ms =
            i64::try_from(response.expires_in.saturating_mul(1000)).unwrap_or(i64::MAX / 2);
        TokenSet {
            access_token: response.access_token.into(),
            refresh_token: match (response.refresh_token, previous_refresh) {
                (Some(fresh), _) => fresh.into(),
                (None, Some(previous)) => previous.clone(),
                (None, None) => SecretString::from(String::new()),
            },
            token_type: response.token_type,
            scope: response.scope,
            expires_at_ms: Timestamp::now().unix_millis().saturating_add(lifetime_ms),
            api_domain: response
                .api_domain
                .or_else(|| previous_domain.map(str::to_owned)),
        }
    }

    async fn token_call(&self, form: &[(&str, &str)]) -> Result<TokenResponse, OAuthError> {
        let url = &self.endpoints.token_url;
        let (status, body) = self.post_form(url, form).await?;
        if !(200..300).contains(&status) {
            return Err(rejected(url, status, &body));
        }
        let decoder = &mut serde_json::Deserializer::from_str(&body);
        serde_path_to_error::deserialize(decoder).map_err(|e| OAuthError::Decode {
            url: url.clone(),
            path: e.path().to_string(),
            message: e.inner().to_string(),
        })
    }

    /// One form-encoded POST with Basic client auth, as the contract requires.
    async fn post_form(
        &self,
        url: &str,
        form: &[(&str, &str)],
    ) -> Result<(u16, String), OAuthError> {
        let unreachable = |e: reqwest::Error| OAuthError::Unreachable {
            url: url.to_owned(),
            message: crate::client::error_chain(&e),
        };
        let response = self
            .http
            .post(url)
            .basic_auth(&self.client_id, Some(self.client_secret.expose_secret()))
            .form(form)
            .send()
            .await
            .map_err(unreachable)?;
        let status = response.status().as_u16();
        if response.status().is_redirection() {
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .map(|v| {
                    String::from_utf8_lossy(v.as_bytes())
                        .chars()
                        .take(512)
                        .collect()
                })
                .unwrap_or_else(|| "(no Location header)".to_owned());
            return Err(OAuthError::Rejected {
                url: url.to_owned(),
                status,
                message: format!("a redirect to {location}, which is never followed"),
                remedy: "Point --token-url / --revoke-url at the endpoint itself, not at a URL \
                         that redirects (the secret and tokens would travel there)",
            });
        }
        let body = response.text().await.map_err(unreachable)?;
        Ok((status, body))
    }
}

/// A refusal, in the endpoint's own words: `message`, `error_description`, or `error`. Only a
/// 4xx other than 408 and 429 is the request's fault (Pipedrive documents 400s for an invalid
/// grant or client); the rest says the endpoint is struggling, and waiting will do.
fn rejected(url: &str, status: u16, body: &str) -> OAuthError {
    if matches!(status, 408 | 429 | 500..) {
        return OAuthError::Unreachable {
            url: url.to_owned(),
            message: format!("it answered {status}; trying again later"),
        };
    }
    let json: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let text = |v: &Value| v.as_str().filter(|s| !s.is_empty()).map(str::to_owned);
    let message = text(&json["message"])
        .or_else(|| text(&json["error_description"]))
        .or_else(|| text(&json["error"]))
        .or_else(|| text(&json["error"]["message"]))
        .unwrap_or_else(|| {
            let trimmed: String = body.trim().chars().take(200).collect();
            if trimmed.is_empty() {
                format!("HTTP {status}")
            } else {
                trimmed
            }
        });
    OAuthError::Rejected {
        url: url.to_owned(),
        status,
        remedy: remedy(&message),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_authorize_url_carries_client_redirect_and_state() {
        let app = OAuthApp::new(
            "cid 1".to_owned(),
            "s".to_owned().into(),
            OAuthEndpoints::default(),
        );
        let url = app
            .authorize_url("http://127.0.0.1:8788/callback", "xyz")
            .expect("url");
        assert_eq!(
            url,
            "https://oauth.pipedrive.com/oauth/authorize?client_id=cid+1&redirect_uri=http%3A%2F%2F127.0.0.1%3A8788%2Fcallback&state=xyz"
        );
    }

    #[test]
    fn refusals_quote_the_endpoint_and_say_what_to_do() {
        let error = rejected(
            "http://x/oauth/token",
            400,
            r#"{"error":"invalid_grant","error_description":"Invalid grant: refresh_token is invalid"}"#,
        );
        let text = error.to_string();
        assert!(
            text.contains("Invalid grant: refresh_token is invalid"),
            "{text}"
        );
        assert!(text.contains("pdchannels auth login"), "{text}");
        let error = rejected("http://x/oauth/token", 401, "");
        assert!(error.to_string().contains("HTTP 401"), "{error}");
        assert!(error.needs_login());
        for status in [408, 429, 500, 503] {
            let error = rejected("http://x/oauth/token", status, "busy");
            assert!(!error.needs_login(), "{status}: {error}");
        }
    }
}
