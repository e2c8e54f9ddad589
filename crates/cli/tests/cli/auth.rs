//! `pdchannels auth login` as a user runs it: a subprocess that prints the authorize URL, a
//! "browser" (reqwest, following the redirect) approving at a local authorization server that
//! follows Pipedrive's contract, the code exchanged and saved 0600; then `--oauth` commands
//! deliver to the login's api_domain, a real hub on 127.0.0.1.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use pdchannels_store::Store;
use pdchannels_testkit::{CLIENT_ID, CLIENT_SECRET, OAuthServer};
use serde_json::Value;
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

struct Setup {
    hub: Store,
    hub_url: String,
    server: OAuthServer,
    dir: TempDir,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let hub = Store::open(&dir.path().join("hub.db")).await.unwrap();
    let hub_url = pdchannels_testkit::spawn_hub(&hub).await;
    let server = OAuthServer::start(hub.clone(), &hub_url).await;
    Setup {
        hub,
        hub_url,
        server,
        dir,
    }
}

impl Setup {
    fn oauth_file(&self) -> std::path::PathBuf {
        self.dir.path().join("config/oauth.json")
    }

    fn pdchannels(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pdchannels"));
        for (var, _) in std::env::vars() {
            if var.starts_with("PDCHANNELS_") {
                cmd.env_remove(var);
            }
        }
        cmd.env("PDCHANNELS_DB", self.dir.path().join("local.db"))
            .env("PDCHANNELS_OAUTH_FILE", self.oauth_file())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd
    }

    fn start_login(&self) -> Child {
        let mut cmd = self.pdchannels();
        cmd.args(["auth", "login", "--client-id", CLIENT_ID])
            .args(["--redirect-uri", "http://127.0.0.1:0/callback"])
            .args([
                "--authorize-url",
                &format!("{}/oauth/authorize", self.server.url),
            ])
            .args(["--token-url", &format!("{}/oauth/token", self.server.url)])
            .args(["--revoke-url", &format!("{}/oauth/revoke", self.server.url)])
            .env("PDCHANNELS_CLIENT_SECRET", CLIENT_SECRET);
        cmd.spawn().unwrap()
    }

    async fn run(&self, args: &[&str]) -> (bool, String, String) {
        let output = self.pdchannels().args(args).output().await.unwrap();
        (
            output.status.success(),
            String::from_utf8(output.stdout).unwrap(),
            String::from_utf8(output.stderr).unwrap(),
        )
    }
}

/// Reads the login's stderr up to the authorize URL it prints; the rest is collected later.
async fn authorize_url(child: &mut Child) -> (String, tokio::task::JoinHandle<String>) {
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let url = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.trim().starts_with("http") {
                return line.trim().to_owned();
            }
        }
        panic!("login ended without printing an authorize URL");
    })
    .await
    .expect("login prints the authorize URL");
    let rest = tokio::spawn(async move {
        let mut text = String::new();
        while let Ok(Some(line)) = lines.next_line().await {
            text.push_str(&line);
            text.push('\n');
        }
        text
    });
    (url, rest)
}

fn query_param(url: &str, name: &str) -> String {
    reqwest::Url::parse(url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
        .unwrap()
}

fn file_mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_saves_tokens_for_you_only_and_oauth_commands_deliver_to_the_api_domain() {
    let setup = setup().await;
    let mut login = setup.start_login();
    let (url, _) = authorize_url(&mut login).await;
    assert_eq!(query_param(&url, "client_id"), CLIENT_ID);

    // The browser: approve, follow the redirect back to pdchannels.
    let page = reqwest::get(&url).await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.text()
            .await
            .unwrap()
            .contains("pdchannels is authorized")
    );

    let output = login.wait_with_output().await.unwrap();
    assert!(output.status.success());
    let summary: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(summary["api_domain"], setup.hub_url.as_str());
    assert_eq!(summary["upstream"], format!("{}/api/v1", setup.hub_url));
    assert_eq!(file_mode(&setup.oauth_file()), 0o600);
    let saved: Value =
        serde_json::from_str(&std::fs::read_to_string(setup.oauth_file()).unwrap()).unwrap();
    let access_token = saved["access_token"].as_str().unwrap().to_owned();
    let refresh_token = saved["refresh_token"].as_str().unwrap().to_owned();

    let (ok, status, _) = setup.run(&["auth", "status"]).await;
    assert!(ok);
    for secret in [&access_token, &refresh_token, &CLIENT_SECRET.to_owned()] {
        assert!(
            !status.contains(secret.as_str()),
            "status shows a secret: {status}"
        );
    }

    let (ok, _, stderr) = setup
        .run(&[
            "channels", "create", "--oauth", "--id", "wa", "--name", "WhatsApp",
        ])
        .await;
    assert!(ok, "{stderr}");
    let (ok, stdout, stderr) = setup
        .run(&[
            "receive",
            "--oauth",
            "--channel-id",
            "wa",
            "--conversation-id",
            "c1",
            "--sender-id",
            "s1",
            "--id",
            "m1",
            "--message",
            "Hello over OAuth",
        ])
        .await;
    assert!(ok, "{stderr}");
    assert!(stderr.contains("delivered"), "{stderr}");
    assert!(!stdout.contains(&access_token) && !stderr.contains(&access_token));
    assert!(setup.hub.message("wa", "m1").await.unwrap().is_some());

    // A forced refresh keeps working and is saved.
    let (ok, _, stderr) = setup.run(&["auth", "refresh"]).await;
    assert!(ok, "{stderr}");
    assert_eq!(setup.server.refresh_calls(), 1);
    assert_eq!(file_mode(&setup.oauth_file()), 0o600);

    let (ok, _, stderr) = setup.run(&["auth", "logout", "--revoke"]).await;
    assert!(ok, "{stderr}");
    assert!(!setup.oauth_file().exists());
    let (ok, _, stderr) = setup
        .run(&[
            "receive",
            "--oauth",
            "--channel-id",
            "wa",
            "--conversation-id",
            "c1",
            "--sender-id",
            "s1",
            "--id",
            "m2",
            "--message",
            "x",
        ])
        .await;
    assert!(!ok);
    assert!(
        stderr.contains("run `pdchannels auth login` first"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declined_login_says_so_and_a_foreign_callback_is_ignored() {
    let setup = setup().await;
    let mut login = setup.start_login();
    let (url, rest) = authorize_url(&mut login).await;
    let redirect = query_param(&url, "redirect_uri");
    let state = query_param(&url, "state");

    let forged = reqwest::get(format!("{redirect}?code=stolen&state=not-ours"))
        .await
        .unwrap();
    assert!(forged.text().await.unwrap().contains("not authorized"));
    let declined = reqwest::get(format!("{redirect}?error=user_denied&state={state}"))
        .await
        .unwrap();
    assert_eq!(declined.status(), 200);

    let status = tokio::time::timeout(Duration::from_secs(20), login.wait())
        .await
        .expect("login ends after a declined approval")
        .unwrap();
    assert!(!status.success());
    let stderr = rest.await.unwrap();
    assert!(
        stderr.contains("ignored a callback whose state does not match"),
        "{stderr}"
    );
    assert!(
        stderr.contains("not granted (error=user_denied)"),
        "{stderr}"
    );
    assert!(!setup.oauth_file().exists());
}

/// Two processes share one token file: a refresh made by one (`pdchannels auth refresh`, a
/// real subprocess) is picked up by the other's session instead of refreshing again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_by_another_process_is_picked_up_from_the_shared_file() {
    use pdchannels_client::oauth::{OAuthApp, OAuthSession, TokenFile};
    use pdchannels_client::{ChannelsClient, Credentials, UpstreamRequest};
    use secrecy::ExposeSecret;

    let setup = setup().await;
    let admin = setup.hub.create_token("admin").await.unwrap();
    pdchannels_testkit::create_channel(&setup.hub_url, admin.secret.expose_secret(), "wa").await;
    // A login whose access token is about to expire (inside the 60 s refresh margin).
    let app = OAuthApp::new(
        CLIENT_ID.to_owned(),
        CLIENT_SECRET.to_owned().into(),
        setup.server.endpoints(),
    );
    setup.server.set_expires_in(30);
    let redirect = "http://127.0.0.1:8788/callback";
    let code = setup.server.approve(redirect);
    let tokens = app.exchange_code(&code, redirect).await.unwrap();
    std::fs::create_dir_all(setup.oauth_file().parent().unwrap()).unwrap();
    let file = TokenFile::new(setup.oauth_file());
    file.save(&app, &tokens).unwrap();
    // "This process": a session on the shared file, started before the other one refreshes.
    let session = OAuthSession::from_file(file.clone()).unwrap();

    // "The other process" refreshes; the new tokens are good for an hour.
    setup.server.set_expires_in(3599);
    let (refreshed, _, stderr) = setup.run(&["auth", "refresh"]).await;
    assert!(refreshed, "{stderr}");
    assert_eq!(setup.server.refresh_calls(), 1);
    let (_, on_disk) = file.load().unwrap();
    assert_ne!(
        on_disk.access_token.expose_secret(),
        tokens.access_token.expose_secret(),
        "the other process saved new tokens"
    );

    // This process's next call needs fresh tokens: it takes the saved ones, no refresh of its own.
    let client = ChannelsClient::builder(tokens.api_base().unwrap())
        .credentials(Credentials::OAuth(session.clone()))
        .build()
        .unwrap();
    let message = pdchannels_model::ReceiveMessage::parse(
        &serde_json::json!({"id": "m1", "channel_id": "wa", "sender_id": "s",
            "conversation_id": "c1", "message": "hi", "status": "sent",
            "created_at": "2024-05-01T10:00:00Z"}),
        &pdchannels_model::Limits::default(),
    )
    .unwrap();
    tokio::time::timeout(
        Duration::from_secs(30),
        client.execute(&UpstreamRequest::receive_message(&message)),
    )
    .await
    .expect("the call is answered in time")
    .expect("the call goes through with the other process's tokens");
    assert_eq!(session.refreshes(), 0, "this process did not refresh");
    assert_eq!(setup.server.refresh_calls(), 1, "one refresh in all");
    assert_eq!(
        session.tokens().access_token.expose_secret(),
        on_disk.access_token.expose_secret()
    );
    assert!(setup.hub.message("wa", "m1").await.unwrap().is_some());
}
