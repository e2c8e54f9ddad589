//! The four Channels API operations, wire-compatible with Pipedrive's.

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use pdchannels_model::{
    AddChannel, ApiResponse, Channels, ChannelsError, DeleteChannel, DeleteConversation, Operation,
    QueuedResponse, ReceiveMessage, ReceiveOutcome, Success,
};
use pdchannels_relay::Delivery;
use serde_json::{Value, json};

use crate::auth::TokenId;
use crate::body::json_body;
use crate::error::ApiError;
use crate::extract::ApiPath;
use crate::state::AppState;

/// `POST /channels`. On this hub's own store, the answer carries what Pipedrive's did
/// (`marketplace_client_id`, `pd_company_id`, `pd_user_id`), and a channel created with an app's
/// token becomes that app's.
pub async fn add_channel(
    State(app): State<AppState>,
    token: Option<Extension<TokenId>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ApiResponse<Value>>, ApiError> {
    let value = json_body(Operation::AddChannel, &headers, body)?;
    let request =
        AddChannel::parse(&value, &app.limits).map_err(|problems| ChannelsError::Invalid {
            operation: Operation::AddChannel,
            problems,
        })?;
    let channel = app.channels.add_channel(request).await?;
    let mut answer = serde_json::to_value(&channel).unwrap_or(Value::Null);
    if let (Delivery::Local(store), Some(Extension(TokenId(token)))) = (&app.channels, token)
        && let Some(user) = store.token_user(&token).await?
    {
        let mut client_id = None;
        if let Some(name) = &user.app {
            let channel_id = channel.provider_channel_id.as_str();
            // A new channel of the app: its conversations are fetched (getConversations), as
            // Pipedrive did right after the app added it.
            if store.claim_channel(channel_id, name).await? {
                pdchannels_apps::start_sync(store, name, channel_id).await?;
            }
            client_id = store.app(name).await?.map(|a| a.client_id);
        }
        if let Value::Object(fields) = &mut answer {
            fields.insert("marketplace_client_id".into(), json!(client_id));
            fields.insert("pd_company_id".into(), json!(app.company.id));
            fields.insert("pd_user_id".into(), json!(user.user_id));
        }
    }
    Ok(Json(ApiResponse::ok(answer)))
}

/// `POST /channels/messages/receive`
pub async fn receive_message(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let value = json_body(Operation::ReceiveMessage, &headers, body)?;
    let message =
        ReceiveMessage::parse(&value, &app.limits).map_err(|problems| ChannelsError::Invalid {
            operation: Operation::ReceiveMessage,
            problems,
        })?;
    let received = app.channels.receive_message(message).await?;
    Ok(match received.outcome {
        // Relayed: the upstream's own answer.
        ReceiveOutcome::Delivered { upstream } => Json(ApiResponse::ok(upstream)).into_response(),
        // Relayed, durable in the outbox, not delivered yet: accepted, not done.
        ReceiveOutcome::Queued { outbox_id, reason } => (
            StatusCode::ACCEPTED,
            Json(QueuedResponse::new(
                Some(received.message),
                outbox_id,
                reason,
            )),
        )
            .into_response(),
        _ => Json(ApiResponse::ok(received.message)).into_response(),
    })
}

/// `DELETE /channels/{id}`
pub async fn delete_channel(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Success>, ApiError> {
    let request = DeleteChannel::parse(&json!({ "id": id }), &app.limits).map_err(|problems| {
        ChannelsError::Invalid {
            operation: Operation::DeleteChannel,
            problems,
        }
    })?;
    app.channels.delete_channel(request).await?;
    Ok(Json(Success::OK))
}

/// `DELETE /channels/{channel-id}/conversations/{conversation-id}`
pub async fn delete_conversation(
    State(app): State<AppState>,
    ApiPath((channel_id, conversation_id)): ApiPath<(String, String)>,
) -> Result<Json<Success>, ApiError> {
    let payload = json!({ "channel_id": channel_id, "conversation_id": conversation_id });
    let request = DeleteConversation::parse(&payload, &app.limits).map_err(|problems| {
        ChannelsError::Invalid {
            operation: Operation::DeleteConversation,
            problems,
        }
    })?;
    app.channels.delete_conversation(request).await?;
    Ok(Json(Success::OK))
}
