//! Rate limiting like Pipedrive's: a burst limit per token over a rolling 2-second window, and an
//! optional daily token budget where each operation costs what the contract says.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use pdchannels_store::{RateUsage, Store};

use crate::auth::TokenId;
use crate::error::ApiError;

/// Pipedrive's burst window.
const WINDOW: Duration = Duration::from_secs(2);

/// The limits to enforce; both off by default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateLimits {
    /// Requests per token per 2-second window.
    pub per_window: Option<u32>,
    /// Tokens (cost units) per API token per UTC day.
    pub daily_budget: Option<u64>,
}

impl RateLimits {
    /// Whether any limit is on.
    pub fn enabled(&self) -> bool {
        self.per_window.is_some() || self.daily_budget.is_some()
    }

    /// Parses `N/2s` (the only window Pipedrive documents; `N` alone means the same).
    pub fn parse_burst(text: &str) -> Result<u32, String> {
        let count = text.strip_suffix("/2s").unwrap_or(text);
        match count.trim().parse::<u32>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!(
                "expected a rate like `80/2s` (requests per token per 2-second window), got {text:?}"
            )),
        }
    }
}

/// The contract's token cost of a request (`x-token-cost` in the OpenAPI spec).
fn cost(method: &Method, path: &str) -> u64 {
    match *method {
        Method::POST => 10,
        Method::DELETE => 6,
        // Our read API: Pipedrive's generic cost of a list.
        _ if path.ends_with("/conversations") || path.ends_with("/channels") => 20,
        _ => 2,
    }
}

/// The token cost of an MCP tool call: its REST route's.
pub fn tool_cost(tool: &str) -> Option<u64> {
    match tool {
        "channels_receive_message" | "channels_create" => Some(cost(&Method::POST, "")),
        "channels_delete" | "channels_delete_conversation" => Some(cost(&Method::DELETE, "")),
        _ => None,
    }
}

/// Milliseconds since the Unix epoch, UTC.
type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// Where the counters live.
#[derive(Clone)]
enum Counters {
    /// In this process: one hub serves a SQLite file.
    Memory {
        usage: Arc<Mutex<HashMap<Arc<str>, RateUsage>>>,
        /// The system clock; a test seam so unit tests can cross UTC midnight without waiting.
        clock: Clock,
    },
    /// In the shared PostgreSQL database, so every hub on it counts together (and by the
    /// database's clock).
    Shared(Store),
}

/// The counters of every token.
#[derive(Clone)]
pub struct RateLimiter {
    limits: RateLimits,
    counters: Counters,
}

/// What the limiter decided for one request, and the headers it implies.
pub struct Decision {
    pub allowed: Result<(), ApiError>,
    limit: Option<u32>,
    remaining: Option<u32>,
    reset_secs: u64,
    daily: Option<(u64, u64)>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl RateLimiter {
    /// A limiter over `store`'s counters where the store shares them (PostgreSQL), or over this
    /// process's own.
    pub fn new(limits: RateLimits, store: &Store) -> Self {
        if store.shares_rate_limits() {
            Self {
                limits,
                counters: Counters::Shared(store.clone()),
            }
        } else {
            Self::in_memory(limits, now_ms)
        }
    }

    /// A limiter counting in this process's memory, reading the time from `clock`.
    fn in_memory(limits: RateLimits, clock: impl Fn() -> u64 + Send + Sync + 'static) -> Self {
        Self {
            limits,
            counters: Counters::Memory {
                usage: Arc::default(),
                clock: Arc::new(clock),
            },
        }
    }

    /// Counts a request of `cost` against `token` if it is within the limits.
    pub async fn decide(&self, token: &Arc<str>, cost: u64) -> Decision {
        let limits = self.limits;
        match &self.counters {
            Counters::Memory { usage, clock } => {
                let now = clock();
                let mut usage = usage
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                apply_limits(limits, usage.entry(token.clone()).or_default(), now, cost)
            }
            Counters::Shared(store) => match store
                .update_rate_usage(token, |usage, now| apply_limits(limits, usage, now, cost))
                .await
            {
                Ok(Some(decision)) => decision,
                // A database that cannot count cannot serve the request either.
                Ok(None) => unreachable!("a store that shares rate limits counts them"),
                Err(e) => Decision {
                    allowed: Err(e.into()),
                    limit: None,
                    remaining: None,
                    reset_secs: 0,
                    daily: None,
                },
            },
        }
    }
}

/// The rule, wherever the counters live: admits a request of `cost` at `now` (ms since the
/// epoch) if `u` has room in the rolling window and in the day's budget, and counts it.
fn apply_limits(limits: RateLimits, u: &mut RateUsage, now: u64, cost: u64) -> Decision {
    let window_ms = WINDOW.as_millis() as u64;
    let day = now / 86_400_000;
    let expired = u
        .admitted_ms
        .iter()
        .take_while(|&&t| now >= t + window_ms)
        .count();
    u.admitted_ms.drain(..expired);
    if u.day != day {
        u.day = day;
        u.spent_today = 0;
    }
    let in_window = u32::try_from(u.admitted_ms.len()).unwrap_or(u32::MAX);
    // Seconds until the oldest request leaves the window and frees a slot.
    let window_reset = u
        .admitted_ms
        .first()
        .map_or(window_ms, |oldest| (oldest + window_ms).saturating_sub(now))
        .div_ceil(1000)
        .max(1);
    let day_reset = ((day + 1) * 86_400_000 - now).div_ceil(1000);

    let mut allowed = Ok(());
    if let Some(budget) = limits.daily_budget
        && u.spent_today + cost > budget
    {
        allowed = Err(ApiError::OverLimit {
            reset_secs: day_reset,
            daily: true,
        });
    } else if let Some(limit) = limits.per_window
        && in_window >= limit
    {
        allowed = Err(ApiError::OverLimit {
            reset_secs: window_reset,
            daily: false,
        });
    }
    if allowed.is_ok() {
        if limits.per_window.is_some() {
            u.admitted_ms.push(now);
        }
        u.spent_today += cost;
    }
    let in_window = u32::try_from(u.admitted_ms.len()).unwrap_or(u32::MAX);
    Decision {
        allowed,
        limit: limits.per_window,
        remaining: limits.per_window.map(|l| l.saturating_sub(in_window)),
        reset_secs: window_reset,
        daily: limits
            .daily_budget
            .map(|b| (b, b.saturating_sub(u.spent_today))),
    }
}

/// Counts the request against its token and adds the `x-ratelimit-*` headers to the answer.
pub async fn enforce(State(limiter): State<RateLimiter>, request: Request, next: Next) -> Response {
    let Some(token) = request.extensions().get::<TokenId>().map(|t| t.0.clone()) else {
        return next.run(request).await;
    };
    let mut decision = limiter
        .decide(&token, cost(request.method(), request.uri().path()))
        .await;
    let mut response = match std::mem::replace(&mut decision.allowed, Ok(())) {
        Ok(()) => next.run(request).await,
        Err(e) => e.into_response(),
    };
    decision.set_headers(response.headers_mut());
    response
}

impl Decision {
    /// The `x-ratelimit-*` headers of this decision.
    pub fn set_headers(&self, headers: &mut axum::http::HeaderMap) {
        if let (Some(limit), Some(remaining)) = (self.limit, self.remaining) {
            headers.insert("x-ratelimit-limit", HeaderValue::from(limit));
            headers.insert("x-ratelimit-remaining", HeaderValue::from(remaining));
            headers.insert("x-ratelimit-reset", HeaderValue::from(self.reset_secs));
        }
        if let Some((budget, left)) = self.daily {
            headers.insert("x-daily-ratelimit-token-limit", HeaderValue::from(budget));
            headers.insert("x-daily-ratelimit-token-remaining", HeaderValue::from(left));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_burst_rates() {
        assert_eq!(RateLimits::parse_burst("80/2s"), Ok(80));
        assert_eq!(RateLimits::parse_burst("40"), Ok(40));
        assert!(RateLimits::parse_burst("0/2s").is_err());
        assert!(RateLimits::parse_burst("80/1m").is_err());
    }

    #[test]
    fn costs_follow_the_contract() {
        assert_eq!(cost(&Method::POST, "/v1/channels/messages/receive"), 10);
        assert_eq!(cost(&Method::POST, "/v1/channels"), 10);
        assert_eq!(cost(&Method::DELETE, "/v1/channels/x"), 6);
        assert_eq!(tool_cost("channels_receive_message"), Some(10));
        assert_eq!(tool_cost("channels_create"), Some(10));
        assert_eq!(tool_cost("channels_delete_conversation"), Some(6));
        assert_eq!(tool_cost("no_such_tool"), None);
        // Reads: a list costs 20, one conversation 2.
        assert_eq!(cost(&Method::GET, "/v1/channels"), 20);
        assert_eq!(cost(&Method::GET, "/v1/channels/wa/conversations"), 20);
        assert_eq!(cost(&Method::GET, "/v1/channels/wa/conversations/c1"), 2);
    }

    #[tokio::test]
    async fn the_daily_budget_resets_at_midnight_utc() {
        use std::sync::atomic::{AtomicU64, Ordering};
        const DAY_MS: u64 = 86_400_000;
        // 2025-11-28T23:59:59.000Z.
        let before_midnight = 20_420 * DAY_MS + DAY_MS - 1_000;
        let now = Arc::new(AtomicU64::new(before_midnight));
        let clock = now.clone();
        let limiter = RateLimiter::in_memory(
            RateLimits {
                per_window: None,
                daily_budget: Some(20),
            },
            move || clock.load(Ordering::SeqCst),
        );
        let token: Arc<str> = "t".into();
        assert!(limiter.decide(&token, 20).await.allowed.is_ok());
        let refused = limiter.decide(&token, 2).await;
        assert!(matches!(
            refused.allowed,
            Err(ApiError::OverLimit {
                daily: true,
                reset_secs: 1
            })
        ));
        // One millisecond before midnight: still spent.
        now.store(before_midnight + 999, Ordering::SeqCst);
        assert!(limiter.decide(&token, 2).await.allowed.is_err());
        // Midnight UTC: the whole budget again.
        now.store(before_midnight + 1_000, Ordering::SeqCst);
        let fresh = limiter.decide(&token, 2).await;
        assert!(fresh.allowed.is_ok());
        assert_eq!(fresh.daily, Some((20, 18)));
    }

    #[tokio::test]
    async fn the_window_admits_the_limit_then_refuses() {
        let limiter = RateLimiter::in_memory(
            RateLimits {
                per_window: Some(3),
                daily_budget: None,
            },
            now_ms,
        );
        let token: Arc<str> = "t".into();
        for left in [2, 1, 0] {
            let d = limiter.decide(&token, 10).await;
            assert!(d.allowed.is_ok());
            assert_eq!(d.remaining, Some(left));
        }
        assert!(limiter.decide(&token, 10).await.allowed.is_err());
        let other: Arc<str> = "u".into();
        assert!(
            limiter.decide(&other, 10).await.allowed.is_ok(),
            "limits are per token"
        );
    }

    #[tokio::test]
    async fn the_daily_budget_counts_costs() {
        let limiter = RateLimiter::in_memory(
            RateLimits {
                per_window: None,
                daily_budget: Some(25),
            },
            now_ms,
        );
        let token: Arc<str> = "t".into();
        assert!(limiter.decide(&token, 10).await.allowed.is_ok());
        assert!(limiter.decide(&token, 10).await.allowed.is_ok());
        let refused = limiter.decide(&token, 10).await;
        assert!(matches!(
            refused.allowed,
            Err(ApiError::OverLimit { daily: true, .. })
        ));
        assert_eq!(refused.daily, Some((25, 5)));
        assert!(
            limiter.decide(&token, 2).await.allowed.is_ok(),
            "a cheaper request still fits"
        );
    }
}
