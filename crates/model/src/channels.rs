//! The domain trait every face of pdchannels (MCP tools, HTTP routes, CLI) is an adapter over.

use std::future::Future;
use std::sync::Arc;

use crate::channel::{AddChannel, Channel, DeleteChannel, DeleteConversation};
use crate::error::ChannelsError;
use crate::message::ReceiveMessage;

/// What a receive did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReceiveOutcome {
    /// A new message was stored.
    Created,
    /// An existing message was changed (its status moved forward, or its content changed).
    Updated,
    /// The same message was already stored; nothing changed.
    Unchanged,
    /// Relayed: the upstream Channels API accepted it and answered `upstream` (its `data`).
    Delivered {
        /// The upstream's answer.
        upstream: serde_json::Value,
    },
    /// Relayed: durably in the outbox, not delivered yet (the relay keeps trying).
    Queued {
        /// The outbox id (`pdchannels outbox show ID`).
        outbox_id: i64,
        /// Why it is not delivered yet.
        reason: String,
    },
}

impl ReceiveOutcome {
    /// A short word for it: the `outcome` label of the received-messages metric.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Updated => "updated",
            Self::Unchanged => "unchanged",
            Self::Delivered { .. } => "delivered",
            Self::Queued { .. } => "queued",
        }
    }
}

/// The result of a receive: the message as stored, and what happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The message as it is now stored (its status may be newer than the one sent).
    pub message: ReceiveMessage,
    /// What the receive did.
    pub outcome: ReceiveOutcome,
}

/// The four operations of the Channels API. Implemented over the local store (and, with the
/// relay, over a remote Channels API). Every success is durable before it is returned.
pub trait Channels: Send + Sync + 'static {
    /// Adds a channel, or updates the one with the same `provider_channel_id`.
    fn add_channel(
        &self,
        request: AddChannel,
    ) -> impl Future<Output = Result<Channel, ChannelsError>> + Send;

    /// Adds a message to its conversation (creating the conversation on its first message), or
    /// updates the stored message with the same id.
    fn receive_message(
        &self,
        message: ReceiveMessage,
    ) -> impl Future<Output = Result<Received, ChannelsError>> + Send;

    /// Deletes a channel with all its conversations and messages.
    fn delete_channel(
        &self,
        request: DeleteChannel,
    ) -> impl Future<Output = Result<(), ChannelsError>> + Send;

    /// Deletes one conversation of a channel, with its messages.
    fn delete_conversation(
        &self,
        request: DeleteConversation,
    ) -> impl Future<Output = Result<(), ChannelsError>> + Send;
}

impl<T: Channels> Channels for Arc<T> {
    fn add_channel(
        &self,
        request: AddChannel,
    ) -> impl Future<Output = Result<Channel, ChannelsError>> + Send {
        (**self).add_channel(request)
    }

    fn receive_message(
        &self,
        message: ReceiveMessage,
    ) -> impl Future<Output = Result<Received, ChannelsError>> + Send {
        (**self).receive_message(message)
    }

    fn delete_channel(
        &self,
        request: DeleteChannel,
    ) -> impl Future<Output = Result<(), ChannelsError>> + Send {
        (**self).delete_channel(request)
    }

    fn delete_conversation(
        &self,
        request: DeleteConversation,
    ) -> impl Future<Output = Result<(), ChannelsError>> + Send {
        (**self).delete_conversation(request)
    }
}
