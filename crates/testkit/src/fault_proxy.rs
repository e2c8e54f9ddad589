//! A fault-injecting HTTP proxy on 127.0.0.1 in front of a real server (a hub). Faults are
//! queued: each request takes the next one (first in, first out), and with none queued it is
//! passed through. Every request is recorded with the fault it got.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use tokio::sync::watch;

/// How long a held answer is held at most before the connection is broken: far past any client
/// timeout a test sets, and a bound so that nothing waits forever.
const HOLD_BOUND: Duration = Duration::from_secs(30);

/// What the proxy does to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Forward it and answer what the server answered.
    Pass,
    /// Answer this status (an error page) without forwarding.
    Status(u16),
    /// Break the connection without answering, without forwarding.
    Drop,
    /// Forward it (the server applies it), then break the connection instead of answering: the
    /// lost-answer case.
    LoseAnswer,
    /// Forward it (the server applies it), then hold the answer until the client gives up (its
    /// timeout) or the connection goes (a crash of the client): the same lost answer, by timeout.
    /// [`FaultProxy::held`] counts these, so a test can act at that moment.
    HoldAnswer,
    /// Answer this 3xx status with `Location: location` + the request's path, without
    /// forwarding.
    Redirect {
        /// 301, 302, 303, 307 or 308.
        status: u16,
        /// Where to: scheme, host and port (the path is the request's).
        location: String,
    },
}

/// One request the proxy got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// Its method.
    pub method: String,
    /// Its path and query.
    pub path: String,
    /// What the proxy did to it.
    pub fault: Fault,
}

#[derive(Clone)]
struct Shared {
    upstream: String,
    faults: Arc<Mutex<VecDeque<Fault>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
    held: watch::Sender<usize>,
    client: reqwest::Client,
}

/// The proxy: `address` forwards to the server it was spawned for.
pub struct FaultProxy {
    /// `http://127.0.0.1:PORT`.
    pub address: String,
    shared: Shared,
}

impl FaultProxy {
    /// Listens on a free port of 127.0.0.1 and forwards to `upstream` (`http://host:port`).
    pub async fn spawn(upstream: &str) -> Self {
        let shared = Shared {
            upstream: upstream.trim_end_matches('/').to_owned(),
            faults: Arc::default(),
            seen: Arc::default(),
            held: watch::channel(0).0,
            client: reqwest::Client::builder()
                .timeout(HOLD_BOUND)
                .build()
                .expect("a plain HTTP client builds"),
        };
        let app = Router::new().fallback(forward).with_state(shared.clone());
        let address = crate::loopback::serve_on_loopback(app).await;
        Self { address, shared }
    }

    /// Queues `faults` for the next requests, after those already queued.
    pub fn push(&self, faults: impl IntoIterator<Item = Fault>) {
        lock(&self.shared.faults).extend(faults);
    }

    /// Forgets the faults not used yet.
    pub fn clear(&self) {
        lock(&self.shared.faults).clear();
    }

    /// Every request so far, in arrival order.
    pub fn seen(&self) -> Vec<Seen> {
        lock(&self.shared.seen).clone()
    }

    /// Follows how many answers have been held ([`Fault::HoldAnswer`]) so far: the request was
    /// applied by the server when the count goes up.
    pub fn held(&self) -> watch::Receiver<usize> {
        self.shared.held.subscribe()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn forward(
    State(shared): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let fault = lock(&shared.faults).pop_front().unwrap_or(Fault::Pass);
    lock(&shared.seen).push(Seen {
        method: method.to_string(),
        path: path.clone(),
        fault: fault.clone(),
    });
    match &fault {
        Fault::Status(code) => {
            let status = StatusCode::from_u16(*code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return (status, "injected failure").into_response();
        }
        Fault::Drop => return broken_body(),
        Fault::Redirect { status, location } => {
            let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::TEMPORARY_REDIRECT);
            let mut response = status.into_response();
            if let Ok(value) = HeaderValue::from_str(&format!("{location}{path}")) {
                response.headers_mut().insert(header::LOCATION, value);
            }
            return response;
        }
        Fault::Pass | Fault::LoseAnswer | Fault::HoldAnswer => {}
    }
    let mut request = shared
        .client
        .request(method, format!("{}{path}", shared.upstream))
        .body(body);
    for name in [header::CONTENT_TYPE, header::AUTHORIZATION] {
        if let Some(value) = headers.get(&name) {
            request = request.header(name, value);
        }
    }
    if let Some(value) = headers.get("x-api-token") {
        request = request.header("x-api-token", value);
    }
    let answer = match request.send().await {
        Ok(answer) => answer,
        // The server did not answer: neither does the proxy.
        Err(_) => return broken_body(),
    };
    let status = answer.status();
    let mut out_headers = HeaderMap::new();
    for (name, value) in answer.headers() {
        if name.as_str().starts_with("x-ratelimit")
            || name.as_str().starts_with("x-daily-ratelimit")
            || name == header::RETRY_AFTER
            || name == header::CONTENT_TYPE
        {
            out_headers.insert(name.clone(), value.clone());
        }
    }
    let Ok(bytes) = answer.bytes().await else {
        return broken_body();
    };
    match fault {
        Fault::LoseAnswer => broken_body(),
        Fault::HoldAnswer => {
            shared.held.send_modify(|held| *held += 1);
            // Dropped with the connection when the client gives up; the bound is for the rest.
            tokio::time::sleep(HOLD_BOUND).await;
            broken_body()
        }
        _ => (status, out_headers, bytes).into_response(),
    }
}

/// A response whose body fails: the client sees the connection break.
fn broken_body() -> Response {
    let stream = futures_util::stream::once(async {
        Err::<Bytes, std::io::Error>(std::io::Error::other("injected connection drop"))
    });
    Response::new(Body::from_stream(stream))
}
