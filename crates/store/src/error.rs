//! Why a store could not be opened: which file, the cause, what to do, in one line.

use std::path::PathBuf;

use crate::diagnosis::Diagnosis;

/// The store could not be opened, migrated, or written.
///
/// The message is one line: the file, the cause, the fix. The underlying error is kept, typed,
/// in `cause`, but deliberately not as [`std::error::Error::source`]: its words are already in
/// the message, and a chain printed with `{:#}` would say them again.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database file could not be created or opened.
    #[error("cannot open the database {}: {}", path.display(), Diagnosis::of(cause))]
    Open {
        /// The database file.
        path: PathBuf,
        /// What SQLite (or the OS) said.
        cause: sqlx::Error,
    },
    /// The schema could not be brought up to date.
    #[error("cannot bring the database {} up to date: {}", path.display(), Diagnosis::of_migration(cause))]
    Migrate {
        /// The database file.
        path: PathBuf,
        /// What went wrong.
        cause: sqlx::migrate::MigrateError,
    },
    /// The database opened but a probe write could not be committed (read-only file or
    /// filesystem, full disk...): every write would fail, so the store is not opened.
    #[error("cannot write to the database {}: {}", path.display(), Diagnosis::of(cause))]
    NotWritable {
        /// The database file.
        path: PathBuf,
        /// What SQLite said.
        cause: sqlx::Error,
    },
}
