//! Request bodies: read whole within the size and time limits before any handler sees them, and
//! parsed as JSON with errors in the API's envelope (wrong content type, malformed JSON).

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Body as _;
use pdchannels_model::{ChannelsError, Operation, Problems};
use serde_json::Value;

use crate::error::ApiError;

/// How large a request body may be and how long the client may take to send it.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    pub max_bytes: usize,
    pub timeout: Duration,
}

/// Reads the request body whole, at most `max_bytes` within `timeout` of the handler starting
/// (a body sent a byte a second would otherwise hold its connection forever), answering 413 or
/// 408 in the envelope; the rest of the stack gets the buffered body.
pub async fn read_within_limits(
    State(limits): State<BodyLimits>,
    request: Request,
    next: Next,
) -> Response {
    let (parts, body) = request.into_parts();
    if body.size_hint().lower() > limits.max_bytes as u64 {
        return too_large(limits.max_bytes).into_response();
    }
    let read = tokio::time::timeout(
        limits.timeout,
        Limited::new(body, limits.max_bytes).collect(),
    );
    let bytes = match read.await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => {
            return too_large(limits.max_bytes).into_response();
        }
        Ok(Err(e)) => {
            return closing(ApiError::request(
                StatusCode::BAD_REQUEST,
                "INVALID_BODY",
                format!("The request body could not be read: {e}"),
                "Send the request again with a complete body.",
            ));
        }
        Err(_elapsed) => {
            return closing(ApiError::request(
                StatusCode::REQUEST_TIMEOUT,
                "REQUEST_TIMEOUT",
                format!(
                    "The request body did not arrive within {} s.",
                    limits.timeout.as_secs_f64()
                ),
                "Send the whole body at once. An operator can allow slower clients with `pdchannels serve --body-timeout`.",
            ));
        }
    };
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// The 413 for a body over `max_bytes`.
fn too_large(max_bytes: usize) -> Response {
    closing(ApiError::request(
        StatusCode::PAYLOAD_TOO_LARGE,
        "PAYLOAD_TOO_LARGE",
        format!("The request body is over the limit of {max_bytes} bytes."),
        "Send less per request (one message per receive call). An operator can raise the limit with `pdchannels serve --max-body-bytes`.",
    ))
}

/// An error after which the connection closes: the rest of the body was not read.
fn closing(error: ApiError) -> Response {
    let mut response = error.into_response();
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// The body as JSON, for `operation` (whose invalid-payload code malformed JSON is answered with).
pub fn json_body(
    operation: Operation,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Value, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case("application/json") {
        return Err(ApiError::request(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            operation.invalid_payload_code(),
            format!(
                "Content-Type must be application/json, got {}",
                if content_type.is_empty() {
                    "none"
                } else {
                    content_type
                }
            ),
            "Send the payload as JSON with the header Content-Type: application/json.",
        ));
    }
    // `read_within_limits` has bounded and buffered the body; this cannot fail but is handled.
    let body = body.map_err(|rejection| {
        ApiError::request(
            rejection.status(),
            operation.invalid_payload_code(),
            format!("The request body could not be read: {rejection}"),
            "Send the payload again.",
        )
    })?;
    serde_json::from_slice(&body).map_err(|e| {
        ApiError::Channels(ChannelsError::Invalid {
            operation,
            problems: Problems::single("", format!("the body is not valid JSON: {e}")),
        })
    })
}
