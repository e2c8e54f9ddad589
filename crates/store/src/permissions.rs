//! The database holds every message in plain text: only its owner may read it.
//!
//! A new database file is created owner-only (0600) before SQLite opens it. SQLite gives the
//! `-wal` and `-shm` files it creates the main file's mode, so they are owner-only too. An
//! existing database that others may read is left as it is (it may be shared on purpose, and
//! changing modes behind the operator's back would surprise them) but earns one warning at open,
//! with the command that fixes it.

use std::io;
use std::path::{Path, PathBuf};

/// The files SQLite keeps for the database at `path`: the file itself, its WAL and shared memory.
fn database_files(path: &Path) -> [PathBuf; 3] {
    let with_suffix = |suffix: &str| {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    };
    [path.to_owned(), with_suffix("-wal"), with_suffix("-shm")]
}

/// Creates the database file, empty and owner-only (SQLite takes an empty file for a new
/// database), or, when it exists, opens it for writing. Either fails with the OS's own reason
/// (a read-only filesystem, no permission), which says more than SQLite's "unable to open
/// database file".
#[cfg(unix)]
pub(crate) fn create_owner_only_or_open_for_writing(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let created = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path);
    match created {
        // The umask can only take bits away from 0600; set it anyway so the rule is visible.
        Ok(file) => file.set_permissions(std::fs::Permissions::from_mode(0o600)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            std::fs::OpenOptions::new().write(true).open(path).map(drop)
        }
        Err(e) => Err(e),
    }
}

#[cfg(not(unix))]
pub(crate) fn create_owner_only_or_open_for_writing(path: &Path) -> io::Result<()> {
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map(drop)
}

/// Warns once if the database or its -wal/-shm files may be read by others than their owner.
#[cfg(unix)]
pub(crate) fn warn_if_others_may_read(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let loose: Vec<(PathBuf, u32)> = database_files(path)
        .into_iter()
        .filter_map(|file| {
            let mode = std::fs::metadata(&file).ok()?.permissions().mode() & 0o777;
            (mode & 0o077 != 0).then_some((file, mode))
        })
        .collect();
    if loose.is_empty() {
        return;
    }
    let modes = loose
        .iter()
        .map(|(file, mode)| format!("{} is {mode:04o}", file.display()))
        .collect::<Vec<_>>()
        .join(", ");
    let files = loose
        .iter()
        .map(|(file, _)| shell_quoted(file))
        .collect::<Vec<_>>()
        .join(" ");
    tracing::warn!(
        "the database holds every message, but others than its owner may read it ({modes}); \
         to make it owner-only, run: chmod 600 {files}"
    );
}

#[cfg(not(unix))]
pub(crate) fn warn_if_others_may_read(_path: &Path) {}

/// `path` as a shell word, so the suggested command can be pasted as it is.
fn shell_quoted(path: &Path) -> String {
    let text = path.to_string_lossy();
    shlex::try_quote(&text).map_or_else(|_| text.to_string(), std::borrow::Cow::into_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wal_and_shm_files_sit_beside_the_database() {
        let [db, wal, shm] = database_files(Path::new("/data/my channels.db"));
        assert_eq!(db, Path::new("/data/my channels.db"));
        assert_eq!(wal, Path::new("/data/my channels.db-wal"));
        assert_eq!(shm, Path::new("/data/my channels.db-shm"));
    }

    #[test]
    fn a_path_with_spaces_is_quoted_for_the_shell() {
        assert_eq!(
            shell_quoted(Path::new("/Library/Application Support/channels.db")),
            "'/Library/Application Support/channels.db'"
        );
        assert_eq!(
            shell_quoted(Path::new("/data/channels.db")),
            "/data/channels.db"
        );
    }
}
