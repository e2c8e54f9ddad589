//! `pdchannels relay`: deliver the outbox until stopped.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Result, bail};
use tokio_util::sync::CancellationToken;

use crate::args::UpstreamArgs;

pub async fn run(db: &Path, args: UpstreamArgs) -> Result<ExitCode> {
    let store = super::open_store(db).await?;
    let Some(relay) = super::upstream::relay(&store, &args)? else {
        bail!(
            "`pdchannels relay` needs where to deliver: --upstream URL (or PDCHANNELS_UPSTREAM), or --oauth after `pdchannels auth login`"
        );
    };
    let stats = store.outbox().stats().await?;
    eprintln!(
        "relaying to {} ({} pending, {} dead in the outbox); stop with Ctrl-C",
        super::upstream::describe(&relay),
        stats.pending,
        stats.dead
    );
    let stop = CancellationToken::new();
    tokio::spawn(super::mcp::cancel_on_signal(stop.clone()));
    relay.run(stop).await;
    store.close().await;
    Ok(ExitCode::SUCCESS)
}
