//! `pdchannels token create|list|revoke`.

use std::process::ExitCode;

use anyhow::Result;
use pdchannels_model::Timestamp;
use pdchannels_store::{Database, TokenInfo};
use secrecy::ExposeSecret;
use serde::Serialize;

use crate::args::{ListOutput, TokenCommand};
use crate::commands::human;
use crate::commands::table::{Align, Table};

/// A token as `token list --json` prints it: never the token itself.
#[derive(Serialize)]
struct TokenView {
    id: String,
    name: String,
    created_at: Option<Timestamp>,
    /// `null` while the token works.
    revoked_at: Option<Timestamp>,
    /// The provider app it is for, if any.
    app: Option<String>,
}

impl From<TokenInfo> for TokenView {
    fn from(t: TokenInfo) -> Self {
        Self {
            id: t.id,
            name: t.name,
            created_at: Timestamp::from_unix_millis(t.created_at_ms),
            revoked_at: t.revoked_at_ms.and_then(Timestamp::from_unix_millis),
            app: t.app,
        }
    }
}

pub async fn run(db: &Database, command: TokenCommand) -> Result<ExitCode> {
    let store = match command {
        // Creating a token may come first on a new database (before the first `serve`).
        TokenCommand::Create { .. } => super::open_store(db).await?,
        TokenCommand::List { .. } | TokenCommand::Revoke { .. } => {
            super::open_existing_store(db).await?
        }
    };
    let code = match command {
        TokenCommand::Create { name, app } => {
            if let Some(app) = &app
                && store.app(app).await?.is_none()
            {
                store.close().await;
                anyhow::bail!(
                    "no app is called {app:?}; `pdchannels app list` shows the apps, `pdchannels app add` adds one"
                );
            }
            let token = store.create_app_token(&name, app.as_deref()).await?;
            eprintln!(
                "Created token {} ({}); it is shown only now:",
                token.info.id, token.info.name
            );
            super::print_stdout(token.secret.expose_secret());
            ExitCode::SUCCESS
        }
        TokenCommand::List { output } => {
            let tokens: Vec<TokenView> = store
                .list_tokens()
                .await?
                .into_iter()
                .map(TokenView::from)
                .collect();
            list(&tokens, output);
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

fn list(tokens: &[TokenView], output: ListOutput) {
    if tokens.is_empty() {
        eprintln!("no tokens yet; create one with `pdchannels token create --name NAME`");
    }
    if output.json {
        super::print_json_lines(tokens);
        return;
    }
    if tokens.is_empty() {
        return;
    }
    let date = |at: Timestamp| human::date(at.unix_millis());
    let mut table = Table::new(&[
        ("ID", Align::Left),
        ("NAME", Align::Left),
        ("CREATED (UTC)", Align::Left),
        ("STATE", Align::Left),
        ("APP", Align::Left),
    ]);
    for t in tokens {
        table.push(vec![
            t.id.clone(),
            t.name.clone(),
            t.created_at.map_or_else(String::new, date),
            t.revoked_at.map_or_else(
                || "active".to_owned(),
                |at| format!("revoked {} UTC", date(at)),
            ),
            t.app.clone().unwrap_or_default(),
        ]);
    }
    super::print_stdout(&table.render());
}
