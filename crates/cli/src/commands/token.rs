//! `pdchannels token create|list|revoke`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use pdchannels_model::Timestamp;
use secrecy::ExposeSecret;

use crate::args::TokenCommand;

pub async fn run(db: &Path, command: TokenCommand) -> Result<ExitCode> {
    let store = super::open_store(db).await?;
    let code = match command {
        TokenCommand::Create { name } => {
            let token = store.create_token(&name).await?;
            eprintln!(
                "Created token {} ({}); it is shown only now:",
                token.info.id, token.info.name
            );
            super::print_stdout(token.secret.expose_secret());
            ExitCode::SUCCESS
        }
        TokenCommand::List => {
            for t in store.list_tokens().await? {
                let created = Timestamp::from_unix_millis(t.created_at_ms)
                    .map_or_else(String::new, |t| t.to_string());
                let state = match t.revoked_at_ms.and_then(Timestamp::from_unix_millis) {
                    Some(at) => format!("revoked {at}"),
                    None => "active".to_owned(),
                };
                super::print_stdout(&format!("{}\t{}\tcreated {created}\t{state}", t.id, t.name));
            }
            ExitCode::SUCCESS
        }
        TokenCommand::Revoke { id } => {
            if store.revoke_token(&id).await? {
                eprintln!("revoked {id}");
                ExitCode::SUCCESS
            } else {
                eprintln!("error: no active token has the id {id:?}; see `pdchannels token list`");
                ExitCode::FAILURE
            }
        }
    };
    store.close().await;
    Ok(code)
}
