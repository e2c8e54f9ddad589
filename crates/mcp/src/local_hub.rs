//! What the agents' read and reply tools act on: the hub's own store and the provider apps its
//! channels belong to. A server that relays to a remote Channels API has none (the contract has
//! no reads, and replies go out through the apps of the hub that stores the conversations), so
//! it lists only the four Channels tools.

use pdchannels_apps::AppClient;
use pdchannels_store::Store;

/// The local store and the client that calls its channels' apps.
#[derive(Clone)]
pub struct LocalHub {
    pub(crate) store: Store,
    pub(crate) apps: AppClient,
}

impl LocalHub {
    /// The tools read `store` and send replies through its apps with `apps`.
    pub fn new(store: Store, apps: AppClient) -> Self {
        Self { store, apps }
    }
}

impl std::fmt::Debug for LocalHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalHub").finish_non_exhaustive()
    }
}
