//! One INFO line per request (method, route template, status, latency) inside a span naming the
//! method and path. Never the query string: it may carry `api_token`. Never a header: they
//! carry tokens.

use std::time::Duration;

use axum::extract::Request;
use axum::response::Response;
use tower_http::classify::{ServerErrorsAsFailures, SharedClassifier};
use tower_http::trace::{DefaultOnFailure, DefaultOnRequest, TraceLayer};
use tracing::Span;

use crate::metrics::{method_label, route_label};

pub type RequestLogLayer = TraceLayer<
    SharedClassifier<ServerErrorsAsFailures>,
    fn(&Request) -> Span,
    DefaultOnRequest,
    fn(&Response, Duration, &Span),
    tower_http::trace::DefaultOnBodyChunk,
    tower_http::trace::DefaultOnEos,
    DefaultOnFailure,
>;

/// The layer; add it with `Router::layer` so the route template is known.
pub fn layer() -> RequestLogLayer {
    TraceLayer::new_for_http()
        .make_span_with(request_span as fn(&Request) -> Span)
        .on_response(log_response as fn(&Response, Duration, &Span))
        // A 5xx's cause is logged where it happens (the store's writer, at a bounded rate); an
        // ERROR line per failed request as well would let clients flood the log.
        .on_failure(DefaultOnFailure::new().level(tracing::Level::DEBUG))
}

fn request_span(request: &Request) -> Span {
    tracing::info_span!(
        "request",
        method = method_label(request.method()),
        path = request.uri().path(),
        route = route_label(request),
    )
}

fn log_response(response: &Response, latency: Duration, _span: &Span) {
    tracing::info!(
        status = response.status().as_u16(),
        latency_ms = latency.as_secs_f64() * 1000.0,
        "answered"
    );
}
