//! The tokens the token endpoint hands out, and the owner-only file that keeps them.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use pdchannels_model::Timestamp;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::app::{OAuthApp, OAuthEndpoints};
use super::error::OAuthError;

/// An access token with its refresh token, as the token endpoint answered them.
#[derive(Clone)]
pub struct TokenSet {
    /// Sent as `Authorization: Bearer`.
    pub access_token: SecretString,
    /// Exchanged for the next access token.
    pub refresh_token: SecretString,
    /// `Bearer`.
    pub token_type: String,
    /// The granted scopes, e.g. `messengers-integration base`.
    pub scope: String,
    /// When the access token stops working, in Unix milliseconds.
    pub expires_at_ms: i64,
    /// The company's API host, e.g. `https://acme.pipedrive.com`; calls go to `{api_domain}/api/v1`.
    pub api_domain: Option<String>,
}

impl std::fmt::Debug for TokenSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSet")
            .field("access_token", &"[REDACTED]")
            .field("refresh_token", &"[REDACTED]")
            .field("scope", &self.scope)
            .field("expires_at_ms", &self.expires_at_ms)
            .field("api_domain", &self.api_domain)
            .finish()
    }
}

impl TokenSet {
    /// Whether the access token expires within `margin` from now (or already has).
    pub fn expires_within(&self, margin: Duration) -> bool {
        let margin = i64::try_from(margin.as_millis()).unwrap_or(i64::MAX / 2);
        Timestamp::now().unix_millis() + margin >= self.expires_at_ms
    }

    /// The Channels API base for these tokens: `{api_domain}/api/v1`, as Pipedrive's SDK sets it.
    pub fn api_base(&self) -> Option<String> {
        self.api_domain
            .as_deref()
            .map(|domain| format!("{}/api/v1", domain.trim_end_matches('/')))
    }

    /// When the access token expires, for people.
    pub fn expires_at(&self) -> String {
        Timestamp::from_unix_millis(self.expires_at_ms)
            .map_or_else(|| self.expires_at_ms.to_string(), |t| t.to_string())
    }
}

/// Where `pdchannels auth login` keeps the app's credentials and the tokens: a JSON file only
/// its owner can read (mode 0600), replaced atomically so a crash never leaves half a file.
#[derive(Debug, Clone)]
pub struct TokenFile {
    path: PathBuf,
}

/// The file's shape. Plain strings live only while a file is read or written.
#[derive(Serialize, Deserialize)]
struct Stored {
    client_id: String,
    client_secret: String,
    token_url: String,
    #[serde(default)]
    revoke_url: Option<String>,
    access_token: String,
    refresh_token: String,
    token_type: String,
    #[serde(default)]
    scope: String,
    /// RFC 3339, for people reading the file.
    #[serde(default)]
    expires_at: String,
    expires_at_ms: i64,
    #[serde(default)]
    api_domain: Option<String>,
}

impl TokenFile {
    /// The file at `path` (which need not exist yet).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the app and the tokens.
    pub fn load(&self) -> Result<(OAuthApp, TokenSet), OAuthError> {
        let text = std::fs::read_to_string(&self.path).map_err(|e| {
            OAuthError::NotLoggedIn(if e.kind() == std::io::ErrorKind::NotFound {
                format!(
                    "no OAuth tokens at {}: run `pdchannels auth login` first",
                    self.path.display()
                )
            } else {
                format!("cannot read {}: {e}", self.path.display())
            })
        })?;
        let stored: Stored = serde_json::from_str(&text).map_err(|e| {
            OAuthError::NotLoggedIn(format!(
                "{} is not a pdchannels token file ({e}): run `pdchannels auth login` again",
                self.path.display()
            ))
        })?;
        let endpoints = OAuthEndpoints {
            token_url: stored.token_url,
            revoke_url: stored.revoke_url,
            ..OAuthEndpoints::default()
        };
        let app = OAuthApp::new(stored.client_id, stored.client_secret.into(), endpoints);
        let tokens = TokenSet {
            access_token: stored.access_token.into(),
            refresh_token: stored.refresh_token.into(),
            token_type: stored.token_type,
            scope: stored.scope,
            expires_at_ms: stored.expires_at_ms,
            api_domain: stored.api_domain,
        };
        Ok((app, tokens))
    }

    /// Writes the app and the tokens: to a 0600 temporary file beside it, synced, then renamed
    /// over the old one.
    pub fn save(&self, app: &OAuthApp, tokens: &TokenSet) -> std::io::Result<()> {
        let stored = Stored {
            client_id: app.client_id().to_owned(),
            client_secret: app.client_secret().expose_secret().to_owned(),
            token_url: app.endpoints().token_url.clone(),
            revoke_url: app.endpoints().revoke_url.clone(),
            access_token: tokens.access_token.expose_secret().to_owned(),
            refresh_token: tokens.refresh_token.expose_secret().to_owned(),
            token_type: tokens.token_type.clone(),
            scope: tokens.scope.clone(),
            expires_at: tokens.expires_at(),
            expires_at_ms: tokens.expires_at_ms,
            api_domain: tokens.api_domain.clone(),
        };
        let text = serde_json::to_string_pretty(&stored).map_err(std::io::Error::other)?;
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        // Each writer its own temporary file: processes sharing the login may refresh at the
        // same moment, and must not write into each other's half-written file.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let temporary = self
            .path
            .with_extension(format!("json.{}.{nanos}.tmp", std::process::id()));
        let written = owner_only(&temporary).and_then(|mut file| {
            file.write_all(text.as_bytes())?;
            file.sync_all()
        });
        if let Err(e) = written.and_then(|()| std::fs::rename(&temporary, &self.path)) {
            let _ = std::fs::remove_file(&temporary);
            return Err(e);
        }
        // The rename itself is durable once the directory is synced.
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::File::open(dir).and_then(|d| d.sync_all())?;
        }
        Ok(())
    }

    /// Deletes the file; a missing file is fine.
    pub fn remove(&self) -> std::io::Result<()> {
        match std::fs::remove_file(&self.path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// Creates a new file only its owner can read or write.
fn owner_only(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        options.mode(0o600);
        let file = options.open(path)?;
        // `mode` is filtered by the umask; make sure.
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        Ok(file)
    }
    #[cfg(not(unix))]
    options.open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (OAuthApp, TokenSet) {
        let app = OAuthApp::new(
            "client-1".to_owned(),
            "app-secret-value".to_owned().into(),
            OAuthEndpoints::default(),
        );
        let tokens = TokenSet {
            access_token: "access-secret-value".to_owned().into(),
            refresh_token: "refresh-secret-value".to_owned().into(),
            token_type: "Bearer".to_owned(),
            scope: "messengers-integration".to_owned(),
            expires_at_ms: 1_900_000_000_000,
            api_domain: Some("https://acme.pipedrive.com/".to_owned()),
        };
        (app, tokens)
    }

    #[test]
    fn a_saved_file_reads_back_and_only_its_owner_can_read_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = TokenFile::new(dir.path().join("sub/oauth.json"));
        let (app, tokens) = sample();
        file.save(&app, &tokens).expect("save");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(file.path())
                .expect("stat")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (app2, tokens2) = file.load().expect("load");
        assert_eq!(app2.client_id(), "client-1");
        assert_eq!(
            tokens2.refresh_token.expose_secret(),
            "refresh-secret-value"
        );
        assert_eq!(tokens2.expires_at_ms, tokens.expires_at_ms);
        assert_eq!(
            tokens2.api_base().as_deref(),
            Some("https://acme.pipedrive.com/api/v1")
        );
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let (app, tokens) = sample();
        let shown = format!("{app:?} {tokens:?}");
        assert!(!shown.contains("secret-value"), "{shown}");
    }

    #[test]
    fn a_missing_file_says_to_log_in() {
        let error = TokenFile::new("/nonexistent/oauth.json")
            .load()
            .unwrap_err();
        assert!(
            error.to_string().contains("pdchannels auth login"),
            "{error}"
        );
        assert!(error.needs_login());
    }
}
