//! "Another host": a server on 127.0.0.1 that nobody should call, for redirect tests. It
//! records each request (and whether it carried a credential) and answers a 200 success
//! envelope, so that a client which follows a redirect to it believes it delivered.

use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri, header};
use axum::response::IntoResponse;
use serde_json::json;

/// One request the stray host got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StrayRequest {
    /// Its method.
    pub method: String,
    /// Its path and query.
    pub path: String,
    /// It carried `x-api-token` or `Authorization`.
    pub had_credentials: bool,
}

/// The stray host.
pub struct StrayHost {
    /// `http://127.0.0.1:PORT`.
    pub address: String,
    requests: Arc<Mutex<Vec<StrayRequest>>>,
}

impl StrayHost {
    /// Listens on a free port of 127.0.0.1.
    pub async fn spawn() -> Self {
        let requests: Arc<Mutex<Vec<StrayRequest>>> = Arc::default();
        let app = Router::new().fallback(record).with_state(requests.clone());
        let address = crate::loopback::serve_on_loopback(app).await;
        Self { address, requests }
    }

    /// Every request it got, in arrival order.
    pub fn requests(&self) -> Vec<StrayRequest> {
        self.requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

async fn record(
    State(requests): State<Arc<Mutex<Vec<StrayRequest>>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> impl IntoResponse {
    requests
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(StrayRequest {
            method: method.to_string(),
            path: uri.path_and_query().map_or("/", |p| p.as_str()).to_owned(),
            had_credentials: headers.contains_key("x-api-token")
                || headers.contains_key(header::AUTHORIZATION),
        });
    axum::Json(json!({"success": true, "data": null}))
}
