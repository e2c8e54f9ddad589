//! The outbox's words: a call to enqueue, a call as stored, where it stands, how a send ended.
//!
//! States and operations are typed here and stored as the same text they always were
//! (`pending`, `delivered`, `dead`; `add_channel`, `receive_message`, ...), so JSON output and
//! existing databases are unchanged.

use std::fmt;
use std::str::FromStr;

use pdchannels_model::Operation;
use serde::{Serialize, Serializer};

/// Where a call is in its life: waiting to go (or going), delivered, or rejected for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutboxState {
    /// Waiting to be delivered (including in flight, and waiting out a backoff).
    Pending,
    /// The upstream accepted it.
    Delivered,
    /// Rejected for good (or given up on); kept until retried or dropped.
    Dead,
}

impl OutboxState {
    /// Every state, in the order of a call's life.
    pub const ALL: [OutboxState; 3] = [Self::Pending, Self::Delivered, Self::Dead];

    /// The state's text, as stored and as JSON shows it: `pending`, `delivered`, `dead`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Dead => "dead",
        }
    }
}

impl fmt::Display for OutboxState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for OutboxState {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// A text that is not one of the outbox's states.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown outbox state {0:?}: expected pending, delivered or dead")]
pub struct UnknownOutboxState(pub String);

impl FromStr for OutboxState {
    type Err = UnknownOutboxState;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|state| state.as_str() == text)
            .ok_or_else(|| UnknownOutboxState(text.to_owned()))
    }
}

/// A call to enqueue.
#[derive(Debug, Clone)]
pub struct NewOutboxEntry {
    /// What kind of call.
    pub operation: Operation,
    /// The channel's provider id.
    pub channel_key: String,
    /// The conversation's provider id, for calls within one.
    pub conversation_key: Option<String>,
    /// The call, as JSON: `{"method", "path", "body"}`.
    pub request: serde_json::Value,
    /// Set only by a caller that may hand in the very same call again (an import resumed after
    /// a crash names each line): a call with a key already in the outbox is not added again.
    /// `None`: the call is new, even if its request has the same bytes as an earlier one.
    pub idempotency_key: Option<String>,
}

/// A call as the outbox holds it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutboxEntry {
    /// The outbox id.
    pub id: i64,
    /// What kind of call.
    pub operation: Operation,
    /// The channel.
    pub channel_key: String,
    /// The conversation, if the call is within one.
    pub conversation_key: Option<String>,
    /// The call, as JSON text.
    pub request: String,
    /// Where it is in its life.
    pub state: OutboxState,
    /// Sends tried so far.
    pub attempts: i64,
    /// When the next send may happen.
    pub next_attempt_at_ms: i64,
    /// When the current run of failed sends began (the give-up clock counts from it).
    pub first_failed_at_ms: Option<i64>,
    /// Why the last send failed.
    pub last_error: Option<String>,
    /// An earlier send may have reached the upstream though no answer came back (a timeout,
    /// a connection lost after sending, a relay that died mid-send).
    pub in_doubt: bool,
    /// The upstream's answer once delivered.
    pub response: Option<String>,
    /// When it was accepted.
    pub created_at_ms: i64,
    /// When it last changed.
    pub updated_at_ms: i64,
}

/// Where one call stands, for a caller following its own calls (an import, say).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallStatus {
    /// The outbox id.
    pub id: i64,
    /// Where it is in its life.
    pub state: OutboxState,
    /// Why the last send failed.
    pub last_error: Option<String>,
}

/// How a send ended.
#[derive(Debug, Clone)]
pub enum Settlement {
    /// The upstream accepted it; its answer.
    Delivered(String),
    /// A transient failure: try again `at` this time.
    RetryAt {
        /// When the next send may happen.
        at: i64,
        /// Why this one failed.
        error: String,
        /// Whether this send may have reached the upstream all the same.
        in_doubt: bool,
    },
    /// Rejected for good.
    Dead(String),
}

/// Counts per state, and the age of the oldest pending call.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct OutboxStats {
    /// Waiting to be delivered (including in flight).
    pub pending: i64,
    /// Delivered.
    pub delivered: i64,
    /// Rejected for good.
    pub dead: i64,
    /// When the oldest pending call was accepted.
    pub oldest_pending_at_ms: Option<i64>,
    /// When the next deliverable call is due.
    pub next_attempt_at_ms: Option<i64>,
}
