//! The pdchannels MCP server: `channels_receive_message`, `channels_create`, `channels_delete`
//! and `channels_delete_conversation`, over any [`Channels`](pdchannels_model::Channels)
//! implementation.
//!
//! # Layout
//!
//! - [`ChannelsServer`]: the rmcp server handler with the four tools.
//! - `arguments`: raw tool arguments, validated by the model so every problem is reported.
//! - `outcome`: tool results shaped like the Channels API's responses.
//! - `output_schema`: each tool's output schema: the 200 body, the queued answer or the error
//!   envelope.
//! - `portable`: schemas rewritten so that every MCP client reads them alike (no `type` lists).
//! - [`classify_line`]: one incoming message, well-formed or the JSON-RPC error to answer.
//! - [`LineTransport`], [`serve_stdio`]: MCP over stdin/stdout, every faulty line answered.
//! - [`KNOWN_METHODS`]: the methods an MCP client may call.
//!
//! Tool failures (invalid arguments, unknown channel, a message moving conversation) are
//! `isError: true` results with text a model can act on and the API's error body as structured
//! content; JSON-RPC errors are kept for protocol faults.

#![warn(missing_docs)]

mod arguments;
mod conversation_tools;
mod line;
mod local_hub;
mod methods;
mod outcome;
mod output_schema;
mod portable;
mod server;
mod stdio;
mod template_tools;

pub use arguments::Arguments;
pub use line::{Fault, Line, classify_line, code};
pub use local_hub::LocalHub;
pub use methods::{KNOWN_METHODS, is_known_method};
pub use server::ChannelsServer;
pub use stdio::LineTransport;

use pdchannels_model::Channels;
use rmcp::ServiceExt;
use tokio_util::sync::CancellationToken;

/// Serves MCP over this process's stdin and stdout until the client disconnects or `shutdown`
/// is cancelled. Nothing else may write to stdout meanwhile. A line over the server's
/// `max_body_bytes` is refused like an HTTP body over it.
pub async fn serve_stdio<C: Channels>(
    server: ChannelsServer<C>,
    shutdown: CancellationToken,
) -> Result<(), std::io::Error> {
    let (stdin, stdout) = rmcp::transport::stdio_pipes();
    let transport = LineTransport::new(stdin, stdout, server.limits().max_body_bytes);
    let running = server
        .serve_with_ct(transport, shutdown)
        .await
        .map_err(std::io::Error::other)?;
    running.waiting().await.map_err(std::io::Error::other)?;
    Ok(())
}
