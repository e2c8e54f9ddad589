//! OAuth against a local authorization server that follows Pipedrive's contract, with a real hub
//! as the resource server: code exchange, refresh before expiry, refresh on a 401, one refresh
//! for fifty concurrent requests, a revoked refresh token, and a relay that holds its calls
//! until the user logs in again.

use std::time::Duration;

use pdchannels_client::oauth::{OAuthApp, OAuthError, OAuthSession, TokenFile, TokenSet};
use pdchannels_client::{ChannelsClient, Credentials, Error, UpstreamRequest};
use pdchannels_model::{Channels, Limits, ReceiveMessage, ReceiveOutcome};
use pdchannels_relay::{Relay, RelayConfig, RelayedChannels};
use pdchannels_store::Store;
use pdchannels_testkit::{CLIENT_ID, CLIENT_SECRET, OAuthServer};
use secrecy::ExposeSecret;
use serde_json::json;
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;

const REDIRECT_URI: &str = "http://127.0.0.1:8788/callback";

/// A hub with channel `wa`, and an authorization server whose access tokens are the hub's.
struct Setup {
    hub: Store,
    server: OAuthServer,
    dir: TempDir,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let hub = Store::open(&dir.path().join("hub.db")).await.unwrap();
    let admin = hub.create_token("admin").await.unwrap();
    let hub_url = pdchannels_testkit::spawn_hub(&hub).await;
    pdchannels_testkit::create_channel(&hub_url, admin.secret.expose_secret(), "wa").await;
    let server = OAuthServer::start(hub.clone(), &hub_url).await;
    Setup { hub, server, dir }
}

impl Setup {
    fn app(&self) -> OAuthApp {
        OAuthApp::new(
            CLIENT_ID.to_owned(),
            CLIENT_SECRET.to_owned().into(),
            self.server.endpoints(),
        )
    }

    /// What `pdchannels auth login` does after the redirect: exchange the code, keep the tokens.
    async fn login(&self) -> (TokenSet, TokenFile) {
        let code = self.server.approve(REDIRECT_URI);
        let tokens = self.app().exchange_code(&code, REDIRECT_URI).await.unwrap();
        let file = TokenFile::new(self.dir.path().join("oauth.json"));
        file.save(&self.app(), &tokens).unwrap();
        (tokens, file)
    }

    async fn session(&self) -> OAuthSession {
        let (_, file) = self.login().await;
        OAuthSession::from_file(file).unwrap()
    }
}

fn client(session: &OAuthSession) -> ChannelsClient {
    let base = session
        .tokens()
        .api_base()
        .expect("the token response has api_domain");
    ChannelsClient::builder(base)
        .credentials(Credentials::OAuth(session.clone()))
        .build()
        .unwrap()
}

fn message(id: &str) -> ReceiveMessage {
    ReceiveMessage::parse(
        &json!({"id": id, "channel_id": "wa", "sender_id": "s", "conversation_id": "c1",
                "message": format!("text {id}"), "status": "sent",
                "created_at": "2024-05-01T10:00:00Z"}),
        &Limits::default(),
    )
    .unwrap()
}

fn receive(id: &str) -> UpstreamRequest {
    UpstreamRequest::receive_message(&message(id))
}

async fn fifty_concurrent(client: &ChannelsClient) -> Vec<Result<serde_json::Value, Error>> {
    let calls = (0..50).map(|i| {
        let client = client.clone();
        tokio::spawn(async move { client.execute(&receive(&format!("m{i}"))).await })
    });
    let mut results = Vec::new();
    for call in calls.collect::<Vec<_>>() {
        results.push(call.await.unwrap());
    }
    results
}

#[tokio::test]
async fn a_code_is_exchanged_for_tokens_whose_api_domain_takes_the_calls() {
    let setup = setup().await;
    let (tokens, file) = setup.login().await;
    assert_eq!(tokens.token_type, "Bearer");
    assert_eq!(tokens.scope, "messengers-integration base");
    assert!(!tokens.expires_within(Duration::from_secs(3500)));
    let session = OAuthSession::from_file(file).unwrap();
    let data = client(&session).execute(&receive("m1")).await.unwrap();
    assert_eq!(data["id"], "m1");
    assert!(setup.hub.message("wa", "m1").await.unwrap().is_some());
    assert_eq!(session.refreshes(), 0);
}

#[tokio::test]
async fn a_used_code_and_a_wrong_secret_are_refused_with_what_to_do() {
    let setup = setup().await;
    let code = setup.server.approve(REDIRECT_URI);
    setup
        .app()
        .exchange_code(&code, REDIRECT_URI)
        .await
        .unwrap();
    let again = setup
        .app()
        .exchange_code(&code, REDIRECT_URI)
        .await
        .unwrap_err();
    let text = again.to_string();
    assert!(
        matches!(again, OAuthError::Rejected { status: 400, .. }),
        "{again:?}"
    );
    assert!(
        text.contains("Invalid grant: authorization_code is invalid"),
        "{text}"
    );
    assert!(text.contains("pdchannels auth login"), "{text}");

    let wrong = OAuthApp::new(
        CLIENT_ID.to_owned(),
        "not-the-secret".to_owned().into(),
        setup.server.endpoints(),
    );
    let code = setup.server.approve(REDIRECT_URI);
    let refused = wrong.exchange_code(&code, REDIRECT_URI).await.unwrap_err();
    let text = refused.to_string();
    assert!(text.contains("Invalid client: client is invalid"), "{text}");
    assert!(text.contains("--client-secret"), "{text}");
    assert!(!text.contains("not-the-secret"), "{text}");
}

#[tokio::test]
async fn a_token_about_to_expire_is_refreshed_before_the_request_and_saved() {
    let setup = setup().await;
    setup.server.set_expires_in(30); // inside the 60 s margin
    let (first, file) = setup.login().await;
    setup.server.set_expires_in(3599);
    let session = OAuthSession::from_file(file.clone()).unwrap();
    let client = client(&session);

    client.execute(&receive("m1")).await.unwrap();
    client.execute(&receive("m2")).await.unwrap();

    assert_eq!(setup.server.refresh_calls(), 1);
    assert_eq!(session.refreshes(), 1);
    let (_, saved) = file.load().unwrap();
    assert_ne!(
        saved.access_token.expose_secret(),
        first.access_token.expose_secret()
    );
    assert_eq!(
        saved.access_token.expose_secret(),
        session.tokens().access_token.expose_secret()
    );
    // Pipedrive answers the same refresh token again.
    assert_eq!(
        saved.refresh_token.expose_secret(),
        first.refresh_token.expose_secret()
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(file.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[tokio::test]
async fn a_401_refreshes_once_and_the_call_goes_through() {
    let setup = setup().await;
    let session = setup.session().await;
    setup.server.revoke_access_tokens().await;

    let data = client(&session).execute(&receive("m1")).await.unwrap();

    assert_eq!(data["id"], "m1");
    assert_eq!(setup.server.refresh_calls(), 1);
}

#[tokio::test]
async fn a_401_with_a_fresh_token_is_answered_not_refreshed_again() {
    let setup = setup().await;
    let session = setup.session().await;
    setup.server.revoke_access_tokens().await;
    setup.server.issue_refused_tokens(true);

    let error = client(&session).execute(&receive("m1")).await.unwrap_err();

    let Error::Api(api) = &error else {
        panic!("expected the upstream's 401, got {error:?}");
    };
    assert_eq!(api.status, 401);
    assert_eq!(setup.server.refresh_calls(), 1);
}

#[tokio::test]
async fn fifty_concurrent_requests_share_one_refresh() {
    let setup = setup().await;
    setup.server.set_refresh_delay(Duration::from_millis(200));

    // On a 401.
    let session = setup.session().await;
    setup.server.revoke_access_tokens().await;
    let client = client(&session);
    for result in fifty_concurrent(&client).await {
        result.unwrap();
    }
    assert_eq!(setup.server.refresh_calls(), 1);

    // Before expiry.
    setup.server.set_expires_in(30);
    let session = setup.session().await;
    setup.server.set_expires_in(3599);
    let client = self::client(&session);
    for result in fifty_concurrent(&client).await {
        result.unwrap();
    }
    assert_eq!(setup.server.refresh_calls(), 2);
    assert_eq!(setup.hub.count_messages().await.unwrap(), 50);
}

#[tokio::test]
async fn a_revoked_refresh_token_gives_one_clear_error_to_every_waiter() {
    let setup = setup().await;
    setup.server.set_refresh_delay(Duration::from_millis(100));
    let (tokens, file) = setup.login().await;
    assert!(setup.app().revoke(&tokens).await.unwrap());
    setup.server.revoke_access_tokens().await;
    let session = OAuthSession::from_file(file).unwrap();

    let results = fifty_concurrent(&client(&session)).await;

    for result in results {
        let error = result.unwrap_err();
        let text = error.to_string();
        assert!(
            matches!(error, Error::OAuth(OAuthError::Rejected { .. })),
            "{error:?}"
        );
        assert!(
            text.contains("Invalid grant: refresh_token is invalid"),
            "{text}"
        );
        assert!(text.contains("run `pdchannels auth login` again"), "{text}");
        assert!(
            !text.contains(tokens.refresh_token.expose_secret()),
            "{text}"
        );
    }
    assert_eq!(setup.server.refresh_calls(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_holds_calls_behind_a_revoked_login_and_delivers_after_a_new_one() {
    let setup = setup().await;
    let (tokens, file) = setup.login().await;
    setup.app().revoke(&tokens).await.unwrap();
    setup.server.revoke_access_tokens().await;
    let session = OAuthSession::from_file(file).unwrap();

    let local = Store::open(&setup.dir.path().join("local.db"))
        .await
        .unwrap();
    let relay = Relay::new(
        local.clone(),
        client(&session),
        RelayConfig {
            deliver_timeout: Duration::from_secs(2),
            ..RelayConfig::default()
        },
    );
    let stop = CancellationToken::new();
    let worker = relay.clone();
    let token = stop.clone();
    tokio::spawn(async move { worker.run(token).await });
    let channels = RelayedChannels::new(relay.clone());

    let outcome = channels
        .receive_message(message("m1"))
        .await
        .unwrap()
        .outcome;
    let ReceiveOutcome::Queued { outbox_id, reason } = outcome else {
        panic!("expected queued, got {outcome:?}");
    };
    assert!(reason.contains("refresh_token is invalid"), "{reason}");
    assert!(reason.contains("pdchannels auth login"), "{reason}");
    assert_eq!(local.outbox().stats().await.unwrap().pending, 1);

    // The user logs in again (the same token file) and retries the call now.
    setup.login().await;
    assert!(local.outbox().retry(outbox_id).await.unwrap());
    relay.wake();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while local.outbox().stats().await.unwrap().pending > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not delivered after a new login"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(setup.hub.message("wa", "m1").await.unwrap().is_some());
    stop.cancel();
}
