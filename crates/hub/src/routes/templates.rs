//! `GET /channels/{id}/templates`: the channel's message templates, from its provider app
//! (getTemplates), kept 10 minutes. Ours, not Pipedrive's: its composer asked the app itself.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use pdchannels_apps::{Template, TemplatesError};
use pdchannels_model::ApiResponse;

use crate::error::ApiError;
use crate::extract::ApiPath;
use crate::state::AppState;

/// `GET /channels/{id}/templates`
pub async fn list_templates(
    State(app): State<AppState>,
    ApiPath(channel_id): ApiPath<String>,
) -> Result<Json<ApiResponse<Vec<Template>>>, ApiError> {
    super::read::stored_here(&app)?;
    match app.templates.list(&app.store, &app.apps, &channel_id).await {
        Ok(templates) => Ok(Json(ApiResponse::ok(templates))),
        Err(TemplatesError::NotFound(_)) => Err(ApiError::request(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            format!("Channel {channel_id:?} not found."),
            "Check the provider_channel_id in the path (GET /v1/channels lists them).",
        )),
        Err(TemplatesError::Unavailable(why)) => Err(ApiError::request(
            StatusCode::CONFLICT,
            "NO_TEMPLATES",
            format!("No templates: {why}."),
            "The message says why. Templates are only needed once a conversation's reply_by has passed; before that, a reply may be free text.",
        )),
        Err(TemplatesError::Failed(why)) => Err(ApiError::request(
            StatusCode::BAD_GATEWAY,
            "APP_FAILED",
            format!("The channel's app did not give its templates: {why}."),
            "Try again later; `pdchannels app show NAME` says whether the app is paused or refuses the hub.",
        )),
        Err(TemplatesError::Store(e)) => Err(e.into()),
    }
}
