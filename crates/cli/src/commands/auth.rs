//! `pdchannels auth login|status|refresh|logout`: Pipedrive's OAuth authorization-code flow with
//! a local callback, and the saved login.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use axum::extract::{Query, State};
use axum::response::Html;
use pdchannels_client::oauth::{OAuthApp, OAuthEndpoints, OAuthSession, TokenFile, TokenSet};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::mpsc;

use crate::args::{AuthCommand, LoginArgs, OAuthFileArgs};
use crate::{paths, secrets};

pub async fn run(command: AuthCommand) -> Result<ExitCode> {
    match command {
        AuthCommand::Login(args) => login(args).await,
        AuthCommand::Status(file) => {
            let file = token_file(&file)?;
            let (app, tokens) = file.load()?;
            super::print_stdout(&describe(&file, &app, &tokens));
            Ok(ExitCode::SUCCESS)
        }
        AuthCommand::Refresh(file) => {
            let file = token_file(&file)?;
            let session = OAuthSession::from_file(file.clone())?;
            let tokens = session.refresh_now().await?;
            super::print_stdout(&describe(&file, &session.app(), &tokens));
            eprintln!(
                "access token refreshed; valid until {}",
                tokens.expires_at()
            );
            Ok(ExitCode::SUCCESS)
        }
        AuthCommand::Logout { file, revoke } => {
            let file = token_file(&file)?;
            let (app, tokens) = file.load()?;
            if revoke {
                match app.revoke(&tokens).await {
                    Ok(true) => eprintln!("refresh token revoked (the app is uninstalled)"),
                    Ok(false) => eprintln!("no revocation endpoint saved; nothing revoked"),
                    Err(e) => bail!("{e}\nThe tokens are still saved; run again once it answers."),
                }
            }
            file.remove()
                .with_context(|| format!("cannot delete {}", file.path().display()))?;
            eprintln!("logged out: deleted {}", file.path().display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn token_file(args: &OAuthFileArgs) -> Result<TokenFile> {
    Ok(TokenFile::new(paths::oauth_file(
        args.oauth_file.as_deref(),
    )?))
}

/// The saved login for people and scripts, without a single secret.
fn describe(file: &TokenFile, app: &OAuthApp, tokens: &TokenSet) -> String {
    let value = json!({
        "file": file.path(),
        "client_id": app.client_id(),
        "token_url": app.endpoints().token_url,
        "api_domain": tokens.api_domain,
        "upstream": tokens.api_base(),
        "scope": tokens.scope,
        "expires_at": tokens.expires_at(),
        "expired": tokens.expires_within(Duration::ZERO),
    });
    serde_json::to_string_pretty(&value).expect("JSON values always serialize")
}

/// What the browser brings back to the redirect URI.
#[derive(Debug, Deserialize)]
struct Callback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

/// The browser flow: listen where the redirect URI points, send the user to the authorize
/// URL, wait for the callback carrying our state, exchange its code, save the tokens.
async fn login(args: LoginArgs) -> Result<ExitCode> {
    let file = token_file(&args.file)?;
    let client_secret = secrets::CLIENT_SECRET
        .resolve(args.client_secret, args.client_secret_file.as_deref())?
        .ok_or_else(|| secrets::CLIENT_SECRET.missing())?;
    let (listener, redirect_uri, path) = bind_redirect(&args.redirect_uri).await?;
    let app = OAuthApp::new(
        args.client_id,
        client_secret,
        OAuthEndpoints {
            authorize_url: args.authorize_url,
            token_url: args.token_url,
            revoke_url: Some(args.revoke_url),
        },
    );
    let state = random_state();
    let authorize = app
        .authorize_url(&redirect_uri, &state)
        .map_err(|e| anyhow!(e))?;
    let (server, callbacks) = serve_callback(listener, &path, &state);

    eprintln!("Open this URL in a browser and approve the app:\n\n  {authorize}\n");
    eprintln!(
        "Waiting up to {}s for the browser to come back to {redirect_uri} ...",
        args.wait.as_secs()
    );
    let code = wait_for_code(callbacks, &state, args.wait).await;
    server.abort();
    let tokens = app.exchange_code(&code?, &redirect_uri).await?;
    file.save(&app, &tokens)
        .with_context(|| format!("cannot save the tokens to {}", file.path().display()))?;
    super::print_stdout(&describe(&file, &app, &tokens));
    eprintln!(
        "Logged in{}. Tokens saved to {} (readable by you only).\nUse --oauth with mcp, serve, relay, receive, import or channels to deliver there.",
        tokens
            .api_domain
            .as_deref()
            .map(|d| format!(" to {d}"))
            .unwrap_or_default(),
        file.path().display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Serves the redirect URI's `path` on `listener`: each callback gets a page for the browser
/// and is handed on to the login.
fn serve_callback(
    listener: tokio::net::TcpListener,
    path: &str,
    expected_state: &str,
) -> (
    tokio::task::JoinHandle<std::io::Result<()>>,
    mpsc::Receiver<Callback>,
) {
    let (sender, callbacks) = mpsc::channel::<Callback>(4);
    let expected_state = expected_state.to_owned();
    let router = axum::Router::new().route(
        path,
        axum::routing::get(
            |State(sender): State<mpsc::Sender<Callback>>, Query(callback): Query<Callback>| async move {
                let page = callback_page(&callback, &expected_state);
                let _ = sender.send(callback).await;
                page
            },
        ),
    );
    let server =
        tokio::spawn(async move { axum::serve(listener, router.with_state(sender)).await });
    (server, callbacks)
}

/// The authorization code of the first callback carrying `state`, within `wait`. Callbacks of
/// other flows (a stale tab, a forged request) are ignored; a refusal ends the login.
async fn wait_for_code(
    mut callbacks: mpsc::Receiver<Callback>,
    state: &str,
    wait: std::time::Duration,
) -> Result<String> {
    let refused = |error: &str| {
        anyhow!(
            "the authorization was not granted (error={error}); run `pdchannels auth login` again and choose \"Allow and install\""
        )
    };
    tokio::time::timeout(wait, async {
        while let Some(callback) = callbacks.recv().await {
            // A refusal may come without the state; it can only end the login, so it is heard.
            if let (Some(error), None) = (&callback.error, &callback.state) {
                return Err(refused(error));
            }
            if callback.state.as_deref() != Some(state) {
                eprintln!("ignored a callback whose state does not match this login");
                continue;
            }
            if let Some(error) = callback.error {
                return Err(refused(&error));
            }
            return callback
                .code
                .ok_or_else(|| anyhow!("the callback carried neither a code nor an error"));
        }
        bail!("the callback server stopped")
    })
    .await
    .map_err(|_| {
        anyhow!(
            "no answer from the browser within {}s; run `pdchannels auth login` again (--wait sets the limit)",
            wait.as_secs()
        )
    })?
}

/// Listens where the redirect URI points, which must be this machine over plain http. Answers
/// the listener, the redirect URI (with the real port when it said 0) and its path.
async fn bind_redirect(redirect_uri: &str) -> Result<(tokio::net::TcpListener, String, String)> {
    let mut url = url::Url::parse(redirect_uri).map_err(|e| {
        anyhow!("--redirect-uri must be an absolute URL ({e}), got {redirect_uri:?}")
    })?;
    let loopback = matches!(url.host(), Some(url::Host::Domain("localhost")))
        || matches!(url.host(), Some(url::Host::Ipv4(ip)) if ip.is_loopback())
        || matches!(url.host(), Some(url::Host::Ipv6(ip)) if ip.is_loopback());
    if url.scheme() != "http" || !loopback {
        bail!(
            "--redirect-uri must be http on this machine (127.0.0.1, localhost or [::1]), got {redirect_uri:?}: pdchannels listens there for the browser"
        );
    }
    let port = url.port().unwrap_or(80);
    let ip = match url.host() {
        Some(url::Host::Ipv6(ip)) => std::net::IpAddr::V6(ip),
        Some(url::Host::Ipv4(ip)) => std::net::IpAddr::V4(ip),
        _ => std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
    };
    let listener = tokio::net::TcpListener::bind(SocketAddr::new(ip, port))
        .await
        .with_context(|| {
            format!(
                "cannot listen on {ip}:{port} for the OAuth callback; free the port, or pass another --redirect-uri (and set it as the app's Callback URL)"
            )
        })?;
    if port == 0 {
        let actual = listener.local_addr()?.port();
        url.set_port(Some(actual))
            .map_err(|()| anyhow!("cannot set the port of {redirect_uri:?}"))?;
    }
    let path = url.path().to_owned();
    Ok((listener, url.into(), path))
}

fn random_state() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the operating system provides randomness");
    hex::encode(bytes)
}

fn callback_page(callback: &Callback, expected_state: &str) -> Html<&'static str> {
    let ok = callback.state.as_deref() == Some(expected_state)
        && callback.error.is_none()
        && callback.code.is_some();
    Html(if ok {
        "<!doctype html><title>pdchannels</title><p>pdchannels is authorized. You can close this tab; the terminal has the rest.</p>"
    } else {
        "<!doctype html><title>pdchannels</title><p>pdchannels was not authorized. The terminal says why.</p>"
    })
}
