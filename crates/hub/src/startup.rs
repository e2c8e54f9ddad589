//! Building and running the hub: `Application::build` binds, `port()` tells where,
//! `run_until_stopped` serves until the shutdown token is cancelled.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::{get, post};
use pdchannels_relay::Delivery;
use pdchannels_store::Store;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::auth::{self, Authenticator};
use crate::config::HubConfig;
use crate::error::ApiError;
use crate::metrics;
use crate::rate_limit::{self, RateLimiter};
use crate::routes::{channels, health, read};
use crate::state::AppState;

/// How long in-flight requests get to finish after shutdown begins.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// A bound, not yet running hub.
pub struct Application {
    listener: TcpListener,
    router: Router,
    store: Store,
    shutdown: CancellationToken,
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
        let port = listener.local_addr()?.port();
        let state = AppState {
            channels: channels.clone(),
            store: store.clone(),
            limits: Arc::new(config.limits.clone()),
            metrics: metrics::handle(),
        };

        let api = Router::new()
            .route(
                "/channels",
                post(channels::add_channel).get(read::list_channels),
            )
            .route(
                "/channels/messages/receive",
                post(channels::receive_message),
            )
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
            .layer(DefaultBodyLimit::max(config.limits.max_body_bytes));
        let api = if config.rate_limits.enabled() {
            api.route_layer(middleware::from_fn_with_state(
                RateLimiter::new(config.rate_limits),
                rate_limit::enforce,
            ))
        } else {
            api
        };

        let mcp = crate::mcp::service(
            channels,
            config.limits.clone(),
            port,
            &config.extra_allowed_hosts,
            shutdown.child_token(),
        );

        let authenticated = Router::new()
            .nest("/v1", api.clone())
            .nest("/api/v1", api)
            .route("/metrics", get(health::metrics))
            .nest_service(
                "/mcp",
                tower::ServiceBuilder::new()
                    .layer(middleware::from_fn_with_state(
                        config.limits.max_body_bytes,
                        crate::mcp::answer_unknown_methods,
                    ))
                    .service(mcp),
            )
            .route_layer(middleware::from_fn_with_state(
                Authenticator::new(store.clone()),
                auth::require_token,
            ));

        let router = Router::new()
            .merge(authenticated)
            .route("/healthz", get(health::healthz))
            .fallback(not_found)
            .with_state(state)
            .layer(middleware::from_fn(metrics::track))
            // A 5xx's cause is logged where it happens (the store's writer, at a bounded
            // rate); an ERROR line per failed request as well would let clients flood the log.
            .layer(tower_http::trace::TraceLayer::new_for_http().on_failure(
                tower_http::trace::DefaultOnFailure::new().level(tracing::Level::DEBUG),
            ));

        Ok(Self {
            listener,
            router,
            store,
            shutdown,
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

    /// Serves until the shutdown token is cancelled, then stops accepting, lets in-flight
    /// requests finish (within a bound), and closes the store.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let Self {
            listener,
            router,
            store,
            shutdown,
        } = self;
        let stopping = shutdown.clone();
        let served = axum::serve(listener, router)
            .with_graceful_shutdown(async move { stopping.cancelled().await });
        let result = tokio::select! {
            result = served => result,
            () = async {
                shutdown.cancelled().await;
                tokio::time::sleep(DRAIN_TIMEOUT).await;
            } => {
                tracing::warn!("requests still in flight after {DRAIN_TIMEOUT:?}; stopping anyway");
                Ok(())
            }
        };
        // Every acknowledged write is already durable; this finishes what is queued.
        store.close().await;
        result
    }
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::request(
        axum::http::StatusCode::NOT_FOUND,
        "NOT_FOUND",
        format!("No route {}", uri.path()),
        "The Channels API is under /v1 (or /api/v1): POST /channels, POST /channels/messages/receive, DELETE /channels/{id}, DELETE /channels/{channel-id}/conversations/{conversation-id}; MCP is at /mcp.",
    )
}
