//! Staying under the upstream's rate limit, and using it fully.
//!
//! Pipedrive limits each token to `x-ratelimit-limit` requests per rolling 2-second window. The
//! pacer learns the limit from the first answer (sending one request alone until then), then
//! keeps its own log of send times and never has more than the limit, less a small margin for
//! network jitter, in any 2 seconds. That uses the window fully without provoking 429s. After a
//! 429 anyway (another client on the same token, a daily budget used up) it waits as long as
//! the upstream said.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use reqwest::header::HeaderMap;
use tokio::time::Instant;

/// Pipedrive's burst window (contract §4), plus a margin: the upstream counts a request when it
/// arrives, a little after we send it, so a slot is reused only once it has expired there even
/// if this request travels up to 50 ms faster than the one that freed the slot (and the budget
/// keeps one more request in hand beyond that).
const WINDOW: Duration = Duration::from_millis(2_050);

/// The longest a request waits inside the client. A longer hold (a 429 with a long Retry-After,
/// a spent daily budget) is answered at once instead, so the caller can put the call back in
/// line for later rather than sit on it (and on its outbox lease).
pub const MAX_WAIT: Duration = Duration::from_secs(10);

/// Bounds on what the upstream's headers can make us hold: a spent burst window resets within
/// seconds, a daily budget within a day; anything longer is a misread header.
const MAX_WINDOW_HOLD: Duration = Duration::from_secs(60);
const MAX_429_HOLD: Duration = Duration::from_secs(24 * 60 * 60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Limit {
    /// No answer yet: one request at a time until one tells.
    Unknown,
    /// The upstream sends no rate-limit headers.
    None,
    /// Requests per window.
    PerWindow(u32),
}

#[derive(Debug)]
struct Window {
    limit: Limit,
    /// When each request of the last window was sent.
    sent: VecDeque<Instant>,
    /// A request is out while the limit is unknown.
    probing: bool,
    /// No request before this (after a 429).
    blocked_until: Option<Instant>,
}

/// Shared by every request of one client.
#[derive(Debug)]
pub struct Pacer {
    window: Mutex<Window>,
    /// Waiters take turns, first come first served: only the first one sleeps on the window,
    /// instead of every waiting request waking at each free slot to find it taken.
    turn: tokio::sync::Mutex<()>,
}

impl Default for Pacer {
    fn default() -> Self {
        Self {
            turn: tokio::sync::Mutex::new(()),
            window: Mutex::new(Window {
                limit: Limit::Unknown,
                sent: VecDeque::new(),
                probing: false,
                blocked_until: None,
            }),
        }
    }
}

fn header<T: std::str::FromStr>(headers: &HeaderMap, name: &str) -> Option<T> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

/// The requests per window to allow ourselves: the limit less 2% (at least one) for jitter.
fn budget(limit: u32) -> usize {
    (limit - (limit / 50).max(1).min(limit - 1)) as usize
}

impl Pacer {
    fn lock(&self) -> std::sync::MutexGuard<'_, Window> {
        self.window
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Waits until a request may be sent, and records it; or, when that would take longer than
    /// [`MAX_WAIT`], answers how long at once.
    pub async fn acquire(&self) -> Result<(), Duration> {
        let _turn = self.turn.lock().await;
        loop {
            let wait = {
                let mut w = self.lock();
                let now = Instant::now();
                if let Some(until) = w.blocked_until.filter(|u| *u > now) {
                    Some(until - now)
                } else {
                    w.blocked_until = None;
                    match w.limit {
                        Limit::None => None,
                        Limit::Unknown if w.probing => Some(Duration::from_millis(5)),
                        Limit::Unknown => {
                            w.probing = true;
                            w.sent.push_back(now);
                            None
                        }
                        Limit::PerWindow(limit) => {
                            while w
                                .sent
                                .front()
                                .is_some_and(|t| now.duration_since(*t) >= WINDOW)
                            {
                                w.sent.pop_front();
                            }
                            if w.sent.len() < budget(limit) {
                                w.sent.push_back(now);
                                None
                            } else {
                                let oldest = *w.sent.front().expect("the window is full");
                                Some(oldest + WINDOW - now)
                            }
                        }
                    }
                }
            };
            match wait {
                None => return Ok(()),
                Some(wait) if wait > MAX_WAIT => return Err(wait),
                Some(wait) => tokio::time::sleep(wait).await,
            }
        }
    }

    /// Learns from an answer: the limit from its headers, and how long to wait after a 429.
    pub fn observe(&self, status: u16, headers: &HeaderMap, retry_after: Option<Duration>) {
        let mut w = self.lock();
        w.probing = false;
        w.limit = match header::<u32>(headers, "x-ratelimit-limit") {
            Some(limit) if limit > 0 => Limit::PerWindow(limit),
            // Only a success says the upstream has no limit; an error page (a proxy's 502, a
            // 401) may simply lack the headers.
            _ if (200..300).contains(&status) => Limit::None,
            _ => w.limit,
        };
        let hold = if status == 429 {
            tracing::info!(wait = ?retry_after, "upstream answered 429; holding requests");
            Some(retry_after.unwrap_or(WINDOW).min(MAX_429_HOLD))
        } else if header::<u32>(headers, "x-ratelimit-remaining") == Some(0) {
            // Our own log keeps a request in hand, so a spent window means someone else uses
            // the same token: wait for the reset rather than earn a 429.
            let reset = header::<u64>(headers, "x-ratelimit-reset").map(Duration::from_secs);
            tracing::debug!(wait = ?reset, "upstream says the window is spent; holding requests");
            Some(reset.unwrap_or(WINDOW).min(MAX_WINDOW_HOLD))
        } else {
            None
        };
        if let Some(hold) = hold {
            let until = Instant::now() + hold;
            w.blocked_until = Some(w.blocked_until.map_or(until, |b| b.max(until)));
        }
    }

    /// A request that got no answer (connection failure): let the next one probe again.
    pub fn abandon(&self) {
        self.lock().probing = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_a_margin_below_the_limit() {
        assert_eq!(budget(80), 79);
        assert_eq!(budget(100), 98);
        assert_eq!(budget(1), 1);
        assert_eq!(budget(2), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn never_sends_more_than_the_budget_in_any_window() {
        let pacer = Pacer::default();
        let mut headers = HeaderMap::new();
        headers.insert("x-ratelimit-limit", "10".parse().unwrap());
        pacer.acquire().await.unwrap();
        pacer.observe(200, &headers, None);
        let start = Instant::now();
        for _ in 0..(budget(10) - 1) {
            pacer.acquire().await.unwrap();
        }
        assert_eq!(
            Instant::now(),
            start,
            "the first window's budget goes at once"
        );
        pacer.acquire().await.unwrap();
        assert!(
            Instant::now() - start >= Duration::from_millis(1900),
            "then it waits"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_window_spent_by_someone_else_holds_until_its_reset() {
        let pacer = Pacer::default();
        let mut headers = HeaderMap::new();
        headers.insert("x-ratelimit-limit", "80".parse().unwrap());
        headers.insert("x-ratelimit-remaining", "0".parse().unwrap());
        headers.insert("x-ratelimit-reset", "2".parse().unwrap());
        pacer.acquire().await.unwrap();
        pacer.observe(200, &headers, None);
        let start = Instant::now();
        pacer.acquire().await.unwrap();
        assert!(Instant::now() - start >= Duration::from_secs(2));

        headers.insert("x-ratelimit-remaining", "5".parse().unwrap());
        pacer.observe(200, &headers, None);
        let start = Instant::now();
        pacer.acquire().await.unwrap();
        assert_eq!(Instant::now(), start, "a window with room does not hold");
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_holds_every_request_for_the_time_given() {
        let pacer = Pacer::default();
        pacer.acquire().await.unwrap();
        pacer.observe(429, &HeaderMap::new(), Some(Duration::from_secs(5)));
        let start = Instant::now();
        pacer.acquire().await.unwrap();
        assert!(Instant::now() - start >= Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn a_long_hold_is_answered_at_once_and_capped() {
        let pacer = Pacer::default();
        pacer.acquire().await.unwrap();
        pacer.observe(429, &HeaderMap::new(), Some(Duration::from_secs(3600)));
        let start = Instant::now();
        let wait = pacer.acquire().await.unwrap_err();
        assert_eq!(Instant::now(), start, "no waiting inside the client");
        assert!(wait > Duration::from_secs(3590) && wait <= Duration::from_secs(3600));
        pacer.observe(
            429,
            &HeaderMap::new(),
            Some(Duration::from_secs(u64::MAX / 4)),
        );
        assert!(pacer.acquire().await.unwrap_err() <= MAX_429_HOLD);
    }

    #[tokio::test(start_paused = true)]
    async fn an_error_page_without_headers_keeps_the_learned_limit() {
        let pacer = Pacer::default();
        let mut headers = HeaderMap::new();
        headers.insert("x-ratelimit-limit", "2".parse().unwrap());
        pacer.acquire().await.unwrap();
        pacer.observe(200, &headers, None);
        pacer.observe(502, &HeaderMap::new(), None);
        let start = Instant::now();
        pacer.acquire().await.unwrap();
        assert!(
            Instant::now() - start >= Duration::from_secs(2),
            "still paced"
        );
    }
}
