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

use crate::error::{ApiError, Unauthorized};

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
        let id = self.store.verify_token(presented).await?;
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

    /// Why `presented`, which did not verify, was refused: revoked, or never issued here. Asked
    /// only on the refusal path, so a valid token costs nothing more.
    async fn why_refused(&self, presented: &str) -> Unauthorized {
        match self.store.revoked_at(presented).await {
            Ok(Some(at_ms)) => Unauthorized::Revoked { at_ms },
            // A read failing here changes nothing: the request is refused either way.
            Ok(None) | Err(_) => Unauthorized::Unknown,
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
    if let Some(token) = request.uri().query().and_then(api_token_from_query) {
        return Some(token);
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

/// The first `api_token` parameter of a raw query string, decoded as a form would be
/// (`%XX` escapes and `+` for space). Any bytes are accepted: a malformed escape is kept as
/// written and invalid UTF-8 becomes U+FFFD, so such a token simply matches none.
/// Public for the fuzz target (`fuzz/fuzz_targets/query_token.rs`).
pub fn api_token_from_query(query: &str) -> Option<String> {
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(name, _)| name == "api_token")
        .map(|(_, value)| value.into_owned())
}

/// Rejects requests without a valid token; adds [`TokenId`] to those with one.
pub async fn require_token(
    State(auth): State<Authenticator>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some(token) = presented_token(&request).filter(|t| !t.is_empty()) else {
        return ApiError::Unauthorized(Unauthorized::Missing).into_response();
    };
    match auth.verify(&token).await {
        Ok(Some(id)) => {
            request.extensions_mut().insert(TokenId(id));
            next.run(request).await
        }
        Ok(None) => ApiError::Unauthorized(auth.why_refused(&token).await).into_response(),
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::api_token_from_query;

    #[test]
    fn decodes_the_api_token_parameter() {
        let token = |q| api_token_from_query(q);
        assert_eq!(token("api_token=pdc_ab%2Fcd").as_deref(), Some("pdc_ab/cd"));
        assert_eq!(token("a=1&api_token=plain&b=2").as_deref(), Some("plain"));
        assert_eq!(token("api_token=a+b").as_deref(), Some("a b"));
        assert_eq!(
            token("api_token=first&api_token=second").as_deref(),
            Some("first")
        );
        assert_eq!(token("api_token=").as_deref(), Some(""));
        assert_eq!(token("other=x"), None);
        assert_eq!(token(""), None);
    }

    /// Regression (issue 8 item 5): the hand-written decoder sliced `&str` at byte offsets and
    /// panicked when a `%` was followed by a multi-byte character.
    #[test]
    fn malformed_escapes_and_non_ascii_are_kept_not_panicked_on() {
        let token = |q| api_token_from_query(q);
        assert_eq!(token("api_token=bad%zz").as_deref(), Some("bad%zz"));
        assert_eq!(token("api_token=end%4").as_deref(), Some("end%4"));
        assert_eq!(token("api_token=%xé").as_deref(), Some("%xé"));
        assert_eq!(token("api_token=%é").as_deref(), Some("%é"));
        assert_eq!(token("api_token=%E9%%C3%A9").as_deref(), Some("\u{FFFD}%é"));
        assert_eq!(token("api_token=%E9%é").as_deref(), Some("\u{FFFD}%é"));
    }
}
