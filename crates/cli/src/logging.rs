//! Logs go to stderr, always: in `pdchannels mcp`, stdout belongs to the protocol. Colour only
//! on a terminal: in a file, a pipe or journald, escape codes are noise.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::args::{Global, LogFormat};

pub fn init(global: &Global) {
    let filter = EnvFilter::try_new(&global.log).unwrap_or_else(|e| {
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
