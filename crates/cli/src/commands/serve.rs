//! `pdchannels serve`: the hub.
//!
//! Start-up order matters to a newcomer: bind first (a port in use is one line naming
//! `--listen`), then create the first-run token (so a printed token always belongs to a hub that
//! runs), then serve. Shutdown: stop accepting and drain, stop the relay, close the store.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::{Result, anyhow};
use pdchannels_hub::{Application, HubConfig, McpSessionLimits, RateLimits};
use pdchannels_model::Limits;
use pdchannels_store::{Database, Store};
use secrecy::ExposeSecret;

use crate::args::ServeArgs;
use crate::runtime::Runtime;

pub async fn run(db: &Database, args: ServeArgs) -> Result<ExitCode> {
    // Bound first: a port in use is refused before anything is created (database, token).
    let listen = args.listen;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| bind_error(listen, &e))?;
    let mut runtime = Runtime::open(db, &args.upstream).await?;
    let mirror = if args.mirror {
        match super::mirror::build(runtime.store(), &args.mirror_run, &args.upstream.oauth_file)
            .await
        {
            Ok(mirror) => Some(mirror),
            Err(e) => {
                runtime.shutdown().await;
                return Err(e);
            }
        }
    } else {
        if let Some(flag) = args.mirror_run.given_flag() {
            tracing::warn!(
                "{flag} is set but --mirror is not: the notes mirror does not run; add --mirror to run it inside the hub"
            );
        }
        None
    };
    let shutdown = crate::signals::stop_on_signal();
    let built = Application::on_listener(
        listener,
        &hub_config(args),
        runtime.store().clone(),
        runtime.channels().clone(),
        shutdown,
    );
    let app = match built {
        Ok(app) => app,
        Err(e) => {
            runtime.shutdown().await;
            return Err(bind_error(listen, &e));
        }
    };
    if let Some(upstream) = runtime.upstream().map(str::to_owned)
        && relays_to_itself(&upstream, app.local_addr())
    {
        runtime.shutdown().await;
        anyhow::bail!(
            "--upstream {upstream} is this hub itself: every call it delivered would come back as a new one, forever; point --upstream at another Channels API, or leave it out to store here"
        );
    }
    if let Err(e) = create_first_token(runtime.store()).await {
        runtime.shutdown().await;
        return Err(e);
    }
    let relaying = runtime
        .upstream()
        .map(|upstream| format!(", relaying to {upstream}"))
        .unwrap_or_default();
    let mirroring = if mirror.is_some() {
        ", mirroring conversations into Pipedrive as notes"
    } else {
        ""
    };
    eprintln!(
        "pdchannels hub on http://{} (Channels API under /v1 and /api/v1, MCP at /mcp, inbox at /inbox){relaying}{mirroring}, database {}",
        app.local_addr(),
        db
    );
    runtime.start_relay();
    if let Some(mirror) = mirror {
        runtime.start_mirror(mirror);
    }
    let served = app.run_until_stopped().await;
    runtime.shutdown().await;
    served?;
    eprintln!("pdchannels hub stopped");
    Ok(ExitCode::SUCCESS)
}

/// Whether `upstream` (a base URL) reaches the address this hub listens on: the same port on a
/// loopback name, or on the very address it bound.
fn relays_to_itself(upstream: &str, listening: SocketAddr) -> bool {
    let Ok(url) = url::Url::parse(upstream) else {
        return false;
    };
    if url.port_or_known_default() != Some(listening.port()) {
        return false;
    }
    // A loopback name reaches this hub only if it listens on loopback (or everywhere).
    let on_loopback = listening.ip().is_loopback() || listening.ip().is_unspecified();
    let ip = match url.host() {
        Some(url::Host::Domain(name)) => {
            return on_loopback && name.eq_ignore_ascii_case("localhost");
        }
        Some(url::Host::Ipv4(ip)) => std::net::IpAddr::V4(ip),
        Some(url::Host::Ipv6(ip)) => std::net::IpAddr::V6(ip),
        None => return false,
    };
    ip == listening.ip() || (on_loopback && (ip.is_loopback() || ip.is_unspecified()))
}

fn hub_config(args: ServeArgs) -> HubConfig {
    HubConfig {
        listen: args.listen,
        company: pdchannels_hub::Company {
            id: args.company_id,
            name: args.company_name,
            domain: args.company_domain,
        },
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
        mcp_allowed_origins: args.mcp_allowed_origins,
        mcp_sessions: McpSessionLimits {
            max_total: args.max_mcp_sessions,
            max_per_token: args.max_mcp_sessions_per_token,
            idle_timeout: args.mcp_idle_timeout,
        },
    }
}

/// On a database that never had a token, creates one and prints it (once: only its hash is
/// stored), on stderr so it never lands in a piped stdout. A database whose tokens were all
/// revoked stays locked (revoking them all is how to shut every client out): it says so.
async fn create_first_token(store: &Store) -> Result<()> {
    let tokens = store.list_tokens().await?;
    if tokens.iter().any(|t| t.revoked_at_ms.is_none()) {
        return Ok(());
    }
    if !tokens.is_empty() {
        eprintln!(
            "warning: every API token of this database is revoked, so no client can call the hub; create one with `pdchannels --db {} token create --name NAME`",
            store.database().as_flag_value()
        );
        return Ok(());
    }
    // Another hub starting on the same new database may have created it meanwhile.
    let Some(token) = store.create_first_token("default").await? else {
        return Ok(());
    };
    eprintln!(
        "Created the API token {} ({}); it is shown only now, store it safely:\n\n    {}\n\n\
         Send it as the x-api-token header, the api_token query parameter, or Authorization: Bearer.",
        token.info.id,
        token.info.name,
        token.secret.expose_secret()
    );
    Ok(())
}

/// One line saying why `listen` could not be bound and what to do, instead of an OS error chain.
fn bind_error(listen: SocketAddr, error: &std::io::Error) -> anyhow::Error {
    use std::io::ErrorKind;
    let next_port = SocketAddr::new(listen.ip(), listen.port().wrapping_add(1).max(1));
    match error.kind() {
        ErrorKind::AddrInUse => anyhow!(
            "cannot listen on {listen}: the address is already in use (another pdchannels serve, or another server, has the port); stop it, or pass another address, e.g. --listen {next_port}"
        ),
        ErrorKind::AddrNotAvailable => anyhow!(
            "cannot listen on {listen}: no network interface of this machine has the address {}; pass one it has, e.g. --listen 127.0.0.1:{} (this machine only) or --listen 0.0.0.0:{} (every interface)",
            listen.ip(),
            listen.port(),
            listen.port()
        ),
        ErrorKind::PermissionDenied => anyhow!(
            "cannot listen on {listen}: permission denied (ports below 1024 need privileges); pass a port from 1024 up, e.g. --listen {}, and put a reverse proxy on the low port",
            SocketAddr::new(listen.ip(), 8787)
        ),
        _ => anyhow!("cannot listen on {listen}: {error}; pass another address with --listen"),
    }
}

#[cfg(test)]
mod tests {
    use super::relays_to_itself;

    #[test]
    fn a_hub_relaying_to_its_own_address_is_caught_and_another_port_or_host_is_not() {
        let loopback = "127.0.0.1:8787".parse().unwrap();
        let everywhere = "0.0.0.0:8787".parse().unwrap();
        let lan = "10.0.0.5:8787".parse().unwrap();
        assert!(relays_to_itself("http://127.0.0.1:8787/v1", loopback));
        assert!(relays_to_itself("http://localhost:8787/v1", loopback));
        assert!(relays_to_itself("http://127.0.0.1:8787/v1", everywhere));
        assert!(relays_to_itself("http://10.0.0.5:8787/v1", lan));
        assert!(!relays_to_itself("http://127.0.0.1:8788/v1", loopback));
        assert!(!relays_to_itself("http://127.0.0.1:8787/v1", lan));
        assert!(!relays_to_itself(
            "https://acme.pipedrive.com/api/v1",
            loopback
        ));
        assert!(!relays_to_itself("http://10.0.0.6:8787/v1", lan));
    }
}
