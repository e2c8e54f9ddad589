//! Reading a JSON request body with errors in the API's envelope: wrong content type, a body over
//! the limit and malformed JSON each get a clear message and the right status.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, header};
use pdchannels_model::{ChannelsError, Operation, Problems};
use serde_json::Value;

use crate::error::ApiError;

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
    let body = body.map_err(|rejection| {
        let status = rejection.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::request(
                status,
                "PAYLOAD_TOO_LARGE",
                "The request body is over the size limit.",
                "Request bodies may be at most 1 MiB (see --max-body-bytes); send less per request.",
            )
        } else {
            ApiError::request(
                status,
                operation.invalid_payload_code(),
                format!("The request body could not be read: {rejection}"),
                "Send the payload again.",
            )
        }
    })?;
    serde_json::from_slice(&body).map_err(|e| {
        ApiError::Channels(ChannelsError::Invalid {
            operation,
            problems: Problems::single("", format!("the body is not valid JSON: {e}")),
        })
    })
}
