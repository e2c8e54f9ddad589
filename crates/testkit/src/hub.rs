//! A hub (the real one) on 127.0.0.1, in the test's process: the one way tests start a hub.
//!
//! ```no_run
//! # async fn demo() {
//! use pdchannels_testkit::TestHub;
//! let hub = TestHub::start().await; // a fresh database and one API token
//! let answer = hub.get("/v1/channels").await;
//! # }
//! ```

use pdchannels_hub::{Application, HubConfig};
use pdchannels_relay::Delivery;
use pdchannels_store::Store;
use reqwest::{Client, Response};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A running hub, its store, and a token it accepts.
pub struct TestHub {
    /// `http://127.0.0.1:PORT`.
    pub address: String,
    /// An API token of this hub.
    pub token: String,
    /// A client for it.
    pub client: Client,
    /// Its store.
    pub store: Store,
    /// Cancel to stop the hub gracefully.
    pub shutdown: CancellationToken,
    /// The running hub; ends once it has stopped.
    pub server: JoinHandle<std::io::Result<()>>,
    /// The directory of its database, when a test made one (kept while the hub lives).
    pub dir: Option<TempDir>,
    /// Its database, when the hub made one (SQLite, or PostgreSQL under
    /// `PDCHANNELS_TEST_BACKEND=postgres`; dropped with the hub).
    pub database: Option<crate::TestDatabase>,
}

/// How to start a [`TestHub`]: a fresh database unless given a store, the default config with
/// port 0, the store itself as where the Channels operations go unless given another.
#[derive(Default)]
pub struct HubBuilder {
    store: Option<Store>,
    config: Option<HubConfig>,
    channels: Option<Delivery>,
}

impl HubBuilder {
    /// Serve this store (a database the test made, or another hub's).
    pub fn store(mut self, store: Store) -> Self {
        self.store = Some(store);
        self
    }

    /// Change the config (its `listen` is 127.0.0.1:0 unless changed here).
    pub fn config(mut self, configure: impl FnOnce(&mut HubConfig)) -> Self {
        let mut config = self.config.take().unwrap_or_else(default_config);
        configure(&mut config);
        self.config = Some(config);
        self
    }

    /// Send the Channels operations here (a relay's outbox, say) instead of to the store.
    pub fn channels(mut self, channels: Delivery) -> Self {
        self.channels = Some(channels);
        self
    }

    /// Starts the hub and creates a token for the test.
    pub async fn start(self) -> TestHub {
        crate::init_test_log();
        let (store, database) = match self.store {
            Some(store) => (store, None),
            None => {
                let database = crate::TestDatabase::from_env().await;
                (database.open().await, Some(database))
            }
        };
        let token = store
            .create_token("tests")
            .await
            .expect("a token is created")
            .secret
            .expose_secret()
            .to_owned();
        let config = self.config.unwrap_or_else(default_config);
        let channels = self
            .channels
            .unwrap_or_else(|| Delivery::Local(store.clone()));
        let shutdown = CancellationToken::new();
        let app = Application::build(config, store.clone(), channels, shutdown.clone())
            .await
            .expect("the hub starts");
        let address = format!("http://127.0.0.1:{}", app.port());
        let server = tokio::spawn(app.run_until_stopped());
        TestHub {
            address,
            token,
            client: Client::new(),
            store,
            shutdown,
            server,
            dir: None,
            database,
        }
    }
}

fn default_config() -> HubConfig {
    HubConfig {
        listen: "127.0.0.1:0".parse().expect("a literal address"),
        ..HubConfig::default()
    }
}

impl TestHub {
    /// A hub on a fresh database with the default config.
    pub async fn start() -> Self {
        Self::builder().start().await
    }

    /// A hub on a fresh database with the config changed by `configure`.
    pub async fn start_with(configure: impl FnOnce(&mut HubConfig)) -> Self {
        Self::builder().config(configure).start().await
    }

    /// Starts a hub some other way.
    pub fn builder() -> HubBuilder {
        HubBuilder::default()
    }

    /// The URL of `path` on this hub.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// POSTs `body` as JSON with the token.
    pub async fn post_json(&self, path: &str, body: &Value) -> Response {
        self.client
            .post(self.url(path))
            .header("x-api-token", &self.token)
            .json(body)
            .send()
            .await
            .expect("the hub answers")
    }

    /// GETs `path` with the token.
    pub async fn get(&self, path: &str) -> Response {
        self.client
            .get(self.url(path))
            .header("x-api-token", &self.token)
            .send()
            .await
            .expect("the hub answers")
    }

    /// DELETEs `path` with the token.
    pub async fn delete(&self, path: &str) -> Response {
        self.client
            .delete(self.url(path))
            .header("x-api-token", &self.token)
            .send()
            .await
            .expect("the hub answers")
    }

    /// Adds channel `id` and checks that it worked.
    pub async fn add_channel(&self, id: &str) {
        let response = self
            .post_json(
                "/v1/channels",
                &json!({"name": format!("Channel {id}"), "provider_channel_id": id}),
            )
            .await;
        assert_eq!(response.status(), 200, "adding channel {id}");
    }

    /// POSTs a receive payload.
    pub async fn receive(&self, body: &Value) -> Response {
        self.post_json("/v1/channels/messages/receive", body).await
    }
}

/// Starts a hub storing in `store` on a free port; answers its base URL (`http://127.0.0.1:PORT`).
/// The hub keeps running until the test ends. (A [`TestHub`] started on `store`.)
pub async fn spawn_hub(store: &Store) -> String {
    TestHub::builder()
        .store(store.clone())
        .start()
        .await
        .address
}

/// Creates channel `id` on the hub at `hub_url` over HTTP, as a client would.
pub async fn create_channel(hub_url: &str, token: &str, id: &str) {
    let created = Client::new()
        .post(format!("{hub_url}/v1/channels"))
        .header("x-api-token", token)
        .json(&json!({"name": id.to_uppercase(), "provider_channel_id": id}))
        .send()
        .await
        .expect("the hub answers");
    assert_eq!(created.status(), 200, "creating channel {id} on the hub");
}
