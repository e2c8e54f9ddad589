//! `GET /v1/users/me`: who a token is, as Pipedrive answered it. Provider apps call it right
//! after their login (Pipedrive's own example app crashes without it); each API token is one
//! user of the hub's company.

use axum::Extension;
use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use crate::auth::TokenId;
use crate::error::ApiError;
use crate::state::AppState;

/// `GET /users/me`
pub async fn me(
    State(app): State<AppState>,
    Extension(TokenId(token)): Extension<TokenId>,
) -> Result<Json<Value>, ApiError> {
    // `None`: revoked or removed between authentication and this read.
    let user = app
        .store
        .token_user(&token)
        .await?
        .ok_or(ApiError::Unauthorized(crate::error::Unauthorized::Unknown))?;
    let company = &app.company;
    Ok(Json(json!({
        "success": true,
        "data": {
            "id": user.user_id,
            "name": user.name,
            "email": "",
            "is_admin": 1,
            "is_you": true,
            "active_flag": true,
            "default_currency": "USD",
            "locale": "en_US",
            "lang": 1,
            "timezone_name": "UTC",
            "timezone_offset": "+00:00",
            "language": {"language_code": "en", "country_code": "US"},
            "company_id": company.id,
            "company_name": company.name,
            "company_domain": company.domain,
            "company_country": "",
        },
    })))
}
