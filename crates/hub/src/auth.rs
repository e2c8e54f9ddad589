//! API-token authentication, as Pipedrive accepts tokens: the `x-api-token` header, the
//! `api_token` query parameter, or `Authorization: Bearer`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use pdchannels_store::Store;

use crate::error::ApiError;

/// How long a verified token is trusted without asking the database again. A token revoked by
/// `pdchannels token revoke` (possibly in another process) stops working within this time.
const TRUST_FOR: Duration = Duration::from_secs(2);

/// Recently verified tokens: presented token -> (token id, when verified).
type Verified = HashMap<String, (Arc<str>, Instant)>;

/// The id of the token a request was authenticated with.
#[derive(Debug, Clone)]
pub struct TokenId(pub Arc<str>);

/// Verifies tokens against the store, remembering recent answers so a busy client does not cost
/// a database read per request.
#[derive(Clone)]
pub struct Authenticator {
    store: Store,
    // Keyed by the presented token; entries expire after TRUST_FOR.
    recent: Arc<Mutex<Verified>>,
}

impl Authenticator {
    pub fn new(store: Store) -> Self {
        Self {
            store,
            recent: Arc::default(),
        }
    }

    async fn verify(&self, presented: &str) -> Result<Option<Arc<str>>, ApiError> {
        let now = Instant::now();
        if let Some((id, at)) = self.lock().get(presented)
            && now.duration_since(*at) < TRUST_FOR
        {
            return Ok(Some(id.clone()));
        }
        let id = self.store.verify_token(presented).await.map_err(|e| {
            ApiError::Channels(pdchannels_model::ChannelsError::Unavailable(e.to_string()))
        })?;
        let mut recent = self.lock();
        match id {
            Some(id) => {
                if recent.len() > 10_000 {
                    recent.retain(|_, (_, at)| now.duration_since(*at) < TRUST_FOR);
                }
                let id: Arc<str> = id.into();
                recent.insert(presented.to_owned(), (id.clone(), now));
                Ok(Some(id))
            }
            None => {
                recent.remove(presented);
                Ok(None)
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Verified> {
        // A panic while holding this lock leaves a usable map behind.
        self.recent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The token a request presents, in Pipedrive's order of precedence: the API token (header,
/// then query), then OAuth-style Bearer.
fn presented_token(request: &Request) -> Option<String> {
    if let Some(v) = request
        .headers()
        .get("x-api-token")
        .and_then(|v| v.to_str().ok())
    {
        return Some(v.trim().to_owned());
    }
    if let Some(query) = request.uri().query() {
        for pair in query.split('&') {
            if let Some(value) = pair.strip_prefix("api_token=") {
                return Some(percent_decode(value));
            }
        }
    }
    let auth = request
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = auth.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
}

/// Tokens are hex, but a client may percent-encode anything; decode the common forms.
fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match u8::from_str_radix(&value[i + 1..i + 3], 16) {
                Ok(b) => {
                    out.push(b);
                    i += 3;
                    continue;
                }
                Err(_) => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Rejects requests without a valid token; adds [`TokenId`] to those with one.
pub async fn require_token(
    State(auth): State<Authenticator>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some(token) = presented_token(&request).filter(|t| !t.is_empty()) else {
        return ApiError::Unauthorized.into_response();
    };
    match auth.verify(&token).await {
        Ok(Some(id)) => {
            request.extensions_mut().insert(TokenId(id));
            next.run(request).await
        }
        Ok(None) => ApiError::Unauthorized.into_response(),
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::percent_decode;

    #[test]
    fn decodes_percent_escapes() {
        assert_eq!(percent_decode("pdc_ab%2Fcd"), "pdc_ab/cd");
        assert_eq!(percent_decode("plain"), "plain");
        assert_eq!(percent_decode("bad%zz"), "bad%zz");
        assert_eq!(percent_decode("end%4"), "end%4");
    }
}
