//! `pdchannels`: the one binary. Parses the command line, sets up logging, and hands over to a
//! command; everything else lives in the library crates.

mod args;
mod commands;
mod duration_flag;
mod logging;
mod paths;
mod runtime;
mod secrets;
mod signals;

use std::process::ExitCode;

use clap::FromArgMatches;

fn main() -> ExitCode {
    // Parsed in two steps (what `Cli::parse` does) to keep the matches: they tell whether a
    // secret came from a flag or from the environment.
    let matches = args::command().get_matches();
    let cli = args::Cli::from_arg_matches(&matches)
        .unwrap_or_else(|e| e.format(&mut args::command()).exit());
    logging::init(&cli.global);
    secrets::warn_if_on_command_line(&matches);
    // The hub serves many connections: all cores. One thread is enough for a stdio server or a
    // one-shot command, and saves a cross-thread wake-up on every request (SQLite work runs on
    // sqlx's own thread either way).
    let mut builder = if matches!(cli.command, args::Command::Serve(_)) {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
