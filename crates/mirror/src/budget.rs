//! The token budget (research §5, §6.7): what each call costs, the mirror's share of the
//! company's daily budget (`--mirror-budget`), and how long a conversation waits between flushes
//! given what is left.
//!
//! Pipedrive's daily budget is per company and shared by every integration; it resets at the
//! server's midnight, not the company's. The mirror keeps its own ledger (what it spent by the
//! cost table) and reads the company's remaining budget from the answers' headers when they are
//! there (`x-daily-ratelimit-token-*` are undocumented and sometimes missing).
//!
//! Policy, from the research's defaults:
//! - normal: flush after `quiet` (2 min) without a message, at most `max_wait` (10 min) after the
//!   first unflushed one;
//! - under pressure, once less than half of the mirror's share is left: both grow, smoothly, up
//!   to [`PRESSED_FACTOR`] times (7.5: 2 min becomes 15 min) as the share runs out, so fewer,
//!   fuller flushes spend what is left;
//! - stopped: the share is spent, or the company's remaining budget is at the floor (25 % of its
//!   daily limit, kept for the people and the other integrations): no call until the reset;
//!   messages stay in the store and flush after it.

use std::time::Duration;

/// The calls the mirror makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Call {
    /// `GET /api/v2/persons/search`
    PersonsSearch,
    /// `GET /api/v2/persons/{id}`
    PersonGet,
    /// `GET /api/v2/deals`
    Deals,
    /// `GET /v1/leads`
    Leads,
    /// `POST /v1/notes`
    NoteAdd,
    /// `GET /v1/notes/{id}`
    NoteGet,
    /// `GET /v1/notes`
    NotesList,
    /// `PUT /v1/notes/{id}`
    NoteUpdate,
}

impl Call {
    /// Every call, for metrics.
    pub const ALL: [Self; 8] = [
        Self::PersonsSearch,
        Self::PersonGet,
        Self::Deals,
        Self::Leads,
        Self::NoteAdd,
        Self::NoteGet,
        Self::NotesList,
        Self::NoteUpdate,
    ];

    /// Its `x-token-cost` in Pipedrive's OpenAPI files (research §1.2, §2.1).
    pub fn cost(self) -> u64 {
        match self {
            Self::PersonsSearch | Self::Leads | Self::NotesList => 20,
            Self::PersonGet => 1,
            Self::Deals | Self::NoteAdd | Self::NoteUpdate => 10,
            Self::NoteGet => 2,
        }
    }

    /// A short name, for metrics labels and logs.
    pub fn name(self) -> &'static str {
        match self {
            Self::PersonsSearch => "persons_search",
            Self::PersonGet => "person_get",
            Self::Deals => "deals_list",
            Self::Leads => "leads_list",
            Self::NoteAdd => "note_add",
            Self::NoteGet => "note_get",
            Self::NotesList => "notes_list",
            Self::NoteUpdate => "note_update",
        }
    }

    /// A write: it counts against the API token's 10,000 POST/PUT a day as well.
    pub fn is_write(self) -> bool {
        matches!(self, Self::NoteAdd | Self::NoteUpdate)
    }
}

/// The quiet period before pressure.
pub const DEFAULT_QUIET: Duration = Duration::from_secs(120);
/// The longest wait after a first unflushed message before pressure.
pub const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(600);
/// How much the quiet period and the longest wait grow by when the share is almost spent (the
/// research's 2 min to 15 min). A factor, not a time, so that a mirror configured with other
/// periods (or a benchmark's compressed day) keeps their proportions.
pub const PRESSED_FACTOR: f64 = 7.5;
/// The quiet period when the share is almost spent, at the default quiet period.
pub const PRESSED_QUIET: Duration = Duration::from_secs(15 * 60);
/// The company's remaining budget the mirror never goes below, as a fraction of the daily limit.
pub const DEFAULT_FLOOR: f64 = 0.25;
/// The mirror's share when `--mirror-budget` is not given.
pub const DEFAULT_SHARE: Share = Share::Percent(30);

/// `--mirror-budget`: a percentage of the company's daily limit (`30%`) or tokens (`90000`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Share {
    /// This percentage of the daily limit.
    Percent(u8),
    /// This many tokens a day.
    Tokens(u64),
}

impl Share {
    /// Parses `30%` or `90000`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if let Some(percent) = text.strip_suffix('%') {
            match percent.trim().parse::<u8>() {
                Ok(p) if (1..=100).contains(&p) => Ok(Self::Percent(p)),
                _ => Err(format!(
                    "--mirror-budget: a percentage from 1% to 100%, got {text:?}"
                )),
            }
        } else {
            match text.parse::<u64>() {
                Ok(tokens) if tokens > 0 => Ok(Self::Tokens(tokens)),
                _ => Err(format!(
                    "--mirror-budget: a share of the daily budget like 30% or a number of tokens like 90000, got {text:?}"
                )),
            }
        }
    }

    /// The tokens it stands for, given the company's daily limit.
    pub fn tokens(self, daily_limit: u64) -> u64 {
        match self {
            Self::Percent(p) => daily_limit * u64::from(p) / 100,
            Self::Tokens(tokens) => tokens,
        }
    }
}

/// As `--mirror-budget` takes it: `30%`, or `90000 tokens`.
impl std::fmt::Display for Share {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Percent(p) => write!(f, "{p}% of the daily tokens"),
            Self::Tokens(tokens) => write!(f, "{tokens} tokens a day"),
        }
    }
}

/// The budget's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BudgetConfig {
    /// The mirror's share.
    pub share: Share,
    /// The company's daily limit assumed until an answer tells (Growth, 5 seats: 300,000).
    pub assumed_daily_limit: u64,
    /// The floor, a fraction of the daily limit.
    pub floor: f64,
    /// Quiet period before pressure.
    pub quiet: Duration,
    /// Longest wait before pressure.
    pub max_wait: Duration,
}

impl Default for BudgetConfig {
    fn default() -> Self {
        Self {
            share: DEFAULT_SHARE,
            assumed_daily_limit: 300_000,
            floor: DEFAULT_FLOOR,
            quiet: DEFAULT_QUIET,
            max_wait: DEFAULT_MAX_WAIT,
        }
    }
}

/// Why the mirror stopped for the day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// It spent its share.
    ShareSpent,
    /// The company's remaining budget is at the floor (others spent it).
    FloorReached,
    /// Pipedrive answered 429 for the daily budget.
    BudgetExhausted,
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::ShareSpent => "the mirror spent its share of the daily budget (--mirror-budget)",
            Self::FloorReached => {
                "the company has 25% of its daily token budget left, kept for people and other integrations"
            }
            Self::BudgetExhausted => "Pipedrive answered 429: the company's daily token budget is spent",
        })
    }
}

/// Why a call may not go now (see [`Budget::allows`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The mirror is stopped for the day.
    Stopped(StopReason),
    /// It would spend more than is left of the share.
    OverShare,
    /// It would take the company below the floor.
    BelowFloor,
    /// A write, and the API token's POST/PUT for today are used up (`x-daily-requests-left: 0`).
    NoWritesLeft,
}

/// What the mirror may do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// Flush after `quiet` without a message, at most `max_wait` after the first unflushed one.
    Flush {
        /// The quiet period.
        quiet: Duration,
        /// The longest wait.
        max_wait: Duration,
        /// Under pressure (the periods have grown).
        pressed: bool,
    },
    /// No call until the daily reset.
    Stopped(StopReason),
}

/// The mirror's ledger for one budget day.
#[derive(Debug, Clone)]
pub struct Budget {
    config: BudgetConfig,
    daily_limit: u64,
    /// The company's remaining tokens as last reported, if reported.
    company_remaining: Option<u64>,
    /// POST/PUT left today for an API token, as last reported.
    writes_left: Option<u64>,
    spent: u64,
    exhausted: bool,
}

impl Budget {
    /// A fresh day.
    pub fn new(config: BudgetConfig) -> Self {
        Self {
            config,
            daily_limit: config.assumed_daily_limit,
            company_remaining: None,
            writes_left: None,
            spent: 0,
            exhausted: false,
        }
    }

    /// The ledger of a day already under way (after a restart): what the mirror spent so far.
    pub fn resumed(config: BudgetConfig, spent: u64) -> Self {
        Self {
            spent,
            ..Self::new(config)
        }
    }

    /// Counts a call that was answered (a 429 or a connection refused costs nothing; a lost
    /// answer may have cost, and is counted: the ledger errs on the side of spending less).
    pub fn record(&mut self, call: Call) {
        self.spent += call.cost();
    }

    /// Learns from an answer's headers: the company's daily limit and what is left of it.
    pub fn observe(&mut self, daily_limit: Option<u64>, company_remaining: Option<u64>) {
        if let Some(limit) = daily_limit.filter(|l| *l > 0) {
            self.daily_limit = limit;
        }
        if company_remaining.is_some() {
            self.company_remaining = company_remaining;
        }
    }

    /// Learns from the client's pacing state (after each call): the company's limit and what is
    /// left, the API token's writes left, and a budget 429.
    pub fn observe_pacing(&mut self, pacing: &crate::pipedrive::PacingSnapshot) {
        self.observe(pacing.daily_token_limit, pacing.daily_tokens_remaining);
        if pacing.daily_requests_left.is_some() {
            self.writes_left = pacing.daily_requests_left;
        }
        if pacing.budget_exhausted {
            self.exhausted();
        }
    }

    /// Pipedrive answered 429 for the daily budget: stopped until [`Self::reset`].
    pub fn exhausted(&mut self) {
        self.exhausted = true;
    }

    /// The server's midnight: a new day.
    pub fn reset(&mut self) {
        self.spent = 0;
        self.exhausted = false;
        self.company_remaining = None;
        self.writes_left = None;
    }

    /// What the mirror spent today.
    pub fn spent(&self) -> u64 {
        self.spent
    }

    /// The mirror's share in tokens.
    pub fn share(&self) -> u64 {
        self.config.share.tokens(self.daily_limit)
    }

    /// What is left of the share.
    pub fn share_left(&self) -> u64 {
        self.share().saturating_sub(self.spent)
    }

    fn floor(&self) -> u64 {
        (self.daily_limit as f64 * self.config.floor) as u64
    }

    /// Whether `call` may be made now: its cost fits in the share and keeps the company above
    /// the floor (and a write has a POST/PUT left today).
    pub fn allows(&self, call: Call) -> bool {
        self.check(call).is_ok()
    }

    /// [`Self::allows`], saying why not.
    pub fn check(&self, call: Call) -> Result<(), Refusal> {
        if let Pace::Stopped(reason) = self.pace() {
            return Err(Refusal::Stopped(reason));
        }
        if call.cost() > self.share_left() {
            return Err(Refusal::OverShare);
        }
        if self
            .company_remaining
            .is_some_and(|left| left.saturating_sub(call.cost()) < self.floor())
        {
            return Err(Refusal::BelowFloor);
        }
        if call.is_write() && self.writes_left == Some(0) {
            return Err(Refusal::NoWritesLeft);
        }
        Ok(())
    }

    /// The pace for what is left.
    pub fn pace(&self) -> Pace {
        if self.exhausted {
            return Pace::Stopped(StopReason::BudgetExhausted);
        }
        if self
            .company_remaining
            .is_some_and(|left| left <= self.floor())
        {
            return Pace::Stopped(StopReason::FloorReached);
        }
        let share = self.share();
        let left = self.share_left();
        // Below the cheapest write, nothing useful can be done.
        if left < Call::NoteUpdate.cost() {
            return Pace::Stopped(StopReason::ShareSpent);
        }
        let fraction = left as f64 / share.max(1) as f64;
        if fraction >= 0.5 {
            return Pace::Flush {
                quiet: self.config.quiet,
                max_wait: self.config.max_wait,
                pressed: false,
            };
        }
        // From the normal periods at half the share left to PRESSED_FACTOR times them at none
        // left.
        let pressure = (0.5 - fraction) / 0.5;
        let factor = 1.0 + (PRESSED_FACTOR - 1.0) * pressure;
        Pace::Flush {
            quiet: self.config.quiet.mul_f64(factor),
            max_wait: self.config.max_wait.mul_f64(factor),
            pressed: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(share: Share) -> Budget {
        Budget::new(BudgetConfig {
            share,
            ..BudgetConfig::default()
        })
    }

    #[test]
    fn costs_follow_the_openapi_table() {
        let costs: Vec<(&str, u64)> = Call::ALL.iter().map(|c| (c.name(), c.cost())).collect();
        assert_eq!(
            costs,
            [
                ("persons_search", 20),
                ("person_get", 1),
                ("deals_list", 10),
                ("leads_list", 20),
                ("note_add", 10),
                ("note_get", 2),
                ("notes_list", 20),
                ("note_update", 10)
            ]
        );
    }

    #[test]
    fn the_share_is_a_percentage_or_tokens() {
        assert_eq!(Share::parse("30%"), Ok(Share::Percent(30)));
        assert_eq!(Share::parse(" 90000 "), Ok(Share::Tokens(90_000)));
        for bad in ["0%", "101%", "-5", "lots", "", "0"] {
            assert!(Share::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(Share::Percent(30).tokens(300_000), 90_000);
        assert_eq!(Share::Tokens(5_000).tokens(300_000), 5_000);
    }

    #[test]
    fn the_normal_pace_until_half_the_share_is_spent() {
        let mut b = budget(Share::Tokens(1_000));
        assert_eq!(
            b.pace(),
            Pace::Flush {
                quiet: DEFAULT_QUIET,
                max_wait: DEFAULT_MAX_WAIT,
                pressed: false
            }
        );
        for _ in 0..50 {
            b.record(Call::NoteUpdate);
        }
        assert_eq!(b.spent(), 500);
        assert!(matches!(b.pace(), Pace::Flush { pressed: false, .. }));
    }

    #[test]
    fn quiet_periods_grow_as_the_share_runs_out_then_it_stops() {
        let mut b = budget(Share::Tokens(1_000));
        let mut last = DEFAULT_QUIET;
        for _ in 0..50 {
            b.record(Call::NoteUpdate);
        }
        for _ in 0..49 {
            b.record(Call::NoteUpdate);
            match b.pace() {
                Pace::Flush {
                    quiet,
                    max_wait,
                    pressed,
                } => {
                    assert!(pressed);
                    assert!(quiet >= last, "{quiet:?} after {last:?}");
                    assert!(quiet <= PRESSED_QUIET);
                    assert!(max_wait >= quiet * 4);
                    last = quiet;
                }
                stopped @ Pace::Stopped(_) => panic!("stopped early: {stopped:?}"),
            }
        }
        assert!(last > Duration::from_secs(800), "{last:?}");
        assert!(b.allows(Call::NoteUpdate));
        assert!(!b.allows(Call::PersonsSearch), "20 tokens do not fit in 10");
        b.record(Call::NoteUpdate);
        assert_eq!(b.pace(), Pace::Stopped(StopReason::ShareSpent));
        assert!(!b.allows(Call::NoteGet));
        b.reset();
        assert!(matches!(b.pace(), Pace::Flush { pressed: false, .. }));
    }

    #[test]
    fn the_company_floor_stops_the_mirror_whatever_its_share() {
        let mut b = budget(Share::Percent(30));
        b.observe(Some(100_000), Some(40_000));
        assert_eq!(
            b.share(),
            30_000,
            "the share follows the limit Pipedrive reports"
        );
        assert!(b.allows(Call::NoteAdd));
        b.observe(None, Some(25_005));
        assert!(b.allows(Call::NoteGet));
        assert!(
            !b.allows(Call::NoteAdd),
            "it would take the company below the floor"
        );
        b.observe(None, Some(25_000));
        assert_eq!(b.pace(), Pace::Stopped(StopReason::FloorReached));
        b.observe(None, None);
        assert_eq!(
            b.pace(),
            Pace::Stopped(StopReason::FloorReached),
            "a missing header keeps the last figure"
        );
    }

    #[test]
    fn the_pacing_headers_feed_the_budget() {
        use crate::pipedrive::PacingSnapshot;
        let mut b = budget(Share::Percent(30));
        b.observe_pacing(&PacingSnapshot {
            daily_token_limit: Some(10_000),
            daily_tokens_remaining: Some(9_000),
            daily_requests_left: Some(0),
            ..PacingSnapshot::default()
        });
        assert_eq!(b.share(), 3_000);
        assert_eq!(b.check(Call::NoteAdd), Err(Refusal::NoWritesLeft));
        assert_eq!(b.check(Call::NotesList), Ok(()), "reads still go");
        assert_eq!(b.check(Call::PersonsSearch), Ok(()));
        b.observe_pacing(&PacingSnapshot {
            budget_exhausted: true,
            ..PacingSnapshot::default()
        });
        assert_eq!(
            b.check(Call::NoteGet),
            Err(Refusal::Stopped(StopReason::BudgetExhausted))
        );
        b.reset();
        assert_eq!(b.check(Call::NoteAdd), Ok(()));
        let mut small = budget(Share::Tokens(15));
        assert_eq!(small.check(Call::PersonsSearch), Err(Refusal::OverShare));
        small.observe(Some(100), Some(30));
        assert_eq!(small.check(Call::NoteAdd), Err(Refusal::BelowFloor));
    }

    #[test]
    fn a_budget_429_stops_until_the_reset() {
        let mut b = Budget::resumed(BudgetConfig::default(), 100);
        assert_eq!(b.spent(), 100);
        b.exhausted();
        assert_eq!(b.pace(), Pace::Stopped(StopReason::BudgetExhausted));
        assert!(!b.allows(Call::NoteGet));
        b.reset();
        assert_eq!(b.spent(), 0);
        assert!(b.allows(Call::NoteAdd));
    }
}
