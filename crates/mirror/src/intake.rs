//! The mirror's intake: it reads what the hub stored or changed since its cursor and marks the
//! segment of each message's local day dirty. It never touches a receive: it reads the store
//! afterwards, so a slow or absent Pipedrive cannot slow or lose one, and a mirror running alone
//! (`pdchannels mirror`) reads a database other hubs write.
//!
//! The cursor is the messages' `updated_at_ms` (indexed for it). It is read again from
//! [`OVERLAP_MS`] before it: on PostgreSQL a transaction that
//! commits late may show an older time than one already read. What is read twice is marked dirty
//! only once per process (the `seen` map), and at worst costs a render that finds its note
//! already holds it (no call).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use pdchannels_store::{NewSegment, Store, StoreError};

use crate::marker::SegmentKey;
use crate::render::local_day;

/// The cursor's name in the store.
const CURSOR: &str = "intake";

/// How far before the cursor each read starts.
pub const OVERLAP_MS: i64 = 5_000;

/// Messages read at a time.
const BATCH: i64 = 5_000;

/// The intake's state.
#[derive(Debug)]
pub struct Intake {
    time_zone: Tz,
    cursor: i64,
    /// Reading a backlog: the next read starts at the cursor itself (no overlap), so that a
    /// window fuller than a batch cannot hold it in place.
    catching_up: bool,
    batch: i64,
    /// The messages already read, by conversation, `created_at_ms` and `updated_at_ms` (a
    /// message changed again is read again).
    seen: HashSet<(String, String, i64, i64)>,
    /// A conversation-day is marked at most once per `mark_every`: under a steady stream of
    /// messages one mark moves its segment's last message time forward as well as a hundred
    /// would, at a hundredth of the writes. The marks put off wait here (newest change first
    /// kept), never dropped, and the stored cursor never passes them.
    mark_every: Duration,
    pending: HashMap<(String, String, chrono::NaiveDate), i64>,
    last_marked: HashMap<(String, String, chrono::NaiveDate), Instant>,
}

impl Intake {
    /// Resumes where the store's cursor is (from the beginning on a first run: every
    /// conversation the hub already holds is mirrored).
    pub async fn resume(
        store: &Store,
        time_zone: Tz,
        mark_every: Duration,
    ) -> Result<Self, StoreError> {
        Ok(Self {
            time_zone,
            cursor: store.mirror_cursor(CURSOR).await?.unwrap_or(0),
            catching_up: true,
            batch: BATCH,
            seen: HashSet::new(),
            mark_every,
            pending: HashMap::new(),
            last_marked: HashMap::new(),
        })
    }

    /// Reads one batch and marks its segments dirty; answers how many segments it marked.
    /// `more` tells whether a backlog remains (read again at once).
    pub async fn step(&mut self, store: &Store) -> Result<Step, StoreError> {
        let since = if self.catching_up {
            self.cursor
        } else {
            self.cursor - OVERLAP_MS
        };
        let read = store.mirror_changes_since(since, self.batch).await?;
        let full = i64::try_from(read.messages).unwrap_or(i64::MAX) >= self.batch;
        let changes = read.conversations;
        // One mark per conversation-day, at its newest change. Messages count as seen only once
        // every mark is written: a failed write leaves them to be read again.
        let mut fresh = Vec::new();
        let mut days: std::collections::BTreeMap<(&str, &str, chrono::NaiveDate), i64> =
            std::collections::BTreeMap::new();
        for change in &changes {
            for &(created_ms, updated_ms) in &change.messages {
                let Some(created) = DateTime::<Utc>::from_timestamp_millis(created_ms) else {
                    continue;
                };
                let key = (
                    change.channel_id.clone(),
                    change.conversation_id.clone(),
                    created_ms,
                    updated_ms,
                );
                if self.seen.contains(&key) {
                    continue;
                }
                fresh.push(key);
                let day = local_day(created, self.time_zone);
                let at = days
                    .entry((&change.channel_id, &change.conversation_id, day))
                    .or_insert(updated_ms);
                *at = (*at).max(updated_ms);
            }
        }
        for ((channel_id, conversation_id, day), at_ms) in days {
            let at = self
                .pending
                .entry((channel_id.to_owned(), conversation_id.to_owned(), day))
                .or_insert(at_ms);
            *at = (*at).max(at_ms);
        }
        let now = Instant::now();
        let due: Vec<(String, String, chrono::NaiveDate)> = self
            .pending
            .keys()
            .filter(|key| {
                self.last_marked
                    .get(*key)
                    .is_none_or(|at| now.duration_since(*at) >= self.mark_every)
            })
            .cloned()
            .collect();
        let marked = due.len();
        let touches: Vec<(NewSegment, i64)> = due
            .iter()
            .map(|key| {
                let (channel_id, conversation_id, day) = (&key.0, &key.1, key.2);
                let at_ms = self.pending[key];
                let segment = SegmentKey::new(channel_id, conversation_id, day, 0);
                let new = NewSegment {
                    channel_id: channel_id.to_owned(),
                    conversation_id: conversation_id.to_owned(),
                    day: crate::ledger::day_key(day),
                    seq: 0,
                    key: segment.to_string(),
                    marker: segment.marker().as_str().to_owned(),
                };
                (new, at_ms)
            })
            .collect();
        // A conversation deleted since is skipped: nothing to mirror then.
        if !touches.is_empty() {
            store.mirror_touch_many(touches).await?;
        }
        for key in due {
            self.pending.remove(&key);
            self.last_marked.insert(key, now);
        }
        let every = self.mark_every;
        self.last_marked
            .retain(|_, at| now.duration_since(*at) < every);
        self.seen.extend(fresh);
        let last = read.through_ms;
        if full {
            match last {
                // A batch whose messages all share the cursor's millisecond: read more.
                Some(last) if last <= self.cursor => self.batch = (self.batch * 2).min(100_000),
                Some(last) => self.cursor = last,
                None => {}
            }
            self.catching_up = true;
        } else {
            if let Some(last) = last {
                self.cursor = self.cursor.max(last);
            }
            self.catching_up = false;
            self.batch = BATCH;
        }
        if last.is_some() {
            // Never past a mark put off: a restart reads its messages again.
            let stored = self
                .pending
                .values()
                .min()
                .map_or(self.cursor, |&oldest| self.cursor.min(oldest));
            store.mirror_set_cursor(CURSOR, stored).await?;
        }
        // What is older than the overlap is never read again.
        let horizon = self.cursor - 2 * OVERLAP_MS;
        self.seen.retain(|&(_, _, _, updated)| updated >= horizon);
        Ok(Step { marked, more: full })
    }
}

/// What one [`Intake::step`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// Segments marked dirty.
    pub marked: usize,
    /// A backlog remains.
    pub more: bool,
}
