//! axum's `Query` and `Path` extractors with their rejections in the API's envelope: axum's own
//! answer is a plain-text 400 ("Failed to deserialize query string: duplicate field `limit`").

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{FromRequestParts, Path, Query};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// The query string, deserialized; a query that does not fit is a 400 `INVALID_QUERY`.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(value)) => Ok(Self(value)),
            Err(rejection) => Err(query_error(&rejection)),
        }
    }
}

fn query_error(rejection: &QueryRejection) -> ApiError {
    // E.g. "Failed to deserialize query string: duplicate field `limit`".
    let text = rejection.body_text();
    let reason = text
        .strip_prefix("Failed to deserialize query string: ")
        .unwrap_or(&text)
        .to_owned();
    let error = ApiError::request(
        StatusCode::BAD_REQUEST,
        "INVALID_QUERY",
        format!("The query string is not valid: {reason}"),
        "Send each query parameter at most once, e.g. ?limit=50&cursor=<next_cursor>.",
    );
    match backticked(&reason) {
        Some(field) => error.at(field, reason.clone()),
        None => error,
    }
}

/// The path's parameters, deserialized; a parameter that does not fit (not UTF-8 once
/// percent-decoded, say) is a 400 `INVALID_PATH` naming it.
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        // No id holds a NUL (PostgreSQL's text cannot): refused here, before any query.
        if let Ok(raw) = axum::extract::RawPathParams::from_request_parts(parts, state).await
            && let Some((key, _)) = raw.iter().find(|(_, value)| value.contains('\0'))
        {
            let reason = "contains a NUL character (%00), which no id can hold";
            return Err(ApiError::request(
                StatusCode::BAD_REQUEST,
                "INVALID_PATH",
                format!("The path parameter `{key}` {reason}."),
                "Use the id exactly as it was created.",
            )
            .at(key.to_owned(), reason));
        }
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(Self(value)),
            Err(rejection) => Err(path_error(&rejection)),
        }
    }
}

fn path_error(rejection: &PathRejection) -> ApiError {
    use axum::extract::path::ErrorKind;

    let PathRejection::FailedToDeserializePathParams(failed) = rejection else {
        // The route and its handler disagree: our bug, not the request's.
        return ApiError::request(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL_ERROR",
            format!(
                "The route's parameters could not be read: {}",
                rejection.body_text()
            ),
            "This is a bug in pdchannels; please report it with the request's method and path.",
        );
    };
    match failed.kind() {
        ErrorKind::InvalidUtf8InPathParam { key } => {
            let reason = "is not valid UTF-8 once percent-decoded";
            ApiError::request(
                StatusCode::BAD_REQUEST,
                "INVALID_PATH",
                format!("The path parameter `{key}` {reason}."),
                "Percent-encode ids as UTF-8 bytes (e.g. %C3%A9 for é); use the id exactly as it was created.",
            )
            .at(key.clone(), reason)
        }
        _ => ApiError::request(
            StatusCode::BAD_REQUEST,
            "INVALID_PATH",
            format!("The path is not valid: {}", failed.body_text()),
            "Use the ids exactly as they were created, percent-encoded as UTF-8.",
        ),
    }
}

/// The first `name` quoted in backticks in a deserializer's message, which names the field.
fn backticked(message: &str) -> Option<&str> {
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(&message[start..start + len])
}

#[cfg(test)]
mod tests {
    use super::backticked;

    #[test]
    fn finds_the_field_a_deserializer_names() {
        assert_eq!(backticked("duplicate field `limit`"), Some("limit"));
        assert_eq!(backticked("no field here"), None);
        assert_eq!(backticked("unclosed `limit"), None);
    }
}
