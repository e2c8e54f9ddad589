//! The pdchannels MCP server: `channels_receive_message`, `channels_create`, `channels_delete`
//! and `channels_delete_conversation`, over any [`Channels`](pdchannels_model::Channels)
//! implementation.
//!
//! # Layout
//!
//! - [`ChannelsServer`]: the rmcp server handler with the four tools.
//! - `arguments`: raw tool arguments, validated by the model so every problem is reported.
//! - `outcome`: tool results shaped like the Channels API's responses.
//! - `output_schema`: each tool's output schema: the 200 body or the error envelope.
//! - [`serve_stdio`]: runs the server over stdin/stdout.
//!
//! Tool failures (invalid arguments, unknown channel, a message moving conversation) are
//! `isError: true` results with text a model can act on and the API's error body as structured
//! content; JSON-RPC errors are kept for protocol faults.

#![warn(missing_docs)]

mod arguments;
mod outcome;
mod output_schema;
mod server;

pub use arguments::Arguments;
pub use server::ChannelsServer;

use pdchannels_model::Channels;
use rmcp::ServiceExt;
use tokio_util::sync::CancellationToken;

/// Serves MCP over this process's stdin and stdout until the client disconnects or `shutdown`
/// is cancelled. Nothing else may write to stdout meanwhile.
pub async fn serve_stdio<C: Channels>(
    server: ChannelsServer<C>,
    shutdown: CancellationToken,
) -> Result<(), std::io::Error> {
    let running = server
        .serve_with_ct(rmcp::transport::stdio_pipes(), shutdown)
        .await
        .map_err(std::io::Error::other)?;
    running.waiting().await.map_err(std::io::Error::other)?;
    Ok(())
}
