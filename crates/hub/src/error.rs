//! Every error the hub answers, in Pipedrive's envelope, never a bare framework error.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use pdchannels_model::{ChannelsError, ErrorBody, ErrorDetails, FieldProblem, QueuedResponse};
use serde_json::json;

/// An error answered to an HTTP client.
#[derive(Debug)]
pub enum ApiError {
    /// A Channels operation failed (validation, not found, conflict, store).
    Channels(ChannelsError),
    /// No valid API token was presented; why, for the hint.
    Unauthorized(Unauthorized),
    /// The per-token burst or the daily budget is used up until `reset_secs` from now.
    OverLimit { reset_secs: u64, daily: bool },
    /// Anything else that is the request's fault: status, code, message, what to do, and the
    /// part of the request at fault when there is one (a query or path parameter).
    Request {
        status: StatusCode,
        code: &'static str,
        error: String,
        info: String,
        problem: Option<FieldProblem>,
    },
}

/// Why a request was not authenticated. Each gets its own hint; none repeats the token sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unauthorized {
    /// No token in the header, the query or `Authorization: Bearer`.
    Missing,
    /// A token this hub never issued (a typo, another hub's, a database reset).
    Unknown,
    /// A token this hub issued and then revoked, at this time (ms since the epoch).
    Revoked { at_ms: i64 },
}

impl Unauthorized {
    fn info(self) -> String {
        match self {
            Self::Missing => "Send an API token in the x-api-token header, the api_token query parameter, or Authorization: Bearer. Create one with `pdchannels token create`.".to_owned(),
            Self::Unknown => "The API token sent is not one this hub issued (check for a typo, or a token of another hub or database). `pdchannels token list` shows this hub's tokens; `pdchannels token create` makes a new one.".to_owned(),
            Self::Revoked { at_ms } => {
                let at = pdchannels_model::Timestamp::from_unix_millis(at_ms)
                    .map_or_else(|| format!("{at_ms} ms after the epoch"), |t| t.to_string());
                format!("The API token sent was revoked on {at}. `pdchannels token list` shows this hub's tokens; `pdchannels token create` makes a new one.")
            }
        }
    }
}

impl ApiError {
    pub fn request(
        status: StatusCode,
        code: &'static str,
        error: impl Into<String>,
        info: impl Into<String>,
    ) -> Self {
        Self::Request {
            status,
            code,
            error: error.into(),
            info: info.into(),
            problem: None,
        }
    }

    /// The same error, naming the part of the request at fault in `additional_data.errors`.
    pub fn at(mut self, path: impl Into<String>, reason: impl Into<String>) -> Self {
        if let Self::Request { problem, .. } = &mut self {
            *problem = Some(FieldProblem {
                path: path.into(),
                reason: reason.into(),
            });
        }
        self
    }
}

impl From<ChannelsError> for ApiError {
    fn from(error: ChannelsError) -> Self {
        Self::Channels(error)
    }
}

/// A store that cannot answer is the API's 503, as everywhere (via `ChannelsError`).
impl From<pdchannels_store::StoreError> for ApiError {
    fn from(error: pdchannels_store::StoreError) -> Self {
        Self::Channels(error.into())
    }
}

fn envelope(status: StatusCode, body: &ErrorBody) -> Response {
    (status, axum::Json(body)).into_response()
}

/// What an over-limit answer says (REST and MCP alike).
pub fn over_limit_info(reset_secs: u64, daily: bool) -> String {
    if daily {
        // Operations cost different amounts: what is left may be too little for this one
        // without being zero (`x-daily-ratelimit-token-remaining` says how much).
        format!(
            "What is left of the daily token budget (x-daily-ratelimit-token-remaining) does not cover this request's cost; it resets at midnight UTC, in {reset_secs} s."
        )
    } else {
        format!("Too many requests for this token in the 2-second window; retry in {reset_secs} s.")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            // Accepted into the outbox: a success, answered like a queued receive.
            Self::Channels(ChannelsError::Queued {
                outbox_id, reason, ..
            }) => (
                StatusCode::ACCEPTED,
                axum::Json(QueuedResponse::<()>::new(None, outbox_id, reason)),
            )
                .into_response(),
            Self::Channels(error) => {
                let status = StatusCode::from_u16(error.http_status())
                    .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                envelope(status, &error.body())
            }
            // Pipedrive's own 401 body (SDK `UnathorizedResponse`), plus our hint and code.
            Self::Unauthorized(why) => {
                let body = json!({
                    "success": false,
                    "error": "unauthorized access",
                    "errorCode": 401,
                    "error_info": why.info(),
                    "data": null,
                    "additional_data": {"code": "UNAUTHORIZED"},
                });
                let mut response = (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response();
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"pdchannels\""),
                );
                response
            }
            Self::OverLimit { reset_secs, daily } => {
                let info = over_limit_info(reset_secs, daily);
                let body = ErrorBody {
                    success: false,
                    error: "Request over limit".to_owned(),
                    error_info: info,
                    data: None,
                    additional_data: ErrorDetails {
                        code: "RATE_LIMIT_EXCEEDED".to_owned(),
                        errors: None,
                    },
                };
                let mut response = envelope(StatusCode::TOO_MANY_REQUESTS, &body);
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(reset_secs));
                response
            }
            Self::Request {
                status,
                code,
                error,
                info,
                problem,
            } => envelope(
                status,
                &ErrorBody {
                    success: false,
                    error,
                    error_info: info,
                    data: None,
                    additional_data: ErrorDetails {
                        code: code.to_owned(),
                        errors: problem.map(|p| vec![p]),
                    },
                },
            ),
        }
    }
}
