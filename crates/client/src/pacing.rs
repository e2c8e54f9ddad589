//! Staying under the upstream's rate limit, and using it fully.
//!
//! Pipedrive limits each token to `x-ratelimit-limit` requests per rolling 2-second window,
//! counting a request when it arrives (a hub does the same: `crates/hub/src/rate_limit.rs`). The
//! pacer learns the limit from the first answer (sending one request alone until then), then
//! holds one slot per request for as long as the upstream may still count it, and sends only
//! while fewer than the limit are held. That uses the whole limit without provoking 429s. After a
//! 429 anyway (another client on the same token, a daily budget used up) it waits as long as the
//! upstream said.
//!
//! Requests are also spread evenly, one per `WINDOW / limit`, rather than sent in bursts of the
//! whole limit: a burst queues inside the upstream (a hub makes each receive durable before
//! answering), which delays every answer and so every slot's reuse; spread out, each answer comes
//! back within a few milliseconds and the slots turn over at nearly the window's pace.
//!
//! How long a slot is held: the upstream counted the request at some moment between our sending
//! it and its answer arriving, so the slot is surely free [`WINDOW`] after a quick answer. A
//! request answered later (the upstream counts on arrival, then works: a hub's durable write
//! under load can take 100 ms) or never is held [`WINDOW`] plus [`JITTER`] after it was sent:
//! the next request would then reach the upstream too early only if it travelled more than
//! [`JITTER`] faster than this one. Holding until the slow answer instead would let the
//! upstream's processing time, not the limit, set the pace.

use std::sync::Mutex;
use std::time::Duration;

use reqwest::header::HeaderMap;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Pipedrive's burst window (contract §4).
const WINDOW: Duration = Duration::from_secs(2);

/// How much faster one request may travel to the upstream than an earlier one whose slot it
/// takes, for a request whose answer comes later than this after sending (a slow upstream, a
/// long network path). Answers quicker than this bound the slot exactly instead. It costs at
/// most 25 ms per 2-second window (1.2%) against a slow upstream; a 429 if it is exceeded anyway
/// is waited out as the upstream says.
const JITTER: Duration = Duration::from_millis(25);

/// After a 429 the margin doubles, up to this: the upstream counted a request sooner after an
/// earlier one than [`JITTER`] allows for (a loaded machine can delay its reading of a request by
/// tens of milliseconds). Each success then takes [`MARGIN_DECAY`] off again, down to [`JITTER`],
/// so one hiccup costs a few seconds of a slightly slower pace, not a 429 a window.
const MAX_MARGIN: Duration = Duration::from_millis(200);
const MARGIN_DECAY: Duration = Duration::from_micros(100);

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

/// One request the upstream may still be counting in its window.
#[derive(Debug, Clone, Copy)]
struct Slot {
    ticket: u64,
    /// From then on the upstream surely no longer counts it.
    free_at: Instant,
    /// Our requests the upstream may have been counting when this one was sent, itself
    /// included: at least as many of ours as it counted when this one arrived (see
    /// [`Window::spent_by_us`]).
    ours_at_send: usize,
}

#[derive(Debug)]
struct Window {
    limit: Limit,
    /// The requests the upstream may still count (a handful to a few hundred: scanned, not
    /// indexed).
    held: Vec<Slot>,
    next_ticket: u64,
    /// When the last request was due to go (by the even spread; it went then or a little later):
    /// the next is due `WINDOW / limit` after it. Counted from when it was due, not when it went,
    /// so that timer and scheduling delays do not add up from one request to the next.
    last_due: Option<Instant>,
    /// A request is out while the limit is unknown.
    probing: bool,
    /// No request before this (after a 429).
    blocked_until: Option<Instant>,
    /// How much faster a request may reach the upstream than an earlier one: [`JITTER`], more
    /// for a while after a 429.
    margin: Duration,
}

impl Window {
    /// Holds a slot for a request sent `now`, which was due at `due` by the even spread.
    fn take_slot(&mut self, now: Instant, due: Instant) -> Ticket {
        self.next_ticket += 1;
        self.last_due = Some(due);
        let ours_at_send = self.held.iter().filter(|slot| slot.free_at > now).count() + 1;
        self.held.push(Slot {
            ticket: self.next_ticket,
            free_at: now + WINDOW + self.margin,
            ours_at_send,
        });
        Ticket(Some(self.next_ticket))
    }

    /// Whether our own requests alone can fill the upstream's window as it was when the request
    /// answered `x-ratelimit-remaining: 0` arrived. Judged as of that request's sending, not of
    /// its answer: each request of ours the upstream counted then holds its slot until at least
    /// two seconds after its own arrival, so it was held when this one was sent; but by the
    /// time the answer comes back, slots of quicker answers may have freed. (Judged at the
    /// answer, a window we filled ourselves looked spent by someone else whenever an answer
    /// came back slower than the one a window before it, and every request was held for a
    /// whole `x-ratelimit-reset`, a second or more: the stalls of bench/relay.sh b.)
    fn spent_by_us(&self, ticket: Option<u64>, now: Instant) -> bool {
        let Limit::PerWindow(limit) = self.limit else {
            return false;
        };
        let ours = match self.held.iter().find(|slot| Some(slot.ticket) == ticket) {
            Some(slot) => slot.ours_at_send,
            // Its slot already lapsed (an answer slower than the window): count those held now.
            None => self.held.iter().filter(|slot| slot.free_at > now).count(),
        };
        ours >= limit as usize
    }
}

/// The slot a request holds, given back to [`Pacer::observe`] or [`Pacer::abandon`] (none when
/// the upstream has no limit).
#[derive(Debug)]
#[must_use = "give the ticket back to observe or abandon"]
pub struct Ticket(Option<u64>);

impl Ticket {
    /// Gives the ticket back: its slot's number, if it holds one.
    fn redeem(self) -> Option<u64> {
        self.0
    }
}

/// Shared by every request of one client.
#[derive(Debug)]
pub struct Pacer {
    window: Mutex<Window>,
    /// Waiters take turns, first come first served: only the first one sleeps on the window,
    /// instead of every waiting request waking at each free slot to find it taken.
    turn: tokio::sync::Mutex<()>,
    /// An answer freed a slot sooner than the waiter's sleep assumed.
    freed: Notify,
}

impl Default for Pacer {
    fn default() -> Self {
        Self {
            turn: tokio::sync::Mutex::new(()),
            freed: Notify::new(),
            window: Mutex::new(Window {
                limit: Limit::Unknown,
                held: Vec::new(),
                next_ticket: 0,
                last_due: None,
                probing: false,
                blocked_until: None,
                margin: JITTER,
            }),
        }
    }
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

    /// Waits until a request may be sent, and holds a slot for it; or, when that would take
    /// longer than [`MAX_WAIT`], answers how long at once.
    pub async fn acquire(&self) -> Result<Ticket, Duration> {
        let _turn = self.turn.lock().await;
        loop {
            // Registered before looking, so that a slot freed meanwhile still wakes us.
            let freed = self.freed.notified();
            let wait = {
                let mut w = self.lock();
                let now = Instant::now();
                if let Some(until) = w.blocked_until.filter(|u| *u > now) {
                    Err(until - now)
                } else {
                    w.blocked_until = None;
                    match w.limit {
                        Limit::None => Ok(Ticket(None)),
                        Limit::Unknown if w.probing => Err(Duration::from_millis(5)),
                        Limit::Unknown => {
                            w.probing = true;
                            Ok(w.take_slot(now, now))
                        }
                        Limit::PerWindow(limit) => {
                            w.held.retain(|slot| slot.free_at > now);
                            let spacing = WINDOW / limit;
                            let due = w.last_due.map(|last| last + spacing);
                            if let Some(due) = due.filter(|due| *due > now) {
                                Err(due - now)
                            } else if w.held.len() < limit as usize {
                                // Late by less than the spacing: on schedule. Later (idle, or
                                // held by a full window): the schedule starts again from now.
                                let due = due
                                    .filter(|due| now.duration_since(*due) < spacing)
                                    .unwrap_or(now);
                                Ok(w.take_slot(now, due))
                            } else {
                                let soonest = w.held.iter().map(|slot| slot.free_at).min();
                                Err(soonest.expect("the window is full") - now)
                            }
                        }
                    }
                }
            };
            match wait {
                Ok(ticket) => return Ok(ticket),
                Err(wait) if wait > MAX_WAIT => return Err(wait),
                Err(wait) => {
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = freed => {}
                    }
                }
            }
        }
    }

    /// Learns from an answer: frees its slot sooner, learns the limit from its headers, and how
    /// long to wait after a 429.
    pub fn observe(
        &self,
        ticket: Ticket,
        status: u16,
        headers: &HeaderMap,
        retry_after: Option<Duration>,
    ) {
        let mut w = self.lock();
        let now = Instant::now();
        w.probing = false;
        let ticket = ticket.redeem();
        if let Some(slot) = w.held.iter_mut().find(|slot| Some(slot.ticket) == ticket) {
            slot.free_at = slot.free_at.min(now + WINDOW);
        }
        w.limit = match header::<u32>(headers, "x-ratelimit-limit") {
            Some(limit) if limit > 0 => Limit::PerWindow(limit),
            // Only a success says the upstream has no limit; an error page (a proxy's 502, a
            // 401) may simply lack the headers.
            _ if (200..300).contains(&status) => Limit::None,
            _ => w.limit,
        };
        let spent_by_us = w.spent_by_us(ticket, now);
        w.margin = if status == 429 {
            (w.margin * 2).min(MAX_MARGIN)
        } else if (200..300).contains(&status) {
            w.margin.saturating_sub(MARGIN_DECAY).max(JITTER)
        } else {
            w.margin
        };
        let hold = if status == 429 {
            tracing::info!(wait = ?retry_after, "upstream answered 429; holding requests");
            Some(retry_after.unwrap_or(WINDOW).min(MAX_429_HOLD))
        } else if header::<u32>(headers, "x-ratelimit-remaining") == Some(0) && !spent_by_us {
            // A window we did not fill ourselves: someone else uses the same token. Wait for
            // the reset rather than earn a 429.
            let reset = header::<u64>(headers, "x-ratelimit-reset").map(Duration::from_secs);
            tracing::debug!(wait = ?reset, "upstream says the window is spent; holding requests");
            Some(reset.unwrap_or(WINDOW).min(MAX_WINDOW_HOLD))
        } else {
            None
        };
        if let Some(hold) = hold {
            let until = now + hold;
            w.blocked_until = Some(w.blocked_until.map_or(until, |b| b.max(until)));
        }
        drop(w);
        self.freed.notify_waiters();
    }

    /// How many requests may go within `span` at most, by what the pacer knows now: the limit
    /// per window spread over `span` (at least one), one while the limit is unknown (one request
    /// probes it alone), and no bound without a limit. A caller that reserves calls for a while
    /// (the relay's lease) takes no more than this, so none waits in the pacer past the
    /// reservation.
    pub fn capacity(&self, span: Duration) -> usize {
        match self.lock().limit {
            Limit::Unknown => 1,
            Limit::None => usize::MAX,
            Limit::PerWindow(limit) => {
                let windows = span.as_secs_f64() / WINDOW.as_secs_f64();
                ((f64::from(limit) * windows) as usize).max(1)
            }
        }
    }

    /// A request that got no answer (connection failure): its slot stays held as sent (it may
    /// have arrived), and the next request may probe again.
    pub fn abandon(&self, ticket: Ticket) {
        // The slot stays held until it lapses by itself.
        let _slot = ticket.redeem();
        self.lock().probing = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit_headers(limit: u32, remaining: u32) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("x-ratelimit-limit", limit.into());
        headers.insert("x-ratelimit-remaining", remaining.into());
        headers.insert("x-ratelimit-reset", 2.into());
        headers
    }

    /// A pacer that has learned `limit` from one answered probe, sent at the returned instant.
    async fn learned(limit: u32) -> (Pacer, Instant) {
        let pacer = Pacer::default();
        let sent = Instant::now();
        let probe = pacer.acquire().await.unwrap();
        pacer.observe(probe, 200, &limit_headers(limit, limit - 1), None);
        (pacer, sent)
    }

    #[tokio::test(start_paused = true)]
    async fn uses_the_whole_limit_spread_evenly_and_reuses_a_slot_a_window_after_its_answer() {
        let (pacer, start) = learned(10).await;
        for n in 1..10 {
            let ticket = pacer.acquire().await.unwrap();
            assert_eq!(Instant::now() - start, n * WINDOW / 10, "one every 200 ms");
            pacer.observe(ticket, 200, &limit_headers(10, 1), None);
        }
        let _eleventh = pacer.acquire().await.unwrap();
        assert_eq!(
            Instant::now() - start,
            WINDOW,
            "the eleventh waits exactly until the first answer's window is over"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_unanswered_request_holds_its_slot_a_window_and_the_jitter_margin() {
        let (pacer, start) = learned(2).await;
        let lost = pacer.acquire().await.unwrap();
        pacer.abandon(lost);
        let _first_reuse = pacer.acquire().await.unwrap();
        assert_eq!(Instant::now() - start, WINDOW, "the probe's slot, answered");
        let _second_reuse = pacer.acquire().await.unwrap();
        assert_eq!(
            Instant::now() - start,
            // Sent half a window after the probe (two per window, spread evenly).
            WINDOW / 2 + WINDOW + JITTER,
            "the lost request's slot: it may have arrived late"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_window_filled_by_our_own_requests_does_not_hold_beyond_it() {
        let (pacer, start) = learned(2).await;
        let second = pacer.acquire().await.unwrap();
        let mut spent = limit_headers(2, 0);
        // A reset far beyond the window: holding for it would show.
        spent.insert("x-ratelimit-reset", 5.into());
        pacer.observe(second, 200, &spent, None);
        let _third = pacer.acquire().await.unwrap();
        assert_eq!(Instant::now() - start, WINDOW);
    }

    #[tokio::test(start_paused = true)]
    async fn a_window_we_filled_is_ours_though_a_quicker_answers_slot_freed_before_the_last_answer()
    {
        let (pacer, start) = learned(2).await;
        let second = pacer.acquire().await.unwrap();
        // Answered at once: its slot frees a window later, at 3 s.
        pacer.observe(second, 200, &limit_headers(2, 1), None);
        let third = pacer.acquire().await.unwrap();
        assert_eq!(Instant::now() - start, WINDOW, "the probe's slot");
        // Answered slowly, after the second's slot freed, saying the window is spent: by the
        // second and the third, both ours.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let mut spent = limit_headers(2, 0);
        spent.insert("x-ratelimit-reset", 5.into());
        pacer.observe(third, 200, &spent, None);
        let _fourth = pacer.acquire().await.unwrap();
        assert_eq!(
            Instant::now() - start,
            Duration::from_millis(3500),
            "not held for the reset"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn capacity_is_the_limit_spread_over_the_span_one_while_unknown() {
        let pacer = Pacer::default();
        assert_eq!(pacer.capacity(Duration::from_secs(30)), 1, "unknown");
        let probe = pacer.acquire().await.unwrap();
        pacer.observe(probe, 200, &limit_headers(80, 79), None);
        assert_eq!(pacer.capacity(Duration::from_secs(30)), 1200);
        assert_eq!(pacer.capacity(Duration::from_millis(10)), 1, "at least one");
        let unlimited = Pacer::default();
        let probe = unlimited.acquire().await.unwrap();
        unlimited.observe(probe, 200, &HeaderMap::new(), None);
        assert_eq!(unlimited.capacity(Duration::from_secs(30)), usize::MAX);
    }

    #[tokio::test(start_paused = true)]
    async fn a_window_spent_by_someone_else_holds_until_its_reset() {
        let pacer = Pacer::default();
        let probe = pacer.acquire().await.unwrap();
        pacer.observe(probe, 200, &limit_headers(80, 0), None);
        let start = Instant::now();
        let ticket = pacer.acquire().await.unwrap();
        assert!(Instant::now() - start >= Duration::from_secs(2));

        pacer.observe(ticket, 200, &limit_headers(80, 5), None);
        let start = Instant::now();
        let _ticket = pacer.acquire().await.unwrap();
        assert_eq!(
            Instant::now() - start,
            WINDOW / 80,
            "a window with room holds only for the even spread"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_holds_every_request_for_the_time_given() {
        let pacer = Pacer::default();
        let probe = pacer.acquire().await.unwrap();
        pacer.observe(probe, 429, &HeaderMap::new(), Some(Duration::from_secs(5)));
        let start = Instant::now();
        let _ticket = pacer.acquire().await.unwrap();
        assert!(Instant::now() - start >= Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn after_a_429_an_unanswered_request_holds_its_slot_with_a_wider_margin_for_a_while() {
        let (pacer, _) = learned(2).await;
        let refused = pacer.acquire().await.unwrap();
        pacer.observe(refused, 429, &limit_headers(2, 0), Some(WINDOW));
        let lost = pacer.acquire().await.unwrap();
        let sent = Instant::now();
        pacer.abandon(lost);
        let _next = pacer.acquire().await.unwrap();
        let _reuse = pacer.acquire().await.unwrap();
        assert_eq!(
            Instant::now() - sent,
            WINDOW + 2 * JITTER,
            "the lost request's slot, with the margin doubled"
        );
        for _ in 0..1000 {
            pacer.observe(Ticket(None), 200, &limit_headers(2, 1), None);
        }
        assert_eq!(pacer.lock().margin, JITTER, "back to the usual margin");
    }

    #[tokio::test(start_paused = true)]
    async fn a_long_hold_is_answered_at_once_and_capped() {
        let pacer = Pacer::default();
        let probe = pacer.acquire().await.unwrap();
        pacer.observe(
            probe,
            429,
            &HeaderMap::new(),
            Some(Duration::from_secs(3600)),
        );
        let start = Instant::now();
        let wait = pacer.acquire().await.unwrap_err();
        assert_eq!(Instant::now(), start, "no waiting inside the client");
        assert!(wait > Duration::from_secs(3590) && wait <= Duration::from_secs(3600));
        pacer.observe(
            Ticket(None),
            429,
            &HeaderMap::new(),
            Some(Duration::from_secs(u64::MAX / 4)),
        );
        assert!(pacer.acquire().await.unwrap_err() <= MAX_429_HOLD);
    }

    #[tokio::test(start_paused = true)]
    async fn an_error_page_without_headers_keeps_the_learned_limit() {
        let (pacer, start) = learned(2).await;
        let failed = pacer.acquire().await.unwrap();
        pacer.observe(failed, 502, &HeaderMap::new(), None);
        let _ticket = pacer.acquire().await.unwrap();
        assert!(Instant::now() - start >= WINDOW, "still paced");
    }
}
