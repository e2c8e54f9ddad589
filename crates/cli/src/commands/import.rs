//! `pdchannels import FILE`: many receive payloads, one a line.

use std::io::{BufRead, BufReader, IsTerminal};
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use pdchannels_client::UpstreamRequest;
use pdchannels_model::{Channels, ChannelsError, Limits, ReceiveMessage, ReceiveOutcome};
use pdchannels_store::{NewOutboxEntry, Store};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::args::ImportArgs;

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
    let store = super::open_store(db).await?;
    let relay = super::upstream::relay(&store, &args.upstream)?;
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
    // (and with it the store's writer, which would hold the database's write lock).
    let (lines_tx, mut lines) = tokio::sync::mpsc::channel(1024);
    tokio::task::spawn_blocking(move || {
        for line in reader.lines() {
            if lines_tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    let mut index = 0;
    while let Some(line) = lines.recv().await {
        index += 1;
        let number = index;
        let line = line.with_context(|| format!("cannot read line {number}"))?;
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
            count(&mut tally, done?, &progress);
        }
        let store = store.clone();
        let relayed = relay.is_some();
        tasks.spawn(async move { (number, store_line(&store, message, relayed).await) });
    }
    while let Some(done) = tasks.join_next().await {
        count(&mut tally, done?, &progress);
    }
    progress.finish_and_clear();

    if let Some(relay) = &relay {
        eprintln!(
            "delivering {} queued messages to the upstream...",
            tally.queued
        );
        let stop = CancellationToken::new();
        let worker = super::upstream::spawn_worker(Some(relay), &stop);
        // Deliver what can be delivered now; what must wait (retries, rate limits) stays queued.
        loop {
            let stats = store.outbox_stats().await?;
            let now = pdchannels_model::Timestamp::now().unix_millis();
            if stats.pending == 0 || stats.next_attempt_at_ms.is_some_and(|t| t > now + 60_000) {
                eprintln!(
                    "outbox: {} delivered, {} pending, {} dead (run `pdchannels relay` to go on)",
                    stats.delivered, stats.pending, stats.dead
                );
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        stop.cancel();
        if let Some(worker) = worker {
            worker.await?;
        }
    }
    store.close().await;
    eprintln!(
        "imported {} lines: {} created, {} updated, {} unchanged, {} queued for the upstream, {} failed; {rejected} rejected",
        tally.created + tally.updated + tally.unchanged + tally.queued,
        tally.created,
        tally.updated,
        tally.unchanged,
        tally.queued,
        tally.failed
    );
    Ok(if rejected == 0 && tally.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Stores a line locally, or (with an upstream) writes it to the outbox without waiting for
/// delivery: the relay sends the whole file afterwards.
async fn store_line(
    store: &Store,
    message: ReceiveMessage,
    relayed: bool,
) -> Result<ReceiveOutcome, ChannelsError> {
    if relayed {
        let entry = NewOutboxEntry {
            operation: "receive_message",
            channel_key: message.channel_id.to_string(),
            conversation_key: Some(message.conversation_id.to_string()),
            request: serde_json::to_value(UpstreamRequest::receive_message(&message))
                .expect("a request always serializes"),
        };
        let outbox_id = store
            .enqueue(entry)
            .await
            .map_err(ChannelsError::Unavailable)?;
        Ok(ReceiveOutcome::Queued {
            outbox_id,
            reason: "imported".to_owned(),
        })
    } else {
        store.receive_message(message).await.map(|r| r.outcome)
    }
}

fn count(
    tally: &mut Tally,
    (number, result): (usize, Result<ReceiveOutcome, ChannelsError>),
    progress: &ProgressBar,
) {
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
