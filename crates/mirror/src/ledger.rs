//! The mirror's token ledger: the [`Budget`] of the day, kept in the store (a restart resumes
//! the day's spending instead of spending the share again), fed by every call the client made,
//! and counted in `/metrics`.

use chrono::{NaiveDate, Utc};
use pdchannels_store::{FlushTiming, Store, StoreError};

use crate::budget::{Budget, BudgetConfig, Call, Pace};
use crate::pipedrive::PipedriveClient;

/// The day's budget, and where it is kept.
#[derive(Debug)]
pub struct Ledger {
    budget: Budget,
    config: BudgetConfig,
    /// Pipedrive's budget day (UTC: its reset is the server's midnight).
    day: NaiveDate,
}

/// The budget day now.
pub fn budget_day() -> NaiveDate {
    Utc::now().date_naive()
}

/// A day as the store keys it.
pub fn day_key(day: NaiveDate) -> String {
    day.format("%Y-%m-%d").to_string()
}

impl Ledger {
    /// The ledger of today, resumed from what the store says the mirror spent.
    pub async fn resume(store: &Store, config: BudgetConfig) -> Result<Self, StoreError> {
        let day = budget_day();
        let spent = store.mirror_spent(&day_key(day)).await?;
        Ok(Self {
            budget: Budget::resumed(config, u64::try_from(spent).unwrap_or(0)),
            config,
            day,
        })
    }

    /// Starts a new budget day at Pipedrive's midnight (the client's 429 is forgotten too).
    pub fn roll_over(&mut self, client: &PipedriveClient) {
        let today = budget_day();
        if today != self.day {
            tracing::info!(day = %today, spent_yesterday = self.budget.spent(), "a new budget day for the notes mirror");
            self.day = today;
            self.budget = Budget::new(self.config);
            client.pacing().reset_day();
        }
    }

    /// Whether `call` may go now.
    pub fn allows(&self, call: Call) -> bool {
        self.budget.allows(call)
    }

    /// The pace now.
    pub fn pace(&self) -> Pace {
        self.budget.pace()
    }

    /// The flush timing now, or `None` when the mirror is stopped for the day.
    pub fn timing(&self) -> Option<FlushTiming> {
        match self.pace() {
            Pace::Flush {
                quiet, max_wait, ..
            } => Some(FlushTiming {
                quiet_ms: i64::try_from(quiet.as_millis()).unwrap_or(i64::MAX),
                max_wait_ms: i64::try_from(max_wait.as_millis()).unwrap_or(i64::MAX),
            }),
            Pace::Stopped(_) => None,
        }
    }

    /// What was spent today.
    pub fn spent(&self) -> u64 {
        self.budget.spent()
    }

    /// Counts every call the client made since the last count, in the budget, the store and
    /// the metrics, and learns the company's limits from the answers' headers.
    pub async fn settle(
        &mut self,
        store: &Store,
        client: &PipedriveClient,
    ) -> Result<(), StoreError> {
        let calls = client.pacing().take_charged();
        let mut tokens = 0;
        for call in calls {
            self.budget.record(call);
            tokens += call.cost();
            metrics::counter!("pdchannels_mirror_calls_total", "call" => call.name()).increment(1);
            metrics::counter!("pdchannels_mirror_tokens_total", "call" => call.name())
                .increment(call.cost());
        }
        self.budget.observe_pacing(&client.pacing().snapshot());
        if tokens > 0 {
            store
                .mirror_spend(
                    &day_key(self.day),
                    i64::try_from(tokens).unwrap_or(i64::MAX),
                )
                .await?;
        }
        Ok(())
    }
}
