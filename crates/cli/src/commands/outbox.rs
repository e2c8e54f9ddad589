//! `pdchannels outbox list|show|retry|drop|stats`.
//!
//! Data goes to stdout (a table, or JSON with `--json`), hints for people to stderr.

mod call;

use std::process::ExitCode;

use anyhow::Result;
use pdchannels_model::Timestamp;
use pdchannels_store::{Database, Outbox, OutboxState, OutboxStats};
use serde::Serialize;

use crate::args::{ListOutput, OutboxCommand, OutboxStateArg, RetryStateArg};
use crate::commands::human;
use crate::commands::table::{Align, Table};

use call::CallView;

pub async fn run(db: &Database, command: OutboxCommand) -> Result<ExitCode> {
    let store = super::open_existing_store(db).await?;
    let outbox = store.outbox();
    if matches!(
        command,
        OutboxCommand::Retry { .. } | OutboxCommand::Drop { .. }
    ) {
        // A call leased by a relay that crashed is nobody's: retry and drop may take it now
        // (a running relay's calls stay refused until they settle).
        outbox.release_leases_of_stopped_relays().await?;
    }
    let code = match command {
        OutboxCommand::List {
            state,
            limit,
            output,
        } => list(&outbox, state, limit, output).await?,
        OutboxCommand::Show { id } => show(&outbox, id).await?,
        OutboxCommand::Retry {
            id: Some(id),
            all: false,
            ..
        } => retry(&outbox, id).await?,
        OutboxCommand::Retry { state, .. } => retry_all(&outbox, state).await?,
        OutboxCommand::Drop { id } => {
            if outbox.drop(id).await? {
                eprintln!("dropped call {id}");
                ExitCode::SUCCESS
            } else {
                eprintln!(
                    "error: no outbox call has id {id}, or a relay is sending it right now (try again once `pdchannels outbox show {id}` says it is settled)"
                );
                ExitCode::FAILURE
            }
        }
        OutboxCommand::Stats { output } => {
            stats(&outbox.stats().await?, output);
            ExitCode::SUCCESS
        }
    };
    store.close().await;
    Ok(code)
}

/// The calls as [`CallView`]s, each with what holds it back.
async fn views(
    outbox: &Outbox,
    entries: Vec<pdchannels_store::OutboxEntry>,
) -> Result<Vec<CallView>> {
    let mut views = Vec::with_capacity(entries.len());
    for entry in entries {
        let held_behind = match entry.state {
            OutboxState::Pending => outbox.held_behind(entry.id).await?,
            OutboxState::Delivered | OutboxState::Dead => None,
        };
        views.push(CallView::new(entry, held_behind));
    }
    Ok(views)
}

async fn list(
    outbox: &Outbox,
    state: Option<OutboxStateArg>,
    limit: i64,
    output: ListOutput,
) -> Result<ExitCode> {
    let state = state.map(OutboxState::from);
    // One more than asked: to tell the reader when there are more, without counting them all.
    let mut entries = outbox.list(state, 0, limit.saturating_add(1)).await?;
    let more = entries.len() as u64 > limit.unsigned_abs();
    entries.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    let calls = views(outbox, entries).await?;
    let which = state.map_or(String::new(), |s| format!("{s} "));
    if output.json {
        super::print_json_lines(&calls);
    } else if !calls.is_empty() {
        let now = Timestamp::now().unix_millis();
        let mut table = Table::new(&[
            ("ID", Align::Right),
            ("STATE", Align::Left),
            ("OPERATION", Align::Left),
            ("CHANNEL", Align::Left),
            ("CONVERSATION", Align::Left),
            ("TRIES", Align::Right),
            ("CREATED (UTC)", Align::Left),
            ("WHY", Align::Left),
        ]);
        for call in &calls {
            table.push(vec![
                call.id.to_string(),
                call.state.to_string(),
                call.operation.as_str().to_owned(),
                call.channel_key.clone(),
                call.conversation_key
                    .clone()
                    .unwrap_or_else(|| "-".to_owned()),
                call.attempts.to_string(),
                call.created_at
                    .map_or_else(String::new, |t| human::date(t.unix_millis())),
                call.why(now),
            ]);
        }
        super::print_stdout(&table.render());
    }
    if calls.is_empty() {
        eprintln!("the outbox has no {which}calls");
    } else if more {
        eprintln!(
            "showing the oldest {} {which}calls; there are more: pass --limit N (or --state) to see others",
            human::count(calls.len() as u64)
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn show(outbox: &Outbox, id: i64) -> Result<ExitCode> {
    let Some(entry) = outbox.entry(id).await? else {
        eprintln!("error: no outbox call has id {id}; see `pdchannels outbox list`");
        return Ok(ExitCode::FAILURE);
    };
    let call = views(outbox, vec![entry]).await?.remove(0);
    super::print_stdout(&serde_json::to_string_pretty(&call)?);
    eprintln!(
        "call {id} is {}: {}",
        call.state,
        call.why(Timestamp::now().unix_millis())
    );
    Ok(ExitCode::SUCCESS)
}

async fn retry(outbox: &Outbox, id: i64) -> Result<ExitCode> {
    Ok(if outbox.retry(id).await? {
        eprintln!("call {id} is back in line; a running relay sends it now");
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "error: no dead or pending call has id {id}, or a relay is sending it right now (try again once `pdchannels outbox show {id}` says it is settled)"
        );
        ExitCode::FAILURE
    })
}

async fn retry_all(outbox: &Outbox, state: Option<RetryStateArg>) -> Result<ExitCode> {
    let which = match state {
        None => "dead or waiting",
        Some(RetryStateArg::Dead) => "dead",
        Some(RetryStateArg::Pending) => "waiting",
    };
    let count = outbox.retry_all(state.map(OutboxState::from)).await?;
    if count == 0 {
        eprintln!(
            "no {which} calls to put back in line (calls being sent right now are left alone)"
        );
    } else {
        eprintln!(
            "put {} {which} call{} back in line, due now; a running relay sends {} now",
            human::count(count),
            if count == 1 { "" } else { "s" },
            if count == 1 { "it" } else { "them" }
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `outbox stats --json`: the counts and the two times of [`OutboxStats`], times in RFC 3339.
#[derive(Serialize)]
struct StatsView {
    pending: i64,
    delivered: i64,
    dead: i64,
    oldest_pending_at: Option<Timestamp>,
    next_attempt_at: Option<Timestamp>,
}

fn stats(s: &OutboxStats, output: ListOutput) {
    let view = StatsView {
        pending: s.pending,
        delivered: s.delivered,
        dead: s.dead,
        oldest_pending_at: s.oldest_pending_at_ms.and_then(Timestamp::from_unix_millis),
        next_attempt_at: s.next_attempt_at_ms.and_then(Timestamp::from_unix_millis),
    };
    if output.json {
        super::print_json_lines(std::slice::from_ref(&view));
        return;
    }
    let now = Timestamp::now().unix_millis();
    let when = |ms: Option<i64>| {
        ms.map_or_else(String::new, |ms| {
            format!("{} ({})", human::date(ms), human::relative(ms, now))
        })
    };
    let mut table = Table::new(&[
        ("STATE", Align::Left),
        ("CALLS", Align::Right),
        ("OLDEST (UTC)", Align::Left),
        ("NEXT ATTEMPT (UTC)", Align::Left),
    ]);
    let calls = |n: i64| human::count(n.unsigned_abs());
    table.push(vec![
        "pending".to_owned(),
        calls(s.pending),
        when(s.oldest_pending_at_ms),
        when(s.next_attempt_at_ms),
    ]);
    for (state, n) in [("delivered", s.delivered), ("dead", s.dead)] {
        table.push(vec![
            state.to_owned(),
            calls(n),
            String::new(),
            String::new(),
        ]);
    }
    super::print_stdout(&table.render());
    if s.dead > 0 {
        eprintln!(
            "see why with `pdchannels outbox list --state dead`; after fixing the cause, `pdchannels outbox retry --all --state dead`"
        );
    }
}
