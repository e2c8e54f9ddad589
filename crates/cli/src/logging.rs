//! Logs go to stderr, always: in `pdchannels mcp`, stdout belongs to the protocol. Colour only
//! on a terminal: in a file, a pipe or journald, escape codes are noise.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::args::{Global, LogFormat};

pub fn init(global: &Global) {
    let filter = EnvFilter::try_new(with_quiet_protocol(&global.log)).unwrap_or_else(|e| {
        eprintln!("warning: ignoring the log filter {:?}: {e}", global.log);
        EnvFilter::new("warn")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match global.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// `filter` with rmcp held at `info` unless the filter names it: rmcp logs whole tool calls at
/// debug (the customers' message texts), which `--log debug` should not pour into a journal.
/// `--log debug,rmcp=debug` still shows them.
fn with_quiet_protocol(filter: &str) -> String {
    let verbose_default = filter
        .split(',')
        .map(str::trim)
        .any(|directive| matches!(directive, "debug" | "trace"));
    if verbose_default && !filter.contains("rmcp") {
        format!("{filter},rmcp=info")
    } else {
        filter.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::with_quiet_protocol;

    #[test]
    fn rmcp_stays_at_info_unless_named() {
        assert_eq!(with_quiet_protocol("debug"), "debug,rmcp=info");
        assert_eq!(with_quiet_protocol("info,trace"), "info,trace,rmcp=info");
        assert_eq!(
            with_quiet_protocol("warn"),
            "warn",
            "never louder than asked"
        );
        assert_eq!(
            with_quiet_protocol("warn,pdchannels_relay=debug"),
            "warn,pdchannels_relay=debug"
        );
        assert_eq!(with_quiet_protocol("debug,rmcp=trace"), "debug,rmcp=trace");
    }
}
