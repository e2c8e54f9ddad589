//! How the database is opened (SQLite: WAL, full fsync on commit, foreign keys on; PostgreSQL:
//! `synchronous_commit` on), and how we learn that it can be written.

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

/// How much of the file each reader maps (`mmap_size`): 1 GiB.
pub(crate) const READ_MMAP_BYTES: u64 = 1 << 30;

/// The readers' options: read-only, and reading the file through a memory map. The bundled
/// SQLite is built with `SQLITE_ENABLE_MEMORY_MANAGEMENT`, which puts every connection's page
/// cache in one shared cache behind one mutex: the inbox's readers, each page copied in with a
/// `pread` through that cache, spent their time on the mutex and the kernel's futexes (a
/// `cpu-clock` profile of thread pages: 12% in `pthread_mutex_lock`/`unlock` under
/// `getPageNormal`). Mapped pages skip both. Only the readers map: the writer's pages stay in
/// its own cache, so a hub that mostly receives keeps its resident memory (mapped pages a
/// reader touched count in RSS, like the file's cached pages they are).
pub(crate) fn read_options(options: SqliteConnectOptions) -> SqliteConnectOptions {
    options
        .read_only(true)
        .pragma("mmap_size", READ_MMAP_BYTES.to_string())
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

/// PostgreSQL: how every connection of the store is made. `synchronous_commit = on` whatever the
/// server's default: an acknowledged write must survive the server's crash.
pub(crate) fn postgres_options(
    url: &crate::PostgresUrl,
) -> Result<sqlx::postgres::PgConnectOptions, sqlx::Error> {
    let options: sqlx::postgres::PgConnectOptions = url.expose().parse()?;
    Ok(options
        .application_name("pdchannels")
        .options([("synchronous_commit", "on")]))
}

/// Proves that a PostgreSQL connection can write: not a read-only replica or transaction, and a
/// commit that must reach the WAL (a transaction id is assigned, so COMMIT writes and flushes
/// a commit record) succeeds.
pub(crate) async fn probe_postgres(conn: &mut sqlx::PgConnection) -> Result<(), sqlx::Error> {
    let mut tx = conn.begin().await?;
    postgres_probe_statement(&mut tx).await?;
    tx.commit().await
}

/// The probe's one statement: fails on a read-only server, assigns a transaction id otherwise.
pub(crate) async fn postgres_probe_statement(
    conn: &mut sqlx::PgConnection,
) -> Result<(), sqlx::Error> {
    let read_only: String = sqlx::query_scalar("SHOW transaction_read_only")
        .fetch_one(&mut *conn)
        .await?;
    if read_only == "on" {
        return Err(sqlx::Error::Protocol(
            "the server is read-only (a hot standby or default_transaction_read_only): point --db at the primary"
                .to_owned(),
        ));
    }
    sqlx::query("SELECT pg_current_xact_id()")
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// The writer's probe, inside its group's transaction: on SQLite the header rewritten, on
/// PostgreSQL the probe statement.
pub(crate) async fn probe_in_group(conn: &mut crate::backend::Conn) -> Result<(), sqlx::Error> {
    match conn {
        crate::backend::Conn::Sqlite(c) => rewrite_header(c).await,
        crate::backend::Conn::Postgres(c) => postgres_probe_statement(c).await,
    }
}
