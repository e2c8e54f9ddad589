//! `TEST_LOG=1`: see what the hubs and subprocesses of a failing test were doing.
//!
//! Off by default, so a passing suite stays quiet. With `TEST_LOG=1` (run with
//! `-- --nocapture` to see it as it happens), hubs started in the test's process log at debug
//! level to stderr, and subprocesses started with [`subprocess_log_env`] and
//! [`subprocess_stderr`] log at debug level to the test's stderr.

use std::process::Stdio;

/// Whether `TEST_LOG` asks for logs (`1`, `true` or `yes`).
pub fn test_log_enabled() -> bool {
    std::env::var("TEST_LOG")
        .is_ok_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes"))
}

/// Installs a debug-level subscriber writing to stderr when `TEST_LOG` is on; otherwise does
/// nothing. Safe to call from every test (only the first call of a process installs it).
pub fn init_test_log() {
    if test_log_enabled() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_env("PDCHANNELS_LOG")
                    .unwrap_or_else(|_| "debug".into()),
            )
            .with_writer(std::io::stderr)
            .try_init();
    }
}

/// The environment that makes a `pdchannels` subprocess log at debug level when `TEST_LOG` is
/// on (none otherwise): pass it to `Command::envs`.
pub fn subprocess_log_env() -> Vec<(&'static str, &'static str)> {
    if test_log_enabled() {
        vec![("PDCHANNELS_LOG", "debug")]
    } else {
        Vec::new()
    }
}

/// Where a subprocess whose stderr the test does not read should write it: the test's own
/// stderr when `TEST_LOG` is on, nowhere otherwise.
pub fn subprocess_stderr() -> Stdio {
    if test_log_enabled() {
        Stdio::inherit()
    } else {
        Stdio::null()
    }
}
