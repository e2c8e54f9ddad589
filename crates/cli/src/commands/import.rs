//! `pdchannels import FILE`: many receive payloads, one a line.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, IsTerminal};
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use pdchannels_model::{Channels, ChannelsError, Limits, ReceiveMessage, ReceiveOutcome};
use pdchannels_relay::Delivery;
use pdchannels_store::OutboxState;
use sha2::{Digest, Sha256};
use tokio::task::JoinSet;

use crate::args::ImportArgs;
use crate::runtime::Runtime;

/// Lines stored at once: enough to fill the store's group commits.
const IN_FLIGHT: usize = 256;

#[derive(Default)]
struct Tally {
    created: u64,
    updated: u64,
    unchanged: u64,
    queued: u64,
    failed: u64,
}

pub async fn run(db: &Path, args: ImportArgs) -> Result<ExitCode> {
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
            ProgressStyle::with_template("{spinner} {pos} lines {per_sec} {msg}")
                .expect("the template is valid"),
        )
    } else {
        ProgressBar::hidden()
    };

    let mut tally = Tally::default();
    let mut rejected = 0u64;
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
                rejected += 1;
                let at = e.utf8_error().valid_up_to();
                progress.suspend(|| eprintln!("line {number}: not valid UTF-8 (at byte {at})"));
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
                rejected += 1;
                progress.suspend(|| eprintln!("line {number}: {reason}"));
                continue;
            }
        };
        if tasks.len() >= IN_FLIGHT
            && let Some(done) = tasks.join_next().await
        {
            count(&mut tally, &mut queued, done?, &progress);
        }
        let channels = channels.clone();
        let relayed = relayed.then_some(idempotency_key);
        tasks.spawn(async move { (number, store_line(&channels, message, relayed).await) });
    }
    while let Some(done) = tasks.join_next().await {
        count(&mut tally, &mut queued, done?, &progress);
    }
    progress.finish_and_clear();

    let delivered_all = if relayed {
        deliver(&mut runtime, &queued).await?
    } else {
        true
    };
    runtime.shutdown().await;
    eprintln!(
        "imported {} lines: {} created, {} updated, {} unchanged, {} queued for the upstream, {} failed; {rejected} rejected",
        tally.created + tally.updated + tally.unchanged + tally.queued,
        tally.created,
        tally.updated,
        tally.unchanged,
        tally.queued,
        tally.failed
    );
    Ok(if rejected == 0 && tally.failed == 0 && delivered_all {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
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
        Delivery::Local(store) => store.receive_message(message).await.map(|r| r.outcome),
    }
}

fn count(
    tally: &mut Tally,
    queued: &mut Vec<(usize, i64)>,
    (number, result): (usize, Result<ReceiveOutcome, ChannelsError>),
    progress: &ProgressBar,
) {
    if let Ok(ReceiveOutcome::Queued { outbox_id, .. }) = &result {
        queued.push((number, *outbox_id));
    }
    match result {
        Ok(ReceiveOutcome::Created) => tally.created += 1,
        Ok(ReceiveOutcome::Updated) => tally.updated += 1,
        Ok(ReceiveOutcome::Unchanged) => tally.unchanged += 1,
        Ok(ReceiveOutcome::Queued { .. } | ReceiveOutcome::Delivered { .. }) => tally.queued += 1,
        Err(e) => {
            tally.failed += 1;
            progress.suspend(|| eprintln!("line {number}: {e} {}", e.remedy()));
        }
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
        "delivering {} calls to the upstream ({earlier} of them delivered by an earlier run)...",
        ids.len() - earlier
    );
    runtime.start_relay();
    // Deliver what can be delivered now; what must wait long (backoff after failures, a rate
    // limit, a login to renew) stays queued for `pdchannels relay`. The outbox's next attempt
    // time knows which calls may go (a conversation's later calls wait for its first), and
    // counts the ones being sent as going.
    loop {
        let statuses = outbox.statuses(&ids).await?;
        if statuses.iter().all(|s| s.state != OutboxState::Pending) {
            break;
        }
        let now = pdchannels_model::Timestamp::now().unix_millis();
        if outbox
            .next_attempt()
            .await?
            .is_none_or(|at| at >= now + 30_000)
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    // Stopping lets the sends in flight finish; then the file's calls are where they end.
    runtime.stop_relay().await;
    let statuses = outbox.statuses(&ids).await?;
    let line_of: HashMap<i64, usize> = queued.iter().map(|(line, id)| (*id, *line)).collect();
    let (mut delivered, mut pending, mut dead) = (0, 0, 0);
    for call in &statuses {
        match call.state {
            OutboxState::Delivered => delivered += 1,
            OutboxState::Dead => {
                dead += 1;
                eprintln!(
                    "line {}: rejected by the upstream: {} (outbox id {}; fix the cause and import again)",
                    line_of.get(&call.id).copied().unwrap_or_default(),
                    call.last_error.as_deref().unwrap_or("no reason given"),
                    call.id
                );
            }
            OutboxState::Pending => pending += 1,
        }
    }
    eprintln!(
        "upstream: {delivered} delivered, {pending} pending{}, {dead} rejected",
        if pending > 0 {
            " (retrying later: run `pdchannels relay` to go on)"
        } else {
            ""
        }
    );
    Ok(dead == 0)
}
