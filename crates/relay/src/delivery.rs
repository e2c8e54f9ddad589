//! Where the Channels operations of a running pdchannels go: the local store, or an upstream
//! through the relay. The MCP tools and HTTP routes take a `Delivery` and do not care which.

use pdchannels_model::{
    AddChannel, Channel, Channels, ChannelsError, DeleteChannel, DeleteConversation,
    ReceiveMessage, Received,
};
use pdchannels_store::Store;

use crate::relayed::RelayedChannels;

/// The local store, or a remote Channels API through the outbox.
#[derive(Debug, Clone)]
pub enum Delivery {
    /// Store here (the default).
    Local(Store),
    /// Relay to `--upstream`.
    Upstream(RelayedChannels),
}

impl Channels for Delivery {
    async fn add_channel(&self, request: AddChannel) -> Result<Channel, ChannelsError> {
        match self {
            Self::Local(store) => store.add_channel(request).await,
            Self::Upstream(relayed) => relayed.add_channel(request).await,
        }
    }

    async fn receive_message(&self, message: ReceiveMessage) -> Result<Received, ChannelsError> {
        let received = match self {
            Self::Local(store) => store.receive_message(message).await,
            Self::Upstream(relayed) => relayed.receive_message(message).await,
        }?;
        // Counted here, where every face (REST, MCP over HTTP or stdio, the CLI) passes, so a
        // message counts the same however it came in.
        metrics::counter!("pdchannels_messages_stored_total", "outcome" => received.outcome.label())
            .increment(1);
        Ok(received)
    }

    async fn delete_channel(&self, request: DeleteChannel) -> Result<(), ChannelsError> {
        match self {
            Self::Local(store) => store.delete_channel(request).await,
            Self::Upstream(relayed) => relayed.delete_channel(request).await,
        }
    }

    async fn delete_conversation(&self, request: DeleteConversation) -> Result<(), ChannelsError> {
        match self {
            Self::Local(store) => store.delete_conversation(request).await,
            Self::Upstream(relayed) => relayed.delete_conversation(request).await,
        }
    }
}
