//! What the agents' read and reply tools act on: the hub's own store and the provider apps its
//! channels belong to. A server that relays to a remote Channels API has none (the contract has
//! no reads, and replies go out through the apps of the hub that stores the conversations), so
//! it lists only the four Channels tools.

use pdchannels_apps::{AppClient, Templates};
use pdchannels_store::Store;

/// The local store, the client that calls its channels' apps, and the apps' templates as kept.
#[derive(Clone)]
pub struct LocalHub {
    pub(crate) store: Store,
    pub(crate) apps: AppClient,
    pub(crate) templates: Templates,
}

impl LocalHub {
    /// The tools read `store` and send replies through its apps with `apps`.
    pub fn new(store: Store, apps: AppClient) -> Self {
        Self {
            store,
            apps,
            templates: Templates::new(),
        }
    }

    /// Shares `templates` (the hub's cache, which its REST route also fills).
    #[must_use]
    pub fn with_templates(mut self, templates: Templates) -> Self {
        self.templates = templates;
        self
    }
}

impl std::fmt::Debug for LocalHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalHub").finish_non_exhaustive()
    }
}
