//! `pdchannels completions SHELL` and `pdchannels man`: the command line described for shells
//! and `man`, generated from the same definition as `--help` so they never drift from it.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result};

/// Writes the completion script for `shell` on stdout.
pub fn completions(shell: clap_complete::Shell) -> Result<ExitCode> {
    let mut command = crate::args::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, "pdchannels", &mut script);
    write_stdout(&script)
}

/// Writes the manual page (roff) on stdout, or, with `dir`, every page (the main one and one per
/// command, which the main page's SUBCOMMANDS section names) into that directory.
pub fn man(dir: Option<&std::path::Path>) -> Result<ExitCode> {
    if let Some(dir) = dir {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the directory {}", dir.display()))?;
        clap_mangen::generate_to(crate::args::command(), dir)
            .with_context(|| format!("cannot write the manual pages into {}", dir.display()))?;
        eprintln!(
            "wrote the manual pages into {} (man pdchannels, man pdchannels-serve, ...)",
            dir.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let mut page = Vec::new();
    clap_mangen::Man::new(crate::args::command())
        .render(&mut page)
        .context("cannot render the manual page")?;
    write_stdout(&page)
}

/// A reader that stops early (`| head`) is not an error.
fn write_stdout(bytes: &[u8]) -> Result<ExitCode> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(e).context("cannot write to stdout")
        }
        _ => Ok(ExitCode::SUCCESS),
    }
}
