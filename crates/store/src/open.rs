//! How the SQLite database is opened: WAL, full fsync on commit, foreign keys on; and how we
//! learn that it can be written.

use std::path::Path;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{Connection, SqliteConnection};

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

/// Rewrites the database header with the value it has: a write that changes nothing but still
/// has to reach the disk (a WAL frame and its fsync), so it fails where any write would fail
/// (read-only file or filesystem, full disk). An empty transaction would not: it writes nothing.
/// The value stays as it was (the migrations keep their versions in their own table).
pub(crate) async fn rewrite_header(conn: &mut SqliteConnection) -> Result<(), sqlx::Error> {
    let version: i64 = sqlx::query_scalar("PRAGMA user_version")
        .fetch_one(&mut *conn)
        .await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "PRAGMA user_version = {version}"
    )))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Commits [`rewrite_header`] in its own transaction: proves that this connection can write.
pub(crate) async fn probe_write(conn: &mut SqliteConnection) -> Result<(), sqlx::Error> {
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
    rewrite_header(&mut tx).await?;
    tx.commit().await
}
