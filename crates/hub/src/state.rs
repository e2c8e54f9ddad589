//! What every handler shares.

use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;
use pdchannels_model::Limits;
use pdchannels_store::Store;

/// The hub's shared state; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub limits: Arc<Limits>,
    pub metrics: PrometheusHandle,
}
