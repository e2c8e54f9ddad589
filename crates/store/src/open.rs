//! How the SQLite database is opened: WAL, full fsync on commit, foreign keys on.

use std::path::Path;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};

/// Connection options shared by the writer and the readers.
///
/// `synchronous = FULL` makes every commit reach the disk before it returns: an acknowledged
/// message survives power loss, not only a crash. Throughput comes from committing many writes
/// in one transaction (see `writer`), not from a weaker sync.
pub(crate) fn connect_options(path: &Path) -> SqliteConnectOptions {
    SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .foreign_keys(true)
        // Another process (a second `pdchannels receive`) may hold the write lock briefly.
        .busy_timeout(Duration::from_secs(5))
        .pragma("temp_store", "memory")
}
