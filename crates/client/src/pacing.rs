//! Staying under the upstream's rate limit, and using it fully.
//!
//! Pipedrive (and the hub) answer `x-ratelimit-remaining` and `x-ratelimit-reset` (seconds) on
//! every response. The pacer keeps an estimate of the requests left in the current window: each
//! request takes one, each response corrects it (less what is still in flight). At zero it waits
//! for the reset instead of provoking a 429; after a 429 it waits as long as the upstream said.

use std::sync::Mutex;
use std::time::Duration;

use reqwest::header::HeaderMap;
use tokio::time::Instant;

#[derive(Debug, Default)]
struct Window {
    /// Requests left in the current window, as last estimated; `None` until the upstream tells.
    remaining: Option<u32>,
    /// When the current window ends.
    resets_at: Option<Instant>,
    /// No request before this (after a 429 or an exhausted budget).
    blocked_until: Option<Instant>,
    in_flight: u32,
}

/// Shared by every request of one client.
#[derive(Debug, Default)]
pub struct Pacer {
    window: Mutex<Window>,
}

fn header<T: std::str::FromStr>(headers: &HeaderMap, name: &str) -> Option<T> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

impl Pacer {
    fn lock(&self) -> std::sync::MutexGuard<'_, Window> {
        self.window
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Waits until a request may be sent, and counts it as in flight.
    pub async fn acquire(&self) {
        loop {
            let wait = {
                let mut w = self.lock();
                let now = Instant::now();
                match (w.blocked_until, w.remaining, w.resets_at) {
                    (Some(until), _, _) if until > now => Some(until - now),
                    (_, Some(0), Some(reset)) if reset > now => Some(reset - now),
                    _ => {
                        if w.resets_at.is_some_and(|r| r <= now) {
                            // A new window: unknown until the next answer says.
                            w.remaining = None;
                            w.resets_at = None;
                        }
                        w.blocked_until = None;
                        if let Some(left) = w.remaining.as_mut() {
                            *left = left.saturating_sub(1);
                        }
                        w.in_flight += 1;
                        None
                    }
                }
            };
            match wait {
                None => return,
                Some(wait) => {
                    tracing::debug!(
                        ?wait,
                        "pacing: waiting for the upstream's rate-limit window"
                    );
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// Learns from a response's headers (and status); `retry_after` is what a 429 said.
    pub fn observe(&self, status: u16, headers: Option<&HeaderMap>, retry_after: Option<Duration>) {
        let mut w = self.lock();
        w.in_flight = w.in_flight.saturating_sub(1);
        let now = Instant::now();
        if let Some(headers) = headers
            && let (Some(remaining), Some(reset)) = (
                header::<u32>(headers, "x-ratelimit-remaining"),
                header::<u64>(headers, "x-ratelimit-reset"),
            )
        {
            // Requests still in flight were counted by the upstream after this answer, or
            // will be: keep them out of the estimate.
            w.remaining = Some(remaining.saturating_sub(w.in_flight));
            w.resets_at = Some(now + Duration::from_secs(reset));
        }
        if status == 429 {
            let wait = retry_after.unwrap_or(Duration::from_secs(2));
            w.blocked_until = Some(w.blocked_until.map_or(now + wait, |b| b.max(now + wait)));
        }
    }

    /// Gives back a request that was never answered (connection failure).
    pub fn abandon(&self) {
        let mut w = self.lock();
        w.in_flight = w.in_flight.saturating_sub(1);
    }
}
