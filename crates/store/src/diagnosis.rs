//! What a database failure means for the person running pdchannels: the cause in SQLite's (or
//! the OS's) words, and what to do about it. Start-up errors and `/healthz` both say it this way.

use std::fmt;

/// A failure explained: `cause; fix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Diagnosis {
    pub(crate) cause: String,
    pub(crate) fix: &'static str,
}

impl fmt::Display for Diagnosis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}; {}", self.cause, self.fix)
    }
}

/// The kinds of failure that call for different fixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    ReadOnly,
    Full,
    CannotOpen,
    Locked,
    NotADatabase,
    Disk,
    /// The path names a directory, not a file.
    Directory,
    /// No PostgreSQL server answers at the URL's host and port.
    Unreachable,
    /// The PostgreSQL server refused the user or password.
    Refused,
    /// The PostgreSQL server has no database of that name.
    NoSuchDatabase,
    /// The PostgreSQL server accepts no writes (a standby, a read-only setting).
    ReadOnlyServer,
    /// A PostgreSQL failure that a retry may get past (deadlock, too many connections...).
    ServerBusy,
    /// Any other PostgreSQL failure.
    Server,
    /// The connection to PostgreSQL failed or was closed under the hub.
    Connection,
    Other,
}

impl Kind {
    fn fix(self) -> &'static str {
        match self {
            Kind::ReadOnly => {
                "make the file (and its -wal and -shm files) and its directory writable by this user, or pass --db PATH for a database elsewhere"
            }
            Kind::Full => {
                "free space on its filesystem (`df` shows it), or pass --db PATH for a database elsewhere"
            }
            Kind::CannotOpen => {
                "check that its directory exists and that this user may create and write files there, or pass --db PATH"
            }
            Kind::Locked => "another process holds it locked; stop that process or try again",
            Kind::NotADatabase => {
                "it is not a pdchannels database or it is damaged; restore a backup, or pass --db PATH for a new database"
            }
            Kind::Disk => "the disk reported an error; check the disk and its free space",
            Kind::Directory => {
                "--db names a directory; pass the database file's path, e.g. --db DIR/channels.db"
            }
            Kind::Unreachable => {
                "check that PostgreSQL runs and listens at the host and port of --db (`pg_isready -h HOST -p PORT`)"
            }
            Kind::Refused => {
                "check the user and password in --db (or PGPASSWORD) and the server's pg_hba.conf"
            }
            Kind::NoSuchDatabase => "create it first (`createdb NAME`, or CREATE DATABASE)",
            Kind::ReadOnlyServer => "point --db at the primary server, not a standby",
            Kind::ServerBusy => "the server is busy; try again (pdchannels retries what it can)",
            Kind::Server => "see the PostgreSQL server's log for more",
            Kind::Connection => {
                "the connection to PostgreSQL was lost; check that the server runs and that --db names it (pdchannels reconnects by itself)"
            }
            Kind::Other => "check the file and its directory, or pass --db PATH",
        }
    }

    /// PostgreSQL's SQLSTATE codes (<https://www.postgresql.org/docs/current/errcodes-appendix.html>).
    fn of_postgres(sqlstate: &str) -> Self {
        match sqlstate {
            "28000" | "28P01" | "42501" => Kind::Refused,
            "3D000" => Kind::NoSuchDatabase,
            "25006" => Kind::ReadOnlyServer,
            "53100" => Kind::Full,
            "40001" | "40P01" | "53300" | "57P03" | "55P03" => Kind::ServerBusy,
            // The server ended the session (an administrator, a restart, a failover).
            "57P01" | "57P02" => Kind::Connection,
            code if code.starts_with("08") => Kind::Connection,
            _ => Kind::Server,
        }
    }

    /// SQLite's primary result codes (<https://www.sqlite.org/rescode.html>).
    fn of_sqlite(extended_code: i32) -> Self {
        // SQLITE_IOERR_SHMSIZE: the -shm file could not be grown, which is what a full disk
        // does to a database opened after a clean close (that deleted the -shm file).
        const SHMSIZE: i32 = 10 | (19 << 8);
        if extended_code == SHMSIZE {
            return Kind::Full;
        }
        match extended_code & 0xff {
            3 | 8 | 23 => Kind::ReadOnly, // PERM, READONLY, AUTH
            13 => Kind::Full,
            14 => Kind::CannotOpen,
            5 | 6 => Kind::Locked,         // BUSY, LOCKED
            11 | 26 => Kind::NotADatabase, // CORRUPT, NOTADB
            10 => Kind::Disk,              // IOERR
            _ => Kind::Other,
        }
    }

    fn of_io(error: &std::io::Error) -> Self {
        use std::io::ErrorKind as Io;
        match error.kind() {
            Io::PermissionDenied | Io::ReadOnlyFilesystem => Kind::ReadOnly,
            Io::StorageFull | Io::QuotaExceeded => Kind::Full,
            Io::NotFound => Kind::CannotOpen,
            Io::IsADirectory => Kind::Directory,
            Io::ConnectionRefused | Io::HostUnreachable | Io::NetworkUnreachable | Io::TimedOut => {
                Kind::Unreachable
            }
            // Only an I/O error the OS calls one is the disk's; any other is not known to be.
            _ if error.raw_os_error() == Some(5) => Kind::Disk, // EIO
            _ => Kind::Other,
        }
    }
}

impl Diagnosis {
    /// Explains a failure reported by sqlx on a store of either backend (`postgres`: whether it
    /// is PostgreSQL's, where a failure that is not the server's is the connection's, not a
    /// file's).
    pub(crate) fn of(error: &sqlx::Error, postgres: bool) -> Self {
        let mut diagnosis = Self::of_error(error);
        if postgres && diagnosis.fix == Kind::Other.fix() {
            diagnosis.fix = Kind::Connection.fix();
        }
        diagnosis
    }

    fn of_error(error: &sqlx::Error) -> Self {
        let (cause, kind) = match error {
            sqlx::Error::Database(e)
                if e.try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                    .is_some() =>
            {
                let code = e.code().unwrap_or_default().into_owned();
                (
                    format!("{} (PostgreSQL SQLSTATE {code})", e.message()),
                    Kind::of_postgres(&code),
                )
            }
            sqlx::Error::Database(e) => {
                let code = e.code().and_then(|c| c.parse::<i32>().ok());
                match code {
                    Some(code) => (
                        format!("{} (SQLite code {code})", e.message()),
                        Kind::of_sqlite(code),
                    ),
                    None => (e.message().to_owned(), Kind::Other),
                }
            }
            sqlx::Error::Io(e) => (e.to_string(), Kind::of_io(e)),
            sqlx::Error::PoolTimedOut => (
                "no database connection became free in time".to_owned(),
                Kind::ServerBusy,
            ),
            sqlx::Error::Protocol(text) if text.contains("read-only") => {
                (text.clone(), Kind::ReadOnlyServer)
            }
            other => (other.to_string(), Kind::Other),
        };
        Self {
            cause,
            fix: kind.fix(),
        }
    }

    /// Explains a failed migration: the SQL failure it wraps, or sqlx's own words.
    pub(crate) fn of_migration(error: &sqlx::migrate::MigrateError) -> Self {
        use sqlx::migrate::MigrateError as M;
        match error {
            M::Execute(e) | M::ExecuteMigration(e, _) => Self::of_error(e),
            M::VersionMissing(_) | M::VersionTooNew(..) | M::VersionNotPresent(_) => Self {
                cause: error.to_string(),
                fix: "it was written by a newer pdchannels; run that version, or pass --db PATH for a new database",
            },
            other => Self {
                cause: other.to_string(),
                fix: Kind::NotADatabase.fix(),
            },
        }
    }
}

/// Whether `error` means the PostgreSQL connection is gone (reconnect before the next write).
pub(crate) fn connection_lost(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_) | sqlx::Error::Protocol(_) | sqlx::Error::Tls(_) => true,
        sqlx::Error::Database(e) => e
            .code()
            .is_some_and(|code| matches!(&*code, "57P01" | "57P02") || code.starts_with("08")),
        _ => false,
    }
}

/// Whether a write group that failed with `error` was rolled back because of another process's
/// concurrent writes (a deadlock, a serialization failure, a row it relied on deleted meanwhile):
/// nothing of it was written, and the same writes may simply be tried again.
pub(crate) fn lost_a_race(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(e) => e
            .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
            .is_some_and(|e| matches!(e.code(), "40P01" | "40001" | "23503")),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_name_their_fix() {
        let full = sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::StorageFull));
        assert_eq!(Diagnosis::of(&full, false).fix, Kind::Full.fix());
        let denied = sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::PermissionDenied));
        assert_eq!(Diagnosis::of(&denied, false).fix, Kind::ReadOnly.fix());
        // On PostgreSQL a connection that ends is not a file's problem.
        let eof = sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::UnexpectedEof));
        assert_eq!(Diagnosis::of(&eof, false).fix, Kind::Other.fix());
        assert_eq!(Diagnosis::of(&eof, true).fix, Kind::Connection.fix());
    }

    #[test]
    fn extended_sqlite_codes_map_to_their_primary_code() {
        // SQLITE_READONLY_DBMOVED = 8 | (4 << 8); SQLITE_IOERR_WRITE = 10 | (3 << 8).
        assert_eq!(Kind::of_sqlite(8 | (4 << 8)), Kind::ReadOnly);
        assert_eq!(Kind::of_sqlite(10 | (3 << 8)), Kind::Disk);
        let directory = std::io::Error::from(std::io::ErrorKind::IsADirectory);
        assert_eq!(Kind::of_io(&directory), Kind::Directory);
        assert_eq!(
            Kind::of_io(&std::io::Error::from_raw_os_error(5)),
            Kind::Disk
        );
        assert_eq!(
            Kind::of_io(&std::io::Error::from(std::io::ErrorKind::InvalidInput)),
            Kind::Other
        );
        assert_eq!(
            Kind::of_sqlite(10 | (19 << 8)),
            Kind::Full,
            "the -shm file cannot grow"
        );
        assert_eq!(Kind::of_sqlite(13), Kind::Full);
    }
}
