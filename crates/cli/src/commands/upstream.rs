//! Building the relay from `--upstream` flags, and the `Delivery` every command hands its
//! Channels operations to.

use anyhow::{Result, anyhow};
use pdchannels_client::{ChannelsClient, Credentials};
use pdchannels_relay::{Delivery, Relay, RelayConfig, RelayedChannels};
use pdchannels_store::Store;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::args::UpstreamArgs;

/// The relay for `args`, if an upstream is configured.
pub fn relay(store: &Store, args: &UpstreamArgs) -> Result<Option<Relay>> {
    let Some(upstream) = &args.upstream else {
        return Ok(None);
    };
    let mut builder = ChannelsClient::builder(upstream.clone());
    if let Some(token) = &args.upstream_token {
        builder = builder.credentials(Credentials::ApiToken(token.clone().into()));
    }
    let client = builder.build().map_err(|e| anyhow!(e))?;
    let config = RelayConfig {
        deliver_timeout: args.deliver_timeout,
        ..RelayConfig::default()
    };
    Ok(Some(Relay::new(store.clone(), client, config)))
}

/// The store, or the relay when there is one.
pub fn delivery(store: &Store, relay: Option<&Relay>) -> Delivery {
    match relay {
        Some(relay) => Delivery::Upstream(RelayedChannels::new(relay.clone())),
        None => Delivery::Local(store.clone()),
    }
}

/// Runs `relay`'s worker in the background until `stop` is cancelled.
pub fn spawn_worker(relay: Option<&Relay>, stop: &CancellationToken) -> Option<JoinHandle<()>> {
    let relay = relay?.clone();
    let stop = stop.clone();
    tracing::info!(?relay, "relay running");
    Some(tokio::spawn(async move { relay.run(stop).await }))
}
