//! `pdchannels outbox list|show|retry|drop|stats`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use pdchannels_model::Timestamp;
use pdchannels_store::{OutboxEntry, OutboxState};

use crate::args::OutboxCommand;

fn at(ms: i64) -> String {
    Timestamp::from_unix_millis(ms).map_or_else(|| ms.to_string(), |t| t.to_string())
}

fn line(e: &OutboxEntry) -> String {
    let target = match &e.conversation_key {
        Some(conversation) => format!("{}/{}", e.channel_key, conversation),
        None => e.channel_key.clone(),
    };
    let why = match e.state {
        OutboxState::Pending => format!(
            "next try {}{}",
            at(e.next_attempt_at_ms),
            e.last_error
                .as_deref()
                .map(|r| format!(" after: {r}"))
                .unwrap_or_default()
        ),
        OutboxState::Dead => format!("rejected: {}", e.last_error.as_deref().unwrap_or("")),
        OutboxState::Delivered => format!("delivered {}", at(e.updated_at_ms)),
    };
    format!(
        "{}\t{}\t{}\t{}\tattempts {}\tsince {}\t{}",
        e.id,
        e.state,
        e.operation,
        target,
        e.attempts,
        at(e.created_at_ms),
        why
    )
}

pub async fn run(db: &Path, command: OutboxCommand) -> Result<ExitCode> {
    let store = super::open_store(db).await?;
    let outbox = store.outbox();
    let code = match command {
        OutboxCommand::List { state, limit } => {
            for e in outbox.list(state.map(OutboxState::from), 0, limit).await? {
                super::print_stdout(&line(&e));
            }
            ExitCode::SUCCESS
        }
        OutboxCommand::Show { id } => match outbox.entry(id).await? {
            Some(e) => {
                super::print_stdout(&serde_json::to_string_pretty(&e)?);
                ExitCode::SUCCESS
            }
            None => {
                eprintln!("error: no outbox call has id {id}; see `pdchannels outbox list`");
                ExitCode::FAILURE
            }
        },
        OutboxCommand::Retry { id } => {
            if outbox.retry(id).await? {
                eprintln!("call {id} is back in line; a running relay sends it now");
                ExitCode::SUCCESS
            } else {
                eprintln!(
                    "error: no dead or pending call has id {id}, or a relay is sending it right now (try again once `pdchannels outbox show {id}` says it is settled)"
                );
                ExitCode::FAILURE
            }
        }
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
        OutboxCommand::Stats => {
            let s = outbox.stats().await?;
            super::print_stdout(&format!(
                "pending {}\ndelivered {}\ndead {}\noldest pending since {}\nnext attempt {}",
                s.pending,
                s.delivered,
                s.dead,
                s.oldest_pending_at_ms.map_or("-".to_owned(), at),
                s.next_attempt_at_ms.map_or("-".to_owned(), at),
            ));
            ExitCode::SUCCESS
        }
    };
    store.close().await;
    Ok(code)
}
