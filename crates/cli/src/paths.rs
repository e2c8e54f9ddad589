//! Where pdchannels keeps its data by default.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use pdchannels_store::Database;

/// The database: `--db` (or `PDCHANNELS_DB`), else `DATABASE_URL` (the variable many platforms
/// set for an app's PostgreSQL), else `channels.db` in the platform's user data directory
/// (`~/.local/share/pdchannels` on Linux).
pub fn database(explicit: Option<&Database>) -> Result<Database> {
    if let Some(database) = explicit {
        return Ok(database.clone());
    }
    if let Some(url) = std::env::var("DATABASE_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
    {
        return Database::parse(&url).map_err(|e| anyhow!("DATABASE_URL: {e}"));
    }
    Ok(Database::Sqlite(default_database()?))
}

/// `channels.db` in the platform's user data directory: the database without `--db`.
pub fn default_database() -> Result<PathBuf> {
    let dirs = directories::ProjectDirs::from("", "", "pdchannels").context(
        "cannot find a home directory for the default database; pass --db PATH or set PDCHANNELS_DB",
    )?;
    Ok(dirs.data_dir().join("channels.db"))
}

/// The OAuth token file: `--oauth-file`, or `oauth.json` in the platform's user config
/// directory (`~/.config/pdchannels` on Linux).
pub fn oauth_file(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(path) = explicit {
        return Ok(path.to_owned());
    }
    let dirs = directories::ProjectDirs::from("", "", "pdchannels").context(
        "cannot find a home directory for the OAuth token file; pass --oauth-file PATH or set PDCHANNELS_OAUTH_FILE",
    )?;
    Ok(dirs.config_dir().join("oauth.json"))
}

/// Creates the database's directory if needed, so a first run just works. Directories it
/// creates are owner-only (0700): the database in them holds every message.
pub fn ensure_parent(path: &Path) -> Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(parent).map_err(|e| {
            anyhow!(
                "cannot create the directory {} for the database: {e}; create it yourself, or pass --db PATH",
                parent.display()
            )
        })?;
    }
    Ok(())
}
