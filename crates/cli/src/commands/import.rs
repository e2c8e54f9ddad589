//! `pdchannels import FILE`: many receive payloads, one a line.
//!
//! The summary's words each mean one thing: a line is *stored locally* (created, updated or
//! unchanged) or *queued* (written to the outbox for the upstream), or *rejected locally* (not
//! a valid payload, or refused by the local store), or *not stored* (the database failed).
//! Queued calls then end *delivered* (to the upstream), *still queued*, or *rejected upstream*.
//! Per-line reports come in line order.

mod in_line_order;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, IsTerminal};
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressState, ProgressStyle};
use pdchannels_model::{Channels, ChannelsError, Limits, ReceiveMessage, ReceiveOutcome};
use pdchannels_relay::Delivery;
use pdchannels_store::{Database, OutboxState};
use sha2::{Digest, Sha256};
use tokio::task::JoinSet;

use crate::args::ImportArgs;
use crate::commands::human;
use crate::runtime::Runtime;

use in_line_order::InLineOrder;

/// Lines stored at once: enough to fill the store's group commits.
const IN_FLIGHT: usize = 256;

#[derive(Default)]
struct Tally {
    created: u64,
    updated: u64,
    unchanged: u64,
    queued: u64,
    /// Not a valid payload (not UTF-8, not JSON, a field wrong), or refused by the local store
    /// (an unknown channel, a message in another conversation).
    rejected_locally: u64,
    /// The database failed: the line may be stored by importing again.
    not_stored: u64,
}

impl Tally {
    /// `N lines: ...`: what became of the (non-blank) lines.
    fn summary(&self, relayed: bool) -> String {
        let c = human::count;
        let stored = self.created + self.updated + self.unchanged;
        let lines = stored + self.queued + self.rejected_locally + self.not_stored;
        let kept = if relayed {
            format!("{} queued for the upstream", c(self.queued))
        } else {
            format!(
                "{} stored locally ({} created, {} updated, {} unchanged)",
                c(stored),
                c(self.created),
                c(self.updated),
                c(self.unchanged)
            )
        };
        let not_stored = if self.not_stored > 0 {
            format!(
                ", {} not stored (the database failed: import again)",
                c(self.not_stored)
            )
        } else {
            String::new()
        };
        format!(
            "{}: {kept}, {} rejected locally{not_stored}",
            human::counted(lines, "line", "lines"),
            c(self.rejected_locally)
        )
    }
}

pub async fn run(db: &Database, args: ImportArgs) -> Result<ExitCode> {
    let reader: Box<dyn BufRead + Send> = if args.file == Path::new("-") {
        Box::new(BufReader::new(std::io::stdin()))
    } else {
        let file = std::fs::File::open(&args.file)
            .with_context(|| format!("cannot open {}", args.file.display()))?;
        Box::new(BufReader::new(file))
    };
    let mut runtime = Runtime::open(db, &args.upstream).await?;
    let channels = runtime.channels().clone();
    let relayed = runtime.relay().is_some();
    let limits = Limits::default();

    let progress = if std::io::stderr().is_terminal() {
        ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{spinner} {human_pos} lines, {rate} lines/s {msg}")
                .expect("the template is valid")
                .with_key(
                    "rate",
                    |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                        // A progress line, not data: a failed write only loses one frame.
                        let _ = w.write_str(&human::rate(state.per_sec()));
                    },
                ),
        )
    } else {
        ProgressBar::hidden()
    };

    let mut tally = Tally::default();
    let mut reports = InLineOrder::default();
    let mut tasks = JoinSet::new();
    // Lines are read on a blocking thread: a slow or stalled input must not stall the runtime
    // (and with it the store's writer, which would hold the database's write lock). They are read
    // as bytes, so that a line that is not UTF-8 is one rejected line, not the end of the import.
    let (lines_tx, mut lines) = tokio::sync::mpsc::channel(1024);
    tokio::task::spawn_blocking(move || {
        for line in reader.split(b'\n') {
            if lines_tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    let mut queued: Vec<(usize, i64)> = Vec::new();
    let mut index = 0;
    let mut input_so_far = Sha256::new();
    while let Some(line) = lines.recv().await {
        index += 1;
        let number = index;
        let bytes = line.with_context(|| format!("cannot read line {number}"))?;
        let idempotency_key = line_key(&mut input_so_far, number, &bytes);
        let line = match String::from_utf8(bytes) {
            Ok(line) => line,
            Err(e) => {
                tally.rejected_locally += 1;
                let at = e.utf8_error().valid_up_to();
                let report = format!("line {number}: not valid UTF-8 (at byte {at})");
                print(&progress, reports.settled(number, Some(report)));
                continue;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        progress.inc(1);
        let message = serde_json::from_str(&line)
            .map_err(|e| format!("not valid JSON: {e}"))
            .and_then(|v| ReceiveMessage::parse(&v, &limits).map_err(|p| p.to_string()));
        let message = match message {
            Ok(message) => message,
            Err(reason) => {
                tally.rejected_locally += 1;
                let report = format!("line {number}: {reason}");
                print(&progress, reports.settled(number, Some(report)));
                continue;
            }
        };
        if tasks.len() >= IN_FLIGHT
            && let Some(done) = tasks.join_next().await
        {
            let (settled, report) = count(&mut tally, &mut queued, done?);
            print(&progress, reports.settled(settled, report));
        }
        reports.started(number);
        let channels = channels.clone();
        let relayed = relayed.then_some(idempotency_key);
        tasks.spawn(async move { (number, store_line(&channels, message, relayed).await) });
    }
    while let Some(done) = tasks.join_next().await {
        let (settled, report) = count(&mut tally, &mut queued, done?);
        print(&progress, reports.settled(settled, report));
    }
    progress.finish_and_clear();
    eprintln!("{}", tally.summary(relayed));

    let delivered_all = if relayed {
        deliver(&mut runtime, &queued).await?
    } else {
        true
    };
    runtime.shutdown().await;
    Ok(
        if tally.rejected_locally == 0 && tally.not_stored == 0 && delivered_all {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        },
    )
}

/// The outbox's idempotency key for line `number`: the line number and a SHA-256 of the input up
/// to and including this line. Running the same input again (a resumed import, whether from the
/// file or piped in) gives each line the same key, so the outbox keeps one call per line; a line
/// of another input, or after a changed line, is a call of its own even with the same bytes.
fn line_key(input_so_far: &mut Sha256, number: usize, line: &[u8]) -> String {
    input_so_far.update(line);
    input_so_far.update(b"\n");
    format!(
        "import:{number}:{}",
        hex::encode(input_so_far.clone().finalize())
    )
}

/// Stores a line locally, or with an upstream writes it to the outbox (named by
/// `idempotency_key`, the line's) without waiting for delivery: the relay sends the whole file
/// afterwards.
async fn store_line(
    channels: &Delivery,
    message: ReceiveMessage,
    idempotency_key: Option<String>,
) -> Result<ReceiveOutcome, ChannelsError> {
    match channels {
        Delivery::Upstream(upstream) => {
            let outbox_id = upstream.enqueue_receive(&message, idempotency_key).await?;
            Ok(ReceiveOutcome::Queued {
                outbox_id,
                reason: "imported".to_owned(),
            })
        }
        Delivery::Local(_) => channels.receive_message(message).await.map(|r| r.outcome),
    }
}

/// Counts a stored line; answers its number and its report, if it has one.
fn count(
    tally: &mut Tally,
    queued: &mut Vec<(usize, i64)>,
    (number, result): (usize, Result<ReceiveOutcome, ChannelsError>),
) -> (usize, Option<String>) {
    if let Ok(ReceiveOutcome::Queued { outbox_id, .. }) = &result {
        queued.push((number, *outbox_id));
    }
    match result {
        Ok(ReceiveOutcome::Created) => tally.created += 1,
        Ok(ReceiveOutcome::Updated) => tally.updated += 1,
        Ok(ReceiveOutcome::Unchanged) => tally.unchanged += 1,
        Ok(ReceiveOutcome::Queued { .. } | ReceiveOutcome::Delivered { .. }) => tally.queued += 1,
        Err(e) => {
            if matches!(e, ChannelsError::Unavailable(_)) {
                tally.not_stored += 1;
            } else {
                tally.rejected_locally += 1;
            }
            return (number, Some(format!("line {number}: {e} {}", e.remedy())));
        }
    }
    (number, None)
}

/// Prints per-line reports on stderr, above the progress line.
fn print(progress: &ProgressBar, reports: Vec<String>) {
    if !reports.is_empty() {
        progress.suspend(|| {
            for report in reports {
                eprintln!("{report}");
            }
        });
    }
}

/// Delivers this file's calls (queued, not yet sent): first puts back in line the ones an earlier
/// run left rejected (importing again after a fix is how to resend them), then runs the relay
/// while they can be delivered now, and reports each line the upstream rejected. `false` if any
/// was.
async fn deliver(runtime: &mut Runtime, queued: &[(usize, i64)]) -> Result<bool> {
    let outbox = runtime.store().outbox();
    let ids: Vec<i64> = queued.iter().map(|(_, id)| *id).collect();
    let mut earlier = 0;
    for call in outbox.statuses(&ids).await? {
        match call.state {
            OutboxState::Dead => {
                outbox.retry(call.id).await?;
            }
            OutboxState::Delivered => earlier += 1,
            OutboxState::Pending => {}
        }
    }
    eprintln!(
        "delivering {} to the upstream ({} delivered by an earlier run)...",
        human::counted((ids.len() - earlier) as u64, "queued call", "queued calls"),
        human::count(earlier as u64)
    );
    runtime.start_relay();
    // Deliver what can be delivered now; what must wait longer than --deliver-timeout for a
    // retry (the upstream down, a rate limit, a login to renew) stays queued for `pdchannels
    // relay`. The outbox's next attempt time knows which calls may go (a conversation's later
    // calls wait for its first), and counts the ones being sent as going.
    let patience = runtime
        .relay()
        .map_or(0, |relay| relay.config().deliver_timeout.as_millis() as i64);
    let mut told_of_failures = false;
    loop {
        let statuses = outbox.statuses(&ids).await?;
        if statuses.iter().all(|s| s.state != OutboxState::Pending) {
            break;
        }
        if !told_of_failures
            && let Some(error) = statuses.iter().find_map(|s| s.last_error.as_deref())
        {
            told_of_failures = true;
            eprintln!(
                "the upstream is failing ({error}); retrying for as long as a retry comes within --deliver-timeout ({} s), then the rest stays queued",
                patience / 1000
            );
        }
        let now = pdchannels_model::Timestamp::now().unix_millis();
        if outbox
            .next_attempt()
            .await?
            .is_none_or(|at| at >= now + patience)
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    // Stopping lets the sends in flight finish; then the file's calls are where they end.
    runtime.stop_relay().await;
    let statuses = outbox.statuses(&ids).await?;
    let line_of: HashMap<i64, usize> = queued.iter().map(|(line, id)| (*id, *line)).collect();
    let (mut delivered, mut pending) = (0, 0);
    let mut rejected = Vec::new();
    for call in &statuses {
        match call.state {
            OutboxState::Delivered => delivered += 1,
            OutboxState::Dead => rejected.push((
                line_of.get(&call.id).copied().unwrap_or_default(),
                call.id,
                call.last_error.as_deref().unwrap_or("no reason given"),
            )),
            OutboxState::Pending => pending += 1,
        }
    }
    // In line order: outbox ids follow the lines only within one run.
    rejected.sort_unstable();
    for (line, id, reason) in &rejected {
        // The reason ends with the command that sends it again once fixed.
        eprintln!("line {line} (outbox call {id}): rejected upstream: {reason}");
    }
    if !rejected.is_empty() {
        eprintln!(
            "importing the same file again after the fix also sends the rejected lines again (and nothing twice)"
        );
    }
    eprintln!(
        "upstream: {} delivered, {} still queued{}, {} rejected upstream",
        human::count(delivered),
        human::count(pending),
        if pending > 0 {
            " (retrying later: run `pdchannels relay` to go on)"
        } else {
            ""
        },
        human::count(rejected.len() as u64)
    );
    Ok(rejected.is_empty())
}
