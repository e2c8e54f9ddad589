//! What every handler shares.

use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;
use pdchannels_model::Limits;
use pdchannels_relay::Delivery;
use pdchannels_store::Store;

/// The hub's shared state; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// Where the Channels operations go: this store, or an upstream through the relay.
    pub channels: Delivery,
    /// This hub's own store: reads, tokens, health.
    pub store: Store,
    pub limits: Arc<Limits>,
    pub metrics: PrometheusHandle,
    /// The company the hub plays towards apps.
    pub company: Arc<crate::config::Company>,
    /// The client replies go out through (provider apps' postMessage).
    pub apps: pdchannels_apps::AppClient,
    /// The apps' templates, kept 10 minutes (shared with the MCP tool).
    pub templates: pdchannels_apps::Templates,
    /// When each message's expiring links were last renewed (getMessageById).
    pub fresh_links: pdchannels_apps::FreshLinks,
    /// Who may post to the web inbox (its `Host` and `Origin` checks).
    pub inbox_peers: crate::inbox::InboxPeers,
    /// The inbox's live updates: one feed of what changed, for every open tab.
    pub inbox_feed: crate::inbox::Feed,
}
