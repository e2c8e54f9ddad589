//! `/channels/{id}/conversations/{conversation-id}/mirror`: where the notes mirror writes a
//! conversation (ours, not Pipedrive's). `GET` shows the link (`not_looked_up`, `linked`,
//! `parked` with its candidates, `unmatched`); `PUT {"person_id", "deal_id"? | "lead_id"?,
//! "org_id"?}` links it by hand, as `pdchannels mirror link` does (the inbox uses it); `DELETE`
//! forgets the link, so that the mirror looks it up again.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use pdchannels_model::{ApiResponse, Operation};
use pdchannels_store::{MirrorLink, MirrorTarget};
use serde::Serialize;
use serde_json::Value;

use crate::body::json_body;
use crate::error::ApiError;
use crate::extract::ApiPath;
use crate::routes::read::stored_here;
use crate::state::AppState;

/// A conversation's link, as answered.
#[derive(Debug, Serialize)]
pub struct LinkView {
    /// `not_looked_up`, `linked`, `parked` or `unmatched`.
    state: String,
    /// `auto` (found by the mirror) or `manual`; absent before a look-up.
    #[serde(skip_serializing_if = "Option::is_none")]
    how: Option<String>,
    person_id: Option<i64>,
    org_id: Option<i64>,
    deal_id: Option<i64>,
    lead_id: Option<String>,
    /// A parked conversation's candidates.
    #[serde(skip_serializing_if = "Option::is_none")]
    candidates: Option<Value>,
    /// When it was last looked up or linked (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    updated_at: Option<String>,
}

impl From<Option<MirrorLink>> for LinkView {
    fn from(link: Option<MirrorLink>) -> Self {
        let Some(link) = link else {
            return Self {
                state: "not_looked_up".to_owned(),
                how: None,
                person_id: None,
                org_id: None,
                deal_id: None,
                lead_id: None,
                candidates: None,
                updated_at: None,
            };
        };
        let target = link.target.unwrap_or_default();
        let linked = link.state == "linked";
        Self {
            state: link.state,
            how: Some(link.how),
            person_id: linked.then_some(target.person_id),
            org_id: target.org_id,
            deal_id: target.deal_id,
            lead_id: target.lead_id,
            candidates: link.candidates,
            updated_at: pdchannels_model::Timestamp::from_unix_millis(link.updated_at_ms)
                .map(|t| t.to_string()),
        }
    }
}

fn not_found() -> ApiError {
    ApiError::request(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        "Conversation not found.".to_owned(),
        "Check the provider ids in the path (the channel's provider_channel_id, not its generated id).",
    )
}

/// `GET …/mirror`
pub async fn get_link(
    State(app): State<AppState>,
    ApiPath((channel_id, conversation_id)): ApiPath<(String, String)>,
) -> Result<Json<ApiResponse<LinkView>>, ApiError> {
    stored_here(&app)?;
    let link = app.store.mirror_link(&channel_id, &conversation_id).await?;
    if link.is_none()
        && app
            .store
            .conversation_page(&channel_id, &conversation_id, None, 1)
            .await?
            .is_none()
    {
        return Err(not_found());
    }
    Ok(Json(ApiResponse::ok(LinkView::from(link))))
}

/// `PUT …/mirror`
pub async fn put_link(
    State(app): State<AppState>,
    ApiPath((channel_id, conversation_id)): ApiPath<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ApiResponse<LinkView>>, ApiError> {
    stored_here(&app)?;
    let value = json_body(Operation::AddChannel, &headers, body)?;
    let target = read_target(&value)?;
    if !app
        .store
        .mirror_link_manually(&channel_id, &conversation_id, target)
        .await?
    {
        return Err(not_found());
    }
    let link = app.store.mirror_link(&channel_id, &conversation_id).await?;
    Ok(Json(ApiResponse::ok(LinkView::from(link))))
}

/// `DELETE …/mirror`
pub async fn delete_link(
    State(app): State<AppState>,
    ApiPath((channel_id, conversation_id)): ApiPath<(String, String)>,
) -> Result<Json<ApiResponse<LinkView>>, ApiError> {
    stored_here(&app)?;
    app.store
        .mirror_unlink(&channel_id, &conversation_id)
        .await?;
    get_link(State(app), ApiPath((channel_id, conversation_id))).await
}

fn invalid(path: &str, reason: impl Into<String>) -> ApiError {
    let reason = reason.into();
    ApiError::request(
        StatusCode::BAD_REQUEST,
        "INVALID_BODY",
        format!("The link is not valid: `{path}`: {reason}"),
        "Send {\"person_id\": 42} and, if the notes should also go to a deal or a lead, \"deal_id\": 7 or \"lead_id\": \"UUID\" (not both); \"org_id\" is optional.",
    )
    .at(path, reason)
}

fn read_target(value: &Value) -> Result<MirrorTarget, ApiError> {
    let Some(object) = value.as_object() else {
        return Err(invalid("", "the body must be a JSON object"));
    };
    const FIELDS: [&str; 4] = ["person_id", "deal_id", "lead_id", "org_id"];
    if let Some(unknown) = object.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(invalid(
            unknown,
            "unknown field; expected person_id, deal_id, lead_id or org_id",
        ));
    }
    let id = |key: &str| -> Result<Option<i64>, ApiError> {
        match object.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => match v.as_i64() {
                Some(n) if n >= 1 => Ok(Some(n)),
                _ => Err(invalid(
                    key,
                    format!(
                        "must be a Pipedrive id (a whole number from 1), got {}",
                        pdchannels_model::json_kind(v)
                    ),
                )),
            },
        }
    };
    let person_id = id("person_id")?.ok_or_else(|| invalid("person_id", "is required"))?;
    let deal_id = id("deal_id")?;
    let lead_id = match object.get("lead_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(MirrorTarget::lead_id(s).ok_or_else(|| {
            invalid(
                "lead_id",
                "must be a lead's id, a UUID such as \"adf21080-0e10-11eb-879b-05d71fb426ec\" (the end of the lead's address in Pipedrive)",
            )
        })?),
        Some(other) => {
            return Err(invalid(
                "lead_id",
                format!(
                    "must be a lead's id (a UUID string), got {}",
                    pdchannels_model::json_kind(other)
                ),
            ));
        }
    };
    if deal_id.is_some() && lead_id.is_some() {
        return Err(invalid(
            "lead_id",
            "a note goes to a deal or a lead, not both; leave one out",
        ));
    }
    Ok(MirrorTarget {
        person_id,
        org_id: id("org_id")?,
        deal_id,
        lead_id,
    })
}
