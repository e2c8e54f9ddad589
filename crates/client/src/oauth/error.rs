//! What a call to the OAuth token endpoint can end in.

/// A token-endpoint call that did not give tokens.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum OAuthError {
    /// The token endpoint refused: a revoked or expired refresh token, a used or expired
    /// authorization code, wrong client credentials, a redirect URI that does not match.
    #[error("the OAuth token endpoint {url} answered {status}: {message}. {remedy}")]
    Rejected {
        /// The token endpoint.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The endpoint's own words, e.g. `Invalid grant: refresh_token is invalid`.
        message: String,
        /// What to do about it.
        remedy: &'static str,
    },
    /// The token endpoint could not be reached or did not answer in time.
    #[error("cannot reach the OAuth token endpoint {url}: {message}")]
    Unreachable {
        /// The token endpoint.
        url: String,
        /// What failed.
        message: String,
    },
    /// A 200 whose body is not a token response.
    #[error("cannot read the token response from {url} at `{path}`: {message}")]
    Decode {
        /// The token endpoint.
        url: String,
        /// The JSON path that failed.
        path: String,
        /// Why.
        message: String,
    },
    /// No tokens to use: never logged in, or the token file is unreadable.
    #[error("{0}")]
    NotLoggedIn(String),
}

impl OAuthError {
    /// Whether logging in again is the fix (as opposed to waiting for the endpoint).
    pub fn needs_login(&self) -> bool {
        matches!(self, Self::Rejected { .. } | Self::NotLoggedIn(_))
    }
}

/// What to tell a user for a refusal, by the message Pipedrive documents for it.
pub(crate) fn remedy(message: &str) -> &'static str {
    let message = message.to_ascii_lowercase();
    if message.contains("refresh_token") {
        "The refresh token was revoked, expired (60 days unused) or belongs to another app: \
         run `pdchannels auth login` again"
    } else if message.contains("invalid client") || message.contains("client credentials") {
        "Check --client-id and --client-secret against the app in Pipedrive's Developer Hub"
    } else if message.contains("redirect_uri") {
        "--redirect-uri must equal the app's Callback URL in Pipedrive's Developer Hub"
    } else if message.contains("authorization_code") {
        "Authorization codes live 5 minutes and work once: run `pdchannels auth login` again"
    } else {
        "Run `pdchannels auth login` again"
    }
}
