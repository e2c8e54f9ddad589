//! MCP over Streamable HTTP at `/mcp`: the same four tools over the same store as the HTTP routes,
//! behind a gate that answers every faulty request in JSON-RPC, keeps sessions bounded and to
//! their token, and counts tool calls against the token's rate limits.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use pdchannels_mcp::{ChannelsServer, Fault, Line, LocalHub, classify_line, code};
use pdchannels_model::Limits;
use pdchannels_relay::Delivery;
use rmcp::model::{ClientRequest, JsonRpcMessage};
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::auth::TokenId;
use crate::dns_rebinding::AllowedPeers;
use crate::error::ApiError;
use crate::mcp_sessions::{CappedSessionManager, Full, Sessions, opening};
use crate::rate_limit::{RateLimiter, tool_cost};

/// JSON-RPC error codes of our own (the implementation-defined range).
mod server_code {
    /// The session id is unknown, ended, or another token's (the code the MCP SDKs use).
    pub const SESSION_NOT_FOUND: i32 = -32001;
    /// A limit is reached: sessions, rate, or daily budget; `data.code` says which.
    pub const OVER_LIMIT: i32 = -32000;
    /// The request's `Host` or `Origin` is not allowed; `data.header` says which.
    pub const FORBIDDEN: i32 = -32003;
    /// The hub's database cannot be reached; retry later.
    pub const UNAVAILABLE: i32 = -32002;
}

/// The `/mcp` service. Its `Host` and `Origin` checks are the gate's ([`AllowedPeers`]), which
/// can say what was refused and which flag allows it; rmcp's plain-text ones are off.
pub fn service(
    channels: Delivery,
    local_hub: Option<LocalHub>,
    limits: Limits,
    sessions: Sessions,
    shutdown: CancellationToken,
) -> StreamableHttpService<ChannelsServer<Delivery>, CappedSessionManager> {
    let channels = Arc::new(channels);
    let config = StreamableHttpServerConfig::default()
        .disable_allowed_hosts()
        .disable_allowed_origins()
        .with_max_request_body_bytes(limits.max_body_bytes)
        // Ending every session on shutdown also ends their SSE streams, which would otherwise
        // hold graceful shutdown open while an idle client keeps one.
        .with_cancellation_token(shutdown);
    StreamableHttpService::new(
        move || {
            let server = ChannelsServer::new(channels.clone(), limits.clone());
            Ok(match &local_hub {
                Some(hub) => server.with_local_hub(hub.clone()),
                None => server,
            })
        },
        Arc::new(CappedSessionManager::new(sessions)),
        config,
    )
}

/// What the gate in front of rmcp needs.
#[derive(Clone)]
pub struct Gate {
    pub max_body_bytes: usize,
    pub sessions: Sessions,
    /// The same limiter as the REST routes', so a token has one budget over both.
    pub limiter: Option<RateLimiter>,
    /// The `Host` names and browser `Origin`s allowed.
    pub peers: AllowedPeers,
}

/// In front of rmcp, for every `/mcp` request (after authentication):
///
/// - a `Host` or `Origin` not allowed is a 403 naming the header and the flag that allows it;
/// - a session id that is unknown, ended, or another token's is a 404 (as if unknown);
/// - a POST body that is not a well-formed JSON-RPC message (not JSON, a batch, `tools/call`
///   without a tool name...) is a 400 with the JSON-RPC error, and an unknown method a 400
///   -32601, at once, session or not (rmcp would answer a bare 415 or "Session ID is required");
/// - an `initialize` past the session limits is refused with what to do;
/// - a `tools/call` counts against the token's rate limit and daily budget like its REST route;
/// - a DELETE's 202 becomes 204.
pub async fn gate(state: State<Gate>, request: Request, next: Next) -> Response {
    in_json_rpc(screen(state, request, next).await).await
}

/// The gate's checks; what they let through goes to rmcp.
async fn screen(State(gate): State<Gate>, request: Request, next: Next) -> Response {
    let Some(TokenId(token)) = request.extensions().get::<TokenId>().cloned() else {
        // Unreachable behind `require_token`; refuse rather than serve without an owner.
        return ApiError::Unauthorized(crate::error::Unauthorized::Missing).into_response();
    };
    if let Err(refusal) = gate.peers.check(request.uri(), request.headers()) {
        tracing::warn!(
            header = refusal.header(),
            "refused an /mcp request (DNS-rebinding protection)"
        );
        let frame = json!({"jsonrpc": "2.0", "id": null, "error": {
            "code": server_code::FORBIDDEN,
            "message": refusal.explain(),
            "data": {"code": "FORBIDDEN", "header": refusal.header()},
        }});
        return rpc_error(StatusCode::FORBIDDEN, frame);
    }
    let session = request
        .headers()
        .get("mcp-session-id")
        .map(|id| id.to_str().unwrap_or_default().to_owned());
    if let Some(id) = &session
        && !gate.sessions.belongs_to(id, &token)
    {
        return session_not_found();
    }
    if request.method() == Method::DELETE {
        // Session termination: rmcp answers 202, which the Python SDK logs as a failure (it
        // expects 200 or 204). Nothing is pending after a DELETE, so 204 is the truthful answer.
        let mut response = next.run(request).await;
        if response.status() == StatusCode::ACCEPTED {
            *response.status_mut() = StatusCode::NO_CONTENT;
        }
        return response;
    }
    if request.method() != Method::POST {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, gate.max_body_bytes).await {
        Ok(bytes) => bytes,
        Err(_) => {
            let fault = Fault::too_long(&[], gate.max_body_bytes);
            return rpc_error(StatusCode::PAYLOAD_TOO_LARGE, fault.frame());
        }
    };
    let message = match classify_line(&bytes) {
        Line::Message(message) => message,
        Line::Fault(fault) => return rpc_error(StatusCode::BAD_REQUEST, fault.frame()),
        Line::Blank => {
            let frame = json!({"jsonrpc": "2.0", "id": null, "error": {
                "code": code::PARSE_ERROR,
                "message": "Parse error: the body is empty; send one JSON-RPC message",
            }});
            return rpc_error(StatusCode::BAD_REQUEST, frame);
        }
    };
    let request = Request::from_parts(parts, axum::body::Body::from(bytes));
    let JsonRpcMessage::Request(call) = &*message else {
        return next.run(request).await;
    };
    let id = serde_json::to_value(&call.id).unwrap_or(Value::Null);
    match &call.request {
        ClientRequest::InitializeRequest(_) if session.is_none() => {
            match gate.sessions.reserve(&token) {
                Ok(reservation) => opening(reservation, next.run(request)).await,
                Err(full) => sessions_full(&gate.sessions, full, &id),
            }
        }
        ClientRequest::CallToolRequest(call) => {
            let cost = tool_cost(&call.params.name);
            let (Some(limiter), Some(cost)) = (&gate.limiter, cost) else {
                return next.run(request).await;
            };
            let decision = limiter.decide(&token, cost).await;
            let mut response = match &decision.allowed {
                Ok(()) => next.run(request).await,
                Err(ApiError::OverLimit { reset_secs, daily }) => {
                    let frame = json!({"jsonrpc": "2.0", "id": id, "error": {
                        "code": server_code::OVER_LIMIT,
                        "message": format!("Request over limit: {}", crate::error::over_limit_info(*reset_secs, *daily)),
                        "data": {"code": "RATE_LIMIT_EXCEEDED", "retry_after": reset_secs},
                    }});
                    let mut response = rpc_error(StatusCode::TOO_MANY_REQUESTS, frame);
                    response
                        .headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from(*reset_secs));
                    response
                }
                // The shared counters (PostgreSQL) could not be read: the database is down.
                Err(other) => {
                    let reason = match other {
                        ApiError::Channels(e) => e.to_string(),
                        other => format!("{other:?}"),
                    };
                    let frame = json!({"jsonrpc": "2.0", "id": id, "error": {
                        "code": server_code::UNAVAILABLE,
                        "message": format!("The hub cannot count this call against its token's rate limits: {reason}"),
                        "data": {"code": "SERVICE_UNAVAILABLE"},
                    }});
                    return rpc_error(StatusCode::SERVICE_UNAVAILABLE, frame);
                }
            };
            decision.set_headers(response.headers_mut());
            response
        }
        _ => next.run(request).await,
    }
}

/// rmcp answers some refusals itself in plain text (a request without its session, a wrong
/// `Accept` or `Content-Type`, a method it does not take): each becomes a JSON-RPC error with
/// the same status and rmcp's words, so a client (or a proxy's operator) never gets a bare page.
async fn in_json_rpc(response: Response) -> Response {
    let status = response.status();
    let is_json_or_stream = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json") || v.starts_with("text/event-stream"));
    if !(status.is_client_error() || status.is_server_error()) || is_json_or_stream {
        return response;
    }
    // rmcp's refusals are one short line; a bound keeps this cheap whatever comes.
    let text = axum::body::to_bytes(response.into_body(), 4096)
        .await
        .map(|bytes| String::from_utf8_lossy(&bytes).trim().to_owned())
        .unwrap_or_default();
    let message = if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("Request refused")
            .to_owned()
    } else {
        text
    };
    let frame = json!({"jsonrpc": "2.0", "id": null, "error": {
        "code": code::INVALID_REQUEST,
        "message": format!("{message}. See the MCP Streamable HTTP transport: POST JSON-RPC with Accept: application/json, text/event-stream and Content-Type: application/json; send initialize first, then its Mcp-Session-Id on every request."),
        "data": {"status": status.as_u16()},
    }});
    rpc_error(status, frame)
}

fn rpc_error(status: StatusCode, frame: Value) -> Response {
    (status, axum::Json(frame)).into_response()
}

fn session_not_found() -> Response {
    let frame = json!({"jsonrpc": "2.0", "id": null, "error": {
        "code": server_code::SESSION_NOT_FOUND,
        "message": "Session not found: it was closed, idled out, or ended with a hub restart, or \
                    it is not this token's. Start a new session: send initialize without \
                    Mcp-Session-Id.",
    }});
    rpc_error(StatusCode::NOT_FOUND, frame)
}

fn sessions_full(sessions: &Sessions, full: Full, id: &Value) -> Response {
    let limits = sessions.limits();
    let idle = humanize(limits.idle_timeout);
    let (status, code, message) = match full {
        Full::Token(max) => (
            StatusCode::TOO_MANY_REQUESTS,
            "TOO_MANY_SESSIONS_FOR_TOKEN",
            format!(
                "This API token has {max} open MCP sessions, the most --max-mcp-sessions-per-token allows. \
                 Close the sessions you no longer use (DELETE /mcp with their Mcp-Session-Id), \
                 reuse one, or wait: a session idle for {idle} is closed."
            ),
        ),
        Full::Hub(max) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "TOO_MANY_SESSIONS",
            format!(
                "The hub has {max} open MCP sessions, the most --max-mcp-sessions allows. \
                 Close sessions you no longer use (DELETE /mcp with their Mcp-Session-Id), \
                 or retry later: a session idle for {idle} is closed."
            ),
        ),
    };
    let frame = json!({"jsonrpc": "2.0", "id": id, "error": {
        "code": server_code::OVER_LIMIT,
        "message": message,
        "data": {"code": code, "limit": match full { Full::Token(n) | Full::Hub(n) => n }},
    }});
    rpc_error(status, frame)
}

/// `15m`, `90s`, `250ms`: how the idle timeout is written on the command line.
fn humanize(duration: std::time::Duration) -> String {
    let ms = duration.as_millis();
    if ms.is_multiple_of(60_000) {
        format!("{}m", ms / 60_000)
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}
