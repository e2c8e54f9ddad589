//! A fault-injecting HTTP proxy in front of the hub. Each request gets the fault the plan says
//! for its number (0, 1, 2, ...), or for what it carries ([`Proxy::spawn_by_request`]). And
//! [`OtherHost`], a listener that only records what reaches it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use tokio::time::Instant;

/// What the proxy does to one request.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer this 3xx with this `Location`, without forwarding.
    Redirect { status: u16, location: String },
    /// Forward it and answer what the hub answered.
    Pass,
    /// Answer this status without forwarding.
    Status(u16),
    /// Close the connection without answering, without forwarding.
    Drop,
    /// Forward it (the hub applies it), then lose the answer: the connection breaks mid-body.
    LoseAnswer,
    /// Wait this long, then forward it (past the client's timeout: applied, answer unseen).
    DelayPastTimeout(Duration),
    /// Answer 429 with rate-limit headers, without forwarding.
    RateLimited { retry_after_secs: u64, daily: bool },
}

/// One request as the proxy saw it.
pub struct Seen<'a> {
    /// Its number: 0, 1, 2, ...
    pub n: usize,
    pub body: &'a [u8],
}

impl Seen<'_> {
    /// Whether the body holds `text` (e.g. a message id).
    pub fn carries(&self, text: &str) -> bool {
        self.body
            .windows(text.len())
            .any(|window| window == text.as_bytes())
    }
}

type Plan = Arc<dyn Fn(&Seen) -> Fault + Send + Sync>;

#[derive(Clone)]
struct ProxyState {
    upstream: String,
    plan: Arc<Mutex<Plan>>,
    seen: Arc<Mutex<Vec<Instant>>>,
    client: reqwest::Client,
}

pub struct Proxy {
    pub address: String,
    state: ProxyState,
}

impl Proxy {
    pub async fn spawn(
        upstream: &str,
        plan: impl Fn(usize) -> Fault + Send + Sync + 'static,
    ) -> Self {
        Self::spawn_by_request(upstream, move |seen| plan(seen.n)).await
    }

    /// A proxy whose plan looks at each request, not only its number.
    pub async fn spawn_by_request(
        upstream: &str,
        plan: impl Fn(&Seen) -> Fault + Send + Sync + 'static,
    ) -> Self {
        let state = ProxyState {
            upstream: upstream.to_owned(),
            plan: Arc::new(Mutex::new(Arc::new(plan))),
            seen: Arc::default(),
            client: reqwest::Client::new(),
        };
        let app = Router::new().fallback(forward).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { address, state }
    }

    /// Replaces the plan (numbering goes on).
    pub fn set(&self, plan: impl Fn(usize) -> Fault + Send + Sync + 'static) {
        *self.state.plan.lock().unwrap() = Arc::new(move |seen: &Seen| plan(seen.n));
    }

    pub fn requests(&self) -> usize {
        self.state.seen.lock().unwrap().len()
    }

    pub fn request_times(&self) -> Vec<Instant> {
        self.state.seen.lock().unwrap().clone()
    }
}

async fn forward(
    State(state): State<ProxyState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let fault = {
        let mut seen = state.seen.lock().unwrap();
        let n = seen.len();
        seen.push(Instant::now());
        (state.plan.lock().unwrap())(&Seen { n, body: &body })
    };
    match fault.clone() {
        Fault::Redirect { status, location } => {
            return (
                StatusCode::from_u16(status).unwrap(),
                [(axum::http::header::LOCATION, location)],
                "moved",
            )
                .into_response();
        }
        Fault::Status(code) => {
            return (StatusCode::from_u16(code).unwrap(), "injected failure").into_response();
        }
        Fault::Drop => return broken_body(),
        Fault::RateLimited {
            retry_after_secs,
            daily,
        } => {
            let mut response = (
                StatusCode::TOO_MANY_REQUESTS,
                axum::Json(serde_json::json!({
                    "success": false,
                    "error": "Request over limit",
                    "error_info": if daily { "The daily token budget is used up." } else { "Too many requests." },
                    "additional_data": {"code": "RATE_LIMIT_EXCEEDED"},
                })),
            )
                .into_response();
            let h = response.headers_mut();
            h.insert("retry-after", retry_after_secs.into());
            h.insert("x-ratelimit-limit", 80.into());
            h.insert("x-ratelimit-remaining", 0.into());
            h.insert("x-ratelimit-reset", retry_after_secs.into());
            if daily {
                h.insert("x-daily-ratelimit-token-remaining", 0.into());
            }
            return response;
        }
        Fault::DelayPastTimeout(delay) => tokio::time::sleep(delay).await,
        Fault::Pass | Fault::LoseAnswer => {}
    }
    let url = format!(
        "{}{}",
        state.upstream,
        uri.path_and_query().map_or("", |p| p.as_str())
    );
    let mut request = state.client.request(method, &url).body(body);
    for name in ["x-api-token", "authorization", "content-type"] {
        if let Some(value) = headers.get(name) {
            request = request.header(name, value);
        }
    }
    let upstream = request.send().await.unwrap();
    if matches!(fault, Fault::LoseAnswer) {
        return broken_body();
    }
    let status = upstream.status();
    let mut out_headers = HeaderMap::new();
    for (name, value) in upstream.headers() {
        if name.as_str().starts_with("x-ratelimit")
            || name == "retry-after"
            || name == "content-type"
        {
            out_headers.insert(name.clone(), value.clone());
        }
    }
    let bytes = upstream.bytes().await.unwrap();
    (status, out_headers, bytes).into_response()
}

/// "Another host": a listener that answers every request with a success envelope (so that a
/// misdelivered call would look delivered) and records what reached it (`METHOD path`, and
/// whether it carried a token).
pub struct OtherHost {
    pub address: String,
    arrived: Arc<Mutex<Vec<String>>>,
}

impl OtherHost {
    pub async fn spawn() -> Self {
        let arrived: Arc<Mutex<Vec<String>>> = Arc::default();
        let record = arrived.clone();
        let app = Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap| {
            let record = record.clone();
            async move {
                let token = if headers.contains_key("x-api-token") {
                    "with the API token"
                } else {
                    "without a token"
                };
                record
                    .lock()
                    .unwrap()
                    .push(format!("{method} {} {token}", uri.path()));
                axum::Json(serde_json::json!({"success": true, "data": {"id": "elsewhere"}}))
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { address, arrived }
    }

    pub fn arrived(&self) -> Vec<String> {
        self.arrived.lock().unwrap().clone()
    }
}

/// A response whose body fails: the client sees the connection break.
fn broken_body() -> Response {
    let stream = futures_util::stream::once(async {
        Err::<Bytes, std::io::Error>(std::io::Error::other("injected connection drop"))
    });
    Response::new(Body::from_stream(stream))
}
