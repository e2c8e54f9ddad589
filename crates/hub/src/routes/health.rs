//! `/healthz` (no token needed) and `/metrics` (Prometheus text).

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;

use pdchannels_model::Timestamp;
use pdchannels_relay::Delivery;
use pdchannels_store::OutboxStats;

use crate::state::AppState;

/// `GET /healthz`: 200 `ok` while the store answers reads and its writes work; otherwise 503
/// with the reason (a load balancer stops sending writes that would only fail).
pub async fn healthz(State(app): State<AppState>) -> impl IntoResponse {
    if let Some(reason) = app.store.write_failure().await {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the store cannot write: {reason}\n"),
        );
    }
    match app.store.count_channels().await {
        Ok(_) => (StatusCode::OK, "ok\n".to_owned()),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the store does not answer reads: {e}\n"),
        ),
    }
}

/// `GET /metrics`: the process's counters and histograms, and, when this hub relays to an
/// upstream, its outbox (read at each scrape: it may change under other processes too).
pub async fn metrics(State(app): State<AppState>) -> impl IntoResponse {
    let mut text = app.metrics.render();
    if matches!(app.channels, Delivery::Upstream(_)) {
        match app.store.outbox().stats().await {
            Ok(stats) => text.push_str(&outbox_metrics(&stats)),
            Err(e) => tracing::warn!(error = %e, "reading the outbox for /metrics failed"),
        }
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}

fn outbox_metrics(stats: &OutboxStats) -> String {
    let now = Timestamp::now().unix_millis();
    let oldest_age = stats
        .oldest_pending_at_ms
        .map_or(0.0, |at| (now - at).max(0) as f64 / 1000.0);
    format!(
        "# HELP pdchannels_outbox_calls Calls in the relay's outbox, by state.\n\
         # TYPE pdchannels_outbox_calls gauge\n\
         pdchannels_outbox_calls{{state=\"pending\"}} {}\n\
         pdchannels_outbox_calls{{state=\"delivered\"}} {}\n\
         pdchannels_outbox_calls{{state=\"dead\"}} {}\n\
         # HELP pdchannels_outbox_oldest_pending_age_seconds How long the oldest pending call has waited.\n\
         # TYPE pdchannels_outbox_oldest_pending_age_seconds gauge\n\
         pdchannels_outbox_oldest_pending_age_seconds {oldest_age:.3}\n",
        stats.pending, stats.delivered, stats.dead
    )
}
