//! Why the store could not do something: which file, what was being done, the cause, what to
//! do, in one line. Every public `Store` and `Outbox` method fails with this one type.

use std::sync::Arc;

use pdchannels_model::ChannelsError;

use crate::Database;
use crate::diagnosis::Diagnosis;

/// The store could not be opened, migrated, read or written.
///
/// The message is one line: the database, the cause, the fix. The underlying error is kept, typed,
/// in `cause`, but deliberately not as [`std::error::Error::source`]: its words are already in
/// the message, and a chain printed with `{:#}` would say them again.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database file could not be created or opened.
    #[error("cannot open the database {}: {}", database, Diagnosis::of(cause, database.is_postgres()))]
    Open {
        /// The database (its URL shown without a password).
        database: Database,
        /// What SQLite (or the OS) said.
        cause: sqlx::Error,
    },
    /// The schema could not be brought up to date.
    #[error(
        "cannot bring the database {} up to date: {}",
        database,
        Diagnosis::of_migration(cause)
    )]
    Migrate {
        /// The database (its URL shown without a password).
        database: Database,
        /// What went wrong.
        cause: sqlx::migrate::MigrateError,
    },
    /// The database opened but a probe write could not be committed (read-only file or
    /// filesystem, full disk...): every write would fail, so the store is not opened.
    #[error("cannot write to the database {}: {}", database, Diagnosis::of(cause, database.is_postgres()))]
    NotWritable {
        /// The database (its URL shown without a password).
        database: Database,
        /// What SQLite said.
        cause: sqlx::Error,
    },
    /// A query or a write failed. One failed commit fails every write of its group, so the
    /// cause is shared (hence the `Arc`).
    #[error(
        "cannot {doing} in the database {}: {}",
        database,
        Diagnosis::of(cause, database.is_postgres())
    )]
    Query {
        /// What was being done, as a verb phrase: "read the outbox", "store a message".
        doing: &'static str,
        /// The database (its URL shown without a password).
        database: Database,
        /// What SQLite (or the OS) said.
        cause: Arc<sqlx::Error>,
    },
    /// The store was closed (the process is shutting down) before the write could be made.
    #[error("the database is closed: pdchannels is shutting down; run the command again")]
    Closed,
}

/// The one way a store failure reaches a Channels caller: the store is unavailable, the
/// operation may be retried.
impl StoreError {
    /// Whether this failure is a write group lost to another process's concurrent writes
    /// (PostgreSQL): nothing was written, and the same write may be sent again.
    pub(crate) fn lost_a_race(&self) -> bool {
        matches!(self, StoreError::Query { cause, .. } if crate::diagnosis::lost_a_race(cause))
    }
}

impl From<StoreError> for ChannelsError {
    fn from(error: StoreError) -> Self {
        ChannelsError::Unavailable(error.to_string())
    }
}
