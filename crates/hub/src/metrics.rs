//! Prometheus metrics: requests by route and status, receive latency, messages stored.

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Receive latencies worth telling apart, in seconds.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

/// The process-wide recorder (metrics has one global recorder; every hub in a process shares it).
pub fn handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("pdchannels_receive_duration_seconds".to_owned()),
                    LATENCY_BUCKETS,
                )
                .expect("the buckets are not empty")
                .install_recorder()
                .expect("no other metrics recorder is installed")
        })
        .clone()
}

/// Counts every request by method, route template and status; times receives. Every label
/// comes from a closed set (a client choosing methods or paths must not grow the series
/// without bound): the standard methods or `other`, a route template or `unmatched`, a status.
pub async fn track(request: Request, next: Next) -> Response {
    let route = route_label(&request);
    let method = method_label(request.method());
    let start = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    if route.ends_with("/channels/messages/receive") {
        metrics::histogram!("pdchannels_receive_duration_seconds")
            .record(start.elapsed().as_secs_f64());
    }
    metrics::counter!("pdchannels_http_requests_total", "method" => method, "route" => route, "status" => status)
        .increment(1);
    response
}

/// The request's route template (`/v1/channels/{id}`), or `unmatched`.
pub fn route_label(request: &Request) -> String {
    request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned())
}

/// The method if it is one of HTTP's standard nine, else `other`.
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}
