//! Outbox rows as SQLite hands them over, and their reading into the typed [`OutboxEntry`] and
//! [`CallStatus`]: the only place the stored text of states and operations is parsed.

use sqlx::FromRow;

use super::vocabulary::{CallStatus, OutboxEntry};

/// The columns of an [`OutboxRow`], for `SELECT` and `RETURNING`.
pub(crate) const COLUMNS: &str =
    "pk AS id, operation, channel_key, conversation_key, request, state, attempts,
    next_attempt_at_ms, first_failed_at_ms, last_error, in_doubt, response, created_at_ms,
    updated_at_ms";

#[derive(FromRow)]
pub(crate) struct OutboxRow {
    id: i64,
    operation: String,
    channel_key: String,
    conversation_key: Option<String>,
    request: String,
    state: String,
    attempts: i64,
    next_attempt_at_ms: i64,
    first_failed_at_ms: Option<i64>,
    last_error: Option<String>,
    in_doubt: bool,
    response: Option<String>,
    created_at_ms: i64,
    updated_at_ms: i64,
}

/// A stored text this version does not know (a newer version's, or a damaged file), as the
/// decoding failure sqlx reports for a column it cannot read.
fn unreadable(error: impl std::error::Error + Send + Sync + 'static) -> sqlx::Error {
    sqlx::Error::Decode(Box::new(error))
}

impl TryFrom<OutboxRow> for OutboxEntry {
    type Error = sqlx::Error;

    fn try_from(row: OutboxRow) -> Result<Self, Self::Error> {
        Ok(Self {
            id: row.id,
            operation: row.operation.parse().map_err(unreadable)?,
            channel_key: row.channel_key,
            conversation_key: row.conversation_key,
            request: row.request,
            state: row.state.parse().map_err(unreadable)?,
            attempts: row.attempts,
            next_attempt_at_ms: row.next_attempt_at_ms,
            first_failed_at_ms: row.first_failed_at_ms,
            last_error: row.last_error,
            in_doubt: row.in_doubt,
            response: row.response,
            created_at_ms: row.created_at_ms,
            updated_at_ms: row.updated_at_ms,
        })
    }
}

/// Reads rows into entries; the first unreadable one fails them all.
pub(crate) fn entries(rows: Vec<OutboxRow>) -> Result<Vec<OutboxEntry>, sqlx::Error> {
    rows.into_iter().map(OutboxEntry::try_from).collect()
}

#[derive(FromRow)]
pub(crate) struct StatusRow {
    id: i64,
    state: String,
    last_error: Option<String>,
}

impl TryFrom<StatusRow> for CallStatus {
    type Error = sqlx::Error;

    fn try_from(row: StatusRow) -> Result<Self, Self::Error> {
        Ok(Self {
            id: row.id,
            state: row.state.parse().map_err(unreadable)?,
            last_error: row.last_error,
        })
    }
}
