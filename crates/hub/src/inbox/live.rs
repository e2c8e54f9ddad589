//! The inbox's live updates: `GET /inbox/events`, a server-sent event stream per open tab.
//!
//! One feed per hub listens to the store's events and sends what changed in batches: the first
//! change at once, then at most one batch every 250 ms however fast messages arrive, so that a
//! thousand open tabs cost a thousand small writes a few times a second, not one per message
//! each. A batch names the conversations that changed; the page reads itself again (its list
//! and its thread, as the person sees them) rather than being sent HTML that would need the
//! person's read state on every stream.
//!
//! Each batch has an id (the hub's clock in ms, always increasing). A browser that reconnects
//! sends the last one as `Last-Event-ID`: the stream first says what changed since then, or,
//! after a long absence, `resync` (the page reloads). What changed is what the feed sent since
//! (it keeps the last 10 minutes of batches: closes, deletes and read marks too), with the
//! conversations whose activity the store shows since (new messages that another hub's feed
//! saw first); a hub that was not running then cannot say what it missed, so it says `resync`. A stream
//! ends when the hub shuts down, within 10 s of its session ending (logged out, token revoked,
//! expired), and after 5 minutes in any case (the browser reconnects at once). Streams are
//! bounded: 16 per API token, and at most half the hub's connections (so tabs never starve the
//! Channels API), 2,000 at most.
//!
//! What a batch costs each stream is kept to its one write: the feed writes the batch's SSE text
//! once and every stream sends the same bytes (no serializing per stream); the keep-alive
//! comment comes from the feed too (one timer, not one per stream reset after every event); and
//! one task checks the open sessions every 10 s, each session once however many of its tabs are
//! open, rather than every stream asking the store on its own timer.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream, StreamExt};
use pdchannels_model::Timestamp;
use pdchannels_store::{Store, StoreEvent};
use serde::Serialize;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::session::Viewer;
use crate::state::AppState;

/// The least time between two batches. A tab reads itself again on each, so more often is
/// not faster to the eye; and a thousand streams cost a thousand writes per batch (measured:
/// at 100 ms, 1,000 open streams took a third of a 2-core hub's receive rate).
const BATCH_GAP: Duration = Duration::from_millis(250);

/// The most conversations a batch names; past it, `more` says there were others.
const BATCH_CONVERSATIONS: usize = 20;

/// How long a stream lasts before the browser is asked to reconnect.
const STREAM_LIFETIME: Duration = Duration::from_secs(5 * 60);

/// How far back a reconnecting stream is told what changed; further back, it reloads.
const REPLAY_WINDOW_MS: i64 = 10 * 60 * 1000;

/// The clocks of several hubs on one database may differ by this much: a replay starts this
/// much earlier than the id it was given (a change named twice costs the page one more read).
const CLOCK_SLACK_MS: i64 = 2_000;

/// The most conversations a replay names before it says `resync` instead.
const REPLAY_CONVERSATIONS: u32 = 100;

/// The most batches the feed keeps for replay: `REPLAY_WINDOW_MS` of batches at most one per
/// `BATCH_GAP`, each naming at most `BATCH_CONVERSATIONS` (a few MB at the very most).
const RECENT_BATCHES: usize = (REPLAY_WINDOW_MS / BATCH_GAP.as_millis() as i64) as usize;

/// Open streams at once in one hub, at most; past it, 503. Each holds a connection, so never
/// more than half the hub's connections either: streams never starve the Channels API.
pub const MAX_STREAMS: usize = 2_000;

/// Open streams of one API token's sessions at once (a person's tabs and browsers).
pub const MAX_STREAMS_PER_TOKEN: usize = 16;

/// How often a stream checks that its session is still open (logged out, token revoked).
const SESSION_CHECK: Duration = Duration::from_secs(10);

/// Batches a slow stream may fall behind before it is told to resync.
const BACKLOG: usize = 64;

/// A comment sent to every stream when no batch went for this long (proxies close idle ones).
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The keep-alive comment.
const KEEP_ALIVE_FRAME: &[u8] = b":\n\n";

/// A stream's first lines: reconnect after 1 s, and a comment that says it is open.
const FIRST_FRAME: &[u8] = b"retry: 1000\n: live\n\n";

/// What changed, as a stream sends it (`event: change`).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Batch {
    /// The batch's id: the hub's clock in ms when it was sent.
    #[serde(skip)]
    pub id: i64,
    /// `[channel id, conversation id]` of each conversation that changed.
    pub conversations: Vec<(String, String)>,
    /// More conversations changed than are named.
    pub more: bool,
    /// How many new messages the batch holds (for desktop notifications).
    pub new_messages: usize,
    /// Events were missed: the page should reload.
    #[serde(skip)]
    pub resync: bool,
}

/// The hub's one feed of batches; started by the first stream.
#[derive(Clone)]
pub struct Feed(Arc<FeedInner>);

struct FeedInner {
    store: Store,
    shutdown: CancellationToken,
    /// Each batch's SSE text, written once for every stream.
    sender: broadcast::Sender<Bytes>,
    started: OnceLock<()>,
    /// The batches sent lately, for the streams that reconnect.
    recent: std::sync::Mutex<Recent>,
    open: AtomicUsize,
    /// The most streams at once: `MAX_STREAMS`, or half the hub's connections.
    max_streams: usize,
    /// Open streams per API token.
    per_token: std::sync::Mutex<HashMap<String, usize>>,
    /// The sessions of the open streams (by cookie secret): checked by one task.
    sessions: std::sync::Mutex<HashMap<String, Watched>>,
}

/// The batches a feed sent in the last `REPLAY_WINDOW_MS`.
struct Recent {
    /// Every batch after this id is kept (the feed's start, or the last batch let go).
    kept_after: i64,
    batches: VecDeque<Batch>,
}

impl Recent {
    fn keep(&mut self, batch: &Batch) {
        while self.batches.len() >= RECENT_BATCHES
            || self
                .batches
                .front()
                .is_some_and(|old| old.id < batch.id - REPLAY_WINDOW_MS)
        {
            if let Some(old) = self.batches.pop_front() {
                self.kept_after = old.id;
            }
        }
        self.batches.push_back(Batch {
            new_messages: 0,
            ..batch.clone()
        });
    }

    /// The conversations named since `last` (less the clock slack: `last` may be another hub's
    /// id), and whether some were not named (a batch with `more`, a missed event); `None` when
    /// batches since `last` were not kept (the feed was not running yet: the hub restarted since).
    fn since(&self, last: i64) -> Option<(BTreeSet<(String, String)>, bool)> {
        if last < self.kept_after {
            return None;
        }
        let from = last.saturating_sub(CLOCK_SLACK_MS);
        let mut named = BTreeSet::new();
        let mut more = false;
        for batch in self.batches.iter().filter(|b| b.id > from) {
            named.extend(batch.conversations.iter().cloned());
            more |= batch.more || batch.resync;
        }
        Some((named, more))
    }
}

/// A session some open streams belong to.
struct Watched {
    /// Cancelled when the session is found ended: its streams end.
    ended: CancellationToken,
    streams: usize,
}

impl Feed {
    /// A feed over `store`'s events that ends (and ends every stream) when `shutdown` is
    /// cancelled; its streams take at most half of `max_connections`.
    pub fn new(store: Store, shutdown: CancellationToken, max_connections: usize) -> Self {
        Self(Arc::new(FeedInner {
            store,
            shutdown,
            sender: broadcast::channel(BACKLOG).0,
            started: OnceLock::new(),
            recent: std::sync::Mutex::new(Recent {
                kept_after: i64::MAX,
                batches: VecDeque::new(),
            }),
            open: AtomicUsize::new(0),
            max_streams: MAX_STREAMS.min(max_connections / 2),
            per_token: std::sync::Mutex::default(),
            sessions: std::sync::Mutex::default(),
        }))
    }

    /// Listens to the feed (starting it, and the session checks, the first time).
    fn subscribe(&self) -> broadcast::Receiver<Bytes> {
        let receiver = self.0.sender.subscribe();
        self.0.started.get_or_init(|| {
            lock(&self.0.recent).kept_after = Timestamp::now().unix_millis();
            tokio::spawn(batch_events(self.0.clone()));
            tokio::spawn(check_sessions(self.0.clone()));
        });
        receiver
    }
}

fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Every `SESSION_CHECK`, asks the store once per session of the open streams whether it is
/// still open, and ends the streams of those that are not (logged out, token revoked).
async fn check_sessions(feed: Arc<FeedInner>) {
    loop {
        tokio::select! {
            () = feed.shutdown.cancelled() => return,
            () = tokio::time::sleep(SESSION_CHECK) => {}
        }
        let secrets: Vec<String> = lock(&feed.sessions).keys().cloned().collect();
        for secret in secrets {
            if matches!(feed.store.inbox_session(&secret).await, Ok(None))
                && let Some(watched) = lock(&feed.sessions).remove(&secret)
            {
                watched.ended.cancel();
            }
        }
    }
}

/// A place among the open streams, given back when the stream ends.
struct StreamPlace {
    feed: Arc<FeedInner>,
    token_id: String,
    /// The session's cookie secret, and what ends its streams.
    secret: String,
    ended: CancellationToken,
}

/// Why a stream was not opened.
enum NoPlace {
    /// The hub's streams are all taken (its most).
    Hub(usize),
    /// This token's are.
    Token,
}

impl StreamPlace {
    fn take(feed: &Feed, token_id: &str, secret: &str) -> Result<Self, NoPlace> {
        let inner = &feed.0;
        {
            let mut per_token = lock(&inner.per_token);
            let mine = per_token.entry(token_id.to_owned()).or_default();
            if *mine >= MAX_STREAMS_PER_TOKEN {
                return Err(NoPlace::Token);
            }
            *mine += 1;
        }
        let taken = inner
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < inner.max_streams).then_some(n + 1)
            });
        match taken {
            Ok(n) => {
                open_streams_gauge(n + 1);
                let ended = {
                    let mut sessions = lock(&inner.sessions);
                    let watched = sessions
                        .entry(secret.to_owned())
                        .or_insert_with(|| Watched {
                            ended: CancellationToken::new(),
                            streams: 0,
                        });
                    watched.streams += 1;
                    watched.ended.clone()
                };
                Ok(Self {
                    feed: inner.clone(),
                    token_id: token_id.to_owned(),
                    secret: secret.to_owned(),
                    ended,
                })
            }
            Err(_) => {
                give_back_token(inner, token_id);
                Err(NoPlace::Hub(inner.max_streams))
            }
        }
    }
}

fn give_back_token(inner: &FeedInner, token_id: &str) {
    let mut per_token = lock(&inner.per_token);
    if let Some(n) = per_token.get_mut(token_id) {
        *n -= 1;
        if *n == 0 {
            per_token.remove(token_id);
        }
    }
}

impl Drop for StreamPlace {
    fn drop(&mut self) {
        give_back_token(&self.feed, &self.token_id);
        {
            let mut sessions = lock(&self.feed.sessions);
            // Found ended, it was removed already (and may be watched again by a new login).
            if let Some(watched) = sessions.get_mut(&self.secret)
                && !self.ended.is_cancelled()
            {
                watched.streams -= 1;
                if watched.streams == 0 {
                    sessions.remove(&self.secret);
                }
            }
        }
        let n = self.feed.open.fetch_sub(1, Ordering::AcqRel);
        open_streams_gauge(n - 1);
    }
}

#[allow(clippy::cast_precision_loss)] // at most MAX_STREAMS
fn open_streams_gauge(n: usize) {
    metrics::gauge!("pdchannels_inbox_streams").set(n as f64);
}

/// Ids that always increase, from the hub's clock.
struct Ids(i64);

impl Ids {
    fn next(&mut self) -> i64 {
        self.0 = (self.0 + 1).max(Timestamp::now().unix_millis());
        self.0
    }
}

/// Collects the store's events into batches until the hub shuts down.
async fn batch_events(feed: Arc<FeedInner>) {
    let (sender, shutdown) = (&feed.sender, &feed.shutdown);
    let Ok(mut events) = feed.store.subscribe().await else {
        tracing::warn!(
            "the inbox's live updates could not listen to the store; pages update when reloaded"
        );
        return;
    };
    let mut ids = Ids(0);
    let mut last_sent: Option<tokio::time::Instant> = None;
    loop {
        let mut batch = Pending::default();
        // The first change of a batch: sent at once if the last batch was long enough ago.
        tokio::select! {
            () = shutdown.cancelled() => return,
            event = events.next() => match event {
                Some(event) => batch.add(event),
                None => return,
            },
            () = tokio::time::sleep(KEEP_ALIVE) => {
                let _ = sender.send(Bytes::from_static(KEEP_ALIVE_FRAME));
                continue;
            }
        }
        if let Some(at) = last_sent {
            let deadline = at + BATCH_GAP;
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep_until(deadline) => break,
                    event = events.next() => match event {
                        Some(event) => batch.add(event),
                        None => return,
                    },
                }
            }
        }
        if batch.is_empty() {
            continue;
        }
        last_sent = Some(tokio::time::Instant::now());
        let batch = batch.into_batch(ids.next());
        lock(&feed.recent).keep(&batch);
        // No stream listening is not an error: the next one replays what it missed.
        let _ = sender.send(batch.frame());
    }
}

/// A batch being collected.
#[derive(Default)]
struct Pending {
    conversations: BTreeSet<(String, String)>,
    more: bool,
    new_messages: usize,
    resync: bool,
}

impl Pending {
    fn add(&mut self, event: StoreEvent) {
        let conversation = match event {
            StoreEvent::MessageStored {
                channel_id,
                conversation_id,
                new,
                ..
            } => {
                self.new_messages += usize::from(new);
                Some((channel_id, conversation_id))
            }
            StoreEvent::ConversationDeleted {
                channel_id,
                conversation_id,
            }
            | StoreEvent::ConversationDescribed {
                channel_id,
                conversation_id,
            }
            | StoreEvent::ConversationMarked {
                channel_id,
                conversation_id,
            } => Some((channel_id, conversation_id)),
            StoreEvent::ChannelAdded { .. } | StoreEvent::ChannelDeleted { .. } => {
                self.more = true;
                None
            }
            StoreEvent::Resync => {
                self.resync = true;
                None
            }
            StoreEvent::AppCallQueued { .. } => None,
        };
        if let Some(key) = conversation
            && !self.conversations.contains(&key)
        {
            if self.conversations.len() < BATCH_CONVERSATIONS {
                self.conversations.insert(key);
            } else {
                self.more = true;
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.conversations.is_empty() && !self.more && !self.resync
    }

    fn into_batch(self, id: i64) -> Batch {
        Batch {
            id,
            conversations: self.conversations.into_iter().collect(),
            more: self.more,
            new_messages: self.new_messages,
            resync: self.resync,
        }
    }
}

/// `GET /inbox/events`
pub async fn events(State(app): State<AppState>, viewer: Viewer, headers: HeaderMap) -> Response {
    let place = match StreamPlace::take(&app.inbox_feed, &viewer.token_id, &viewer.secret) {
        Ok(place) => place,
        Err(NoPlace::Hub(most)) => {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                [("retry-after", "5")],
                format!("This hub has {most} live inbox tabs open, its most (half of --max-connections, at most {MAX_STREAMS}): close a tab, or try again in a moment. Pages still work; they update when reloaded."),
            )
                .into_response();
        }
        Err(NoPlace::Token) => {
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", "5")],
                format!("This login has {MAX_STREAMS_PER_TOKEN} live inbox tabs open, its most: close one. Pages still work; they update when reloaded."),
            )
                .into_response();
        }
    };
    let receiver = app.inbox_feed.subscribe();
    let now = Timestamp::now().unix_millis();
    let replay = match last_event_id(&headers) {
        Some(last) => replay_since(&app.inbox_feed, last, now).await,
        None => None,
    };
    let session_left =
        Duration::from_millis(u64::try_from(viewer.expires_at_ms - now).unwrap_or(0));
    let ends = tokio::time::sleep(STREAM_LIFETIME.min(session_left));
    let shutdown = app.inbox_feed.0.shutdown.clone();
    // Logged out or token revoked: `check_sessions` ends the stream within SESSION_CHECK.
    let session_ended = place.ended.clone();
    let live = stream::unfold((receiver, place), |(mut receiver, place)| async move {
        let frame = match receiver.recv().await {
            Ok(frame) => frame,
            Err(broadcast::error::RecvError::Lagged(_)) => {
                resync_event(Timestamp::now().unix_millis())
            }
            Err(broadcast::error::RecvError::Closed) => return None,
        };
        Some((Ok::<_, Infallible>(frame), (receiver, place)))
    });
    let first = stream::iter(
        std::iter::once(Bytes::from_static(FIRST_FRAME))
            .chain(replay)
            .map(Ok),
    );
    let stream = first.chain(live).take_until(async move {
        tokio::select! {
            () = ends => {}
            () = shutdown.cancelled() => {}
            () = session_ended.cancelled() => {}
        }
    });
    sse(stream)
}

/// The event stream's response: each item is sent as it is, one write.
fn sse(stream: impl Stream<Item = Result<Bytes, Infallible>> + Send + 'static) -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            // Proxies (nginx) must pass each event on at once.
            (
                header::HeaderName::from_static("x-accel-buffering"),
                HeaderValue::from_static("no"),
            ),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}

/// `Last-Event-ID`, if it is one of ours.
fn last_event_id(headers: &HeaderMap) -> Option<i64> {
    headers
        .get("last-event-id")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
        .filter(|id| *id > 0)
}

/// What a stream that last heard `last` missed: one `change` naming the conversations, nothing
/// if none changed, or `resync` if it was away too long, too much changed, this hub was not
/// running all that time, or the id is further ahead of this hub's clock than the slack (it
/// came from a hub whose clock runs ahead: what this one sent meanwhile cannot be told apart).
async fn replay_since(feed: &Feed, last: i64, now: i64) -> Option<Bytes> {
    if now.saturating_sub(last) > REPLAY_WINDOW_MS || last > now.saturating_add(CLOCK_SLACK_MS) {
        return Some(resync_event(now));
    }
    // What this hub's feed sent since (closes, deletes and read marks included).
    let Some((mut conversations, more)) = lock(&feed.0.recent).since(last) else {
        return Some(resync_event(now));
    };
    if more {
        return Some(resync_event(now));
    }
    // New messages by the conversations' activity, in case another hub's feed told the tab
    // first (its clock may run ahead of this one's).
    match feed
        .0
        .store
        .inbox_changes_since(
            last.saturating_sub(CLOCK_SLACK_MS),
            REPLAY_CONVERSATIONS + 1,
        )
        .await
    {
        Ok(changed) => conversations.extend(changed),
        Err(e) => {
            tracing::warn!(error = %e, "the inbox could not read what a reconnecting tab missed; it reloads");
            return Some(resync_event(now));
        }
    }
    if conversations.len() > REPLAY_CONVERSATIONS as usize {
        return Some(resync_event(now));
    }
    if conversations.is_empty() {
        return None;
    }
    Some(
        Batch {
            id: now.max(last + 1),
            conversations: conversations.into_iter().collect(),
            more: false,
            new_messages: 0,
            resync: false,
        }
        .frame(),
    )
}

impl Batch {
    /// The batch as its streams send it: `change` with the batch as JSON, or `resync`.
    fn frame(&self) -> Bytes {
        if self.resync {
            return resync_event(self.id);
        }
        // Ids are channel and conversation ids as JSON strings: no line breaks.
        match serde_json::to_string(self) {
            Ok(json) => Bytes::from(format!("id: {}\nevent: change\ndata: {json}\n\n", self.id)),
            Err(_) => resync_event(self.id),
        }
    }
}

fn resync_event(id: i64) -> Bytes {
    Bytes::from(format!("id: {id}\nevent: resync\ndata: reload\n\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(channel: &str, conversation: &str, new: bool) -> StoreEvent {
        StoreEvent::MessageStored {
            channel_id: channel.into(),
            conversation_id: conversation.into(),
            message_id: "m".into(),
            new,
        }
    }

    #[test]
    fn a_batch_names_each_conversation_once_and_counts_new_messages() {
        let mut pending = Pending::default();
        pending.add(stored("wa", "c1", true));
        pending.add(stored("wa", "c1", true));
        pending.add(stored("wa", "c2", false));
        pending.add(StoreEvent::AppCallQueued { app: "x".into() });
        let batch = pending.into_batch(7);
        assert_eq!(
            batch.conversations,
            [("wa".into(), "c1".into()), ("wa".into(), "c2".into())]
        );
        assert_eq!(batch.new_messages, 2);
        assert!(!batch.more && !batch.resync);
        assert_eq!(
            &batch.frame()[..],
            b"id: 7\nevent: change\ndata: {\"conversations\":[[\"wa\",\"c1\"],[\"wa\",\"c2\"]],\"more\":false,\"new_messages\":2}\n\n"
        );
    }

    #[test]
    fn a_batch_is_bounded_and_says_when_there_was_more() {
        let mut pending = Pending::default();
        for i in 0..500 {
            pending.add(stored("wa", &format!("c{i}"), true));
        }
        let batch = pending.into_batch(1);
        assert_eq!(batch.conversations.len(), BATCH_CONVERSATIONS);
        assert!(batch.more);
        assert_eq!(batch.new_messages, 500);
    }

    #[test]
    fn only_what_an_inbox_shows_makes_a_batch() {
        let mut pending = Pending::default();
        pending.add(StoreEvent::AppCallQueued { app: "x".into() });
        assert!(pending.is_empty());
        pending.add(StoreEvent::Resync);
        let batch = pending.into_batch(1);
        assert!(batch.resync);
        assert_eq!(
            &batch.frame()[..],
            b"id: 1\nevent: resync\ndata: reload\n\n"
        );
    }

    #[test]
    fn a_replay_names_what_was_sent_since_the_id_less_the_clock_slack() {
        let mut recent = Recent {
            kept_after: 1_000,
            batches: VecDeque::new(),
        };
        for (id, conversation) in [(5_000, "c1"), (9_000, "c2"), (12_000, "c3")] {
            let mut pending = Pending::default();
            pending.add(stored("wa", conversation, true));
            recent.keep(&pending.into_batch(id));
        }
        let named = |last| {
            recent.since(last).map(|(named, _)| {
                named
                    .into_iter()
                    .map(|(_, conversation)| conversation)
                    .collect::<Vec<_>>()
            })
        };
        // An id from another hub whose clock runs up to 2 s ahead still hears this hub's last
        // batches; a batch named again costs the page one more read.
        assert_eq!(named(10_500), Some(vec!["c2".to_owned(), "c3".to_owned()]));
        assert_eq!(named(12_000), Some(vec!["c3".to_owned()]));
        assert_eq!(named(13_999), Some(vec!["c3".to_owned()]));
        assert_eq!(named(14_000), Some(vec![]));
        assert_eq!(named(999), None, "from before the feed started: resync");
    }

    #[test]
    fn ids_always_increase() {
        let mut ids = Ids(i64::MAX / 2);
        let first = ids.next();
        assert!(ids.next() > first);
    }
}
