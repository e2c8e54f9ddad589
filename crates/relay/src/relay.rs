//! The worker: claim what may be sent, send it, record how it ended, tell whoever waits.
//!
//! Up to `concurrency` sends are in flight, each the oldest pending call of its conversation, so
//! conversations go in parallel and each one in order. Every step is recorded in the outbox
//! before anyone is told, so a crash at any point loses nothing: a call whose lease lapses is
//! claimed again, and receive being an upsert makes the second send harmless.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pdchannels_client::{ChannelsClient, Error as ClientError, Retry, UpstreamRequest};
use pdchannels_model::{Operation, Timestamp};
use pdchannels_store::{OutboxEntry, Settlement, Store, StoreError};
use serde_json::Value;
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::backoff;
use crate::command_line::CommandLine;

/// How the relay runs.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Most sends in flight at once (each in a different conversation). Many, because each
    /// send mostly waits: on the upstream's durable write, and on our own settle's. A hub
    /// upstream groups concurrent receives into one fsync, so more in flight means fewer fsyncs
    /// per message (measured on 2 cores: 64 gave 4,870 msgs/s, 128 gave 5,430, 192 gave 6,000).
    /// Against a rate-limited upstream the pacer, not this, sets the pace.
    pub concurrency: usize,
    /// How long a claimed call is reserved for this relay before another may take it.
    pub lease: Duration,
    /// How long a caller (the MCP tool) waits for the upstream's answer.
    pub deliver_timeout: Duration,
    /// The first retry's delay; each further one doubles it (up to 5 minutes), with jitter.
    pub retry_base: Duration,
    /// A call whose sends failed this many times ends dead (`None`: no count limit).
    pub max_attempts: Option<u32>,
    /// A call still failing this long after its first failure ends dead (`None`: never).
    pub give_up_after: Option<Duration>,
    /// The database `pdchannels` opens without `--db`: the commands the relay suggests for
    /// another one carry `--db` (`None`: they always do).
    pub default_database: Option<PathBuf>,
}

/// A day: long enough to ride out an upstream's outage or a weekend's expired login, short
/// enough that a call that can never go does not sit in the outbox (and hold its conversation
/// back) unseen.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(24 * 60 * 60);

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            concurrency: 192,
            lease: Duration::from_secs(60),
            deliver_timeout: Duration::from_secs(10),
            retry_base: Duration::from_millis(500),
            max_attempts: None,
            give_up_after: Some(GIVE_UP_AFTER),
            default_database: None,
        }
    }
}

/// Where one outbox call stands, as its waiters see it.
#[derive(Debug, Clone, PartialEq)]
pub enum Progress {
    /// Not sent yet.
    Waiting,
    /// Sent and failed; it will be tried again at `next_attempt_at_ms`.
    Retrying {
        /// Why it failed.
        reason: String,
        /// When it is tried again.
        next_attempt_at_ms: i64,
    },
    /// The upstream accepted it and answered this `data`.
    Delivered(Value),
    /// The upstream rejected it for good.
    Rejected {
        /// The upstream's status (0 if it never answered).
        status: u16,
        /// The upstream's code.
        code: Option<String>,
        /// The upstream's error, quoted.
        message: String,
    },
}

/// The relay: an outbox, a client, and the callers waiting for answers.
#[derive(Clone)]
pub struct Relay {
    store: Store,
    client: ChannelsClient,
    /// Behind an `Arc`, as the rest: every send clones the relay (and `Delivery`'s variants
    /// stay close in size).
    config: Arc<RelayConfig>,
    /// Behind an `Arc`, as the rest: every send clones the relay.
    command_line: Arc<CommandLine>,
    wake: Arc<Notify>,
    waiters: Arc<Mutex<HashMap<i64, watch::Sender<Progress>>>>,
    /// Whether the upstream is down, as the sends see it: tells when it answers again.
    upstream: Arc<Mutex<UpstreamHealth>>,
}

/// No send has succeeded for this long while sends failed: the upstream was down (or
/// unreachable), not just refusing one call. Shorter gaps are a busy relay's ordinary failures,
/// and releasing every backoff on each success between them would resend a call that keeps
/// failing as fast as the others go.
const OUTAGE: Duration = Duration::from_secs(1);

/// How often a running relay says it is alive (on PostgreSQL, for relays on other machines) and
/// takes back the calls of relays that stopped.
const HEARTBEAT: Duration = Duration::from_secs(5);

/// How long a relay on a shared PostgreSQL outbox may stay silent before the others take back
/// the calls it was sending: a few missed heartbeats, far less than a lease (60 s by default),
/// so a relay killed mid-send delays its calls by seconds, not by its whole lease.
const SILENT_FOR: Duration = Duration::from_secs(20);

/// What the sends have seen of the upstream lately.
#[derive(Debug)]
struct UpstreamHealth {
    /// When a send last succeeded (`None`: not yet, in this process).
    last_success: Option<tokio::time::Instant>,
    /// A send failed in a way retrying may cure (unreachable, a timeout, a 5xx) since then.
    /// True at the start: calls of an earlier run may be waiting out their backoff.
    failed_since: bool,
}

impl UpstreamHealth {
    /// Records a success; answers whether it ends an outage.
    fn succeeded(&mut self) -> bool {
        let now = tokio::time::Instant::now();
        let outage = self.failed_since
            && self
                .last_success
                .is_none_or(|last| now.duration_since(last) >= OUTAGE);
        self.last_success = Some(now);
        self.failed_since = false;
        outage
    }
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("upstream", &self.client.base_url())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Relay {
    /// A relay delivering `store`'s outbox through `client`.
    pub fn new(store: Store, client: ChannelsClient, config: RelayConfig) -> Self {
        let command_line = Arc::new(CommandLine::for_database(
            store.database(),
            config.default_database.as_deref(),
        ));
        Self {
            command_line,
            store,
            client,
            config: Arc::new(config),
            wake: Arc::default(),
            waiters: Arc::default(),
            upstream: Arc::new(Mutex::new(UpstreamHealth {
                last_success: None,
                failed_since: true,
            })),
        }
    }

    /// The outbox's store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The client it delivers through.
    pub fn client(&self) -> &ChannelsClient {
        &self.client
    }

    /// The configuration.
    pub fn config(&self) -> &RelayConfig {
        &self.config
    }

    /// The commands it suggests, for its outbox's database.
    pub fn command_line(&self) -> &CommandLine {
        &self.command_line
    }

    /// Tells the worker something was enqueued.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Follows call `id`'s progress from now on.
    pub fn watch(&self, id: i64) -> watch::Receiver<Progress> {
        let mut waiters = self
            .waiters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        waiters
            .entry(id)
            .or_insert_with(|| watch::channel(Progress::Waiting).0)
            .subscribe()
    }

    /// Forgets call `id`'s waiters once none is left (another process may settle it, and this
    /// one would then never be told): called when a caller stops following it.
    pub fn unwatch_if_unfollowed(&self, id: i64) {
        let mut waiters = self
            .waiters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if waiters
            .get(&id)
            .is_some_and(|sender| sender.receiver_count() == 0)
        {
            waiters.remove(&id);
        }
    }

    fn tell(&self, id: i64, progress: Progress) {
        let mut waiters = self
            .waiters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let last = matches!(progress, Progress::Delivered(_) | Progress::Rejected { .. });
        if let Some(sender) = waiters.get(&id) {
            sender.send_replace(progress);
            if last || sender.receiver_count() == 0 {
                waiters.remove(&id);
            }
        }
    }

    async fn claim(&self, limit: usize) -> Result<Vec<OutboxEntry>, StoreError> {
        self.store.outbox().claim(limit, self.config.lease).await
    }

    /// Delivers until `shutdown` is cancelled, then lets the sends in flight finish.
    pub async fn run(&self, shutdown: CancellationToken) {
        // What a crashed relay was sending is ours to send again, now rather than when its
        // leases lapse (receive is an upsert: a second send is harmless). Relays still running
        // on this database keep theirs: taking a call from under one could reorder it. Then
        // the same every few seconds, for relays that stop while this one runs.
        self.heartbeat().await;
        let beating = {
            let relay = self.clone();
            tokio::spawn(async move {
                let mut every = tokio::time::interval(HEARTBEAT);
                every.tick().await;
                loop {
                    every.tick().await;
                    relay.heartbeat().await;
                }
            })
        };
        let _stop_beating = AbortOnDrop(beating);
        let mut in_flight = JoinSet::new();
        let mut claim_failures: u32 = 0;
        loop {
            while in_flight.try_join_next().is_some() {}
            if shutdown.is_cancelled() && in_flight.is_empty() {
                return;
            }
            let concurrency = self.in_flight_bound();
            let free = concurrency.saturating_sub(in_flight.len());
            // A claim scans the head of the backlog: claim in batches (half of the slots),
            // not once per finished send.
            let may_claim = free > 0
                && (free >= (concurrency / 2).max(1) || in_flight.is_empty())
                && !shutdown.is_cancelled();
            if may_claim {
                match self.claim(free).await {
                    Ok(claimed) if !claimed.is_empty() => {
                        for entry in claimed {
                            let relay = self.clone();
                            in_flight.spawn(async move { relay.deliver(entry).await });
                        }
                        continue;
                    }
                    Ok(_) => claim_failures = 0,
                    Err(e) => {
                        // The store cannot write (full disk, say): wait, doubling to 30 s, and
                        // say so once per wait instead of retrying every few milliseconds.
                        claim_failures += 1;
                        let wait = Duration::from_millis(500)
                            .saturating_mul(1 << claim_failures.min(6))
                            .min(Duration::from_secs(30));
                        tracing::warn!(error = %e, retry_in = ?wait, "claiming from the outbox failed");
                        tokio::select! {
                            () = tokio::time::sleep(wait) => {}
                            () = shutdown.cancelled() => {}
                        }
                        continue;
                    }
                }
            }
            // Nothing due, or no room: only a finished send (or, with room, a new call or a
            // retry coming due) changes that. Without room there is nothing to poll for.
            let idle = if may_claim {
                self.until_next_due().await
            } else {
                Duration::MAX
            };
            tokio::select! {
                Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
                () = self.wake.notified(), if may_claim => {}
                () = tokio::time::sleep(idle), if may_claim => {}
                () = shutdown.cancelled(), if !shutdown.is_cancelled() => {}
            }
        }
    }

    /// How many calls may be in flight: the configured concurrency, but no more than the pacer
    /// lets go within half a lease. A claimed call waits in the pacer for its turn, and its lease
    /// must not lapse meanwhile: another relay (or this one) would claim and send it again.
    /// Half, so a call claimed last still has half its lease for its own send and settle, and
    /// for a short hold after a 429.
    fn in_flight_bound(&self) -> usize {
        let sendable = self.client.capacity(self.config.lease / 2);
        self.config.concurrency.min(sendable).max(1)
    }

    fn health(&self) -> std::sync::MutexGuard<'_, UpstreamHealth> {
        self.upstream
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A send succeeded: if it ends an outage (see [`OUTAGE`]), the calls waiting out the
    /// backoff of their failures go now (in their order), instead of each waiting its own
    /// delay, up to minutes after the upstream came back.
    async fn upstream_answers(&self) {
        let ends_outage = self.health().succeeded();
        if !ends_outage {
            return;
        }
        let now = Timestamp::now().unix_millis();
        match self.store.outbox().release_backoff(now).await {
            Ok(0) => {}
            Ok(released) => {
                tracing::info!(
                    released,
                    "the upstream answers again: the calls waiting to be retried go now"
                );
                self.wake();
            }
            Err(e) => {
                tracing::warn!(error = %e, "releasing the calls waiting to be retried failed")
            }
        }
    }

    /// How long the worker may sleep: until the next deliverable call is due, at most a second
    /// (another process, `pdchannels receive` say, may enqueue without waking us).
    /// Says this relay is alive and takes back the calls of stopped relays; wakes the loop if
    /// it took any.
    async fn heartbeat(&self) {
        match self.store.outbox().heartbeat(SILENT_FOR).await {
            Ok(true) => self.wake.notify_one(),
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "taking back the calls of stopped relays failed"),
        }
    }

    async fn until_next_due(&self) -> Duration {
        let now = Timestamp::now().unix_millis();
        match self.store.outbox().next_due().await {
            Ok(next) => next
                .map(|at| Duration::from_millis(u64::try_from(at - now).unwrap_or(0)))
                .unwrap_or(Duration::MAX)
                .clamp(Duration::from_millis(5), Duration::from_secs(1)),
            Err(_) => Duration::from_secs(1),
        }
    }

    /// Sends one call and records how it ended, then tells its waiters. Every log line of the
    /// delivery (the client's too) carries the call's outbox id, operation and attempt; never a
    /// token, nor the request's body.
    #[tracing::instrument(
        name = "delivery",
        skip_all,
        fields(outbox_id = entry.id, operation = %entry.operation, attempt = entry.attempts)
    )]
    async fn deliver(&self, entry: OutboxEntry) {
        let request: UpstreamRequest = match serde_json::from_str(&entry.request) {
            Ok(request) => request,
            Err(e) => {
                let reason = format!("the stored call cannot be read: {e}");
                self.finish(
                    entry.id,
                    Settlement::Dead(reason.clone()),
                    Progress::Rejected {
                        status: 0,
                        code: None,
                        message: reason,
                    },
                )
                .await;
                return;
            }
        };
        let (settlement, progress) = match self.client.execute(&request).await {
            Ok(data) => {
                self.upstream_answers().await;
                (
                    Settlement::Delivered(data.to_string()),
                    Progress::Delivered(data),
                )
            }
            Err(error) => {
                if error.retry() != Retry::Never {
                    self.health().failed_since = true;
                }
                settle_failure(&error, &entry, &self.config, &self.command_line)
            }
        };
        match &progress {
            Progress::Retrying { reason, .. } => {
                tracing::info!(%reason, "delivery failed; will retry");
            }
            Progress::Rejected { message, .. } => {
                tracing::warn!(%message, "upstream rejected a call for good");
            }
            _ => tracing::debug!("delivered"),
        }
        self.finish(entry.id, settlement, progress).await;
    }

    async fn finish(&self, id: i64, settlement: Settlement, progress: Progress) {
        // Recorded first: a waiter told "delivered" must find it so after any crash.
        if let Err(e) = self.store.outbox().settle(id, settlement).await {
            tracing::error!(id, error = %e, "recording a delivery outcome failed; the lease will expire and it is sent again");
            return;
        }
        self.tell(id, progress);
    }
}

fn settle_failure(
    error: &ClientError,
    entry: &OutboxEntry,
    config: &RelayConfig,
    command_line: &CommandLine,
) -> (Settlement, Progress) {
    let now = Timestamp::now().unix_millis();
    // The outbox keeps what to do next with the reason (`outbox list` shows only that); the
    // caller gets the reason alone, and the command once, in the error's remedy.
    let rejected = |message: String, next: String| {
        let (status, code) = match error {
            ClientError::Api(api) => (api.status, api.code.clone()),
            _ => (0, None),
        };
        (
            // The upstream's words may end a sentence already.
            Settlement::Dead(format!("{}. {next}", message.trim_end_matches('.'))),
            Progress::Rejected {
                status,
                code,
                message,
            },
        )
    };
    let retry_after_fixing = || {
        format!(
            "Fix the cause, then `{}`",
            command_line.outbox("retry", entry.id)
        )
    };
    if already_deleted(error, entry) {
        let data = serde_json::json!({"success": true});
        return (
            Settlement::Delivered(data.to_string()),
            Progress::Delivered(data),
        );
    }
    let wait = match error.retry() {
        Retry::Never => {
            let next = match error {
                ClientError::DotSegment { .. } => format!(
                    "Then drop this call: `{}`",
                    command_line.outbox("drop", entry.id)
                ),
                _ => retry_after_fixing(),
            };
            return rejected(error.to_string(), next);
        }
        Retry::Backoff => backoff::delay(entry.attempts, config.retry_base),
        // Told when to come back: no sooner, and no hammering if the hint is tiny.
        Retry::After(after) => after.max(config.retry_base),
    };
    if let Some(limit) = gave_up(entry, config, now) {
        return rejected(
            format!(
                "gave up after {} failed attempts over {} ({limit}); the last: {error}",
                entry.attempts,
                human(Duration::from_millis(
                    u64::try_from(now - entry.first_failed_at_ms.unwrap_or(now)).unwrap_or(0)
                )),
            ),
            retry_after_fixing(),
        );
    }
    let at = now + i64::try_from(wait.as_millis()).unwrap_or(i64::MAX / 2);
    let reason = error.to_string();
    (
        Settlement::RetryAt {
            at,
            error: reason.clone(),
            in_doubt: error.may_have_been_applied(),
        },
        Progress::Retrying {
            reason,
            next_attempt_at_ms: at,
        },
    )
}

/// A delete answered 404 after an earlier send of it may have reached the upstream (its answer
/// lost to a timeout, a broken connection or a relay that died): that send most likely did the
/// delete, so the call is done, as it would have been had the answer arrived.
fn already_deleted(error: &ClientError, entry: &OutboxEntry) -> bool {
    let deletes = matches!(
        entry.operation,
        Operation::DeleteChannel | Operation::DeleteConversation
    );
    deletes && entry.in_doubt && matches!(error, ClientError::Api(api) if api.status == 404)
}

/// Which bound a call that failed once more has reached, if any: `--max-attempts` counts its
/// sends, `--give-up-after` runs from its first failure (not from its acceptance, so calls
/// queued while no relay ran are not given up on unsent).
fn gave_up(entry: &OutboxEntry, config: &RelayConfig, now: i64) -> Option<String> {
    if let Some(max) = config.max_attempts
        && entry.attempts >= i64::from(max)
    {
        return Some(format!("--max-attempts {max}"));
    }
    let limit = config.give_up_after?;
    let failing_for = now - entry.first_failed_at_ms?;
    (failing_for >= i64::try_from(limit.as_millis()).unwrap_or(i64::MAX))
        .then(|| format!("--give-up-after {}", as_flag(limit)))
}

/// A duration as the flag takes it: `24h`, `90m`, `300ms`.
fn as_flag(d: Duration) -> String {
    let (s, ms) = (d.as_secs(), d.subsec_millis());
    match (s, ms) {
        (0, ms) => format!("{ms}ms"),
        (s, 0) if s % 3600 == 0 => format!("{}h", s / 3600),
        (s, 0) if s % 60 == 0 => format!("{}m", s / 60),
        (s, 0) => format!("{s}s"),
        _ => format!("{}ms", d.as_millis()),
    }
}

/// `1d 2h`, `3h 5m`, `2m 10s`, `1.5s`: a duration as a person reads it.
fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        86_400.. => format!("{}d {}h", s / 86_400, s % 86_400 / 3600),
        3600.. => format!("{}h {}m", s / 3600, s % 3600 / 60),
        60.. => format!("{}m {}s", s / 60, s % 60),
        _ => format!("{:.1}s", d.as_secs_f64()),
    }
}

/// Aborts a background task when dropped: the heartbeat stops with the loop that started it.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
