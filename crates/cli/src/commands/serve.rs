//! `pdchannels serve`: the hub.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use pdchannels_hub::{Application, HubConfig, McpSessionLimits, RateLimits};
use pdchannels_model::Limits;
use secrecy::ExposeSecret;
use tokio_util::sync::CancellationToken;

use crate::args::ServeArgs;

pub async fn run(db: &Path, args: ServeArgs) -> Result<ExitCode> {
    let store = super::open_store(db).await?;
    if store
        .list_tokens()
        .await?
        .iter()
        .all(|t| t.revoked_at_ms.is_some())
    {
        let token = store.create_token("default").await?;
        // Shown once; only its hash is stored. stderr, so it never lands in a piped stdout.
        eprintln!(
            "Created the API token {} ({}); it is shown only now, store it safely:\n\n    {}\n\n\
             Send it as the x-api-token header, the api_token query parameter, or Authorization: Bearer.",
            token.info.id,
            token.info.name,
            token.secret.expose_secret()
        );
    }
    let shutdown = CancellationToken::new();
    let config = HubConfig {
        listen: args.listen,
        limits: Limits {
            max_body_bytes: args.bounds.max_body_bytes as usize,
            ..Limits::default()
        },
        connections: args.bounds.connection_limits(),
        rate_limits: RateLimits {
            per_window: args.rate_limit,
            daily_budget: args.daily_budget,
        },
        extra_allowed_hosts: args.allowed_hosts,
        mcp_sessions: McpSessionLimits {
            max_total: args.max_mcp_sessions,
            max_per_token: args.max_mcp_sessions_per_token,
            idle_timeout: args.mcp_idle_timeout,
        },
    };
    let relay = super::upstream::relay(&store, &args.upstream)?;
    let channels = super::upstream::delivery(&store, relay.as_ref());
    let stop_relay = CancellationToken::new();
    let worker = super::upstream::spawn_worker(relay.as_ref(), &stop_relay);
    let app = Application::build(config, store, channels, shutdown.clone())
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    eprintln!(
        "pdchannels hub on http://{} (Channels API under /v1 and /api/v1, MCP at /mcp), database {}",
        app.local_addr(),
        db.display()
    );
    tokio::spawn(super::mcp::cancel_on_signal(shutdown));
    app.run_until_stopped().await?;
    stop_relay.cancel();
    if let Some(worker) = worker {
        let _ = worker.await;
    }
    eprintln!("pdchannels hub stopped");
    Ok(ExitCode::SUCCESS)
}
