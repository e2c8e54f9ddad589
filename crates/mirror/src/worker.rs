//! The mirror's loop: read what changed ([`crate::intake`]), link what is new
//! ([`crate::lookup`]), write the segments that are due ([`crate::flush`]), within the day's
//! budget ([`crate::ledger`]). It runs inside the hub (`serve --mirror`) or alone
//! (`pdchannels mirror`, on a database hubs write); several of either share the work through the
//! store's leases.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use chrono_tz::Tz;
use pdchannels_store::{Store, StoreError};
use tokio_util::sync::CancellationToken;

use crate::budget::{BudgetConfig, Call, Pace};
use crate::flush::{FlushContext, Flushed, flush};
use crate::intake::Intake;
use crate::ledger::Ledger;
use crate::lookup::{Looked, LookupError, look_up};
use crate::matching::PhoneRules;
use crate::pipedrive::{Error, PipedriveClient};
use crate::render::RenderOptions;

/// How the mirror runs.
#[derive(Debug, Clone)]
pub struct MirrorConfig {
    /// The company's time zone: a note is one local day.
    pub time_zone: Tz,
    /// The company's country calling code, for customer numbers written without one.
    pub calling_code: Option<String>,
    /// The share of the daily budget, and the quiet periods.
    pub budget: BudgetConfig,
    /// How long a claimed segment is this process's (a process killed while holding one is
    /// replaced after this long).
    pub lease: Duration,
    /// How often the loop looks for work when there is none.
    pub tick: Duration,
    /// A conversation-day is marked dirty at most this often (see [`Intake`]).
    pub mark_every: Duration,
    /// A parked or unmatched conversation (found automatically) that is active again is looked
    /// up again after this long: the customer may have been added to Pipedrive meanwhile.
    pub relook_after: Duration,
}

impl MirrorConfig {
    /// The defaults for `time_zone`.
    pub fn new(time_zone: Tz) -> Self {
        Self {
            time_zone,
            calling_code: None,
            budget: BudgetConfig::default(),
            lease: Duration::from_secs(60),
            tick: Duration::from_millis(500),
            mark_every: Duration::from_secs(2),
            relook_after: Duration::from_secs(24 * 60 * 60),
        }
    }
}

/// Why the mirror cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The database's notes were written in another time zone.
    #[error(
        "this database's notes are days of the time zone {recorded}, and the mirror was started with --time-zone {configured}: a note is one local day, so another zone would move messages between notes; start it with --time-zone {recorded}"
    )]
    OtherTimeZone {
        /// The zone recorded by the first mirror.
        recorded: String,
        /// The zone given now.
        configured: String,
    },
}

/// Conversations looked up per round, and segments written per round.
const LOOKUPS_PER_ROUND: i64 = 10;

/// Between two looks at every conversation, a round looks only at those active since the last
/// look (one range of the activity index, not every conversation: at 200,000 conversations a
/// whole look took 150-200 ms, every round). The whole look catches what activity does not show:
/// an unlink, a look-up put off by the budget, a relook that fell due.
const EVERY_CONVERSATION_EVERY: Duration = Duration::from_secs(60);

/// A look at the recently active goes this far back past the last one: another hub's clock, and
/// a write that committed late.
const ACTIVITY_OVERLAP_MS: i64 = 5_000;
const FLUSHES_PER_ROUND: i64 = 8;

/// The mirror.
pub struct Mirror {
    store: Store,
    client: PipedriveClient,
    config: MirrorConfig,
    render: RenderOptions,
    owner: String,
    /// POST may carry `add_time` (until the company refuses it once).
    add_time: AtomicBool,
    /// After a failed look-up, no other before this.
    lookups_paused_until: Option<tokio::time::Instant>,
    /// Every conversation active before this was looked at, when it was (see
    /// [`EVERY_CONVERSATION_EVERY`]); `None`: look at every conversation.
    looked_through: Option<(i64, tokio::time::Instant)>,
    /// Channel names and providers by channel id.
    channels: HashMap<String, (String, String)>,
    /// Segments whose last PUT's outcome is unknown (see [`FlushContext::puts_in_doubt`]).
    puts_in_doubt: std::sync::Mutex<std::collections::HashSet<i64>>,
}

impl std::fmt::Debug for Mirror {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mirror")
            .field("client", &self.client)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Mirror {
    /// A mirror of `store` into the company `client` reaches.
    pub fn new(store: Store, client: PipedriveClient, config: MirrorConfig) -> Self {
        Self {
            render: RenderOptions::new(config.time_zone),
            store,
            client,
            config,
            owner: pdchannels_store::lease_owner::this_instance().to_owned(),
            add_time: AtomicBool::new(true),
            lookups_paused_until: None,
            looked_through: None,
            channels: HashMap::new(),
            puts_in_doubt: std::sync::Mutex::default(),
        }
    }

    /// The lease owner this mirror writes as (tests run two in one process).
    #[must_use]
    pub fn with_owner(mut self, owner: impl Into<String>) -> Self {
        self.owner = owner.into();
        self
    }

    /// Runs until `stop`. A store or Pipedrive failure is logged and tried again; the loop only
    /// ends when asked. A write under way when `stop` comes is finished (its outcome is stored).
    pub async fn run(mut self, stop: CancellationToken) {
        let (mut intake, mut ledger) = loop {
            match self.start().await {
                Ok(started) => break started,
                Err(e @ StartError::OtherTimeZone { .. }) => {
                    tracing::error!(error = %e, "the notes mirror does not start");
                    return;
                }
                Err(e) => {
                    tracing::error!(error = %e, "the notes mirror cannot read its state; trying again in 5 s");
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(Duration::from_secs(5)) => {}
                    }
                }
            }
        };
        tracing::info!(time_zone = %self.config.time_zone, spent_today = ledger.spent(), "the notes mirror is running");
        // A stop or trouble recorded by an earlier run is for this run to judge again.
        for setting in ["stopped", "trouble"] {
            if let Err(e) = self.store.mirror_put_setting(setting, None).await {
                tracing::warn!(error = %e, "cannot clear the mirror's recorded {setting}");
            }
        }
        let mut stopped_logged = false;
        let mut trouble_said = None;
        while !stop.is_cancelled() {
            let busy = match self.round(&mut intake, &mut ledger).await {
                Ok(busy) => busy,
                Err(e) => {
                    tracing::warn!(error = %e, "a round of the notes mirror failed; trying again");
                    false
                }
            };
            // A stop and a resume are said in the log and kept for `mirror status`.
            let said = match ledger.pace() {
                Pace::Stopped(reason) if !stopped_logged => {
                    tracing::warn!(
                        %reason,
                        spent = ledger.spent(),
                        "the notes mirror stopped for the day; messages stay in the hub and are written after Pipedrive's midnight"
                    );
                    stopped_logged = true;
                    Some(Some(reason.to_string()))
                }
                Pace::Flush { .. } if stopped_logged => {
                    tracing::info!("the notes mirror resumed");
                    stopped_logged = false;
                    Some(None)
                }
                _ => None,
            };
            if let Some(stopped) = said
                && let Err(e) = self
                    .store
                    .mirror_put_setting("stopped", stopped.as_deref())
                    .await
            {
                tracing::warn!(error = %e, "cannot record the mirror's stop for `mirror status`");
            }
            // Every call failing for one reason (credentials, no way to Pipedrive) is said
            // once, with what to fix, and kept for `mirror status` until a call gets through.
            let trouble = self.client.trouble();
            if trouble != trouble_said {
                match &trouble {
                    Some(why) => tracing::error!("the notes mirror cannot write: {why}"),
                    None => tracing::info!("the notes mirror reaches Pipedrive again"),
                }
                if let Err(e) = self
                    .store
                    .mirror_put_setting("trouble", trouble.as_deref())
                    .await
                {
                    tracing::warn!(error = %e, "cannot record the mirror's trouble for `mirror status`");
                }
                trouble_said = trouble;
            }
            if !busy {
                tokio::select! {
                    () = stop.cancelled() => {}
                    () = tokio::time::sleep(self.config.tick) => {}
                }
            }
        }
    }

    /// Reads the mirror's state: where its intake stopped, and what it spent today. [`Self::run`]
    /// starts with it; a test drives [`Self::round`] with it.
    pub async fn start(&mut self) -> Result<(Intake, Ledger), StartError> {
        self.check().await?;
        Ok((
            Intake::resume(&self.store, self.config.time_zone, self.config.mark_every).await?,
            Ledger::resume(&self.store, self.config.budget).await?,
        ))
    }

    /// Checks that the database's notes were written in this mirror's time zone (the first
    /// mirror records it). The CLI calls it before starting, to refuse at once.
    pub async fn check(&self) -> Result<(), StartError> {
        let configured = self.config.time_zone.name();
        let recorded = self
            .store
            .mirror_setting_or_record("time_zone", configured)
            .await?;
        if recorded == configured {
            Ok(())
        } else {
            Err(StartError::OtherTimeZone {
                recorded,
                configured: configured.to_owned(),
            })
        }
    }

    /// One round; `true` when there may be more to do at once.
    pub async fn round(
        &mut self,
        intake: &mut Intake,
        ledger: &mut Ledger,
    ) -> Result<bool, StoreError> {
        ledger.roll_over(&self.client);
        let step = intake.step(&self.store).await?;
        let looked = self.look_up(ledger).await?;
        let written = self.flush_due(ledger).await?;
        Ok(step.more || looked || written)
    }

    async fn look_up(&mut self, ledger: &mut Ledger) -> Result<bool, StoreError> {
        if !ledger.allows(Call::PersonsSearch)
            || self
                .lookups_paused_until
                .is_some_and(|until| tokio::time::Instant::now() < until)
        {
            return Ok(false);
        }
        let now_ms = pdchannels_model::Timestamp::now().unix_millis();
        let (active_since_ms, whole_look_at) = match self.looked_through {
            Some((through_ms, whole_look_at))
                if whole_look_at.elapsed() < EVERY_CONVERSATION_EVERY =>
            {
                (through_ms - ACTIVITY_OVERLAP_MS, whole_look_at)
            }
            _ => (i64::MIN, tokio::time::Instant::now()),
        };
        let relook_before_ms =
            now_ms - i64::try_from(self.config.relook_after.as_millis()).unwrap_or(i64::MAX / 2);
        let waiting = self
            .store
            .mirror_conversations_to_look_up(LOOKUPS_PER_ROUND, relook_before_ms, active_since_ms)
            .await?;
        let rules = PhoneRules {
            calling_code: self.config.calling_code.as_deref(),
        };
        let mut recorded = 0;
        for conversation in &waiting {
            let result = {
                let ledger_view = &*ledger;
                look_up(
                    &self.store,
                    &self.client,
                    rules,
                    |call| ledger_view.allows(call),
                    conversation,
                )
                .await
            };
            ledger.settle(&self.store, &self.client).await?;
            match result {
                Ok(Looked::Recorded) => recorded += 1,
                Ok(Looked::NoBudget) => break,
                Err(LookupError::Store(e)) => return Err(e),
                Err(LookupError::Pipedrive(e)) if e.refuses_the_search_term() => {
                    // Pipedrive answered, and refused this conversation's search term only:
                    // recorded as unmatched (`mirror pending` lists it for a manual link; it is looked up
                    // again when the customer next writes), and the others go on. Paused
                    // instead, the same conversation would come first again and hold every
                    // look-up behind it for good.
                    tracing::warn!(
                        error = %e,
                        channel = %conversation.channel_id,
                        conversation = %conversation.conversation_id,
                        "a person search for one conversation was refused; it waits as unmatched"
                    );
                    self.store
                        .mirror_record_match(
                            &conversation.channel_id,
                            &conversation.conversation_id,
                            pdchannels_store::MirrorMatch::Unmatched,
                        )
                        .await?;
                    recorded += 1;
                }
                Err(LookupError::Pipedrive(e)) => {
                    log_pipedrive_error(&e, "a person search");
                    let wait = match e {
                        Error::RateLimited { retry_in, .. } => retry_in,
                        _ => Duration::from_secs(30),
                    };
                    self.lookups_paused_until = Some(tokio::time::Instant::now() + wait);
                    break;
                }
            }
        }
        let all_recorded = recorded == waiting.len();
        if all_recorded && waiting.len() < LOOKUPS_PER_ROUND as usize {
            // Nothing active before `now_ms` is left to look up.
            self.looked_through = Some((now_ms, whole_look_at));
        }
        Ok(all_recorded && !waiting.is_empty())
    }

    async fn flush_due(&mut self, ledger: &mut Ledger) -> Result<bool, StoreError> {
        let Some(timing) = ledger.timing() else {
            return Ok(false);
        };
        let lease_ms = i64::try_from(self.config.lease.as_millis()).unwrap_or(60_000);
        let claimed = self
            .store
            .mirror_claim_due(&self.owner, timing, lease_ms, FLUSHES_PER_ROUND)
            .await?;
        let full = i64::try_from(claimed.len()).unwrap_or(0) >= FLUSHES_PER_ROUND;
        for segment in claimed {
            let Some(link) = self
                .store
                .mirror_link(&segment.channel_id, &segment.conversation_id)
                .await?
            else {
                self.store
                    .mirror_retry_later(
                        segment.id,
                        &self.owner,
                        "the conversation is no longer linked",
                        pdchannels_model::Timestamp::now().unix_millis() + 60_000,
                    )
                    .await?;
                continue;
            };
            let (channel_name, provider) = self.channel(&segment.channel_id).await?;
            let outcome = {
                let ledger_view = &*ledger;
                let allows = |call: Call| ledger_view.allows(call);
                let ctx = FlushContext {
                    store: &self.store,
                    client: &self.client,
                    owner: &self.owner,
                    render: &self.render,
                    allows: &allows,
                    add_time: &self.add_time,
                    channel_name: &channel_name,
                    provider: &provider,
                    puts_in_doubt: &self.puts_in_doubt,
                };
                flush(&ctx, &segment, &link).await
            };
            ledger.settle(&self.store, &self.client).await?;
            match outcome? {
                Flushed::Deferred(why) => {
                    tracing::debug!(segment = %segment.key, why, "a mirror note is put off");
                }
                done => tracing::debug!(segment = %segment.key, ?done, "mirror segment flushed"),
            }
        }
        Ok(full)
    }

    /// The channel's name and provider, read once.
    async fn channel(&mut self, channel_id: &str) -> Result<(String, String), StoreError> {
        if let Some(known) = self.channels.get(channel_id) {
            return Ok(known.clone());
        }
        let mut after = None;
        loop {
            let page = self.store.list_channels(after, 500).await?;
            let Some((last, _)) = page.last() else { break };
            after = Some(*last);
            for (_, channel) in page {
                self.channels.insert(
                    channel.provider_channel_id.as_str().to_owned(),
                    (
                        channel.name.as_str().to_owned(),
                        channel.provider_type.as_str().to_owned(),
                    ),
                );
            }
        }
        Ok(self
            .channels
            .get(channel_id)
            .cloned()
            .unwrap_or_else(|| (channel_id.to_owned(), "other".to_owned())))
    }
}

fn log_pipedrive_error(error: &Error, doing: &str) {
    match error {
        Error::RateLimited { .. } | Error::BudgetExhausted { .. } => {
            tracing::info!(error = %error, "{doing} waits for Pipedrive's limits");
        }
        _ => tracing::warn!(error = %error, "{doing} failed; trying again later"),
    }
}
