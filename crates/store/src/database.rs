//! Which database a store is: a SQLite file (the default) or a PostgreSQL server shared by
//! several pdchannels processes. `--db`, `PDCHANNELS_DB` and `DATABASE_URL` are parsed here, and
//! only here.

use std::fmt;
use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};

/// Where the store lives.
///
/// `Display` names it for people and logs: the file's path, or the server's URL without its
/// password (a URL may carry one; it must never reach a log, an error or `ps`).
#[derive(Clone)]
pub enum Database {
    /// A SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL database: its full URL (secret: it may hold a password).
    Postgres(PostgresUrl),
}

/// A `postgres://` URL, kept whole for connecting and shown without its password.
#[derive(Clone)]
pub struct PostgresUrl {
    full: SecretString,
    shown: String,
}

impl PostgresUrl {
    /// The URL to connect with, password included.
    pub fn expose(&self) -> &str {
        self.full.expose_secret()
    }

    /// The URL without its password (`postgres://user:***@host/db`).
    pub fn shown(&self) -> &str {
        &self.shown
    }
}

/// A `--db` value that names no database pdchannels can use.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadDatabase(String);

impl Database {
    /// Reads a `--db` value: `postgres://…` or `postgresql://…` is PostgreSQL; `sqlite:PATH`,
    /// `sqlite://PATH` or a plain path is a SQLite file.
    pub fn parse(text: &str) -> Result<Self, BadDatabase> {
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err(BadDatabase(
                "--db is empty: pass a file path (channels.db) or a postgres://USER@HOST/DB URL"
                    .to_owned(),
            ));
        }
        if trimmed.starts_with("postgres://") || trimmed.starts_with("postgresql://") {
            return Self::postgres(trimmed);
        }
        if let Some(path) = trimmed
            .strip_prefix("sqlite://")
            .or_else(|| trimmed.strip_prefix("sqlite:"))
        {
            if path.is_empty() {
                return Err(BadDatabase(
                    "--db sqlite: names no file: pass sqlite:PATH, e.g. sqlite:/var/lib/pdchannels/channels.db"
                        .to_owned(),
                ));
            }
            return Ok(Self::Sqlite(PathBuf::from(path)));
        }
        if let Some((scheme, _)) = trimmed.split_once("://") {
            return Err(BadDatabase(format!(
                "--db {scheme}://… is not a database pdchannels can use: pass a file path for \
                 SQLite, or a postgres://USER@HOST:PORT/DB URL for PostgreSQL"
            )));
        }
        Ok(Self::Sqlite(PathBuf::from(text)))
    }

    fn postgres(full: &str) -> Result<Self, BadDatabase> {
        // What the URL says after the scheme, for the errors below (without the password).
        let parsed = url::Url::parse(full).map_err(|e| {
            BadDatabase(format!(
                "--db is not a valid PostgreSQL URL ({e}): expected postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE"
            ))
        })?;
        let database = parsed.path().trim_start_matches('/');
        if database.is_empty() {
            return Err(BadDatabase(
                "--db postgres://… names no database: add it after the host, e.g. postgres://pdchannels@127.0.0.1:5432/pdchannels"
                    .to_owned(),
            ));
        }
        let mut shown = parsed.clone();
        if shown.password().is_some() {
            let _ = shown.set_password(Some("***"));
        }
        // Query parameters may hold a password too (`?password=`): shown only by name.
        if shown.query().is_some() {
            let names: Vec<String> = shown
                .query_pairs()
                .map(|(k, v)| {
                    if k.eq_ignore_ascii_case("password") {
                        format!("{k}=***")
                    } else {
                        format!("{k}={v}")
                    }
                })
                .collect();
            shown.set_query(Some(&names.join("&")));
        }
        Ok(Self::Postgres(PostgresUrl {
            full: SecretString::from(full.to_owned()),
            shown: shown.to_string(),
        }))
    }

    /// The SQLite file, if this is one.
    pub fn sqlite_path(&self) -> Option<&Path> {
        match self {
            Self::Sqlite(path) => Some(path),
            Self::Postgres(_) => None,
        }
    }

    /// Whether this is a PostgreSQL database (shared by several processes).
    pub fn is_postgres(&self) -> bool {
        matches!(self, Self::Postgres(_))
    }

    /// How to name it on a command line (`--db VALUE`), without a password. A URL whose
    /// password was hidden is not pasteable as is: the person adds it, or uses `PDCHANNELS_DB`.
    pub fn as_flag_value(&self) -> String {
        match self {
            Self::Sqlite(path) => path.display().to_string(),
            Self::Postgres(url) => url.shown.clone(),
        }
    }
}

impl From<&Path> for Database {
    fn from(path: &Path) -> Self {
        Self::Sqlite(path.to_owned())
    }
}

impl From<PathBuf> for Database {
    fn from(path: PathBuf) -> Self {
        Self::Sqlite(path)
    }
}

impl fmt::Display for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sqlite(path) => write!(f, "{}", path.display()),
            Self::Postgres(url) => f.write_str(&url.shown),
        }
    }
}

impl fmt::Debug for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sqlite(path) => f.debug_tuple("Sqlite").field(path).finish(),
            Self::Postgres(url) => f.debug_tuple("Postgres").field(&url.shown).finish(),
        }
    }
}

impl std::str::FromStr for Database {
    type Err = BadDatabase;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_sqlite_urls_are_files_postgres_urls_are_servers() {
        assert_eq!(
            Database::parse("channels.db").unwrap().sqlite_path(),
            Some(Path::new("channels.db"))
        );
        assert_eq!(
            Database::parse("sqlite:/tmp/a.db").unwrap().sqlite_path(),
            Some(Path::new("/tmp/a.db"))
        );
        assert_eq!(
            Database::parse("sqlite:///tmp/a.db").unwrap().sqlite_path(),
            Some(Path::new("/tmp/a.db"))
        );
        let pg = Database::parse("postgres://app:s3cret@db.internal:5432/hub").unwrap();
        assert!(pg.is_postgres());
        assert_eq!(pg.to_string(), "postgres://app:***@db.internal:5432/hub");
        assert!(!format!("{pg:?}").contains("s3cret"));
        assert!(!pg.as_flag_value().contains("s3cret"));
        let Database::Postgres(url) = &pg else {
            unreachable!()
        };
        assert!(url.expose().contains("s3cret"));
    }

    #[test]
    fn a_password_in_the_query_is_hidden_too() {
        let pg = Database::parse("postgresql://app@h/hub?password=s3cret&sslmode=disable").unwrap();
        assert!(!pg.to_string().contains("s3cret"), "{pg}");
        assert!(pg.to_string().contains("sslmode=disable"));
    }

    #[test]
    fn unusable_values_say_what_to_pass() {
        for (bad, says) in [
            ("", "empty"),
            ("mysql://h/db", "mysql://"),
            ("postgres://h", "names no database"),
            ("postgres://h:notaport/db", "not a valid PostgreSQL URL"),
            ("sqlite:", "names no file"),
        ] {
            let error = Database::parse(bad).unwrap_err().to_string();
            assert!(error.contains(says), "{bad:?}: {error}");
        }
    }
}
