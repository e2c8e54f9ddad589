//! One outbox call as the CLI shows it: the JSON object of `outbox show` and `outbox list
//! --json`, and the words saying why a call waits or failed.
//!
//! The JSON keeps the store's field names, with two changes for readers and scripts: every
//! `*_at_ms` time is an RFC 3339 date in UTC with milliseconds under the name without `_ms`
//! (`created_at: "2026-11-28T21:00:00.000Z"`), and the stored request and the upstream's
//! answer are JSON values, not JSON inside strings.

use pdchannels_model::{Operation, Timestamp};
use pdchannels_store::{OutboxEntry, OutboxState};
use serde::Serialize;
use serde_json::Value;

use crate::commands::human;

/// A call, as printed.
#[derive(Debug, Serialize)]
pub struct CallView {
    pub id: i64,
    pub state: OutboxState,
    pub operation: Operation,
    pub channel_key: String,
    pub conversation_key: Option<String>,
    pub attempts: i64,
    pub created_at: Option<Timestamp>,
    pub updated_at: Option<Timestamp>,
    /// When the next send may happen (for a pending call; kept as it was once settled).
    pub next_attempt_at: Option<Timestamp>,
    pub first_failed_at: Option<Timestamp>,
    pub last_error: Option<String>,
    pub in_doubt: bool,
    /// The pending call this one waits for (calls of a conversation, or a channel, go in the
    /// order they were accepted); `null` when nothing earlier holds it back.
    pub held_behind: Option<i64>,
    /// The call: `{"method", "path", "body"}`.
    pub request: Value,
    /// The upstream's answer once delivered.
    pub response: Option<Value>,
}

fn at(ms: i64) -> Option<Timestamp> {
    Timestamp::from_unix_millis(ms)
}

/// Stored JSON text as a JSON value; a text that is not JSON (a damaged row) stays a string, so
/// that it is still shown.
fn json(text: String) -> Value {
    serde_json::from_str(&text).unwrap_or(Value::String(text))
}

impl CallView {
    /// `held_behind`: what [`pdchannels_store::Outbox::held_behind`] answered for this call.
    pub fn new(entry: OutboxEntry, held_behind: Option<i64>) -> Self {
        Self {
            id: entry.id,
            state: entry.state,
            operation: entry.operation,
            channel_key: entry.channel_key,
            conversation_key: entry.conversation_key,
            attempts: entry.attempts,
            created_at: at(entry.created_at_ms),
            updated_at: at(entry.updated_at_ms),
            next_attempt_at: at(entry.next_attempt_at_ms),
            first_failed_at: entry.first_failed_at_ms.and_then(at),
            last_error: entry.last_error,
            in_doubt: entry.in_doubt,
            held_behind,
            request: json(entry.request),
            response: entry.response.map(json),
        }
    }

    /// Why the call is where it is, for people, given the time `now` (ms since the epoch):
    /// what it waits for, why it failed, or when it was delivered.
    pub fn why(&self, now: i64) -> String {
        let last_error = self.last_error.as_deref().unwrap_or("no reason recorded");
        let doubt = if self.in_doubt {
            " (an earlier send may have arrived all the same)"
        } else {
            ""
        };
        let next = self.next_attempt_at.map_or(now, Timestamp::unix_millis);
        match self.state {
            OutboxState::Delivered => format!(
                "delivered {} UTC",
                human::date(self.updated_at.map_or(now, Timestamp::unix_millis))
            ),
            OutboxState::Dead => format!("failed for good: {last_error}"),
            OutboxState::Pending => match self.held_behind {
                Some(earlier) => format!("waits for call {earlier}, accepted before it"),
                None if self.last_error.is_none() && next <= now => {
                    "due now, not sent yet".to_owned()
                }
                None if self.last_error.is_none() => {
                    format!("due {}, not sent yet", human::relative(next, now))
                }
                None if next <= now => {
                    format!("due now; the last send failed: {last_error}{doubt}")
                }
                None => format!(
                    "next try {}; the last send failed: {last_error}{doubt}",
                    human::relative(next, now)
                ),
            },
        }
    }
}
