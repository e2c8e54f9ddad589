//! The web inbox at `/inbox`: people read their customers' conversations and answer them in a
//! browser, with nothing else to install. Pages are rendered on the server (askama, escaped by
//! default) and work without JavaScript: links, GET forms, POST with a redirect.
//!
//! - `session`: logging in (a pasted API token, or a one-time link from `pdchannels inbox
//!   link`) to an `HttpOnly`, `SameSite=Strict` session cookie; every POST's `Origin`, `Host` and
//!   form token checked.
//! - `pages`: the list of conversations (filters, search) and the open thread, the reply form.
//! - `actions`: mark unread, close, reopen, delete.
//! - `live`: the server-sent events that keep open tabs up to date.
//! - `view`: what the templates show, made from the store's rows (times, ticks, initials).
//!
//! The one script (`assets/inbox.js`) only makes the pages live and adds keyboard shortcuts,
//! drafts and notifications: every page and form works without it.

mod actions;
mod live;
mod pages;
mod session;
mod view;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::state::AppState;

pub use live::Feed;
pub use session::InboxPeers;

/// The largest form the inbox takes, but for a reply.
const MAX_FORM_BYTES: usize = 256 * 1024;
/// The largest reply form: any text the reply box takes (65,536 characters, up to 3 bytes each
/// in UTF-8, each byte up to 3 once form-encoded) arrives whole, so a reply over the 64 KiB a
/// message may be is answered with the text kept in the box.
const MAX_REPLY_FORM_BYTES: usize = 640 * 1024;

/// No script runs but the inbox's own, no page frames it, no URL of it leaks to another site.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; img-src 'self' https: data:; \
     style-src 'self'; script-src 'self'; object-src 'none'; frame-ancestors 'none'; \
     base-uri 'none'; form-action 'self'";

/// Logins being read at once, at most.
const LOGINS_AT_ONCE: usize = 16;

/// The places for logins being read.
#[derive(Clone)]
struct LoginGate(std::sync::Arc<tokio::sync::Semaphore>);

impl Default for LoginGate {
    fn default() -> Self {
        Self(std::sync::Arc::new(tokio::sync::Semaphore::new(
            LOGINS_AT_ONCE,
        )))
    }
}

async fn one_of_few_logins(
    axum::extract::State(gate): axum::extract::State<LoginGate>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let Ok(_place) = gate.0.try_acquire_owned() else {
        return (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "1"), (header::CONNECTION, "close")],
            "Too many logins are being sent to this hub at once: try again in a moment.",
        )
            .into_response();
    };
    next.run(request).await
}

/// The inbox's routes, outside the API's token check (a browser holds a session cookie).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/inbox", get(pages::list))
        .route(
            "/inbox/login",
            get(session::login_page)
                .post(session::log_in)
                // The one POST anyone may send, logged in or not: its body is read within 5 s
                // and 4 KiB, and only 16 at once, so slow senders cannot hold the hub's
                // connections (every other POST needs a session before its body is read).
                .route_layer(axum::middleware::from_fn_with_state(
                    crate::body::BodyLimits {
                        max_bytes: 4 * 1024,
                        timeout: std::time::Duration::from_secs(5),
                    },
                    crate::body::read_within_limits,
                ))
                .route_layer(axum::middleware::from_fn_with_state(
                    LoginGate::default(),
                    one_of_few_logins,
                )),
        )
        .route("/inbox/login/{link}", get(session::log_in_with_link))
        .route("/inbox/logout", post(session::log_out))
        .route("/inbox/events", get(live::events))
        .route("/inbox/assets/inbox.css", get(stylesheet))
        .route("/inbox/assets/inbox.js", get(script))
        .route("/inbox/assets/icon.svg", get(icon))
        .route("/inbox/{channel}/{conversation}", get(pages::thread))
        .route(
            "/inbox/{channel}/{conversation}/reply",
            post(pages::reply).layer(DefaultBodyLimit::max(MAX_REPLY_FORM_BYTES)),
        )
        .route("/inbox/{channel}/{conversation}/older", post(pages::older))
        .route(
            "/inbox/{channel}/{conversation}/unread",
            post(actions::unread),
        )
        .route(
            "/inbox/{channel}/{conversation}/close",
            post(actions::close),
        )
        .route(
            "/inbox/{channel}/{conversation}/reopen",
            post(actions::reopen),
        )
        .route(
            "/inbox/{channel}/{conversation}/delete",
            get(actions::confirm_delete).post(actions::delete),
        )
        .layer(DefaultBodyLimit::max(MAX_FORM_BYTES))
        .layer(axum::middleware::map_response(secure_headers))
}

async fn secure_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    // Nothing of the inbox's address reaches another site (remote avatars, attachments,
    // provider links), while its own forms keep their `Origin`: under `no-referrer` a browser
    // sends `Origin: null` with a form POST, which the inbox cannot tell from another site's.
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("../../assets/inbox.css"),
    )
        .into_response()
}

async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("../../assets/inbox.js"),
    )
        .into_response()
}

async fn icon() -> Response {
    (
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        include_str!("../../assets/icon.svg"),
    )
        .into_response()
}
