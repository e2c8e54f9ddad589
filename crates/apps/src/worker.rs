//! The hub's side of the apps' reads, in the background: it finds what to ask (a new channel's
//! conversations, a conversation nobody described yet), queues the calls durably, makes them,
//! applies the answers by the receive rules, and settles each call: done, again later with
//! backoff, or dead with the app's answer kept. A receive never waits for any of it.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::join_all;
use pdchannels_model::manifest::Endpoint;
use pdchannels_model::{Channels, Limits};
use pdchannels_store::{
    AppCall, AppCredentials, AppState, CallEnd, NewAppCall, SenderDetails, Store, StoreEvent,
};
use serde_json::{Value, json};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::call::{Answer, AppClient, Called, Refusal, now_ms};
use crate::conversation::{AppConversation, read_conversation};
use crate::sender;

/// Calls in flight at once to one app (the research's "at most 4 per app").
const PER_APP: usize = 4;

/// Calls in flight at once in all.
const IN_FLIGHT: usize = 16;

/// How long a claimed call is this hub's: past it, another hub (or this one, restarted) takes
/// it again. Longer than the longest call (getConversations' 30 s, a few pages).
const LEASE_MS: i64 = 5 * 60_000;

/// The least time between two looks for work, however many messages arrive.
const MIN_GAP: Duration = Duration::from_millis(50);

/// The least time between two looks for conversations no app has described yet.
const DESCRIBE_GAP: Duration = Duration::from_millis(500);

/// A look goes back this much before the previous one began: writes committed around it, and
/// the clocks of several hubs on one database, are covered (a conversation seen twice is not
/// asked about twice: its call is pending).
const LOOK_OVERLAP_MS: i64 = 5_000;

/// The most conversations a look queues; more wait for the next look.
const LOOK_LIMIT: i64 = 100;

/// How often the worker looks for work when nothing woke it.
const TICK: Duration = Duration::from_millis(250);

/// How often the worker looks for replies a stopped hub left `sending`.
const ABANDONED_GAP: Duration = Duration::from_secs(60);

/// A reply `sending` for this long was abandoned: postMessage's own timeout is 15 s, so no live
/// hub is still waiting for the app's answer (on PostgreSQL, any hub's reply counts).
const ABANDONED_AFTER_MS: i64 = 2 * 60_000;

/// The most conversations taken from one page: 30 are asked for; an app sending thousands gets
/// the first ones stored.
const MAX_CONVERSATIONS_PER_PAGE: usize = 100;

/// The most pages any sync reads, whatever the app's `--backfill-pages`.
const MAX_PAGES: u32 = 100;

/// The waits between attempts of a failing read; after the last, the call is dead.
const BACKOFF_MS: [i64; 6] = [2_000, 10_000, 60_000, 300_000, 1_800_000, 7_200_000];

/// The background worker of one hub.
#[derive(Clone)]
pub struct Worker {
    store: Store,
    client: AppClient,
    limits: Limits,
    in_flight: InFlight,
    /// Where the next look for undescribed conversations starts (ms since the epoch, by the
    /// conversations' activity): 0 at first, so a hub that starts looks at every one once.
    looked_since_ms: Arc<std::sync::atomic::AtomicI64>,
}

/// How many calls each app has in flight.
#[derive(Clone, Default)]
struct InFlight(Arc<Mutex<HashMap<String, usize>>>);

/// One call's place; given back when dropped (the call ended, or was aborted).
struct Place {
    in_flight: InFlight,
    app: String,
}

impl InFlight {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, usize>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The places free in all, and the apps that have none left (`,a,b,`: the claim's filter).
    fn places(&self) -> (i64, String) {
        let counts = self.lock();
        let total: usize = counts.values().sum();
        let busy: Vec<&str> = counts
            .iter()
            .filter(|(_, n)| **n >= PER_APP)
            .map(|(app, _)| app.as_str())
            .collect();
        // A claim may take every call from one app: no more than the app closest to its
        // limit (among those not at it) still has room for.
        let headroom = counts
            .values()
            .filter(|n| **n < PER_APP)
            .map(|n| PER_APP - n)
            .min()
            .unwrap_or(PER_APP);
        let free = IN_FLIGHT.saturating_sub(total).min(headroom);
        (free as i64, format!(",{},", busy.join(",")))
    }

    fn take(&self, app: &str) -> Place {
        *self.lock().entry(app.to_owned()).or_default() += 1;
        Place {
            in_flight: self.clone(),
            app: app.to_owned(),
        }
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut counts = self.in_flight.lock();
        if let Some(n) = counts.get_mut(&self.app) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.app);
            }
        }
    }
}

/// Queues the first sync of a channel that just became `app`'s (getConversations).
pub async fn start_sync(
    store: &Store,
    app: &str,
    channel_id: &str,
) -> Result<bool, pdchannels_store::StoreError> {
    store
        .enqueue_app_call(NewAppCall {
            app: app.to_owned(),
            endpoint: Endpoint::GetConversations.key().to_owned(),
            channel_id: channel_id.to_owned(),
            subject: String::new(),
            params: json!({}),
        })
        .await
}

impl Worker {
    /// A worker over `store`, validating what apps send with `limits`.
    pub fn new(store: Store, limits: Limits) -> Self {
        Self {
            store,
            client: AppClient::new(),
            limits,
            in_flight: InFlight::default(),
            looked_since_ms: Arc::new(std::sync::atomic::AtomicI64::new(0)),
        }
    }

    /// Runs until `shutdown`: looks for work every 250 ms, and at once when a call is queued or
    /// one of its calls ends; for undescribed conversations at most every 500 ms.
    /// Each call runs as its own task, so a slow app holds only its own calls (at most 4 at
    /// once), never another app's; calls in flight at shutdown are dropped (their leases run out
    /// and they are made again: reads are safe to repeat).
    pub async fn run(self, shutdown: CancellationToken) {
        let mut events = self.store.subscribe().await.ok();
        let mut calls = JoinSet::new();
        let mut last_look: Option<tokio::time::Instant> = None;
        let mut last_sweep: Option<tokio::time::Instant> = None;
        loop {
            while calls.try_join_next().is_some() {}
            let round = tokio::time::Instant::now();
            if last_sweep.is_none_or(|at| round.duration_since(at) >= ABANDONED_GAP) {
                last_sweep = Some(round);
                self.fail_abandoned_replies().await;
            }
            // Looking for conversations to describe reads every undescribed one: under a
            // stream of receives it is done at most every 500 ms, not every round.
            let look = last_look.is_none_or(|at| round.duration_since(at) >= DESCRIBE_GAP);
            if look {
                last_look = Some(round);
            }
            if let Err(e) = self.start_due(&mut calls, look).await {
                tracing::warn!(error = %e, "the provider-app worker could not read its queue; trying again");
            }
            // Under a stream of receives every message is an event: the worker looks at most
            // every 50 ms, so its reads never crowd out the receives it follows.
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep_until(round + MIN_GAP) => {}
            }
            // Woken by what can give it work: a call queued, a call of its own ended (a place
            // is free), or a new message once a look for undescribed conversations is due.
            // Other events (every status tick of a stream of receives) wait for the tick.
            let look_due_at = last_look.map(|at| at + DESCRIBE_GAP);
            let woken = async {
                let Some(events) = events.as_mut() else {
                    return std::future::pending().await;
                };
                loop {
                    match events.next().await {
                        None => return std::future::pending().await,
                        Some(StoreEvent::AppCallQueued { .. } | StoreEvent::Resync) => return,
                        Some(StoreEvent::MessageStored { new: true, .. })
                            if look_due_at.is_none_or(|at| tokio::time::Instant::now() >= at) =>
                        {
                            return;
                        }
                        Some(_) => {}
                    }
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(TICK) => {}
                () = woken => {}
                Some(_) = calls.join_next(), if !calls.is_empty() => {}
            }
        }
    }

    /// Queues what needs asking, then starts the calls that are due, as many as the apps' free
    /// places allow. Answers how many it started.
    async fn start_due(
        &self,
        calls: &mut JoinSet<()>,
        look_for_conversations: bool,
    ) -> Result<usize, pdchannels_store::StoreError> {
        let undescribed = if look_for_conversations {
            use std::sync::atomic::Ordering;
            let started_ms = now_ms();
            let since = self.looked_since_ms.load(Ordering::Acquire);
            let found = self
                .store
                .conversations_to_describe(since, LOOK_LIMIT)
                .await?;
            // A full look may have left some for the next one: it starts where this one did.
            if i64::try_from(found.len()).unwrap_or(i64::MAX) < LOOK_LIMIT {
                self.looked_since_ms
                    .store(started_ms - LOOK_OVERLAP_MS, Ordering::Release);
            }
            found
        } else {
            Vec::new()
        };
        if !undescribed.is_empty() {
            let asks = undescribed
                .into_iter()
                .map(|(app, channel_id, conversation_id)| NewAppCall {
                    app,
                    endpoint: Endpoint::GetConversationById.key().to_owned(),
                    channel_id,
                    subject: conversation_id,
                    params: json!({}),
                })
                .collect();
            self.store.enqueue_app_calls(asks).await?;
        }
        let mut started = 0;
        loop {
            let (free, busy) = self.in_flight.places();
            if free == 0 || !self.store.app_calls_due(&busy).await? {
                return Ok(started);
            }
            let claimed = self.store.claim_app_calls(free, LEASE_MS, &busy).await?;
            if claimed.is_empty() {
                return Ok(started);
            }
            for call in claimed {
                started += 1;
                let place = self.in_flight.take(&call.app);
                let worker = self.clone();
                calls.spawn(async move {
                    let _place = place;
                    let end = worker.execute(&call).await;
                    if let Err(e) = worker.store.settle_app_call(call.id, end).await {
                        // Its lease runs out and it is made again: reads are safe to repeat.
                        tracing::warn!(error = %e, call = call.id, "recording a provider app's answer failed");
                    }
                });
            }
        }
    }

    /// Replies left `sending` by a hub that stopped mid-call become `failed`, with why.
    async fn fail_abandoned_replies(&self) {
        match self
            .store
            .fail_abandoned_replies(now_ms() - ABANDONED_AFTER_MS)
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::warn!(
                replies = n,
                "replies left sending by a hub that stopped are now failed; each can be retried"
            ),
            Err(e) => {
                tracing::warn!(error = %e, "looking for replies a stopped hub left sending failed");
            }
        }
    }

    /// Makes every call due now, waiting for each (tests and one-shot commands). Answers how
    /// many it made.
    pub async fn run_once(&self) -> Result<usize, pdchannels_store::StoreError> {
        let mut calls = JoinSet::new();
        let mut made = 0;
        loop {
            let started = self.start_due(&mut calls, true).await?;
            made += started;
            if calls.is_empty() {
                return Ok(made);
            }
            calls.join_next().await;
        }
    }

    /// Makes one call and applies its answer.
    async fn execute(&self, call: &AppCall) -> CallEnd {
        let app = match self.store.app_credentials(&call.app).await {
            Ok(Some(app)) => app,
            Ok(None) => {
                return CallEnd::Dead {
                    status: None,
                    error: format!(
                        "the app {} is gone or its manifest no longer parses",
                        call.app
                    ),
                    answer: None,
                };
            }
            Err(e) => return retry(call, None, e.to_string(), None),
        };
        match call.endpoint.as_str() {
            "getConversations" => self.sync_channel(&app, call).await,
            "getConversationById" => self.describe(&app, call).await,
            "getSenderById" => self.fetch_sender(&app, call).await,
            other => CallEnd::Dead {
                status: None,
                error: format!("this hub does not make {other} calls"),
                answer: None,
            },
        }
    }

    /// getConversations: one page of 30 conversations (30 messages each) by default, more with
    /// the app's `--backfill-pages`, following `additional_data.after` only while it moves on.
    async fn sync_channel(&self, app: &AppCredentials, call: &AppCall) -> CallEnd {
        let pages = app.backfill_pages.clamp(1, MAX_PAGES);
        let mut after: Option<String> = call
            .params
            .get("after")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let mut seen = HashSet::new();
        let mut last = None;
        for _ in 0..pages {
            let mut query = vec![
                ("conversations_limit", "30".to_owned()),
                ("messages_limit", "30".to_owned()),
            ];
            if let Some(cursor) = &after {
                query.push(("after", cursor.clone()));
            }
            let Some(called) = self
                .client
                .get(
                    app,
                    Endpoint::GetConversations,
                    &[("providerChannelId", &call.channel_id)],
                    &query,
                )
                .await
            else {
                return no_endpoint(Endpoint::GetConversations);
            };
            let list = match &called.answer {
                Answer::Data(data) => match data {
                    Value::Array(list) => list.clone(),
                    Value::Null => Vec::new(),
                    // A single conversation where a list was expected: taken as one.
                    Value::Object(_) => vec![data.clone()],
                    other => {
                        return retry(
                            call,
                            called.status,
                            format!(
                                "getConversations answered {} where a list of conversations was expected",
                                pdchannels_model::json_kind(other)
                            ),
                            called.excerpt,
                        );
                    }
                },
                _ => return self.refused_or_failed(app, call, called).await,
            };
            for conversation in list.iter().take(MAX_CONVERSATIONS_PER_PAGE) {
                if let Err(end) = self.apply(app, call, conversation, &called, None).await {
                    return end;
                }
            }
            // The stop rules: no data, no cursor, a cursor seen before (the example app sends
            // the same one forever), or the page count reached.
            let next = called
                .additional
                .as_ref()
                .and_then(|a| a.get("after"))
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned);
            last = Some((called.status, called.excerpt.clone()));
            match next {
                Some(cursor) if !list.is_empty() && seen.insert(cursor.clone()) => {
                    after = Some(cursor)
                }
                _ => break,
            }
        }
        let (status, answer) = last.unwrap_or((None, None));
        CallEnd::Done { status, answer }
    }

    /// getConversationById: who is in a conversation, and a page of its messages.
    async fn describe(&self, app: &AppCredentials, call: &AppCall) -> CallEnd {
        let mut query = vec![("messages_limit", "30".to_owned())];
        if let Some(cursor) = call.params.get("after").and_then(Value::as_str) {
            query.push(("after", cursor.to_owned()));
        }
        let Some(called) = self
            .client
            .get(
                app,
                Endpoint::GetConversationById,
                &[
                    ("providerChannelId", &call.channel_id),
                    ("sourceConversationId", &call.subject),
                ],
                &query,
            )
            .await
        else {
            return no_endpoint(Endpoint::GetConversationById);
        };
        match &called.answer {
            Answer::Data(conversation) => match self
                .apply(app, call, conversation, &called, Some(&call.subject))
                .await
            {
                Ok(()) => CallEnd::Done {
                    status: called.status,
                    answer: called.excerpt,
                },
                Err(end) => end,
            },
            // The app does not know it: keep the conversation as receive made it, and do not ask
            // again.
            Answer::Refused(r) if r.status == 404 => {
                if let Err(e) = self
                    .store
                    .mark_conversation_described(&call.channel_id, &call.subject)
                    .await
                {
                    return retry(call, called.status, e.to_string(), called.excerpt);
                }
                CallEnd::Done {
                    status: called.status,
                    answer: called.excerpt,
                }
            }
            _ => self.refused_or_failed(app, call, called).await,
        }
    }

    /// getSenderById: a participant's name and avatar, unless asked already (once; daily for
    /// an avatar that expires). A 404 keeps what is stored, and is not asked again.
    async fn fetch_sender(&self, app: &AppCredentials, call: &AppCall) -> CallEnd {
        let expires = call.params.get("expires").and_then(Value::as_bool) == Some(true);
        match self
            .store
            .sender_fetched_at(&call.channel_id, &call.subject)
            .await
        {
            Ok(at) if !sender::due(at, expires, now_ms()) => {
                return CallEnd::Done {
                    status: None,
                    answer: Some("not called: the app was asked about this sender already".into()),
                };
            }
            Ok(_) => {}
            Err(e) => return retry(call, None, e.to_string(), None),
        }
        let Some(called) = self
            .client
            .get(
                app,
                Endpoint::GetSenderById,
                &[
                    ("providerChannelId", &call.channel_id),
                    ("senderId", &call.subject),
                ],
                &[],
            )
            .await
        else {
            return no_endpoint(Endpoint::GetSenderById);
        };
        let details = match &called.answer {
            Answer::Data(answer) => sender::read_sender(answer, &call.subject, &self.limits),
            Answer::Refused(r) if r.status == 404 => SenderDetails::default(),
            _ => return self.refused_or_failed(app, call, called).await,
        };
        match self
            .store
            .record_sender(&call.channel_id, &call.subject, details)
            .await
        {
            Ok(()) => CallEnd::Done {
                status: called.status,
                answer: called.excerpt,
            },
            Err(e) => retry(call, called.status, e.to_string(), called.excerpt),
        }
    }

    /// Stores one conversation an app sent: its details, then its messages by the receive rules.
    /// `asked`: the conversation a getConversationById asked about. The answer is taken as that
    /// one whatever id it carries (an app answering another id must neither plant a conversation
    /// nor leave the asked one undescribed, to be asked again forever), and it only describes a
    /// conversation that still exists (one deleted meanwhile stays deleted).
    async fn apply(
        &self,
        app: &AppCredentials,
        call: &AppCall,
        conversation: &Value,
        called: &Called,
        asked: Option<&str>,
    ) -> Result<(), CallEnd> {
        let AppConversation {
            details,
            messages,
            skipped,
        } = read_conversation(conversation, &call.channel_id, asked, &self.limits)
            .map_err(|why| retry(call, called.status, why, called.excerpt.clone()))?;
        if !skipped.is_empty() {
            tracing::warn!(app = %call.app, channel = %call.channel_id, conversation = %details.conversation_id, skipped = ?skipped, "left out messages an app sent that are not valid receives");
        }
        let channel_id = details.channel_id.clone();
        let senders: Vec<(String, bool)> = details
            .participants
            .iter()
            .filter_map(|p| sender::wanted(p).map(|expires| (p.id.clone(), expires)))
            .collect();
        match self
            .store
            .describe_conversation(details, asked.is_none())
            .await
        {
            Ok(true) => {}
            // The channel (or the conversation asked about) was deleted meanwhile.
            Ok(false) => return Ok(()),
            Err(e) => {
                return Err(retry(
                    call,
                    called.status,
                    e.to_string(),
                    called.excerpt.clone(),
                ));
            }
        }
        if app.manifest.has(Endpoint::GetSenderById) {
            for (sender_id, expires) in senders {
                let queued = self
                    .store
                    .enqueue_app_call(NewAppCall {
                        app: app.name.clone(),
                        endpoint: Endpoint::GetSenderById.key().to_owned(),
                        channel_id: channel_id.clone(),
                        subject: sender_id,
                        params: json!({"expires": expires}),
                    })
                    .await;
                if let Err(e) = queued {
                    return Err(retry(
                        call,
                        called.status,
                        e.to_string(),
                        called.excerpt.clone(),
                    ));
                }
            }
        }
        let receives = messages.into_iter().map(|m| self.store.receive_message(m));
        for result in join_all(receives).await {
            match result {
                Ok(_) => {}
                Err(pdchannels_model::ChannelsError::ChannelNotFound { .. }) => {
                    tracing::debug!(channel = %channel_id, "the channel was deleted during a sync");
                }
                Err(e) => {
                    return Err(retry(
                        call,
                        called.status,
                        e.to_string(),
                        called.excerpt.clone(),
                    ));
                }
            }
        }
        Ok(())
    }

    /// What a refusal or a failure does to the call, the app and the channel.
    async fn refused_or_failed(
        &self,
        app: &AppCredentials,
        call: &AppCall,
        called: Called,
    ) -> CallEnd {
        match called.answer {
            Answer::Failed(why) => retry(call, called.status, why, called.excerpt),
            Answer::Refused(refusal) => self.refused(app, call, refusal, called.excerpt).await,
            Answer::Data(_) => CallEnd::Done {
                status: called.status,
                answer: called.excerpt,
            },
        }
    }

    async fn refused(
        &self,
        app: &AppCredentials,
        call: &AppCall,
        refusal: Refusal,
        excerpt: Option<String>,
    ) -> CallEnd {
        let status = Some(refusal.status);
        let said = refusal.describe();
        if refusal.suspended() {
            if let Err(e) = self.store.suspend_channel(&call.channel_id, &said).await {
                return retry(call, status, e.to_string(), excerpt);
            }
            return CallEnd::Dead {
                status,
                error: format!("the account behind the channel is suspended ({said})"),
                answer: excerpt,
            };
        }
        if refusal.credentials_refused() {
            // The call waits: no call to this app is made until `app add --replace` gives new
            // credentials, and then it goes on by itself.
            let state = AppState::CredentialsInvalid(said.clone());
            if let Err(e) = self.store.set_app_state(&app.name, &state).await {
                return retry(call, status, e.to_string(), excerpt);
            }
            return CallEnd::Retry {
                at_ms: now_ms(),
                status,
                error: format!(
                    "the app refuses the hub's credentials ({said}); give new ones with `pdchannels app add {} --replace`",
                    app.name
                ),
                answer: excerpt,
            };
        }
        if let Some(at_ms) = refusal.retry_at_ms {
            let state = AppState::PausedUntil(at_ms, said.clone());
            if let Err(e) = self.store.set_app_state(&app.name, &state).await {
                return retry(call, status, e.to_string(), excerpt);
            }
            return CallEnd::Retry {
                at_ms,
                status,
                error: format!("the app asked the hub to wait ({said})"),
                answer: excerpt,
            };
        }
        CallEnd::Dead {
            status,
            error: format!("the app refused the call ({said})"),
            answer: excerpt,
        }
    }
}

/// Again later, after the backoff of the call's attempts; dead after the last.
fn retry(call: &AppCall, status: Option<u16>, error: String, answer: Option<String>) -> CallEnd {
    let attempt = usize::try_from(call.attempts.max(1) - 1).unwrap_or(0);
    match BACKOFF_MS.get(attempt) {
        Some(wait) => CallEnd::Retry {
            at_ms: now_ms() + wait,
            status,
            error,
            answer,
        },
        None => CallEnd::Dead {
            status,
            error: format!(
                "{error} (gave up after {} attempts; `pdchannels app calls retry {}` tries again)",
                call.attempts, call.id
            ),
            answer,
        },
    }
}

fn no_endpoint(endpoint: Endpoint) -> CallEnd {
    CallEnd::Dead {
        status: None,
        error: format!("the app's manifest has no {endpoint}"),
        answer: None,
    }
}
