//! `pdchannels mcp`: the MCP server on stdio.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Result;
use pdchannels_apps::AppClient;
use pdchannels_mcp::{ChannelsServer, LocalHub};
use pdchannels_model::Limits;
use pdchannels_relay::Delivery;
use pdchannels_store::Database;

use crate::args::UpstreamArgs;
use crate::runtime::Runtime;

/// Said on stderr when a person starts `pdchannels mcp` at a terminal: otherwise it sits
/// silently waiting for JSON-RPC, which looks like a hang.
const AT_A_TERMINAL: &str = "\
pdchannels mcp is an MCP server: it speaks JSON-RPC on stdin/stdout and is started by an MCP
client, not typed at. Register it with your client, e.g. in Claude Desktop's
claude_desktop_config.json:

    {\"mcpServers\": {\"pdchannels\": {\"command\": \"pdchannels\", \"args\": [\"mcp\"]}}}

or try it with the MCP Inspector: npx @modelcontextprotocol/inspector pdchannels mcp
For MCP over HTTP (and the Channels API), run `pdchannels serve` instead.
Waiting for JSON-RPC on stdin; Ctrl-C to quit.";

pub async fn run(db: &Database, upstream: UpstreamArgs) -> Result<ExitCode> {
    if std::io::stdin().is_terminal() {
        // stderr: stdout carries only protocol frames, even here.
        eprintln!("{AT_A_TERMINAL}");
    }
    let mut runtime = Runtime::open(db, &upstream).await?;
    tracing::info!(db = %db, "serving MCP on stdio");
    let shutdown = crate::signals::stop_on_signal();
    runtime.start_relay();
    let mut server = ChannelsServer::new(Arc::new(runtime.channels().clone()), Limits::default());
    // On the local store the agents can also read conversations and reply through apps.
    if let Delivery::Local(store) = runtime.channels() {
        server = server.with_local_hub(LocalHub::new(store.clone(), AppClient::new()));
    }
    let served = pdchannels_mcp::serve_stdio(server, shutdown).await;
    // The relay finishes the sends in flight; the rest waits in the outbox for the next run.
    runtime.shutdown().await;
    served?;
    Ok(ExitCode::SUCCESS)
}
