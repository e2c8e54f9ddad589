//! The relaying side: a hub (`pdchannels serve --upstream`, assembled in-process) whose
//! Channels calls go through its outbox and relay to an upstream, and that can be killed and
//! started again on the same database.

use std::path::{Path, PathBuf};
use std::time::Duration;

use pdchannels_client::{ChannelsClient, Credentials};
use pdchannels_hub::{Application, HubConfig};
use pdchannels_relay::{Delivery, Relay, RelayConfig, RelayedChannels};
use pdchannels_store::{Store, lease_owner};
use secrecy::ExposeSecret;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long one upstream request may take before the relay counts it as failed. Short, so that
/// a held answer costs little; long enough that a debug hub on a busy 2-core machine answers.
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_millis(1000);

/// What the relaying hub needs to start (again).
#[derive(Clone)]
pub struct Setup {
    /// Its database.
    pub db: PathBuf,
    /// The upstream's base URL (the fault proxy's address).
    pub upstream: String,
    /// The upstream's API token.
    pub upstream_token: String,
}

/// A running relaying hub.
pub struct RelayingHub {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// Its API token.
    pub token: String,
    store: Store,
    worker: JoinHandle<()>,
    server: JoinHandle<()>,
    stop: CancellationToken,
}

impl RelayingHub {
    /// Starts on `setup.db` (creating it and a token the first time: pass `None`).
    pub async fn start(setup: &Setup, token: Option<String>) -> Self {
        let store = open(&setup.db).await;
        let token = match token {
            Some(token) => token,
            None => store
                .create_token("model")
                .await
                .expect("a token for the relaying hub")
                .secret
                .expose_secret()
                .to_owned(),
        };
        let client = ChannelsClient::builder(format!("{}/v1", setup.upstream))
            .credentials(Credentials::ApiToken(setup.upstream_token.clone().into()))
            .timeout(UPSTREAM_TIMEOUT)
            .build()
            .expect("a client for the proxy");
        let relay = Relay::new(
            store.clone(),
            client,
            RelayConfig {
                // Long enough that a caller gets the final answer (delivered or rejected) even
                // after a few faults, so that answers can be compared with the direct hub's.
                deliver_timeout: Duration::from_secs(5),
                // Quick retries keep a case short.
                retry_base: Duration::from_millis(10),
                ..RelayConfig::default()
            },
        );
        let stop = CancellationToken::new();
        let worker = {
            let relay = relay.clone();
            let stop = stop.clone();
            tokio::spawn(async move { relay.run(stop).await })
        };
        let app = Application::build(
            HubConfig {
                listen: "127.0.0.1:0".parse().expect("a literal address"),
                ..HubConfig::default()
            },
            store.clone(),
            Delivery::Upstream(RelayedChannels::new(relay)),
            stop.clone(),
        )
        .await
        .expect("the relaying hub starts");
        let url = format!("http://127.0.0.1:{}", app.port());
        let server = tokio::spawn(async move {
            let _ = app.run_until_stopped().await;
        });
        Self {
            url,
            token,
            store,
            worker,
            server,
            stop,
        }
    }

    /// Kills it as SIGKILL would (no send in flight is settled, nothing is shut down cleanly)
    /// and starts it again on the same database.
    pub async fn crash_and_restart(self, setup: &Setup) -> Self {
        self.worker.abort();
        self.server.abort();
        let _ = self.worker.await;
        let _ = self.server.await;
        let token = self.token.clone();
        drop(self.store);
        // A restarted `pdchannels` finds the crashed process gone and takes back its leases at
        // once (Relay::run). Here the "crashed" relay lived in this very process, which is still
        // alive, so the new relay would leave them until they lapse: release them as the
        // restart does for a dead process.
        let store = open(&setup.db).await;
        store
            .outbox()
            .release_leases_of(&[lease_owner::this_process().to_owned()])
            .await
            .expect("releasing the crashed relay's leases");
        drop(store);
        Self::start(setup, Some(token)).await
    }

    /// Waits until the outbox holds nothing pending (bounded: a call that never settles fails the
    /// case, listing what is left).
    pub async fn wait_until_drained(&self, within: Duration) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let stats = self
                .store
                .outbox()
                .stats()
                .await
                .map_err(|e| format!("reading the outbox: {e}"))?;
            if stats.pending == 0 {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                let pending = self
                    .store
                    .outbox()
                    .list(Some(pdchannels_store::OutboxState::Pending), 0, 20)
                    .await
                    .unwrap_or_default();
                return Err(format!(
                    "the relay's outbox is not drained after {within:?}: {stats:?}\n{pending:#?}"
                ));
            }
            // Polling the outbox's own figures (what `pdchannels outbox stats` shows).
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The outbox's record of call `id`: `Ok(None)` once delivered, `Ok(Some(last_error))` if
    /// dead.
    pub async fn settled(&self, id: i64) -> Result<Option<String>, String> {
        let entry = self
            .store
            .outbox()
            .entry(id)
            .await
            .map_err(|e| format!("reading outbox call {id}: {e}"))?
            .ok_or_else(|| format!("outbox call {id} is not in the outbox"))?;
        match entry.state.as_str() {
            "delivered" => Ok(None),
            "dead" => Ok(Some(entry.last_error.unwrap_or_default())),
            other => Err(format!("outbox call {id} is {other} after the drain")),
        }
    }

    /// Stops it (gracefully: the case is over).
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.worker.await;
        let _ = self.server.await;
        self.store.close().await;
    }
}

async fn open(db: &Path) -> Store {
    Store::open(db)
        .await
        .expect("the relaying hub's database opens")
}
