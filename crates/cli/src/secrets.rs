//! Secrets the command line takes (the upstream's API token, the OAuth app's client secret):
//! from the environment, from a file, or, discouraged, from a flag.
//!
//! A flag's value is readable by every user of the machine (`ps`, `/proc/PID/cmdline`); the
//! environment only by the process's owner (`/proc/PID/environ`), a file by whom its mode
//! allows. A secret given as a flag still works, with a warning that names the alternatives.

use std::io::Read;
use std::path::Path;

use anyhow::{Result, anyhow, bail};
use clap::ArgMatches;
use clap::parser::ValueSource;
use secrecy::{ExposeSecret, SecretString};

/// The largest secret file read: tokens and client secrets are well under 1 KiB.
const MAX_SECRET_FILE_BYTES: u64 = 64 * 1024;

/// One secret and the three ways to give it.
pub struct Secret {
    /// clap's id of the flag that takes the value itself.
    id: &'static str,
    flag: &'static str,
    env: &'static str,
    file_flag: &'static str,
    /// What it is, for messages.
    what: &'static str,
}

/// `--upstream-token`, `PDCHANNELS_UPSTREAM_TOKEN`, `--upstream-token-file`.
pub const UPSTREAM_TOKEN: Secret = Secret {
    id: "upstream_token",
    flag: "--upstream-token",
    env: "PDCHANNELS_UPSTREAM_TOKEN",
    file_flag: "--upstream-token-file",
    what: "the upstream's API token",
};

/// `--pipedrive-token`, `PDCHANNELS_PIPEDRIVE_TOKEN`, `--pipedrive-token-file` (the notes mirror's).
pub const PIPEDRIVE_TOKEN: Secret = Secret {
    id: "pipedrive_token",
    flag: "--pipedrive-token",
    env: "PDCHANNELS_PIPEDRIVE_TOKEN",
    file_flag: "--pipedrive-token-file",
    what: "the Pipedrive API token",
};

/// `--client-secret`, `PDCHANNELS_CLIENT_SECRET`, `--client-secret-file` (of `auth login`).
pub const CLIENT_SECRET: Secret = Secret {
    id: "client_secret",
    flag: "--client-secret",
    env: "PDCHANNELS_CLIENT_SECRET",
    file_flag: "--client-secret-file",
    what: "the app's client_secret",
};

/// Warns, once per secret, about each secret the parsed command line took from a flag.
pub fn warn_if_on_command_line(matches: &ArgMatches) {
    // The secret flags belong to the innermost subcommand (e.g. `channels create`).
    let mut leaf = matches;
    while let Some((_, sub)) = leaf.subcommand() {
        leaf = sub;
    }
    for secret in [&UPSTREAM_TOKEN, &CLIENT_SECRET, &PIPEDRIVE_TOKEN] {
        // `ids` lists only the arguments this subcommand has and that were given.
        let given = leaf.ids().any(|id| id.as_str() == secret.id);
        if given && leaf.value_source(secret.id) == Some(ValueSource::CommandLine) {
            tracing::warn!(
                "{} was given as {} on the command line, where every user of this machine can \
                 read it (ps, /proc/PID/cmdline); set {} or pass {} PATH instead",
                secret.what,
                secret.flag,
                secret.env,
                secret.file_flag
            );
        }
    }
}

impl Secret {
    /// The secret from its flag or environment variable (`value`) or from its file, if either
    /// gave one. Both at once is an error, as is a file that cannot be read or holds no secret.
    pub fn resolve(
        &self,
        value: Option<SecretString>,
        file: Option<&Path>,
    ) -> Result<Option<SecretString>> {
        match (value, file) {
            (Some(_), Some(_)) => bail!(
                "{} is given twice, by {} (or {}) and by {}; keep one",
                self.what,
                self.flag,
                self.env,
                self.file_flag
            ),
            (Some(value), None) => Ok(Some(value)),
            (None, Some(path)) => self.read_file(path).map(Some),
            (None, None) => Ok(None),
        }
    }

    /// What to say when the secret is required and missing.
    pub fn missing(&self) -> anyhow::Error {
        anyhow!(
            "{} is missing; set {} or pass {} PATH",
            self.what,
            self.env,
            self.file_flag
        )
    }

    /// Reads the secret from `path`: its only line, surrounding whitespace removed.
    fn read_file(&self, path: &Path) -> Result<SecretString> {
        let fail = |reason: &dyn std::fmt::Display| {
            anyhow!(
                "cannot read {} from {} {}: {reason}",
                self.what,
                self.file_flag,
                path.display()
            )
        };
        let mut bytes = Vec::new();
        std::fs::File::open(path)
            .and_then(|file| file.take(MAX_SECRET_FILE_BYTES + 1).read_to_end(&mut bytes))
            .map_err(|e| fail(&e))?;
        if bytes.len() as u64 > MAX_SECRET_FILE_BYTES {
            return Err(fail(&format_args!(
                "it is larger than {} KiB; the file should hold only the secret",
                MAX_SECRET_FILE_BYTES / 1024
            )));
        }
        let text = String::from_utf8(bytes).map_err(|_| fail(&"it is not UTF-8 text"))?;
        let secret = SecretString::from(text.trim().to_owned());
        let exposed = secret.expose_secret();
        if exposed.is_empty() {
            return Err(fail(&"it is empty; put the secret in it, on one line"));
        }
        if exposed.contains(['\n', '\r']) {
            return Err(fail(
                &"it holds more than one line; put only the secret in it",
            ));
        }
        Ok(secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &tempfile::TempDir, text: &str) -> std::path::PathBuf {
        let path = dir.path().join("secret");
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn a_file_gives_its_one_line_without_the_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, "pdc_secret-value\n");
        let secret = UPSTREAM_TOKEN.resolve(None, Some(&path)).unwrap().unwrap();
        assert_eq!(secret.expose_secret(), "pdc_secret-value");
    }

    #[test]
    fn bad_files_say_which_file_and_why_without_the_secret() {
        let dir = tempfile::tempdir().unwrap();
        for (text, reason) in [
            ("\n", "it is empty"),
            ("line-one-value\nline-two-value\n", "more than one line"),
        ] {
            let path = write(&dir, text);
            let error = UPSTREAM_TOKEN
                .resolve(None, Some(&path))
                .unwrap_err()
                .to_string();
            assert!(error.contains(reason), "{error}");
            assert!(error.contains(&path.display().to_string()), "{error}");
            assert!(!error.contains("-value"), "{error}");
        }
        let missing = dir.path().join("missing");
        let error = UPSTREAM_TOKEN
            .resolve(None, Some(&missing))
            .unwrap_err()
            .to_string();
        assert!(error.contains("--upstream-token-file"), "{error}");
        let big = write(&dir, &"x".repeat(70_000));
        let error = UPSTREAM_TOKEN
            .resolve(None, Some(&big))
            .unwrap_err()
            .to_string();
        assert!(error.contains("larger than 64 KiB"), "{error}");
    }

    #[test]
    fn a_value_and_a_file_at_once_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, "from-file");
        let error = CLIENT_SECRET
            .resolve(Some(SecretString::from("from-flag")), Some(&path))
            .unwrap_err()
            .to_string();
        assert!(error.contains("given twice"), "{error}");
        assert!(error.contains("PDCHANNELS_CLIENT_SECRET"), "{error}");
    }
}
