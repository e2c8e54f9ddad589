//! `POST /channels/{id}/conversations/{conversation-id}/messages`: a reply, sent through the
//! channel's provider app (postMessage). Ours, not Pipedrive's: Pipedrive's inbox sent replies.
//!
//! Body: `{"message": "...", "template_id"?: "...", "retry"?: "LOCAL_ID"}`. The reply is stored
//! before the app is called; if the app does not take it, it stays `failed` and the same request
//! with `retry` sends it again (the app's postMessage is never retried on its own).

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use pdchannels_apps::{Reply, SendError, Sent};
use pdchannels_model::{ApiResponse, Operation};
use serde_json::Value;

use crate::body::json_body;
use crate::error::ApiError;
use crate::extract::ApiPath;
use crate::state::AppState;

/// `POST /channels/{id}/conversations/{conversation-id}/messages`
pub async fn send_message(
    State(app): State<AppState>,
    ApiPath((channel_id, conversation_id)): ApiPath<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ApiResponse<Sent>>, ApiError> {
    let value = json_body(Operation::AddChannel, &headers, body)?;
    let reply = read_reply(&value, channel_id, conversation_id)?;
    match pdchannels_apps::send_reply(&app.store, &app.apps, reply).await {
        Ok(sent) => Ok(Json(ApiResponse::ok(sent))),
        Err(e) => Err(answer(e)),
    }
}

fn invalid(path: &str, reason: impl Into<String>) -> ApiError {
    let reason = reason.into();
    ApiError::request(
        StatusCode::BAD_REQUEST,
        "INVALID_BODY",
        format!("The reply is not valid: `{path}`: {reason}"),
        "Send {\"message\": \"text\"} (and \"template_id\" for a template, or \"retry\": \"LOCAL_ID\" to send a failed reply again).",
    )
    .at(path, reason)
}

fn read_reply(
    value: &Value,
    channel_id: String,
    conversation_id: String,
) -> Result<Reply, ApiError> {
    let Some(object) = value.as_object() else {
        return Err(invalid("", "the body must be a JSON object"));
    };
    if let Some(unknown) = object
        .keys()
        .find(|k| !["message", "template_id", "retry"].contains(&k.as_str()))
    {
        return Err(invalid(
            unknown,
            "unknown field; expected message, template_id or retry",
        ));
    }
    let text = |key: &str| -> Result<Option<String>, ApiError> {
        match object.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(invalid(
                key,
                format!(
                    "must be a string, got {}",
                    pdchannels_model::json_kind(other)
                ),
            )),
        }
    };
    let retry = text("retry")?;
    let message = text("message")?;
    if message.is_none() && retry.is_none() {
        return Err(invalid(
            "message",
            "required field is missing: the text to send",
        ));
    }
    Ok(Reply {
        channel_id,
        conversation_id,
        message: message.unwrap_or_default(),
        template_id: text("template_id")?,
        retry,
    })
}

fn answer(error: SendError) -> ApiError {
    match error {
        SendError::Invalid(field, why) => invalid(field, why),
        SendError::NotFound(what) => ApiError::request(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            format!("Cannot send: {what}."),
            "Check the ids: GET /v1/channels and GET /v1/channels/{id}/conversations list them.",
        ),
        SendError::Refused(why) => ApiError::request(
            StatusCode::CONFLICT,
            "CANNOT_SEND",
            format!("Cannot send: {why}."),
            "Nothing was stored or sent.",
        ),
        SendError::Failed { local_id, reason } => ApiError::request(
            StatusCode::BAD_GATEWAY,
            "APP_DID_NOT_TAKE_THE_REPLY",
            format!("The app did not take the reply {local_id}: {reason}."),
            format!(
                "The reply is stored as failed. Send it again with {{\"retry\": \"{local_id}\"}} once the app works; check first that the customer did not get it."
            ),
        ),
        SendError::Store(why) => ApiError::request(
            StatusCode::SERVICE_UNAVAILABLE,
            "SERVICE_UNAVAILABLE",
            why,
            "Try again shortly.",
        ),
    }
}
