//! `pdchannels channels create|delete` and `pdchannels conversations delete`.

use std::process::ExitCode;

use anyhow::Result;
use pdchannels_model::{
    AddChannel, ApiResponse, Channels, ChannelsError, DeleteChannel, DeleteConversation, Limits,
    Operation, Problems, Success,
};
use pdchannels_store::Database;
use serde_json::{Value, json};

use crate::args::{ChannelsCommand, ConversationsCommand};

pub async fn run(db: &Database, command: ChannelsCommand) -> Result<ExitCode> {
    match command {
        ChannelsCommand::Link { channel, app } => super::app::link(db, &channel, Some(&app)).await,
        ChannelsCommand::Unlink { channel } => super::app::link(db, &channel, None).await,
        ChannelsCommand::Create {
            upstream,
            id,
            name,
            avatar_url,
            template_support,
            provider_type,
        } => {
            let mut payload = json!({
                "name": name, "provider_channel_id": id,
                "template_support": template_support, "provider_type": provider_type,
            });
            if let Some(url) = avatar_url {
                payload["avatar_url"] = json!(url);
            }
            let request = match AddChannel::parse(&payload, &Limits::default()) {
                Ok(request) => request,
                Err(problems) => return Ok(invalid(Operation::AddChannel, problems)),
            };
            let session = super::start(db, &upstream).await?;
            let result = session
                .channels()
                .add_channel(request)
                .await
                .map(ApiResponse::ok);
            session.shutdown().await;
            Ok(super::report(result, |r| {
                format!(
                    "channel `{}` is registered; receive messages with --channel-id {}",
                    r.data.provider_channel_id, r.data.provider_channel_id
                )
            }))
        }
        ChannelsCommand::Delete { upstream, id } => {
            let request = match DeleteChannel::parse(&json!({"id": id}), &Limits::default()) {
                Ok(request) => request,
                Err(problems) => return Ok(invalid(Operation::DeleteChannel, problems)),
            };
            let session = super::start(db, &upstream).await?;
            // A person deletes it here: its app (on this hub, not upstream) hears of it first,
            // while the hub still knows which app it belongs to.
            if session.relay().is_none() {
                let told = pdchannels_apps::tell_app_channel_deleted(
                    session.store(),
                    &pdchannels_apps::AppClient::new(),
                    &id,
                )
                .await?;
                if let Some(line) = told.describe() {
                    eprintln!("{line}");
                }
            }
            let result = session
                .channels()
                .delete_channel(request)
                .await
                .map(|()| Success::OK);
            session.shutdown().await;
            Ok(super::report(result, |_| format!("deleted channel `{id}`")))
        }
    }
}

pub async fn run_conversations(db: &Database, command: ConversationsCommand) -> Result<ExitCode> {
    let ConversationsCommand::Delete {
        upstream,
        channel_id,
        conversation_id,
    } = command;
    let payload: Value = json!({"channel_id": channel_id, "conversation_id": conversation_id});
    let request = match DeleteConversation::parse(&payload, &Limits::default()) {
        Ok(request) => request,
        Err(problems) => return Ok(invalid(Operation::DeleteConversation, problems)),
    };
    let session = super::start(db, &upstream).await?;
    let result = session
        .channels()
        .delete_conversation(request)
        .await
        .map(|()| Success::OK);
    session.shutdown().await;
    Ok(super::report(result, |_| {
        format!("deleted conversation `{conversation_id}` of channel `{channel_id}`")
    }))
}

fn invalid(operation: Operation, problems: Problems) -> ExitCode {
    super::report::<Success>(
        Err(ChannelsError::Invalid {
            operation,
            problems,
        }),
        |_| String::new(),
    )
}
