//! `pdchannels inbox link`: a one-time login link to the web inbox.

use std::process::ExitCode;

use anyhow::{Result, bail};
use pdchannels_store::Database;
use secrecy::ExposeSecret;

use crate::args::InboxCommand;

pub async fn run(db: &Database, command: InboxCommand) -> Result<ExitCode> {
    let InboxCommand::Link { token_id, hub_url } = command;
    let store = super::open_existing_store(db).await?;
    let link = store.create_login_link(&token_id).await;
    store.close().await;
    let Some(link) = link? else {
        bail!(
            "no active token has the id {token_id:?}; `pdchannels token list` shows the tokens (their ids start with tok_)"
        );
    };
    super::print_stdout(&format!(
        "{}/inbox/login/{}",
        hub_url.trim_end_matches('/'),
        link.expose_secret()
    ));
    eprintln!("open it within 10 minutes; it works once");
    Ok(ExitCode::SUCCESS)
}
