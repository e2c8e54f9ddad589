//! The commands the relay suggests, as lines a person can paste into a shell: each carries the
//! flags it needs to act on the same outbox.

use std::path::Path;

use pdchannels_store::Database;

/// Builds `pdchannels` command lines for one database: with `--db PATH` (shell-quoted) unless it
/// is the database `pdchannels` opens without `--db`, where the command would act anyway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandLine {
    /// `--db PATH`, or nothing for the default database.
    db_flag: Option<String>,
}

impl CommandLine {
    /// Commands for the outbox in `database`; `default` is the database used without `--db`
    /// (`None` when unknown: then every command carries `--db`). A PostgreSQL URL is shown
    /// without its password: the person adds it back, or sets `PDCHANNELS_DB`.
    pub fn for_database(database: &Database, default: Option<&Path>) -> Self {
        let is_default = database
            .sqlite_path()
            .is_some_and(|path| Some(path) == default);
        let db_flag = (!is_default)
            .then(|| format!("--db {}", shell_word(Path::new(&database.as_flag_value()))));
        Self { db_flag }
    }

    /// `pdchannels [--db PATH] ARGS...`, each argument shell-quoted where it needs to be.
    pub fn render(&self, args: &[&str]) -> String {
        let mut line = "pdchannels".to_owned();
        if let Some(db_flag) = &self.db_flag {
            line.push(' ');
            line.push_str(db_flag);
        }
        for arg in args {
            line.push(' ');
            line.push_str(&shell_word(Path::new(arg)));
        }
        line
    }

    /// `pdchannels [--db PATH] outbox VERB ID`: the outbox commands suggested most.
    pub fn outbox(&self, verb: &str, id: i64) -> String {
        self.render(&["outbox", verb, &id.to_string()])
    }
}

/// `text` as one shell word: quoted only if it needs to be.
fn shell_word(text: &Path) -> String {
    let text = text.to_string_lossy();
    shlex::try_quote(&text).map_or_else(|_| text.to_string(), std::borrow::Cow::into_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_database_needs_no_flag() {
        let db = Path::new("/home/me/.local/share/pdchannels/channels.db");
        assert_eq!(
            CommandLine::for_database(&db.into(), Some(db)).outbox("retry", 42),
            "pdchannels outbox retry 42"
        );
    }

    #[test]
    fn another_database_is_named_and_quoted() {
        let lines = CommandLine::for_database(
            &Path::new("/data/my channels.db").into(),
            Some(Path::new("/home/me/channels.db")),
        );
        assert_eq!(
            lines.outbox("retry", 7),
            "pdchannels --db '/data/my channels.db' outbox retry 7"
        );
        assert_eq!(
            CommandLine::for_database(&Path::new("relay.db").into(), None)
                .render(&["outbox", "stats"]),
            "pdchannels --db relay.db outbox stats"
        );
    }

    #[test]
    fn a_postgres_url_is_named_without_its_password() {
        let db = Database::parse("postgres://app:s3cret@db:5432/hub").unwrap();
        let line = CommandLine::for_database(&db, None).outbox("show", 3);
        assert_eq!(
            line,
            "pdchannels --db 'postgres://app:***@db:5432/hub' outbox show 3"
        );
    }
}
