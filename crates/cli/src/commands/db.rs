//! `pdchannels db copy`: a SQLite hub into PostgreSQL. The copying is the store's
//! ([`pdchannels_store::copy_database`]); this shows its progress and its result.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};
use pdchannels_store::{CopyError, CopyOptions, CopyProgress, Database};

use super::{human, print_stdout};
use crate::args::{DbCommand, DbCopyArgs};

pub async fn run(command: DbCommand) -> Result<ExitCode> {
    match command {
        DbCommand::Copy(args) => copy(args).await,
    }
}

async fn copy(args: DbCopyArgs) -> Result<ExitCode> {
    let from = parse(&args.from, "--from")?;
    let to = parse(&args.to, "--to")?;
    let options = CopyOptions {
        resume: args.resume,
    };
    let terminal = std::io::stderr().is_terminal();
    eprintln!("copying {from} into {to}");
    let mut show = Show::new(terminal);
    let result =
        pdchannels_store::copy_database(&from, &to, options, &mut |p| show.update(p)).await;
    show.bar.finish_and_clear();
    let report = result.map_err(|e| {
        // The store's words name `--db`; here the databases are --from and --to.
        let text = match &e {
            CopyError::Source(_) => e.to_string().replace("--db", "--from"),
            CopyError::Target(_) => e.to_string().replace("--db", "--to"),
            _ => e.to_string(),
        };
        anyhow::anyhow!(text)
    })?;
    let messages = report
        .tables
        .iter()
        .find(|t| t.table == "messages")
        .map_or(0, |t| t.rows);
    let rows: i64 = report.tables.iter().map(|t| t.rows).sum();
    eprintln!(
        "copied {} ({}) in {:.1} s{}; every table's rows counted on both sides: the same",
        human::counted(rows as u64, "row", "rows"),
        human::counted(messages as u64, "message", "messages"),
        report.seconds,
        if report.resumed { ", resumed" } else { "" },
    );
    eprintln!("next: start the hubs with --db {to} (PDCHANNELS_DB), and keep {from} as a backup");
    print_stdout(&serde_json::to_string_pretty(&report).expect("the report serializes"));
    Ok(ExitCode::SUCCESS)
}

/// A `--from`/`--to` value, with the parser's words about `--db` put as this flag.
fn parse(value: &str, flag: &str) -> Result<Database> {
    Database::parse(value).map_err(|e| anyhow::anyhow!(e.to_string().replace("--db", flag)))
}

/// The progress: a bar on a terminal; elsewhere a line when each table is done.
struct Show {
    bar: ProgressBar,
    terminal: bool,
    table: &'static str,
    started: Instant,
}

impl Show {
    fn new(terminal: bool) -> Self {
        let bar = if terminal {
            ProgressBar::new(0).with_style(
                ProgressStyle::with_template(
                    "{msg:>14} [{bar:30}] {human_pos}/{human_len} rows, {per_sec}, {eta} left",
                )
                .expect("the template is valid")
                .progress_chars("=> "),
            )
        } else {
            ProgressBar::hidden()
        };
        Self {
            bar,
            terminal,
            table: "",
            started: Instant::now(),
        }
    }

    fn update(&mut self, progress: CopyProgress) {
        match progress {
            CopyProgress::Copied {
                table,
                copied,
                total,
                done,
            } => {
                if table != self.table {
                    self.table = table;
                    self.started = Instant::now();
                    self.bar.reset();
                    self.bar.set_length(total);
                    self.bar.set_message(table);
                }
                self.bar.set_position(copied);
                if done {
                    let line = format!(
                        "{table}: {} of {} rows ({:.1} s)",
                        human::count(copied),
                        human::count(total),
                        self.started.elapsed().as_secs_f64()
                    );
                    if self.terminal {
                        self.bar.println(line);
                    } else {
                        eprintln!("{line}");
                    }
                }
            }
            CopyProgress::Verifying => {
                self.bar.finish_and_clear();
                eprintln!("counting the rows on both sides");
            }
        }
    }
}
