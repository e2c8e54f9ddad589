//! The tokens a client sends, kept fresh: refreshed shortly before they expire and once after a
//! 401, with one refresh in flight however many requests are waiting for it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use secrecy::ExposeSecret;

use super::app::OAuthApp;
use super::error::OAuthError;
use super::tokens::{TokenFile, TokenSet};

/// Refresh this long before the access token expires, so no request goes out with a token that
/// dies on the way.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(60);

/// How long a failed refresh is the answer for everyone who was waiting on it, so fifty requests
/// behind a revoked refresh token cause one call to the token endpoint, not fifty.
const FAILURE_MEMORY: Duration = Duration::from_secs(2);

/// The current tokens of one login, shared by every clone.
#[derive(Clone)]
pub struct OAuthSession {
    inner: Arc<Inner>,
}

struct Inner {
    file: Option<TokenFile>,
    state: Mutex<State>,
    /// Held for the whole of a refresh: whoever comes second finds the work done.
    refreshing: tokio::sync::Mutex<()>,
    refreshes: AtomicU64,
}

struct State {
    /// The app the tokens belong to (a new login may bring a new client secret).
    app: OAuthApp,
    tokens: Arc<TokenSet>,
    /// Goes up with every new token set; a request names the one it used.
    generation: u64,
    failure: Option<(u64, Instant, OAuthError)>,
}

/// The tokens a request was sent with, so a 401 can name which ones were refused.
#[derive(Debug, Clone)]
pub(crate) struct Issued {
    pub(crate) generation: u64,
    pub(crate) tokens: Arc<TokenSet>,
}

impl std::fmt::Debug for OAuthSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthSession")
            .field("app", &self.app())
            .field("file", &self.inner.file)
            .field("refreshes", &self.refreshes())
            .finish_non_exhaustive()
    }
}

impl OAuthSession {
    /// A session over `tokens` of `app`, saving refreshed tokens to `file` when given.
    pub fn new(app: OAuthApp, tokens: TokenSet, file: Option<TokenFile>) -> Self {
        Self {
            inner: Arc::new(Inner {
                file,
                state: Mutex::new(State {
                    app,
                    tokens: Arc::new(tokens),
                    generation: 0,
                    failure: None,
                }),
                refreshing: tokio::sync::Mutex::new(()),
                refreshes: AtomicU64::new(0),
            }),
        }
    }

    /// The session `pdchannels auth login` saved in `file`.
    pub fn from_file(file: TokenFile) -> Result<Self, OAuthError> {
        let (app, tokens) = file.load()?;
        Ok(Self::new(app, tokens, Some(file)))
    }

    /// The current tokens.
    pub fn tokens(&self) -> Arc<TokenSet> {
        self.state().tokens.clone()
    }

    /// The app.
    pub fn app(&self) -> OAuthApp {
        self.state().app.clone()
    }

    /// How many refreshes this session made (for tests and metrics).
    pub fn refreshes(&self) -> u64 {
        self.inner.refreshes.load(Ordering::Relaxed)
    }

    /// Refreshes now, whatever the expiry (`pdchannels auth refresh`).
    pub async fn refresh_now(&self) -> Result<Arc<TokenSet>, OAuthError> {
        let generation = self.state().generation;
        self.refresh_from(generation)
            .await
            .map(|issued| issued.tokens)
    }

    /// Tokens to send now: the current ones, or fresh ones if these expire within the margin.
    pub(crate) async fn issue(&self) -> Result<Issued, OAuthError> {
        let issued = self.current();
        if !issued.tokens.expires_within(REFRESH_MARGIN) {
            return Ok(issued);
        }
        self.refresh_from(issued.generation).await
    }

    /// The upstream refused `rejected` with a 401: fresh tokens, unless someone already got them.
    pub(crate) async fn after_unauthorized(&self, rejected: &Issued) -> Result<Issued, OAuthError> {
        self.refresh_from(rejected.generation).await
    }

    fn current(&self) -> Issued {
        let state = self.state();
        Issued {
            generation: state.generation,
            tokens: state.tokens.clone(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the state half-written (each write is one
        // assignment), so a poisoned lock is still good to use.
        self.inner
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Replaces the tokens of generation `seen`, once: later callers for the same generation get
    /// the result of the first (new tokens, or its failure for a short while).
    async fn refresh_from(&self, seen: u64) -> Result<Issued, OAuthError> {
        let _turn = self.inner.refreshing.lock().await;
        let (app, current) = {
            let state = self.state();
            if state.generation != seen {
                return Ok(Issued {
                    generation: state.generation,
                    tokens: state.tokens.clone(),
                });
            }
            (state.app.clone(), state.tokens.clone())
        };
        if let Some(adopted) = self.adopt_from_file(&current) {
            return Ok(adopted);
        }
        if let Some((generation, at, error)) = &self.state().failure
            && *generation == seen
            && at.elapsed() < FAILURE_MEMORY
        {
            return Err(error.clone());
        }
        match app.refresh(&current).await {
            Ok(fresh) => {
                self.inner.refreshes.fetch_add(1, Ordering::Relaxed);
                if let Some(file) = &self.inner.file
                    && let Err(e) = file.save(&app, &fresh)
                {
                    // Pipedrive hands back the same refresh token, so the file's copy still works.
                    tracing::warn!(path = %file.path().display(), error = %e, "cannot save refreshed OAuth tokens");
                }
                tracing::info!(expires_at = %fresh.expires_at(), "OAuth access token refreshed");
                Ok(self.install(None, fresh))
            }
            Err(error) => {
                tracing::warn!(%error, "OAuth refresh failed");
                self.state().failure = Some((seen, Instant::now(), error.clone()));
                Err(error)
            }
        }
    }

    /// Another process sharing the token file (or a new `auth login`) may have newer tokens.
    fn adopt_from_file(&self, current: &TokenSet) -> Option<Issued> {
        let (app, on_disk) = self.inner.file.as_ref()?.load().ok()?;
        let newer = on_disk.access_token.expose_secret() != current.access_token.expose_secret()
            && !on_disk.expires_within(REFRESH_MARGIN);
        if !newer {
            return None;
        }
        if on_disk.api_domain != current.api_domain {
            // The client's base URL was fixed at start from the old login.
            tracing::warn!(
                old = ?current.api_domain, new = ?on_disk.api_domain,
                "the saved login is for another api_domain; restart to deliver there"
            );
        }
        tracing::info!("using OAuth tokens saved by another process or a new login");
        Some(self.install(Some(app), on_disk))
    }

    fn install(&self, app: Option<OAuthApp>, tokens: TokenSet) -> Issued {
        let mut state = self.state();
        if let Some(app) = app {
            state.app = app;
        }
        state.generation += 1;
        state.tokens = Arc::new(tokens);
        state.failure = None;
        Issued {
            generation: state.generation,
            tokens: state.tokens.clone(),
        }
    }
}
