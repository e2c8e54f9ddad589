//! `pdchannels receive`: one message from flags or JSON.

use std::io::Read;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use pdchannels_model::{
    ApiResponse, Channels, ChannelsError, Limits, Operation, Problems, QueuedResponse,
    ReceiveMessage, ReceiveOutcome, Timestamp,
};
use pdchannels_store::Database;
use serde_json::{Map, Value, json};

use crate::args::ReceiveArgs;

pub async fn run(db: &Database, args: ReceiveArgs) -> Result<ExitCode> {
    let payload = match &args.json {
        Some(file) => read_json(file)?,
        None => from_flags(&args),
    };
    let limits = Limits::default();
    // Validate before opening the database: bad input changes nothing, not even a new file.
    let message = match payload
        .map_err(|reason| Problems::single("", reason))
        .and_then(|payload| ReceiveMessage::parse(&payload, &limits))
    {
        Ok(message) => message,
        Err(problems) => {
            let error = ChannelsError::Invalid {
                operation: Operation::ReceiveMessage,
                problems,
            };
            return Ok(super::report::<ApiResponse<ReceiveMessage>>(
                Err(error),
                |_| String::new(),
            ));
        }
    };
    let session = super::start(db, &args.upstream).await?;
    let result = session.channels().receive_message(message).await;
    session.shutdown().await;
    Ok(super::report(
        result.map(|r| Summary {
            outcome: r.outcome,
            message: r.message,
        }),
        |s| {
            let what = match &s.outcome {
                ReceiveOutcome::Created => "stored new message".to_owned(),
                ReceiveOutcome::Updated => "updated message".to_owned(),
                ReceiveOutcome::Unchanged => "already stored, unchanged: message".to_owned(),
                ReceiveOutcome::Delivered { .. } => "delivered to the upstream: message".to_owned(),
                ReceiveOutcome::Queued { outbox_id, reason } => format!(
                    "queued in the outbox (id {outbox_id}; {reason}); `pdchannels relay` delivers it: message"
                ),
            };
            format!(
                "{what} `{}` in conversation `{}`",
                s.message.id, s.message.conversation_id
            )
        },
    ))
}

/// The response body as every face answers it (with `additional_data.queued` when queued),
/// with what the human summary needs.
struct Summary {
    outcome: ReceiveOutcome,
    message: ReceiveMessage,
}

impl serde::Serialize for Summary {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match &self.outcome {
            ReceiveOutcome::Queued { outbox_id, reason } => {
                QueuedResponse::new(Some(&self.message), *outbox_id, reason.clone())
                    .serialize(serializer)
            }
            _ => ApiResponse::ok(&self.message).serialize(serializer),
        }
    }
}

/// The payload from a file or stdin; an unreadable file is a usage error, bad JSON a payload
/// problem.
fn read_json(file: &Path) -> Result<Result<Value, String>> {
    let text = if file == Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read the payload from stdin")?;
        text
    } else {
        std::fs::read_to_string(file)
            .with_context(|| format!("cannot read the payload file {}", file.display()))?
    };
    Ok(serde_json::from_str(&text).map_err(|e| format!("the payload is not valid JSON: {e}")))
}

/// The payload built from flags, in the contract's field names, so it goes through exactly the
/// same validation as JSON input.
fn from_flags(args: &ReceiveArgs) -> Result<Value, String> {
    let mut payload = Map::new();
    let mut put = |key: &str, value: &Option<String>| {
        if let Some(v) = value {
            payload.insert(key.to_owned(), json!(v));
        }
    };
    put("id", &args.id);
    put("channel_id", &args.channel_id);
    put("sender_id", &args.sender_id);
    put("conversation_id", &args.conversation_id);
    put("message", &args.message);
    put("status", &Some(args.status.clone()));
    put(
        "created_at",
        &Some(
            args.created_at
                .clone()
                .unwrap_or_else(|| Timestamp::now().to_string()),
        ),
    );
    put("reply_by", &args.reply_by);
    put("conversation_link", &args.conversation_link);
    let attachments = args
        .attachment
        .iter()
        .enumerate()
        .map(|(i, text)| {
            serde_json::from_str(text)
                .map_err(|e| format!("--attachment number {} is not valid JSON: {e}", i + 1))
        })
        .collect::<Result<Vec<Value>, String>>()?;
    payload.insert("attachments".to_owned(), Value::Array(attachments));
    Ok(Value::Object(payload))
}
