//! Our read API (Pipedrive's contract has none): channels, a channel's conversations newest
//! activity first, and one conversation with its participants and messages. Pages are cut with
//! opaque cursors over a stable order.
//!
//! A hub that relays (`serve --upstream`) stores no channels, conversations or messages: they
//! live upstream. Its read API says so with a 409 `RELAYING_HUB` naming the upstream, rather
//! than answering empty pages that would look like lost data.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use pdchannels_apps::Refreshed;
use pdchannels_relay::Delivery;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::ApiError;
use crate::extract::{ApiPath, ApiQuery};
use crate::state::AppState;
use pdchannels_store::cursor::{
    decode_activity_position, decode_cursor, decode_message_position, encode_activity_position,
    encode_cursor, encode_message_position,
};

const DEFAULT_LIMIT: u32 = 50;
const MAX_LIMIT: u32 = 500;

/// `?limit=&cursor=`
#[derive(Debug, Deserialize)]
pub struct PageQuery {
    limit: Option<String>,
    cursor: Option<String>,
}

/// `{"success": true, "data": [...], "additional_data": {"next_cursor": ...}}`
#[derive(Debug, Serialize)]
pub struct PageResponse<T> {
    success: bool,
    data: T,
    additional_data: Pagination,
}

#[derive(Debug, Serialize)]
struct Pagination {
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
    limit: u32,
}

fn bad_request(error: String, info: &str) -> ApiError {
    ApiError::request(StatusCode::BAD_REQUEST, "INVALID_QUERY", error, info)
}

impl PageQuery {
    fn limit(&self) -> Result<u32, ApiError> {
        let Some(text) = &self.limit else {
            return Ok(DEFAULT_LIMIT);
        };
        match text.parse::<u32>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
            _ => Err(bad_request(
                format!("`limit` must be a whole number from 1 to {MAX_LIMIT}, got {text:?}"),
                "Omit limit for pages of 50.",
            )),
        }
    }

    /// The cursor decoded by `decode`, refused as one this API did not give out otherwise.
    fn cursor<T>(&self, decode: impl FnOnce(&str) -> Option<T>) -> Result<Option<T>, ApiError> {
        let Some(text) = &self.cursor else {
            return Ok(None);
        };
        decode(text).map(Some).ok_or_else(|| {
            bad_request(
                format!("`cursor` {text:?} is not a cursor this API gave out"),
                "Pass the additional_data.next_cursor of the previous page unchanged, or omit cursor for the first page.",
            )
        })
    }
}

/// A channel list's cursor: the row of the last channel.
fn decode_channel_row(text: &str) -> Option<i64> {
    decode_cursor(text, 1)?[0].parse().ok()
}

fn not_found(what: &str) -> ApiError {
    ApiError::request(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        format!("{what} not found."),
        "Check the provider ids in the path (the channel's provider_channel_id, not its generated id).",
    )
}

/// Refuses reads on a hub that relays: what it would read is upstream, not here.
pub(crate) fn stored_here(app: &AppState) -> Result<(), ApiError> {
    let Delivery::Upstream(relayed) = &app.channels else {
        return Ok(());
    };
    Err(ApiError::request(
        StatusCode::CONFLICT,
        "RELAYING_HUB",
        format!(
            "This hub relays to {} and stores no channels, conversations or messages itself, so its read API has nothing to read.",
            relayed.upstream()
        ),
        "Read from the upstream (its GET /v1/channels, if it is a pdchannels hub). To see what this hub relayed, run `pdchannels outbox list` on its database.",
    ))
}

/// `GET /channels`
pub async fn list_channels(
    State(app): State<AppState>,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<Json<PageResponse<Vec<Value>>>, ApiError> {
    stored_here(&app)?;
    let limit = query.limit()?;
    let after = query.cursor(decode_channel_row)?;
    let mut rows = app.store.list_channels(after, limit + 1).await?;
    let next_cursor = (rows.len() > limit as usize).then(|| {
        rows.truncate(limit as usize);
        encode_cursor(&[&rows.last().map_or(0, |(pk, _)| *pk).to_string()])
    });
    let data = rows
        .into_iter()
        .map(|(_, channel)| serde_json::to_value(channel).unwrap_or(Value::Null))
        .collect();
    Ok(Json(PageResponse {
        success: true,
        data,
        additional_data: Pagination { next_cursor, limit },
    }))
}

/// `GET /channels/{id}/conversations`
pub async fn list_conversations(
    State(app): State<AppState>,
    ApiPath(channel_id): ApiPath<String>,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<Json<PageResponse<Vec<pdchannels_store::ConversationSummary>>>, ApiError> {
    stored_here(&app)?;
    let limit = query.limit()?;
    let after = query.cursor(decode_activity_position)?;
    let mut rows = app
        .store
        .list_conversations(&channel_id, after, limit + 1)
        .await?
        .ok_or_else(|| not_found("Channel"))?;
    let next_cursor = (rows.len() > limit as usize).then(|| {
        rows.truncate(limit as usize);
        let last = rows.last().expect("limit is at least 1");
        encode_activity_position(last.last_activity_at.unix_millis(), &last.conversation_id)
    });
    Ok(Json(PageResponse {
        success: true,
        data: rows,
        additional_data: Pagination { next_cursor, limit },
    }))
}

/// `GET /channels/{id}/conversations/{conversation-id}`
pub async fn get_conversation(
    State(app): State<AppState>,
    ApiPath((channel_id, conversation_id)): ApiPath<(String, String)>,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<Json<PageResponse<pdchannels_store::ConversationPage>>, ApiError> {
    stored_here(&app)?;
    let limit = query.limit()?;
    let after = query.cursor(decode_message_position)?;
    let page = app
        .store
        .conversation_page(&channel_id, &conversation_id, after, limit)
        .await?
        .ok_or_else(|| not_found("Conversation"))?;
    let next_cursor = page.next.map(encode_message_position);
    Ok(Json(PageResponse {
        success: true,
        data: page,
        additional_data: Pagination { next_cursor, limit },
    }))
}

/// `{"success": true, "data": message, "additional_data"?: {"warning": ...}}`
#[derive(Debug, Serialize)]
pub struct MessageResponse {
    success: bool,
    data: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    additional_data: Option<Warning>,
}

#[derive(Debug, Serialize)]
struct Warning {
    /// Why the links shown may have expired.
    warning: String,
}

/// `GET /channels/{id}/conversations/{conversation-id}/messages/{message-id}`: one message as
/// stored; an attachment whose link expires gets a fresh one from the channel's app first
/// (getMessageById).
pub async fn get_message(
    State(app): State<AppState>,
    ApiPath((channel_id, conversation_id, message_id)): ApiPath<(String, String, String)>,
) -> Result<Json<MessageResponse>, ApiError> {
    stored_here(&app)?;
    let stored = app
        .store
        .message(&channel_id, &message_id)
        .await?
        .map(|m| m.message)
        .filter(|m| m["conversation_id"] == conversation_id.as_str())
        .ok_or_else(|| not_found("Message"))?;
    let refreshed = app
        .fresh_links
        .refresh(&app.store, &app.apps, &app.limits, &channel_id, stored)
        .await;
    let (data, warning) = match refreshed {
        Refreshed::AsStored(message) | Refreshed::Fresh(message) => (message, None),
        Refreshed::Stale(message, why) => (
            message,
            Some(Warning {
                warning: format!(
                    "the attachments' links may have expired: the channel's app could not renew them ({why})"
                ),
            }),
        ),
    };
    Ok(Json(MessageResponse {
        success: true,
        data,
        additional_data: warning,
    }))
}
