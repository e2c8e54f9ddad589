//! Building and running the hub: `Application::build` binds, `port()` tells where,
//! `run_until_stopped` serves until the shutdown token is cancelled. The store is the caller's:
//! it closes it once everything else that writes to it (a relay worker) has stopped.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::{get, post};
use pdchannels_mcp::LocalHub;
use pdchannels_relay::Delivery;
use pdchannels_store::Store;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::auth::{self, Authenticator};
use crate::body::{self, BodyLimits};
use crate::config::{ConnectionLimits, HubConfig};
use crate::dns_rebinding::AllowedPeers;
use crate::error::ApiError;
use crate::listener;
use crate::mcp_sessions::Sessions;
use crate::metrics;
use crate::rate_limit::{self, RateLimiter};
use crate::request_log;
use crate::routes::{channels, health, mirror, read, send, templates, users};
use crate::state::AppState;

/// How long in-flight requests get to finish after shutdown begins.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// A bound, not yet running hub.
pub struct Application {
    listener: TcpListener,
    router: Router,
    connections: ConnectionLimits,
    shutdown: CancellationToken,
    /// Calls provider apps back (syncs, enrichment) while the hub runs, on its own store.
    apps: Option<pdchannels_apps::Worker>,
}

impl Application {
    /// Binds `config.listen` and assembles the routes: the Channels operations go to `channels`
    /// (usually `Delivery::Local(store)`), reads and tokens use `store`. Cancelling `shutdown`
    /// stops the hub gracefully once it runs.
    pub async fn build(
        config: HubConfig,
        store: Store,
        channels: Delivery,
        shutdown: CancellationToken,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(config.listen).await?;
        Self::on_listener(listener, &config, store, channels, shutdown)
    }

    /// [`Application::build`] on a listener already bound (`config.listen` is not used):
    /// `serve` binds before it opens the database, so a port in use leaves nothing behind.
    pub fn on_listener(
        listener: TcpListener,
        config: &HubConfig,
        store: Store,
        channels: Delivery,
        shutdown: CancellationToken,
    ) -> std::io::Result<Self> {
        let port = listener.local_addr()?.port();
        // One limiter for the REST routes and MCP tool calls: a token has one budget.
        let limiter = config
            .rate_limits
            .enabled()
            .then(|| RateLimiter::new(config.rate_limits, &store));
        let api = channels_api(config, limiter.clone());
        let app_client = pdchannels_apps::AppClient::new();
        // One cache of the apps' templates for the REST route and the MCP tool.
        let templates = pdchannels_apps::Templates::new();
        // The agents' conversation tools read and reply over the store; a hub that relays has
        // no conversations of its own.
        let local_hub = matches!(channels, Delivery::Local(_)).then(|| {
            LocalHub::new(store.clone(), app_client.clone()).with_templates(templates.clone())
        });
        let mcp = mcp_endpoint(
            config,
            port,
            channels.clone(),
            local_hub,
            limiter,
            &shutdown,
        );
        // A hub that relays to another Channels API stores nothing of its own to enrich.
        let apps = matches!(channels, Delivery::Local(_))
            .then(|| pdchannels_apps::Worker::new(store.clone(), config.limits.clone()));
        let state = AppState {
            channels,
            store: store.clone(),
            limits: Arc::new(config.limits.clone()),
            metrics: metrics::handle(),
            company: Arc::new(config.company.clone()),
            apps: app_client,
            templates,
            fresh_links: pdchannels_apps::FreshLinks::new(),
            inbox_peers: crate::inbox::InboxPeers(Arc::new(AllowedPeers::new(
                port,
                &config.extra_allowed_hosts,
                &config.mcp_allowed_origins,
            ))),
            inbox_feed: crate::inbox::Feed::new(
                store.clone(),
                shutdown.clone(),
                config.connections.max_connections,
            ),
        };
        let router = assemble(api, mcp, config, store, state);
        Ok(Self {
            listener,
            router,
            connections: config.connections,
            shutdown,
            apps,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The bound port (useful with port 0).
    pub fn port(&self) -> u16 {
        self.local_addr().port()
    }

    /// Serves until the shutdown token is cancelled, then stops accepting and lets in-flight
    /// requests finish (within a bound). The store stays open: a relay worker may still be
    /// settling its sends in it, so its owner closes it after stopping the relay.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let Self {
            listener,
            router,
            connections,
            shutdown,
            apps,
        } = self;
        let worker = apps.map(|worker| tokio::spawn(worker.run(shutdown.clone())));
        let served = listener::serve(listener, router, connections, shutdown.clone());
        let result = tokio::select! {
            () = served => Ok(()),
            () = async {
                shutdown.cancelled().await;
                tokio::time::sleep(DRAIN_TIMEOUT).await;
            } => {
                tracing::warn!("requests still in flight after {DRAIN_TIMEOUT:?}; stopping anyway");
                Ok(())
            }
        };
        // A call to an app in flight is dropped: its lease runs out and it is made again (a
        // read), rather than holding shutdown for the app's 30 s.
        if let Some(worker) = worker {
            worker.abort();
        }
        result
    }
}

/// The Channels API and the read API (nested under `/v1` and `/api/v1` by [`assemble`]),
/// rate-limited per token when limits are set.
fn channels_api(config: &HubConfig, limiter: Option<RateLimiter>) -> Router<AppState> {
    let api = Router::new()
        .route(
            "/channels",
            post(channels::add_channel).get(read::list_channels),
        )
        .route(
            "/channels/messages/receive",
            post(channels::receive_message),
        )
        .route("/users/me", get(users::me))
        .route(
            "/channels/{id}",
            axum::routing::delete(channels::delete_channel),
        )
        .route(
            "/channels/{id}/conversations",
            get(read::list_conversations),
        )
        .route(
            "/channels/{id}/conversations/{conversation_id}",
            axum::routing::delete(channels::delete_conversation).get(read::get_conversation),
        )
        .route(
            "/channels/{id}/conversations/{conversation_id}/messages",
            post(send::send_message),
        )
        .route(
            "/channels/{id}/conversations/{conversation_id}/mirror",
            get(mirror::get_link)
                .put(mirror::put_link)
                .delete(mirror::delete_link),
        )
        .route(
            "/channels/{id}/conversations/{conversation_id}/messages/{message_id}",
            get(read::get_message),
        )
        .route("/channels/{id}/templates", get(templates::list_templates))
        .layer(DefaultBodyLimit::max(config.limits.max_body_bytes));
    match limiter {
        Some(limiter) => {
            api.route_layer(middleware::from_fn_with_state(limiter, rate_limit::enforce))
        }
        None => api,
    }
}

/// MCP over Streamable HTTP at `/mcp`, behind its gate (sessions, body size, rate limits on
/// tool calls, `Host` and `Origin`).
fn mcp_endpoint(
    config: &HubConfig,
    port: u16,
    channels: Delivery,
    local_hub: Option<LocalHub>,
    limiter: Option<RateLimiter>,
    shutdown: &CancellationToken,
) -> Router<AppState> {
    let sessions = Sessions::new(config.mcp_sessions);
    let mcp = crate::mcp::service(
        channels,
        local_hub,
        config.limits.clone(),
        sessions.clone(),
        shutdown.child_token(),
    );
    let gate = crate::mcp::Gate {
        max_body_bytes: config.limits.max_body_bytes,
        sessions,
        limiter,
        // Browsers send `Origin` with the bound port: only the hub's own loopback origins
        // (and those allowed by flag) may drive the tools.
        peers: AllowedPeers::new(
            port,
            &config.extra_allowed_hosts,
            &config.mcp_allowed_origins,
        ),
    };
    Router::new().nest_service(
        "/mcp",
        tower::ServiceBuilder::new()
            .layer(middleware::from_fn_with_state(gate, crate::mcp::gate))
            .service(mcp),
    )
}

/// The whole hub: the authenticated routes (API, metrics, MCP), `/healthz`, the envelope for
/// unknown paths and methods, and the layers that count and log every request.
fn assemble(
    api: Router<AppState>,
    mcp: Router<AppState>,
    config: &HubConfig,
    store: Store,
    state: AppState,
) -> Router {
    let body_limits = BodyLimits {
        max_bytes: config.limits.max_body_bytes,
        timeout: config.connections.body_timeout,
    };
    let authenticated = Router::new()
        .nest("/v1", api.clone())
        .nest("/api/v1", api)
        .route("/metrics", get(health::metrics))
        .merge(mcp)
        // Bodies are read only once the token is known good, so an anonymous client cannot
        // make the hub buffer anything.
        .route_layer(middleware::from_fn_with_state(
            body_limits,
            body::read_within_limits,
        ))
        .route_layer(middleware::from_fn_with_state(
            Authenticator::new(store),
            auth::require_token,
        ));
    Router::new()
        .merge(authenticated)
        .merge(crate::inbox::routes())
        .route("/healthz", get(health::healthz))
        .fallback(not_found)
        // Otherwise axum answers a known path with the wrong method 405 and an empty body.
        // Set on the whole router, routes merged, before the layers that count and log.
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        .layer(middleware::from_fn(metrics::track))
        .layer(request_log::layer())
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::request(
        axum::http::StatusCode::NOT_FOUND,
        "NOT_FOUND",
        format!("No route {}", uri.path()),
        "The Channels API is under /v1 (or /api/v1): POST /channels, POST /channels/messages/receive, DELETE /channels/{id}, DELETE /channels/{channel-id}/conversations/{conversation-id}; MCP is at /mcp.",
    )
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    let path = uri.path();
    let info = if matches!(path, "/healthz" | "/metrics") {
        format!("{path} takes GET only.")
    } else {
        ROUTES_BY_METHOD.to_owned()
    };
    ApiError::request(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
        format!("{path} does not take {method}"),
        info,
    )
}

/// What the API's routes take, for a request with the wrong method.
const ROUTES_BY_METHOD: &str = "The Channels API takes POST /channels, POST /channels/messages/receive, DELETE /channels/{id}, DELETE /channels/{channel-id}/conversations/{conversation-id}; the read API GET on /channels, /channels/{id}/conversations and /channels/{id}/conversations/{conversation-id}.";
