//! The two backends, SQLite and PostgreSQL, behind one store: a connection or a pool of either,
//! and the macros that run one query over whichever it is.
//!
//! Most statements are the same text on both (sqlx binds `$1` on SQLite as on PostgreSQL): the
//! macros write them once and compile them for each driver. Where the SQL dialects differ
//! (SQLite's `json_each`, PostgreSQL's arrays and `FOR UPDATE`), the code matches on the
//! backend and says why.

use sqlx::{PgConnection, PgPool, SqliteConnection, SqlitePool};

/// The writer's connection.
pub(crate) enum Conn {
    Sqlite(SqliteConnection),
    Postgres(PgConnection),
}

/// The readers' pool.
#[derive(Clone)]
pub(crate) enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs `$body` with `$c` bound to the connection (`&mut SqliteConnection` or
/// `&mut PgConnection`): the same code compiled for each driver.
macro_rules! on_conn {
    ($conn:expr, $c:ident => $body:expr) => {
        match $conn {
            $crate::backend::Conn::Sqlite($c) => $body,
            $crate::backend::Conn::Postgres($c) => $body,
        }
    };
}

/// Runs `$body` with `$p` bound to the pool (`&SqlitePool` or `&PgPool`).
macro_rules! on_pool {
    ($pool:expr, $p:ident => $body:expr) => {
        match $pool {
            $crate::backend::Pool::Sqlite($p) => $body,
            $crate::backend::Pool::Postgres($p) => $body,
        }
    };
}

pub(crate) use {on_conn, on_pool};

impl Conn {
    pub(crate) fn is_postgres(&self) -> bool {
        matches!(self, Conn::Postgres(_))
    }

    /// Starts the group's transaction. SQLite takes the write lock at once (`IMMEDIATE`), so
    /// a second process writing the file waits here rather than failing at its first write.
    pub(crate) async fn begin(&mut self) -> Result<(), sqlx::Error> {
        match self {
            Conn::Sqlite(c) => sqlx::query("BEGIN IMMEDIATE").execute(c).await.map(drop),
            Conn::Postgres(c) => sqlx::query("BEGIN").execute(c).await.map(drop),
        }
    }

    pub(crate) async fn commit(&mut self) -> Result<(), sqlx::Error> {
        on_conn!(self, c => sqlx::query("COMMIT").execute(c).await.map(drop))
    }

    pub(crate) async fn rollback(&mut self) -> Result<(), sqlx::Error> {
        on_conn!(self, c => sqlx::query("ROLLBACK").execute(c).await.map(drop))
    }

    pub(crate) async fn close(self) -> Result<(), sqlx::Error> {
        use sqlx::Connection;
        on_conn!(self, c => c.close().await)
    }
}

impl Pool {
    pub(crate) async fn close(&self) {
        on_pool!(self, p => p.close().await)
    }
}
