//! `pdchannels relay`: deliver the outbox until stopped.

use std::process::ExitCode;

use anyhow::{Result, bail};
use pdchannels_store::Database;

use crate::args::UpstreamArgs;
use crate::runtime::Runtime;

pub async fn run(db: &Database, args: UpstreamArgs) -> Result<ExitCode> {
    let mut runtime = Runtime::open(db, &args).await?;
    let Some(upstream) = runtime.upstream().map(str::to_owned) else {
        runtime.shutdown().await;
        bail!(
            "`pdchannels relay` needs where to deliver: --upstream URL (or PDCHANNELS_UPSTREAM), or --oauth after `pdchannels auth login`"
        );
    };
    let stats = runtime.store().outbox().stats().await?;
    eprintln!(
        "relaying to {upstream} ({} pending, {} dead in the outbox); stop with Ctrl-C",
        stats.pending, stats.dead
    );
    let stop = crate::signals::stop_on_signal();
    runtime.start_relay();
    stop.cancelled().await;
    runtime.shutdown().await;
    Ok(ExitCode::SUCCESS)
}
