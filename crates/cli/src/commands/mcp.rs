//! `pdchannels mcp`: the MCP server on stdio.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Result;
use pdchannels_mcp::ChannelsServer;
use pdchannels_model::Limits;
use tokio_util::sync::CancellationToken;

use crate::args::UpstreamArgs;

pub async fn run(db: &Path, upstream: UpstreamArgs) -> Result<ExitCode> {
    let store = super::open_store(db).await?;
    let relay = super::upstream::relay(&store, &upstream)?;
    tracing::info!(db = %db.display(), "serving MCP on stdio");
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    let stop_relay = CancellationToken::new();
    let worker = super::upstream::spawn_worker(relay.as_ref(), &stop_relay);
    let channels = super::upstream::delivery(&store, relay.as_ref());
    let server = ChannelsServer::new(Arc::new(channels), Limits::default());
    let served = pdchannels_mcp::serve_stdio(server, shutdown).await;
    // The relay finishes the sends in flight; the rest waits in the outbox for the next run.
    stop_relay.cancel();
    if let Some(worker) = worker {
        let _ = worker.await;
    }
    // Every acknowledged write is already durable; this finishes anything still queued.
    store.close().await;
    served?;
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn cancel_on_signal(token: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    token.cancel();
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    token.cancel();
}
