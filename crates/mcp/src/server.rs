//! The four tools, as thin adapters over a [`Channels`] implementation.

use std::sync::Arc;

use pdchannels_model::{
    AddChannel, ApiResponse, Channel, Channels, ChannelsError, DeleteChannel, DeleteConversation,
    Limits, Operation, QueuedResponse, ReceiveMessage, ReceiveOutcome, Success,
};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
#[allow(deprecated)]
use rmcp::model::SetLevelRequestParams;
use rmcp::model::{CallToolResult, Implementation, ServerCapabilities, ServerConfig};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler, tool, tool_handler, tool_router};

use crate::arguments::Arguments;
use crate::local_hub::LocalHub;
use crate::outcome::{failure, queued_text, success};
use crate::output_schema::success_or_error;

const INSTRUCTIONS: &str = "pdchannels files incoming messages from messaging channels \
(WhatsApp, Messenger, chat widgets...) into conversations, over Pipedrive's Channels API \
contract. Register a channel once with channels_create (choose its provider_channel_id), then \
call channels_receive_message for each incoming message or status change, passing that \
provider_channel_id as channel_id. Receiving the same message id again updates that message.";

/// The MCP server: four tools over `C`.
#[derive(Clone)]
pub struct ChannelsServer<C: Channels> {
    channels: Arc<C>,
    limits: Arc<Limits>,
    /// The store and apps the conversation tools act on; `None` when relaying.
    pub(crate) hub: Option<LocalHub>,
    tool_router: ToolRouter<Self>,
}

impl<C: Channels> std::fmt::Debug for ChannelsServer<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelsServer").finish_non_exhaustive()
    }
}

#[tool_router]
impl<C: Channels> ChannelsServer<C> {
    /// A server whose tools act on `channels`, checking payloads against `limits`.
    pub fn new(channels: Arc<C>, limits: Limits) -> Self {
        Self {
            channels,
            limits: Arc::new(limits),
            hub: None,
            tool_router: portable(Self::tool_router()),
        }
    }

    /// Adds the tools that read conversations and send replies, over the hub's own store and
    /// the apps its channels belong to.
    pub fn with_local_hub(mut self, hub: LocalHub) -> Self {
        self.hub = Some(hub);
        self.tool_router.merge(portable(Self::conversation_tools()));
        self.tool_router.merge(portable(Self::template_tools()));
        self
    }

    /// The limits payloads are checked against.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Add an incoming message to a conversation (POST /v1/channels/messages/receive).
    ///
    /// Send one call per incoming message and per status change. The conversation is created by
    /// its first message and the sender joins it. Sending the same message `id` again updates
    /// that message: a newer status (sent < delivered < read; failed after sent or delivered) or
    /// changed content. An older status is ignored, and the same payload twice is a no-op.
    /// `channel_id` is the channel's provider_channel_id from channels_create.
    #[tool(
        name = "channels_receive_message",
        annotations(
            title = "Receive a message",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        ),
        output_schema = success_or_error::<ApiResponse<ReceiveMessage>>()
    )]
    pub async fn receive_message(
        &self,
        Parameters(args): Parameters<Arguments<ReceiveMessage>>,
    ) -> Result<CallToolResult, ErrorData> {
        const TOOL: &str = "channels_receive_message";
        let message = match ReceiveMessage::parse(args.value(), &self.limits) {
            Ok(message) => message,
            Err(problems) => return Ok(invalid(TOOL, Operation::ReceiveMessage, problems)),
        };
        Ok(match self.channels.receive_message(message).await {
            Ok(received) => {
                let m = &received.message;
                let what = match &received.outcome {
                    ReceiveOutcome::Created => "Stored new message",
                    ReceiveOutcome::Updated => "Updated message",
                    ReceiveOutcome::Unchanged => "Message already stored unchanged:",
                    ReceiveOutcome::Delivered { .. } => {
                        "Delivered to the upstream Channels API: message"
                    }
                    ReceiveOutcome::Queued { .. } => {
                        "Queued for the upstream Channels API: message"
                    }
                };
                let summary = format!(
                    "{what} `{}` in conversation `{}` of channel `{}` (status {}).",
                    m.id, m.conversation_id, m.channel_id, m.status
                );
                match received.outcome {
                    ReceiveOutcome::Delivered { upstream } => {
                        success(&ApiResponse::ok(upstream), summary)
                    }
                    ReceiveOutcome::Queued { outbox_id, reason } => {
                        let text = queued_text(&summary, outbox_id, &reason);
                        success(
                            &QueuedResponse::new(Some(&received.message), outbox_id, reason),
                            text,
                        )
                    }
                    _ => success(&ApiResponse::ok(&received.message), summary),
                }
            }
            Err(error) => failure(TOOL, &error),
        })
    }

    /// Add a channel (POST /v1/channels): register a messaging channel so messages can be
    /// received into it.
    ///
    /// `provider_channel_id` is your own id for the channel; every later call uses it. Adding a
    /// channel whose provider_channel_id exists already updates its name, avatar and type.
    #[tool(
        name = "channels_create",
        annotations(
            title = "Add a channel",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        ),
        output_schema = success_or_error::<ApiResponse<Channel>>()
    )]
    pub async fn create(
        &self,
        Parameters(args): Parameters<Arguments<AddChannel>>,
    ) -> Result<CallToolResult, ErrorData> {
        const TOOL: &str = "channels_create";
        let request = match AddChannel::parse(args.value(), &self.limits) {
            Ok(request) => request,
            Err(problems) => return Ok(invalid(TOOL, Operation::AddChannel, problems)),
        };
        Ok(match self.channels.add_channel(request).await {
            Ok(channel) => {
                let summary = format!(
                    "Channel `{}` (\"{}\") is registered; receive messages with channel_id `{}`.",
                    channel.provider_channel_id,
                    channel.name.as_str(),
                    channel.provider_channel_id
                );
                success(&ApiResponse::ok(&channel), summary)
            }
            Err(error) => failure(TOOL, &error),
        })
    }

    /// Delete a channel (DELETE /v1/channels/{id}) with all its conversations and messages.
    /// `id` is the channel's provider_channel_id. This cannot be undone.
    #[tool(
        name = "channels_delete",
        annotations(
            title = "Delete a channel",
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = false,
            open_world_hint = false
        ),
        output_schema = success_or_error::<Success>()
    )]
    pub async fn delete(
        &self,
        Parameters(args): Parameters<Arguments<DeleteChannel>>,
    ) -> Result<CallToolResult, ErrorData> {
        const TOOL: &str = "channels_delete";
        let request = match DeleteChannel::parse(args.value(), &self.limits) {
            Ok(request) => request,
            Err(problems) => return Ok(invalid(TOOL, Operation::DeleteChannel, problems)),
        };
        let id = request.id.clone();
        Ok(match self.channels.delete_channel(request).await {
            Ok(()) => success(
                &Success::OK,
                format!("Deleted channel `{id}` with all its conversations and messages."),
            ),
            Err(error) => failure(TOOL, &error),
        })
    }

    /// Delete one conversation of a channel, with its messages
    /// (DELETE /v1/channels/{channel-id}/conversations/{conversation-id}).
    /// Both ids are the provider's. This cannot be undone.
    #[tool(
        name = "channels_delete_conversation",
        annotations(
            title = "Delete a conversation",
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = false,
            open_world_hint = false
        ),
        output_schema = success_or_error::<Success>()
    )]
    pub async fn delete_conversation(
        &self,
        Parameters(args): Parameters<Arguments<DeleteConversation>>,
    ) -> Result<CallToolResult, ErrorData> {
        const TOOL: &str = "channels_delete_conversation";
        let request = match DeleteConversation::parse(args.value(), &self.limits) {
            Ok(request) => request,
            Err(problems) => return Ok(invalid(TOOL, Operation::DeleteConversation, problems)),
        };
        let summary = format!(
            "Deleted conversation `{}` of channel `{}` with its messages.",
            request.conversation_id, request.channel_id
        );
        Ok(match self.channels.delete_conversation(request).await {
            Ok(()) => success(&Success::OK, summary),
            Err(error) => failure(TOOL, &error),
        })
    }
}

/// Every tool's schemas rewritten for every client, and its output schema made compact.
fn portable<S>(mut router: ToolRouter<S>) -> ToolRouter<S> {
    for route in router.map.values_mut() {
        crate::portable::tool(&mut route.attr);
    }
    router
}

fn invalid(
    tool: &str,
    operation: Operation,
    problems: pdchannels_model::Problems,
) -> CallToolResult {
    failure(
        tool,
        &ChannelsError::Invalid {
            operation,
            problems,
        },
    )
}

// logging/setLevel is deprecated by SEP-2577 for the 2026 revision, but the 2025-11-25 revision
// that current clients and the conformance suite speak still has it.
#[allow(deprecated)]
#[tool_handler(router = self.tool_router)]
impl<C: Channels> ServerHandler for ChannelsServer<C> {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_logging()
                .build(),
        )
        .with_server_info(Implementation::new("pdchannels", env!("CARGO_PKG_VERSION")))
        .with_instructions(INSTRUCTIONS)
    }

    /// Logs go to stderr (stdio) or the server's log (HTTP), never to the client, so any level
    /// is accepted and changes nothing the client can see.
    async fn set_level(
        &self,
        request: SetLevelRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        tracing::debug!(level = ?request.level, "client asked for a log level");
        Ok(())
    }
}
