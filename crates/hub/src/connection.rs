//! One client connection: hyper serves it, a watchdog closes it when it idles or dawdles.
//!
//! Why a watchdog of our own: hyper's `header_read_timeout` starts when it begins waiting for a
//! request, so it cannot tell an idle keep-alive connection (allowed a minute) from a half-sent
//! head (allowed seconds), and hyper has no idle timeout. The watchdog knows which phase the
//! connection is in from its bytes and its requests. The body timeout is the `body` module's.

use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::Request;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::config::ConnectionLimits;

/// How long a connection asked to close (shutdown, or its place given to a new client) gets to
/// flush a response already written: hyper closes it as soon as that is done.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// What a connection is doing, as far as its timeouts care.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Waiting for a request, since the connection opened or its last response was sent.
    Idle { since: Instant },
    /// Part of a request head has arrived, the first byte at `since`.
    ReadingHead { since: Instant },
    /// Answering `open` requests (their responses not sent in full yet): never timed out here.
    Busy { open: usize },
}

/// A connection's phase, shared by its socket, its requests and its watchdog.
#[derive(Debug)]
pub struct Activity {
    phase: Mutex<Phase>,
    changed: Notify,
}

impl Activity {
    pub fn new() -> Self {
        Self {
            phase: Mutex::new(Phase::Idle {
                since: Instant::now(),
            }),
            changed: Notify::new(),
        }
    }

    fn phase(&self) -> MutexGuard<'_, Phase> {
        // The phase is a plain value: a panic elsewhere cannot leave it half-written.
        self.phase.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set(&self, phase: Phase) {
        *self.phase() = phase;
        self.changed.notify_one();
    }

    /// When the connection stopped answering requests, if it did: the oldest such connection is
    /// the first to give its place to a new client at the connection cap.
    pub fn not_busy_since(&self) -> Option<Instant> {
        match *self.phase() {
            Phase::Idle { since } | Phase::ReadingHead { since } => Some(since),
            Phase::Busy { .. } => None,
        }
    }

    fn bytes_arrived(&self) {
        let mut phase = self.phase();
        if let Phase::Idle { .. } = *phase {
            *phase = Phase::ReadingHead {
                since: Instant::now(),
            };
            drop(phase);
            self.changed.notify_one();
        }
    }

    fn request_started(self: &Arc<Self>) -> RequestInProgress {
        let open = match *self.phase() {
            Phase::Busy { open } => open + 1,
            _ => 1,
        };
        self.set(Phase::Busy { open });
        RequestInProgress(self.clone())
    }

    fn request_finished(&self) {
        let next = match *self.phase() {
            Phase::Busy { open } if open > 1 => Phase::Busy { open: open - 1 },
            _ => Phase::Idle {
                since: Instant::now(),
            },
        };
        self.set(next);
    }

    fn is_reading_head(&self) -> bool {
        matches!(*self.phase(), Phase::ReadingHead { .. })
    }

    /// When the current phase runs out of time, if it can; a connection asked to close at
    /// `closing_since` gets [`CLOSE_GRACE`] once it is not answering a request.
    fn deadline(
        &self,
        limits: &ConnectionLimits,
        closing_since: Option<Instant>,
    ) -> Option<Instant> {
        let (since, timeout) = match *self.phase() {
            Phase::Idle { since } => (since, limits.idle_timeout),
            Phase::ReadingHead { since } => (since, limits.header_timeout),
            Phase::Busy { .. } => return None,
        };
        let timed_out = since + timeout;
        Some(match closing_since {
            Some(closing) => timed_out.min(closing.max(since) + CLOSE_GRACE),
            None => timed_out,
        })
    }
}

/// Marks a request as in progress until its response has been sent (or abandoned).
struct RequestInProgress(Arc<Activity>);

impl Drop for RequestInProgress {
    fn drop(&mut self) {
        self.0.request_finished();
    }
}

/// Serves `stream` until the client closes it, it runs out of time, or `close` is cancelled
/// (shutdown, or its place was given to a new client): then a connection not answering a
/// request closes at once, one answering finishes that response first.
pub async fn serve(
    stream: TcpStream,
    router: Router,
    limits: ConnectionLimits,
    activity: Arc<Activity>,
    close: CancellationToken,
) {
    let io = TokioIo::new(WatchedStream {
        inner: stream,
        activity: activity.clone(),
    });
    let requests = activity.clone();
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let in_progress = requests.request_started();
        let router = router.clone();
        async move {
            let response = router.oneshot(request.map(Body::new)).await?;
            Ok::<_, Infallible>(response.map(|body| TrackedBody {
                inner: body,
                _in_progress: in_progress,
            }))
        }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        // Ours is the watchdog below; hyper's would also warn on every connection without it.
        .header_read_timeout(None)
        .serve_connection(io, service);
    tokio::pin!(connection);
    let mut closing_since: Option<Instant> = None;
    loop {
        let deadline = activity.deadline(&limits, closing_since);
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            () = activity.changed.notified() => {}
            () = sleep_until(deadline) => {
                if activity.deadline(&limits, closing_since).is_some_and(|d| d <= Instant::now()) {
                    tracing::debug!("closing a connection: no complete request in time, or closing");
                    return;
                }
            }
            () = close.cancelled(), if closing_since.is_none() => {
                if activity.is_reading_head() {
                    // No request yet, so nothing is owed to the client.
                    return;
                }
                // Closes at once when idle (once a response sent is flushed), after the
                // response when busy: keep-alive off.
                connection.as_mut().graceful_shutdown();
                closing_since = Some(Instant::now());
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// The socket, telling the connection's activity when request bytes arrive.
struct WatchedStream {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for WatchedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.bytes_arrived();
        }
        polled
    }
}

impl AsyncWrite for WatchedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A response body that keeps its request in progress until hyper has sent it or dropped it:
/// an SSE stream is a request in progress for as long as it streams, never an idle connection.
struct TrackedBody {
    inner: Body,
    _in_progress: RequestInProgress,
}

impl hyper::body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
