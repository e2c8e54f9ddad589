//! What a call to a remote Channels API can end in, and whether retrying can help.

use std::time::Duration;

/// A call that did not succeed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The upstream could not be reached (refused, reset, DNS, TLS), or the connection failed
    /// while the call was under way.
    #[error("cannot reach {url}: {message}")]
    Connect {
        /// The URL called.
        url: String,
        /// What failed.
        message: String,
        /// The failure came after the connection was made: the call may have been applied.
        after_connecting: bool,
    },
    /// No answer within the timeout. The request may have been applied: retrying is safe
    /// because receive is an upsert keyed on the message id.
    #[error("no answer from {url} within {timeout:?}")]
    Timeout {
        /// The URL called.
        url: String,
        /// The timeout.
        timeout: Duration,
    },
    /// The upstream answered with an error.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// A Pipedrive host answered 404/410 on a Channels route: the API is gone.
    #[error(
        "{url} answered {status}: Pipedrive deprecated the Channels API on 2026-02-01 and its \
         routes no longer answer. Run a pdchannels hub (`pdchannels serve`) and point \
         --upstream at it, or keep messages local (no --upstream)."
    )]
    Deprecated {
        /// The URL called.
        url: String,
        /// The status it answered.
        status: u16,
    },
    /// The upstream said to hold off (a 429 with a long `Retry-After`, a spent daily budget)
    /// for longer than a call waits inside the client: not sent; try again after `wait`.
    #[error("{url} asked us to hold off; not sent, next attempt in {}s", wait.as_secs())]
    Held {
        /// The URL not called.
        url: String,
        /// How long the hold still lasts.
        wait: Duration,
    },
    /// The upstream answered a redirect, which is never followed (a 301/302 would make the POST
    /// a bodiless GET; any redirect could carry the token to a host we were not told of).
    #[error(
        "{url} answered {status}, redirecting to {location}; redirects are never followed \
         (the call would change method or carry the token elsewhere), so nothing was delivered. \
         Fix --upstream to the URL that answers the Channels API itself (for Pipedrive \
         https://COMPANY.pipedrive.com/api/v1)"
    )]
    Redirected {
        /// The URL called.
        url: String,
        /// The 3xx status.
        status: u16,
        /// Where it pointed, as sent.
        location: String,
    },
    /// The call's path holds a `.` or `..` segment, which every URL parser resolves away: sent,
    /// it would reach another resource (a conversation `..` would delete its channel).
    #[error(
        "not sent to {url}: its path segment `{segment}` is a dot segment that HTTP clients \
         resolve away (even percent-encoded), so the call would reach another resource. An id \
         `.` or `..` cannot be relayed; delete it on the upstream with a client that sends the \
         path as it is (curl --path-as-is)"
    )]
    DotSegment {
        /// The URL that would have been called.
        url: String,
        /// The segment.
        segment: String,
    },
    /// The OAuth token could not be refreshed (a revoked refresh token, an unreachable token
    /// endpoint, or no login at all).
    #[error(transparent)]
    OAuth(#[from] crate::oauth::OAuthError),
    /// A 2xx whose body is not what the contract says.
    #[error("cannot read the answer from {url} at `{path}`: {message}")]
    Decode {
        /// The URL called.
        url: String,
        /// The JSON path that failed.
        path: String,
        /// Why.
        message: String,
    },
}

/// What to do about a 401 from the upstream: it refused the credentials we sent it. Its own
/// hint speaks to its own clients (a hub's says to create a token with `pdchannels token
/// create`, which run here would make a local token), so it is replaced by this.
const CHECK_UPSTREAM_CREDENTIALS: &str = "the upstream refused our credentials: check the \
     upstream token (--upstream-token, or --upstream-token-file; PDCHANNELS_UPSTREAM_TOKEN), or \
     with --oauth run `pdchannels auth login` again";

/// An error answered by the upstream, from its envelope.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "upstream answered {status}: {error}{}{}{}",
    code.as_deref().map(|c| format!(" ({c})")).unwrap_or_default(),
    self.advice().map(|i| format!(": {i}")).unwrap_or_default(),
    if *daily_budget_exhausted { "; the daily token budget is used up, holding until it resets" } else { "" }
)]
pub struct ApiError {
    /// The HTTP status.
    pub status: u16,
    /// `additional_data.code`, when present.
    pub code: Option<String>,
    /// `error`.
    pub error: String,
    /// `error_info`, when present.
    pub error_info: Option<String>,
    /// When the upstream said to come back (`Retry-After`, or the rate-limit reset).
    pub retry_after: Option<Duration>,
    /// The upstream said its daily token budget is used up (`x-daily-ratelimit-token-remaining: 0`).
    pub daily_budget_exhausted: bool,
    /// The whole body, for the outbox's record.
    pub body: String,
}

impl ApiError {
    /// What the error says to do: ours for a 401, else the upstream's `error_info`.
    fn advice(&self) -> Option<&str> {
        if self.status == 401 {
            Some(CHECK_UPSTREAM_CREDENTIALS)
        } else {
            self.error_info.as_deref()
        }
    }
}

/// What to do after a failed call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Retrying cannot help (a 4xx that is the request's fault): give up.
    Never,
    /// A transient failure: retry with backoff.
    Backoff,
    /// Retry no sooner than this (a 429, or a 503 with `Retry-After`).
    After(Duration),
}

impl Error {
    /// Whether the call may have reached the upstream and been applied though no answer came
    /// back: then a retried delete answered "not found" was most likely done by this send.
    pub fn may_have_been_applied(&self) -> bool {
        match self {
            Self::Timeout { .. } => true,
            Self::Connect {
                after_connecting, ..
            } => *after_connecting,
            _ => false,
        }
    }

    /// Whether and when this call may be retried.
    pub fn retry(&self) -> Retry {
        match self {
            Self::Connect { .. } | Self::Timeout { .. } => Retry::Backoff,
            Self::Held { wait, .. } => Retry::After(*wait),
            Self::Api(api) => match (api.status, api.retry_after) {
                (429, after) => Retry::After(after.unwrap_or(Duration::from_secs(2))),
                (408 | 500..=599, Some(after)) => Retry::After(after),
                (408 | 500..=599, None) => Retry::Backoff,
                _ => Retry::Never,
            },
            // The call itself is fine: hold it until someone logs in again (the session picks up
            // a new `auth login` from the token file), or until the token endpoint answers.
            Self::OAuth(e) if e.needs_login() => Retry::After(Duration::from_secs(60)),
            Self::OAuth(_) => Retry::Backoff,
            // Retried, not dead: the call itself is fine, only the address is wrong (or, for a
            // maintenance redirect, briefly elsewhere). Kept pending, the conversation keeps its
            // order and everything goes out once --upstream is fixed and the relay restarted;
            // the give-up bound ends it as dead if nobody does.
            Self::Redirected { .. } => Retry::Backoff,
            Self::Deprecated { .. } | Self::Decode { .. } | Self::DotSegment { .. } => Retry::Never,
        }
    }
}
