//! MCP sessions over HTTP, bounded: at most `max_total` open sessions, at most `max_per_token`
//! per API token, each closed after `idle_timeout` without a message. A session belongs to the
//! token that opened it.
//!
//! [`Sessions`] holds the counts and owners. A slot is reserved by the `/mcp` gate before rmcp
//! sees an `initialize` (so a refusal is a clear answer, not rmcp's 500), handed to
//! [`CappedSessionManager::create_session`] through a task-local (rmcp creates the session
//! inside the gate's call), and given back when rmcp closes the session: on DELETE, when it
//! idles out, or at shutdown.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::Stream;
use rmcp::model::{ClientJsonRpcMessage, ServerJsonRpcMessage};
use rmcp::transport::streamable_http_server::session::local::{
    LocalSessionManager, LocalSessionManagerError,
};
use rmcp::transport::streamable_http_server::session::{
    ServerSseMessage, SessionId, SessionManager,
};

/// The bounds on MCP sessions over HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct McpSessionLimits {
    /// Open sessions in all.
    pub max_total: usize,
    /// Open sessions per API token.
    pub max_per_token: usize,
    /// A session without a message for this long is closed.
    pub idle_timeout: Duration,
}

impl Default for McpSessionLimits {
    fn default() -> Self {
        Self {
            max_total: 200,
            max_per_token: 20,
            idle_timeout: Duration::from_secs(15 * 60),
        }
    }
}

/// Why a session cannot be opened now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    /// The token already has `max_per_token` sessions.
    Token(usize),
    /// The hub already has `max_total` sessions.
    Hub(usize),
}

/// Open sessions, their owners, and the counts the limits apply to.
#[derive(Clone)]
pub struct Sessions {
    limits: McpSessionLimits,
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    owners: HashMap<SessionId, Arc<str>>,
    /// Sessions and reservations per token; a token with none has no entry.
    per_token: HashMap<Arc<str>, usize>,
    /// Sessions and reservations in all.
    total: usize,
}

impl State {
    fn release(&mut self, token: &Arc<str>) {
        self.total -= 1;
        if let Some(count) = self.per_token.get_mut(token) {
            *count -= 1;
            if *count == 0 {
                self.per_token.remove(token);
            }
        }
    }
}

impl Sessions {
    pub fn new(limits: McpSessionLimits) -> Self {
        Self {
            limits,
            state: Arc::default(),
        }
    }

    pub fn limits(&self) -> McpSessionLimits {
        self.limits
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state stays consistent at every step, so a panic elsewhere leaves it usable.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Takes a slot for a new session of `token`, or says which limit is reached.
    pub fn reserve(&self, token: &Arc<str>) -> Result<Reservation, Full> {
        let mut state = self.lock();
        let of_token = state.per_token.get(token).copied().unwrap_or(0);
        if of_token >= self.limits.max_per_token {
            return Err(Full::Token(self.limits.max_per_token));
        }
        if state.total >= self.limits.max_total {
            return Err(Full::Hub(self.limits.max_total));
        }
        state.total += 1;
        *state.per_token.entry(token.clone()).or_default() += 1;
        drop(state);
        metrics::gauge!("pdchannels_mcp_sessions").increment(1.0);
        Ok(Reservation {
            sessions: self.clone(),
            token: Some(token.clone()),
        })
    }

    /// Whether session `id` is open and belongs to `token`.
    pub fn belongs_to(&self, id: &str, token: &str) -> bool {
        self.lock()
            .owners
            .get(id)
            .is_some_and(|owner| &**owner == token)
    }

    /// Open sessions (and reservations) in all.
    #[cfg(test)]
    fn open(&self) -> usize {
        self.lock().total
    }

    fn closed(&self, id: &SessionId) {
        let mut state = self.lock();
        if let Some(token) = state.owners.remove(id) {
            state.release(&token);
            drop(state);
            metrics::gauge!("pdchannels_mcp_sessions").decrement(1.0);
        }
    }
}

/// A slot for one session; given back when dropped unless a session took it.
pub struct Reservation {
    sessions: Sessions,
    /// `None` once a session holds the slot.
    token: Option<Arc<str>>,
}

impl Reservation {
    fn commit(mut self, id: SessionId) {
        if let Some(token) = self.token.take() {
            self.sessions.lock().owners.insert(id, token);
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some(token) = self.token.take() {
            self.sessions.lock().release(&token);
            metrics::gauge!("pdchannels_mcp_sessions").decrement(1.0);
        }
    }
}

tokio::task_local! {
    /// The slot the gate reserved for the `initialize` it is passing to rmcp.
    static OPENING: RefCell<Option<Reservation>>;
}

/// Runs `future` (rmcp handling an `initialize`) with `reservation` available to
/// [`CappedSessionManager::create_session`]; an unused reservation is given back after.
pub async fn opening<F: Future>(reservation: Reservation, future: F) -> F::Output {
    OPENING.scope(RefCell::new(Some(reservation)), future).await
}

/// Errors of [`CappedSessionManager`].
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Local(#[from] LocalSessionManagerError),
    /// rmcp asked for a session outside the gate (no slot was reserved for it).
    #[error("no session slot was reserved for this initialize")]
    NoReservation,
}

/// rmcp's in-memory session manager, with the hub's bounds and owners.
pub struct CappedSessionManager {
    inner: LocalSessionManager,
    sessions: Sessions,
}

impl CappedSessionManager {
    pub fn new(sessions: Sessions) -> Self {
        let mut inner = LocalSessionManager::default();
        // rmcp closes a session whose worker saw no message for this long, then calls
        // close_session, which gives its slot back.
        inner.session_config.keep_alive = Some(sessions.limits().idle_timeout);
        Self { inner, sessions }
    }
}

impl SessionManager for CappedSessionManager {
    type Error = SessionError;
    type Transport = <LocalSessionManager as SessionManager>::Transport;

    async fn create_session(&self) -> Result<(SessionId, Self::Transport), Self::Error> {
        let reservation = OPENING
            .try_with(|slot| slot.borrow_mut().take())
            .ok()
            .flatten()
            .ok_or(SessionError::NoReservation)?;
        let (id, transport) = self.inner.create_session().await?;
        reservation.commit(id.clone());
        Ok((id, transport))
    }

    async fn initialize_session(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<ServerJsonRpcMessage, Self::Error> {
        Ok(self.inner.initialize_session(id, message).await?)
    }

    async fn has_session(&self, id: &SessionId) -> Result<bool, Self::Error> {
        Ok(self.inner.has_session(id).await?)
    }

    async fn close_session(&self, id: &SessionId) -> Result<(), Self::Error> {
        let closed = self.inner.close_session(id).await;
        self.sessions.closed(id);
        Ok(closed?)
    }

    async fn create_stream(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        Ok(self.inner.create_stream(id, message).await?)
    }

    async fn accept_message(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<(), Self::Error> {
        Ok(self.inner.accept_message(id, message).await?)
    }

    async fn create_standalone_stream(
        &self,
        id: &SessionId,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        Ok(self.inner.create_standalone_stream(id).await?)
    }

    async fn resume(
        &self,
        id: &SessionId,
        last_event_id: String,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        Ok(self.inner.resume(id, last_event_id).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sessions(max_total: usize, max_per_token: usize) -> Sessions {
        Sessions::new(McpSessionLimits {
            max_total,
            max_per_token,
            ..McpSessionLimits::default()
        })
    }

    #[test]
    fn a_token_gets_at_most_its_share_and_the_hub_its_total() {
        let s = sessions(3, 2);
        let a: Arc<str> = "a".into();
        let b: Arc<str> = "b".into();
        let a1 = s.reserve(&a).unwrap();
        let _a2 = s.reserve(&a).unwrap();
        assert_eq!(s.reserve(&a).err(), Some(Full::Token(2)));
        let _b1 = s.reserve(&b).unwrap();
        assert_eq!(s.reserve(&b).err(), Some(Full::Hub(3)));
        drop(a1);
        assert!(
            s.reserve(&b).is_ok(),
            "a dropped reservation frees its slot"
        );
    }

    #[test]
    fn a_committed_slot_is_freed_when_its_session_closes() {
        let s = sessions(1, 1);
        let a: Arc<str> = "a".into();
        s.reserve(&a).unwrap().commit("s1".into());
        assert!(s.belongs_to("s1", "a"));
        assert!(!s.belongs_to("s1", "b"));
        assert_eq!(s.reserve(&a).err(), Some(Full::Token(1)));
        s.closed(&"s1".into());
        assert_eq!(s.open(), 0);
        assert!(!s.belongs_to("s1", "a"));
        assert!(s.reserve(&a).is_ok());
    }
}
