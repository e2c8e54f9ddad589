//! A fresh database for one test, on either backend: a SQLite file in a temporary directory, or
//! a new PostgreSQL database (`CREATE DATABASE`) on the server `PDCHANNELS_TEST_POSTGRES` names
//! (default `postgres://postgres@127.0.0.1:5432/postgres`), dropped when the test ends.
//!
//! Where no PostgreSQL server answers, the PostgreSQL half of a test is skipped with a line on
//! stderr, unless `PDCHANNELS_REQUIRE_POSTGRES=1` (CI sets it): then it fails.

use std::sync::atomic::{AtomicU64, Ordering};

use pdchannels_store::{Database, Store};
use sqlx::Connection;

/// Where the PostgreSQL tests get a server, unless `PDCHANNELS_TEST_POSTGRES` says otherwise.
pub const DEFAULT_TEST_POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Which backend a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A database for one test; dropped (the file's directory, the PostgreSQL database) with it.
pub struct TestDatabase {
    database: Database,
    _dir: Option<tempfile::TempDir>,
    postgres_name: Option<String>,
}

/// The server the PostgreSQL tests use (an admin URL to an existing database).
pub fn test_postgres_url() -> String {
    std::env::var("PDCHANNELS_TEST_POSTGRES").unwrap_or_else(|_| DEFAULT_TEST_POSTGRES.to_owned())
}

fn postgres_required() -> bool {
    std::env::var("PDCHANNELS_REQUIRE_POSTGRES").is_ok_and(|v| v == "1")
}

impl TestDatabase {
    /// A fresh database on `backend`; `None` only for PostgreSQL when no server answers and it
    /// is not required (the test then skips its PostgreSQL half, saying so on stderr).
    pub async fn new(backend: Backend) -> Option<Self> {
        match backend {
            Backend::Sqlite => Some(Self::sqlite()),
            Backend::Postgres => Self::postgres().await,
        }
    }

    /// A SQLite file in a fresh temporary directory.
    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        Self {
            database: Database::Sqlite(dir.path().join("channels.db")),
            _dir: Some(dir),
            postgres_name: None,
        }
    }

    /// A new, empty PostgreSQL database.
    pub async fn postgres() -> Option<Self> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let admin_url = test_postgres_url();
        let mut admin = match sqlx::PgConnection::connect(&admin_url).await {
            Ok(admin) => admin,
            Err(e) if !postgres_required() => {
                eprintln!(
                    "SKIPPED the PostgreSQL half of this test: no server at {admin_url} ({e}). \
                     Start one (see README, Testing) or set PDCHANNELS_TEST_POSTGRES; \
                     PDCHANNELS_REQUIRE_POSTGRES=1 makes this a failure."
                );
                return None;
            }
            Err(e) => panic!(
                "PDCHANNELS_REQUIRE_POSTGRES=1 but no PostgreSQL server answers at {admin_url}: {e}"
            ),
        };
        let name = format!(
            "pdc_test_{}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .subsec_nanos()
        );
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .expect("CREATE DATABASE for a test");
        let _ = admin.close().await;
        let url = database_url(&admin_url, &name);
        Some(Self {
            database: Database::parse(&url).expect("a valid test database URL"),
            _dir: None,
            postgres_name: Some(name),
        })
    }

    /// The database, for `Store::connect` or a `--db` flag.
    pub fn database(&self) -> &Database {
        &self.database
    }

    /// The value to pass as `--db` (with its password, if the test server has one).
    pub fn flag_value(&self) -> String {
        match &self.database {
            Database::Sqlite(path) => path.display().to_string(),
            Database::Postgres(url) => url.expose().to_owned(),
        }
    }

    /// Opens (creating its schema) the store on this database.
    pub async fn open(&self) -> Store {
        Store::connect(&self.database)
            .await
            .expect("the test database opens")
    }
}

/// `admin_url` with its database replaced by `name`.
pub fn database_url(admin_url: &str, name: &str) -> String {
    let mut url = url::Url::parse(admin_url).expect("PDCHANNELS_TEST_POSTGRES is a URL");
    url.set_path(&format!("/{name}"));
    url.to_string()
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let Some(name) = self.postgres_name.take() else {
            return;
        };
        // Drop runs outside async code's reach: a thread of its own with its own runtime.
        let admin_url = test_postgres_url();
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async {
                if let Ok(mut admin) = sqlx::PgConnection::connect(&admin_url).await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .execute(&mut admin)
                    .await;
                }
            });
        })
        .join();
    }
}

impl TestDatabase {
    /// A fresh database on the backend `PDCHANNELS_TEST_BACKEND` names (`sqlite`, the default,
    /// or `postgres`): how whole suites (the hub's API tests, the relay's) run again on
    /// PostgreSQL, the same tests, with `PDCHANNELS_TEST_BACKEND=postgres cargo test ...`.
    /// Without a PostgreSQL server (and not required) it says so and gives SQLite.
    pub async fn from_env() -> Self {
        let wanted = std::env::var("PDCHANNELS_TEST_BACKEND").unwrap_or_default();
        match wanted.as_str() {
            "" | "sqlite" => Self::sqlite(),
            "postgres" => match Self::postgres().await {
                Some(db) => db,
                None => Self::sqlite(),
            },
            other => panic!("PDCHANNELS_TEST_BACKEND={other}: expected sqlite or postgres"),
        }
    }
}

/// Declares a test that runs on both backends: a module named after it with a `sqlite` and a
/// `postgres` test, each on a fresh [`TestDatabase`] bound to the name given.
///
/// ```ignore
/// on_both_backends! {
///     async fn a_message_is_stored(db) {
///         let store = db.open().await;
///         ...
///     }
/// }
/// ```
#[macro_export]
macro_rules! on_both_backends {
    ($(async fn $name:ident($db:ident) $body:block)*) => {$(
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn run($db: $crate::TestDatabase) $body

            #[tokio::test]
            async fn sqlite() {
                run($crate::TestDatabase::sqlite()).await
            }

            #[tokio::test]
            async fn postgres() {
                if let Some(db) = $crate::TestDatabase::postgres().await {
                    run(db).await
                }
            }
        }
    )*};
}
