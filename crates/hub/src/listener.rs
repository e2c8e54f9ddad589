//! The accept loop: admits connections up to the cap, keeping the hub answerable when full.
//!
//! At the cap a new client takes the place of the connection that has waited longest without a
//! request in progress (an idle keep-alive or a dawdling head): closing it costs its client
//! nothing but a reconnect, whereas refusing the newcomer would let a few hundred idle sockets
//! lock everyone out. Only when every connection is answering a request does a newcomer get a
//! quick 503, from a small, separately bounded pool, and beyond that its socket is closed.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::ConnectionLimits;
use crate::connection::{self, Activity};
use crate::error::ApiError;

/// Refusals answered at once; past this, a newcomer's socket is simply closed.
const MAX_REFUSALS_IN_PROGRESS: usize = 32;
/// How long a refused client gets to send its request head and read the 503.
const REFUSAL_DEADLINE: Duration = Duration::from_secs(2);
/// How long to wait after accepting failed (out of descriptors, say) before trying again.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// Accepts and serves connections until `shutdown` is cancelled, then asks every connection to
/// close (in-progress responses finish) and returns once all have.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
) {
    let open = OpenConnections::new(limits.max_connections);
    let refusals = Arc::new(Semaphore::new(MAX_REFUSALS_IN_PROGRESS));
    let tasks = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.cancelled() => break,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => stream,
            Err(e) => {
                // Out of descriptors or a connection reset before it was accepted: the
                // listener itself is fine. Pause so a persistent error does not spin.
                tracing::warn!(error = %e, "accepting a connection failed");
                tokio::select! {
                    () = tokio::time::sleep(ACCEPT_RETRY) => continue,
                    () = shutdown.cancelled() => break,
                }
            }
        };
        match open.admit(&shutdown) {
            Some(admitted) => {
                let router = router.clone();
                tasks.spawn(async move {
                    connection::serve(
                        stream,
                        router,
                        limits,
                        admitted.activity.clone(),
                        admitted.close.clone(),
                    )
                    .await;
                    drop(admitted);
                });
            }
            None => match refusals.clone().try_acquire_owned() {
                Ok(permit) => {
                    let max = limits.max_connections;
                    tasks.spawn(async move {
                        refuse(stream, max).await;
                        drop(permit);
                    });
                }
                Err(_) => drop(stream),
            },
        }
    }
    // Closed now, not when the drain ends: new clients are refused at once (and try another
    // instance) instead of waiting in the accept backlog for a hub that will never answer.
    drop(listener);
    tasks.close();
    tasks.wait().await;
}

/// The connections being served, by id.
#[derive(Clone)]
struct OpenConnections {
    max: usize,
    inner: Arc<Mutex<Registry>>,
}

#[derive(Default)]
struct Registry {
    next_id: u64,
    open: HashMap<u64, Entry>,
}

struct Entry {
    activity: Arc<Activity>,
    close: CancellationToken,
}

/// A connection's place; dropping it frees the place.
struct Admitted {
    id: u64,
    activity: Arc<Activity>,
    close: CancellationToken,
    open: OpenConnections,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        // A no-op when its place was already given away.
        self.open.registry().open.remove(&self.id);
    }
}

impl OpenConnections {
    fn new(max: usize) -> Self {
        Self {
            max: max.max(1),
            inner: Arc::default(),
        }
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        // The map stays consistent whatever panicked while holding it.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A place for a new connection: a free one, or that of the connection without a request in
    /// progress for the longest (asked to close); `None` when every connection is busy.
    fn admit(&self, shutdown: &CancellationToken) -> Option<Admitted> {
        let mut registry = self.registry();
        if registry.open.len() >= self.max {
            let oldest = registry
                .open
                .iter()
                .filter_map(|(id, entry)| entry.activity.not_busy_since().map(|since| (since, *id)))
                .min()?;
            if let Some(evicted) = registry.open.remove(&oldest.1) {
                evicted.close.cancel();
            }
        }
        let id = registry.next_id;
        registry.next_id += 1;
        let activity = Arc::new(Activity::new());
        // A child of shutdown: stopping the hub asks every connection to close.
        let close = shutdown.child_token();
        registry.open.insert(
            id,
            Entry {
                activity: activity.clone(),
                close: close.clone(),
            },
        );
        Some(Admitted {
            id,
            activity,
            close,
            open: self.clone(),
        })
    }
}

/// Answers every request on `stream` with a 503 in the API's envelope, then closes it. Served
/// by hyper rather than written blindly, so the answer is read before the socket closes.
async fn refuse(stream: TcpStream, max_connections: usize) {
    let service = hyper::service::service_fn(move |_request| async move {
        let mut response = ApiError::request(
            StatusCode::SERVICE_UNAVAILABLE,
            "SERVICE_UNAVAILABLE",
            format!("The hub is answering requests on all of its {max_connections} connections."),
            "Retry in a moment. An operator can raise the cap with --max-connections (and the process's descriptor limit, `ulimit -n`, with it).",
        )
        .into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        Ok::<_, Infallible>(response)
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .header_read_timeout(None)
        .keep_alive(false)
        .serve_connection(TokioIo::new(stream), service);
    let _ = tokio::time::timeout(REFUSAL_DEADLINE, connection).await;
}
