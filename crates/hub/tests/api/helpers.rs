//! `spawn_app()`: a hub on a free port with a fresh database and one API token.

use pdchannels_hub::{Application, HubConfig};
use pdchannels_store::Store;
use reqwest::{Client, Response};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub struct TestApp {
    pub address: String,
    pub token: String,
    pub client: Client,
    pub store: Store,
    pub shutdown: CancellationToken,
    pub server: JoinHandle<std::io::Result<()>>,
    pub dir: TempDir,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(configure: impl FnOnce(&mut HubConfig)) -> TestApp {
    pdchannels_testkit::init_test_log();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("hub.db")).await.unwrap();
    let token = store
        .create_token("tests")
        .await
        .unwrap()
        .secret
        .expose_secret()
        .to_owned();
    let mut config = HubConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..HubConfig::default()
    };
    configure(&mut config);
    let shutdown = CancellationToken::new();
    let channels = pdchannels_relay::Delivery::Local(store.clone());
    let app = Application::build(config, store.clone(), channels, shutdown.clone())
        .await
        .unwrap();
    let address = format!("http://127.0.0.1:{}", app.port());
    let server = tokio::spawn(app.run_until_stopped());
    TestApp {
        address,
        token,
        client: Client::new(),
        store,
        shutdown,
        server,
        dir,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Response {
        self.client
            .post(self.url(path))
            .header("x-api-token", &self.token)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn get(&self, path: &str) -> Response {
        self.client
            .get(self.url(path))
            .header("x-api-token", &self.token)
            .send()
            .await
            .unwrap()
    }

    pub async fn delete(&self, path: &str) -> Response {
        self.client
            .delete(self.url(path))
            .header("x-api-token", &self.token)
            .send()
            .await
            .unwrap()
    }

    pub async fn add_channel(&self, id: &str) {
        let response = self
            .post_json(
                "/v1/channels",
                &json!({"name": format!("Channel {id}"), "provider_channel_id": id}),
            )
            .await;
        assert_eq!(response.status(), 200);
    }

    pub async fn receive(&self, body: &Value) -> Response {
        self.post_json("/v1/channels/messages/receive", body).await
    }
}

/// A valid receive payload for channel `wa`.
pub fn message(id: &str, conversation: &str, status: &str) -> Value {
    json!({
        "id": id, "channel_id": "wa", "sender_id": "customer-1", "conversation_id": conversation,
        "message": format!("text of {id}"), "status": status, "created_at": "2024-05-01 10:00",
        "attachments": []
    })
}

pub async fn body(response: Response) -> Value {
    response.json().await.unwrap()
}
