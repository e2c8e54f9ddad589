//! `pdchannels app add|list|show|remove` and `channels link|unlink`: the provider apps the hub
//! calls back, and which channels are theirs.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use pdchannels_model::Timestamp;
use pdchannels_model::manifest::Manifest;
use pdchannels_store::{AppCall, AppInfo, Database, Link, NewApp};
use secrecy::SecretString;

use crate::args::{AppCommand, CallStateArg, ListOutput, SendArgs};
use crate::commands::human;
use crate::commands::table::{Align, Table};

/// Where the client secret comes from besides `--client-secret-file` (never a flag).
const SECRET_ENV: &str = "PDCHANNELS_APP_CLIENT_SECRET";

/// The largest manifest read: a real one is well under 2 KiB.
const MAX_MANIFEST_BYTES: usize = 256 * 1024;

pub async fn run(db: &Database, command: AppCommand) -> Result<ExitCode> {
    match command {
        AppCommand::Add {
            name,
            manifest,
            client_id,
            client_secret_file,
            backfill_pages,
            replace,
        } => {
            if client_id.is_empty()
                || client_id.contains(':')
                || client_id.chars().any(char::is_control)
            {
                bail!(
                    "--client-id must be the app's OAuth client id, without `:` (Basic auth would read what follows it as the secret)"
                );
            }
            let secret = client_secret(client_secret_file.as_deref())?;
            let (manifest, source) = read_manifest(&manifest).await?;
            let store = super::open_store(db).await?;
            let app = NewApp {
                name: name.clone(),
                client_id,
                client_secret: secret,
                manifest,
                manifest_source: source,
                backfill_pages,
            };
            let added = store.add_app(&app, replace).await;
            store.close().await;
            if !added? {
                bail!(
                    "an app is already called {name:?}: pass --replace to give it this manifest and these credentials, or choose another name"
                );
            }
            eprintln!(
                "{} the app {name}. Link channels to it with `pdchannels channels link CHANNEL {name}`, or create its token with `pdchannels token create --name {name} --app {name}` so the channels it creates are its own.",
                if replace { "Saved" } else { "Added" }
            );
            Ok(ExitCode::SUCCESS)
        }
        AppCommand::List { output } => {
            let store = super::open_existing_store(db).await?;
            let apps = store.apps().await;
            store.close().await;
            list(&apps?, output);
            Ok(ExitCode::SUCCESS)
        }
        AppCommand::Show { name } => {
            let store = super::open_existing_store(db).await?;
            let app = store.app(&name).await;
            store.close().await;
            match app? {
                Some(app) => {
                    super::print_stdout(&serde_json::to_string_pretty(&AppView::from(app))?);
                    Ok(ExitCode::SUCCESS)
                }
                None => no_such_app(&name),
            }
        }
        AppCommand::Calls {
            state,
            limit,
            output,
        } => {
            let store = super::open_existing_store(db).await?;
            // One more than shown tells whether there are more.
            let calls = store
                .app_calls(state.map(CallStateArg::as_str), limit + 1)
                .await;
            store.close().await;
            let mut calls = calls?;
            let more = calls.len() > usize::try_from(limit).unwrap_or(usize::MAX);
            calls.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
            calls_table(&calls, output);
            if more {
                eprintln!(
                    "showing the newest {limit} calls; there are more (`--limit N` shows more, `--state` narrows them)"
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        AppCommand::Retry { id } => {
            let store = super::open_existing_store(db).await?;
            let retried = store.retry_app_call(id).await;
            store.close().await;
            if retried? {
                eprintln!("call {id} is back in line; the hub makes it at once");
                Ok(ExitCode::SUCCESS)
            } else {
                bail!(
                    "no dead call has the id {id} (or the same call is pending already); `pdchannels app calls --state dead` lists them"
                )
            }
        }
        AppCommand::Remove { name } => {
            let store = super::open_existing_store(db).await?;
            let removed = store.remove_app(&name).await;
            store.close().await;
            if removed? {
                eprintln!("removed the app {name}; its channels and tokens belong to no app now");
                Ok(ExitCode::SUCCESS)
            } else {
                no_such_app(&name)
            }
        }
    }
}

/// `channels link CHANNEL APP` and `channels unlink CHANNEL`.
pub async fn link(db: &Database, channel: &str, app: Option<&str>) -> Result<ExitCode> {
    let store = super::open_existing_store(db).await?;
    // Said, not refused: moving a channel to another app is what `link` is for.
    let before = store.channel_app(channel).await;
    let linked = match store.link_channel(channel, app).await {
        // Its conversations are fetched by the hub (`serve`) as for a channel the app created.
        Ok(Link::Linked) if app.is_some() => {
            pdchannels_apps::start_sync(&store, app.unwrap_or_default(), channel)
                .await
                .map(|_| Link::Linked)
        }
        other => other,
    };
    store.close().await;
    if let (Ok(Some(before)), Ok(Link::Linked)) = (&before, &linked)
        && app != Some(before.as_str())
    {
        eprintln!("the channel {channel} belonged to the app {before} until now");
    }
    match (linked?, app) {
        (Link::Linked, Some(app)) => eprintln!(
            "the channel {channel} belongs to the app {app}; the hub fetches its conversations from the app (`pdchannels app calls` shows the calls)"
        ),
        (Link::Linked, None) => eprintln!("the channel {channel} belongs to no app"),
        (Link::NoChannel, _) => bail!(
            "no channel has the id {channel:?}; `pdchannels channels create` adds one (GET /v1/channels lists them)"
        ),
        (Link::NoApp, app) => return no_such_app(app.unwrap_or_default()),
    }
    Ok(ExitCode::SUCCESS)
}

fn no_such_app(name: &str) -> Result<ExitCode> {
    Err(anyhow!(
        "no app is called {name:?}; `pdchannels app list` shows the apps, `pdchannels app add` adds one"
    ))
}

/// The client secret: from the environment or a file, never a flag.
fn client_secret(file: Option<&Path>) -> Result<SecretString> {
    let from_env = std::env::var(SECRET_ENV)
        .ok()
        .filter(|s| !s.trim().is_empty());
    match (from_env, file) {
        (Some(_), Some(_)) => bail!(
            "the client secret is given twice, by {SECRET_ENV} and by --client-secret-file; keep one"
        ),
        (Some(secret), None) => Ok(SecretString::from(secret.trim().to_owned())),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path).with_context(|| {
                format!(
                    "cannot read the client secret from --client-secret-file {}",
                    path.display()
                )
            })?;
            let secret = text.trim();
            if secret.is_empty() || secret.contains(['\n', '\r']) {
                bail!(
                    "--client-secret-file {} must hold the client secret alone, on one line",
                    path.display()
                );
            }
            Ok(SecretString::from(secret.to_owned()))
        }
        (None, None) => bail!(
            "the app's client secret is missing: set {SECRET_ENV} or pass --client-secret-file PATH (the hub sends it, with --client-id, as Basic auth on every call to the app)"
        ),
    }
}

/// Reads and validates a manifest from a file or an http(s) URL; answers it and where it came
/// from. Every problem is named by its JSON path.
async fn read_manifest(from: &str) -> Result<(Manifest, String)> {
    let is_url = from.starts_with("http://") || from.starts_with("https://");
    // What is said and stored of where it came from: a URL's password never.
    let shown = if is_url {
        without_password(from)
    } else {
        from.to_owned()
    };
    let text = if is_url {
        fetch_manifest(from, &shown).await?
    } else {
        let path = Path::new(from);
        // Read at most a byte past the limit: `--manifest /dev/zero` must not fill memory.
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(
            &mut std::io::Read::take(
                std::fs::File::open(path)
                    .with_context(|| format!("cannot read the manifest {}", path.display()))?,
                MAX_MANIFEST_BYTES as u64 + 1,
            ),
            &mut bytes,
        )
        .with_context(|| format!("cannot read the manifest {}", path.display()))?;
        if bytes.len() > MAX_MANIFEST_BYTES {
            bail!(
                "the manifest {} is larger than 256 KiB; is it the right file?",
                path.display()
            );
        }
        String::from_utf8(bytes)
            .map_err(|_| anyhow!("the manifest {} is not UTF-8 text", path.display()))?
    };
    let manifest = Manifest::parse_str(&text).map_err(|problems| {
        let lines: Vec<String> = problems
            .as_slice()
            .iter()
            .map(|p| {
                if p.path.is_empty() {
                    format!("  {}", p.reason)
                } else {
                    format!("  `{}`: {}", p.path, p.reason)
                }
            })
            .collect();
        anyhow!("the manifest {shown} is not valid:\n{}", lines.join("\n"))
    })?;
    Ok((manifest, shown))
}

/// A URL with its password (if any) replaced by `***`.
fn without_password(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(_) => url.to_owned(),
        Err(_) => "the --manifest URL".to_owned(),
    }
}

/// Fetches the manifest at `url`; `shown` is how errors name it (no password).
async fn fetch_manifest(url: &str, shown: &str) -> Result<String> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::limited(3))
        .user_agent(concat!("pdchannels/", env!("CARGO_PKG_VERSION")))
        .build()?;
    let response = client
        .get(url)
        .header("accept", "application/json")
        .send()
        .await
        .map_err(|e| {
            anyhow!(
                "cannot fetch the manifest from {shown}: {}; check that the app runs and serves its manifest there",
                pdchannels_client::error_chain(&e.without_url())
            )
        })?;
    let status = response.status();
    if !status.is_success() {
        bail!(
            "fetching the manifest from {shown} answered {status}; check the URL (the app serves it, e.g. at /manifest.json)"
        );
    }
    let mut response = response;
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| {
        anyhow!(
            "cannot read the manifest from {shown}: {}",
            pdchannels_client::error_chain(&e.without_url())
        )
    })? {
        bytes.extend_from_slice(&chunk);
        if bytes.len() > MAX_MANIFEST_BYTES {
            bail!("the manifest at {shown} is larger than 256 KiB; is it the right URL?");
        }
    }
    String::from_utf8(bytes).map_err(|_| anyhow!("the manifest at {shown} is not UTF-8 text"))
}

/// An app as `app show` and `app list --json` print it: never the secret.
#[derive(serde::Serialize)]
struct AppView {
    name: String,
    client_id: String,
    manifest: serde_json::Value,
    manifest_source: String,
    backfill_pages: u32,
    created_at: Option<Timestamp>,
    /// `ok`, `credentials refused` (401) or `paused` (429).
    state: String,
    credentials_invalid_at: Option<Timestamp>,
    paused_until: Option<Timestamp>,
    last_error: Option<String>,
    channels: Vec<String>,
}

impl From<AppInfo> for AppView {
    fn from(app: AppInfo) -> Self {
        let now = Timestamp::now().unix_millis();
        let state = if app.credentials_invalid_at_ms.is_some() {
            "credentials refused"
        } else if app.paused_until_ms.is_some_and(|until| until > now) {
            "paused"
        } else {
            "ok"
        };
        Self {
            name: app.name,
            client_id: app.client_id,
            manifest: app.manifest,
            manifest_source: app.manifest_source,
            backfill_pages: app.backfill_pages,
            created_at: Timestamp::from_unix_millis(app.created_at_ms),
            state: state.to_owned(),
            credentials_invalid_at: app
                .credentials_invalid_at_ms
                .and_then(Timestamp::from_unix_millis),
            paused_until: app.paused_until_ms.and_then(Timestamp::from_unix_millis),
            last_error: app.last_error,
            channels: app.channels,
        }
    }
}

fn list(apps: &[AppInfo], output: ListOutput) {
    let views: Vec<AppView> = apps.iter().cloned().map(AppView::from).collect();
    if output.json {
        super::print_json_lines(&views);
        return;
    }
    if views.is_empty() {
        eprintln!(
            "no apps yet; add one with `pdchannels app add NAME --manifest FILE|URL --client-id ID`"
        );
        return;
    }
    let mut table = Table::new(&[
        ("NAME", Align::Left),
        ("CLIENT ID", Align::Left),
        ("CHANNELS", Align::Right),
        ("ADDED (UTC)", Align::Left),
        ("STATE", Align::Left),
    ]);
    for app in &views {
        table.push(vec![
            app.name.clone(),
            app.client_id.clone(),
            app.channels.len().to_string(),
            app.created_at
                .map_or_else(String::new, |at| human::date(at.unix_millis())),
            app.state.clone(),
        ]);
    }
    super::print_stdout(&table.render());
}

/// A call as `app calls --json` prints it.
#[derive(serde::Serialize)]
struct CallView<'a> {
    #[serde(flatten)]
    call: &'a AppCall,
    next_attempt_at: Option<Timestamp>,
}

fn calls_table(calls: &[AppCall], output: ListOutput) {
    if output.json {
        let views: Vec<CallView> = calls
            .iter()
            .map(|call| CallView {
                call,
                next_attempt_at: Timestamp::from_unix_millis(call.next_attempt_at_ms),
            })
            .collect();
        super::print_json_lines(&views);
        return;
    }
    if calls.is_empty() {
        eprintln!("no calls to apps of that kind");
        return;
    }
    let mut table = Table::new(&[
        ("ID", Align::Right),
        ("APP", Align::Left),
        ("CALL", Align::Left),
        ("CHANNEL", Align::Left),
        ("ABOUT", Align::Left),
        ("STATE", Align::Left),
        ("TRIES", Align::Right),
        ("LAST ANSWER", Align::Left),
    ]);
    for call in calls {
        let last = match (&call.last_status, &call.last_error) {
            (_, Some(error)) => error.chars().take(80).collect(),
            (Some(status), None) => status.to_string(),
            (None, None) => String::new(),
        };
        table.push(vec![
            call.id.to_string(),
            call.app.clone(),
            call.endpoint.clone(),
            call.channel_id.clone(),
            call.subject.clone(),
            call.state.clone(),
            call.attempts.to_string(),
            last,
        ]);
    }
    super::print_stdout(&table.render());
}

/// `pdchannels send`: a reply through the channel's app, as the hub's route sends it.
pub async fn send(db: &Database, args: SendArgs) -> Result<ExitCode> {
    let store = super::open_existing_store(db).await?;
    let reply = pdchannels_apps::Reply {
        channel_id: args.channel_id,
        conversation_id: args.conversation_id,
        message: args.message.unwrap_or_default(),
        template_id: args.template_id,
        retry: args.retry,
    };
    let sent = pdchannels_apps::send_reply(&store, &pdchannels_apps::AppClient::new(), reply).await;
    store.close().await;
    match sent {
        Ok(sent) => {
            super::print_stdout(&serde_json::to_string_pretty(
                &serde_json::json!({"success": true, "data": sent}),
            )?);
            eprintln!(
                "sent as {} to {}; the app's receives of that id move its status",
                sent.id,
                sent.recipient_ids.join(", ")
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(pdchannels_apps::SendError::Failed { local_id, reason }) => {
            eprintln!(
                "error: the app did not take the reply {local_id}: {reason}. It is kept as failed; once the app works (and the customer did not get it), send it again with `pdchannels send --channel-id ... --conversation-id ... --retry {local_id}`"
            );
            Ok(ExitCode::FAILURE)
        }
        Err(pdchannels_apps::SendError::Invalid(field, why)) => {
            eprintln!("error: --{}: {why}", field.replace('_', "-"));
            Ok(ExitCode::FAILURE)
        }
        Err(
            pdchannels_apps::SendError::NotFound(why)
            | pdchannels_apps::SendError::Refused(why)
            | pdchannels_apps::SendError::Store(why),
        ) => {
            eprintln!("error: cannot send: {why}");
            Ok(ExitCode::FAILURE)
        }
    }
}
