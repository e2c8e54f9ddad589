//! The one composition root: what every command that touches the Channels operations runs on.
//!
//! [`Runtime::open`] opens the store and builds the relay when an upstream is configured;
//! [`Runtime::start_relay`] runs its worker, [`Runtime::start_mirror`] the notes mirror;
//! [`Runtime::shutdown`] stops them in the one order that loses nothing: the caller has stopped
//! taking work (the hub stopped accepting and drained, the stdio server saw EOF), then the relay
//! worker stops and its sends in flight settle, the mirror finishes the note it is writing, and
//! only then is the store closed. Closing the store first would make those settles
//! fail, leaving delivered calls pending to be sent again.

use anyhow::Result;
use pdchannels_relay::{Delivery, Relay};
use pdchannels_store::{Database, Store};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::args::UpstreamArgs;
use crate::commands::upstream;

/// The store, the relay if any, and the relay's worker while it runs.
pub struct Runtime {
    store: Store,
    relay: Option<Relay>,
    channels: Delivery,
    stop_relay: CancellationToken,
    worker: Option<JoinHandle<()>>,
    stop_mirror: CancellationToken,
    mirror: Option<JoinHandle<()>>,
}

impl Runtime {
    /// Opens the store at `db` (creating it and its directory on first use) and, with an
    /// upstream in `args`, builds the relay. Nothing runs yet.
    pub async fn open(db: &Database, args: &UpstreamArgs) -> Result<Self> {
        if let Some(path) = db.sqlite_path() {
            crate::paths::ensure_parent(path)?;
        }
        let store = Store::connect(db).await?;
        let relay = match upstream::relay(&store, args) {
            Ok(relay) => relay,
            Err(e) => {
                store.close().await;
                return Err(e);
            }
        };
        let channels = upstream::delivery(&store, relay.as_ref());
        Ok(Self {
            store,
            relay,
            channels,
            stop_relay: CancellationToken::new(),
            worker: None,
            stop_mirror: CancellationToken::new(),
            mirror: None,
        })
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The relay, when an upstream is configured.
    pub fn relay(&self) -> Option<&Relay> {
        self.relay.as_ref()
    }

    /// Where the Channels operations go: the store, or the relay's outbox.
    pub fn channels(&self) -> &Delivery {
        &self.channels
    }

    /// Where the relay delivers (its base URL), if there is a relay.
    pub fn upstream(&self) -> Option<&str> {
        self.relay.as_ref().map(|relay| relay.client().base_url())
    }

    /// Starts the relay's worker in the background, if there is a relay and it is not running.
    pub fn start_relay(&mut self) {
        if self.worker.is_some() {
            return;
        }
        let Some(relay) = self.relay.clone() else {
            return;
        };
        // A fresh token: a worker stopped by `stop_relay` may be started again (import does).
        self.stop_relay = CancellationToken::new();
        let stop = self.stop_relay.clone();
        tracing::info!(?relay, "relay running");
        self.worker = Some(tokio::spawn(async move { relay.run(stop).await }));
    }

    /// Stops the relay's worker and waits until its sends in flight have settled in the
    /// outbox; what is not sent yet stays there for the next run.
    pub async fn stop_relay(&mut self) {
        self.stop_relay.cancel();
        if let Some(worker) = self.worker.take()
            && let Err(e) = worker.await
        {
            tracing::error!(error = %e, "the relay worker ended abnormally");
        }
    }

    /// Runs the notes mirror in the background until [`Self::shutdown`].
    pub fn start_mirror(&mut self, mirror: pdchannels_mirror::worker::Mirror) {
        if self.mirror.is_some() {
            return;
        }
        let stop = self.stop_mirror.clone();
        self.mirror = Some(tokio::spawn(mirror.run(stop)));
    }

    /// Stops the relay worker (its in-flight sends settle) and the mirror (the note it is
    /// writing is finished and stored), then closes the store. Call it once nothing takes new
    /// work: every acknowledged write is already durable, and closing finishes what is still
    /// queued.
    pub async fn shutdown(mut self) {
        self.stop_mirror.cancel();
        self.stop_relay().await;
        if let Some(mirror) = self.mirror.take()
            && let Err(e) = mirror.await
        {
            tracing::error!(error = %e, "the notes mirror ended abnormally");
        }
        self.store.close().await;
    }
}
