//! One module per subcommand.

mod app;
mod auth;
mod channels;
mod db;
mod describe;
mod human;
mod import;
mod inbox;
mod mcp;
pub(crate) mod mirror;
mod outbox;
mod receive;
mod relay;
mod serve;
mod table;
mod token;
pub(crate) mod upstream;

use std::process::ExitCode;

use anyhow::Result;
use pdchannels_model::{ChannelsError, ErrorBody, QueuedResponse};
use pdchannels_store::{Database, Store};
use serde::Serialize;

use crate::args::{Cli, Command};
use crate::paths;
use crate::runtime::Runtime;

pub async fn run(cli: Cli) -> Result<ExitCode> {
    // Resolved only by the commands that use a database: `completions` and `man` must work
    // without a home directory.
    let db = || paths::database(cli.global.db.as_ref());
    match cli.command {
        Command::Serve(args) => serve::run(&db()?, args).await,
        Command::Token(command) => token::run(&db()?, command).await,
        Command::Mcp(upstream) => mcp::run(&db()?, upstream).await,
        Command::Relay(upstream) => relay::run(&db()?, upstream).await,
        Command::Outbox(command) => outbox::run(&db()?, command).await,
        Command::Import(args) => import::run(&db()?, args).await,
        Command::Receive(args) => receive::run(&db()?, args).await,
        Command::Channels(command) => channels::run(&db()?, command).await,
        Command::Conversations(command) => channels::run_conversations(&db()?, command).await,
        Command::Db(command) => db::run(command).await,
        Command::App(command) => app::run(&db()?, command).await,
        Command::Inbox(command) => inbox::run(&db()?, command).await,
        Command::Mirror(args) => mirror::run(&db()?, args).await,
        Command::Send(args) => app::send(&db()?, args).await,
        Command::Auth(command) => auth::run(command).await,
        Command::Paths(file) => {
            print_stdout(&format!("database: {}", db()?));
            let oauth = paths::oauth_file(file.oauth_file.as_deref())?;
            print_stdout(&format!("oauth tokens: {}", oauth.display()));
            Ok(ExitCode::SUCCESS)
        }
        Command::Completions { shell } => describe::completions(shell),
        Command::Man { dir } => describe::man(dir.as_deref()),
    }
}

/// Opens the database of a command that only looks at or repairs what is there (token list or
/// revoke, outbox): a path that holds no database is a mistyped `--db`, refused rather than
/// answered from a new, empty one.
async fn open_existing_store(db: &Database) -> Result<Store> {
    if let Some(path) = db.sqlite_path()
        && !path.exists()
    {
        anyhow::bail!(
            "no database at {}: pass the --db (or PDCHANNELS_DB) the hub uses; `pdchannels paths` shows the default",
            path.display()
        );
    }
    open_store(db).await
}

async fn open_store(db: &Database) -> Result<Store> {
    if let Some(path) = db.sqlite_path() {
        paths::ensure_parent(path)?;
    }
    Ok(Store::connect(db).await?)
}

/// A one-shot command's way to the Channels operations: the local store, or the outbox with the
/// relay delivering while the command runs (`shutdown` lets its sends in flight settle).
async fn start(db: &Database, upstream: &crate::args::UpstreamArgs) -> Result<Runtime> {
    let mut runtime = Runtime::open(db, upstream).await?;
    runtime.start_relay();
    Ok(runtime)
}

/// Prints an API response body on stdout (for scripts) and a summary on stderr (for people).
fn report<T: Serialize>(
    result: Result<T, ChannelsError>,
    summary: impl FnOnce(&T) -> String,
) -> ExitCode {
    match result {
        Ok(body) => {
            print_stdout(&to_json(&body));
            eprintln!("{}", summary(&body));
            ExitCode::SUCCESS
        }
        // Accepted into the outbox: a success (exit 0), answered as every face answers it.
        Err(ChannelsError::Queued {
            outbox_id,
            reason,
            show_command,
        }) => {
            print_stdout(&to_json(&QueuedResponse::<()>::new(
                None,
                outbox_id,
                reason.clone(),
            )));
            eprintln!(
                "queued in the outbox (call {outbox_id}), not delivered yet: {reason}; the relay keeps delivering it (`{show_command}`)"
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            let body: ErrorBody = error.body();
            print_stdout(&to_json(&body));
            match &error {
                ChannelsError::Invalid { problems, .. } => {
                    eprintln!("error: {}", body.error);
                    for p in problems.as_slice() {
                        eprintln!(
                            "  {}: {}",
                            if p.path.is_empty() {
                                "(payload)"
                            } else {
                                &p.path
                            },
                            p.reason
                        );
                    }
                }
                other => eprintln!("error: {other}"),
            }
            eprintln!("{}", error.remedy());
            ExitCode::FAILURE
        }
    }
}

/// The one place output reaches stdout. `pdchannels mcp` never calls it: there stdout belongs to
/// the protocol (the workspace denies `println!` elsewhere to keep it so).
#[allow(clippy::print_stdout)]
pub(crate) fn print_stdout(text: &str) {
    use std::io::Write;
    if let Err(e) = writeln!(std::io::stdout().lock(), "{text}") {
        // The reader went away (`pdchannels app calls | head`): nothing more can be shown, and
        // that is no failure of ours. Anything else is said on stderr.
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("warning: cannot write to stdout: {e}");
    }
}

/// `--json` output of list commands: one compact JSON object per line, so that scripts can read
/// rows as they come (`jq`, `while read`) and an empty list is no output at all.
fn print_json_lines<T: Serialize>(rows: &[T]) {
    for row in rows {
        print_stdout(&serde_json::to_string(row).expect("list rows always serialize"));
    }
}

fn to_json(value: &impl Serialize) -> String {
    serde_json::to_string_pretty(value).expect("response bodies always serialize")
}
