//! Writing one claimed segment (research §6.4, §6.5): the write protocol that makes each note
//! exist once.
//!
//! - **No note yet:** the segment is `creating`, durably, *before* the POST. A POST whose outcome
//!   is unknown (a timeout, a reset, a 5xx) leaves it `uncertain`; a process killed during the
//!   POST leaves it `creating` with a lease that runs out. Either way the next attempt first looks
//!   for the segment's marker among the person's notes of that day, adopts the note it finds, and
//!   posts only if there is none.
//! - **A note exists:** the render is compared with what was last written (its hash): the same
//!   (a status change, a replayed receive) costs nothing. Otherwise the note is read first (the
//!   edit guard): gone, edited by a person (its `update_time` or `last_update_user_id` is not the
//!   one our last write got back), or moved to another person, and it is sealed; the day
//!   continues in the next segment, which holds only what the sealed note did not. Else the PUT
//!   carries the whole note, so sending it again after an unknown outcome gives the same note.
//! - **Full:** a day that no longer fits one note is written as far as it fits; the next flush
//!   seals it and its continuation takes the rest.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use pdchannels_store::{
    MirrorLink, MirrorSegment, NewSegment, NoteWritten, SegmentState, Store, StoreError,
};
use sha2::{Digest, Sha256};

use crate::budget::Call;
use crate::marker::{Marker, SegmentKey};
use crate::pipedrive::{Error, NewNote, Note, NoteFilter, NoteLinks, Outcome, PipedriveClient};
use crate::render::{ConversationInfo, Message, RenderOptions, RenderedNote, render_day};
use crate::source::{self, People};

/// What a flush did (for the logs, the metrics and the tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Flushed {
    /// The note was posted.
    Created(i64),
    /// An earlier POST's note was found by its marker and adopted.
    Reconciled(i64),
    /// The note was rewritten.
    Updated(i64),
    /// Nothing changed in what the note shows: no call.
    Unchanged,
    /// Sealed (edited, gone, moved, or full); the continuation takes the rest.
    Sealed(&'static str),
    /// Not written now: the budget, a rate limit or an error; tried again later.
    Deferred(String),
    /// Another process holds the segment now.
    LostLease,
}

/// What a flush works with.
pub struct FlushContext<'a> {
    /// The store.
    pub store: &'a Store,
    /// Pipedrive.
    pub client: &'a PipedriveClient,
    /// The lease owner (this process).
    pub owner: &'a str,
    /// Rendering options (time zone, size limit).
    pub render: &'a RenderOptions,
    /// Whether a call fits the budget now.
    pub allows: &'a (dyn Fn(Call) -> bool + Sync),
    /// Whether POST may carry `add_time` (a company that refused it once is not sent it again).
    pub add_time: &'a AtomicBool,
    /// The channel's name and provider, for the header.
    pub channel_name: &'a str,
    /// The provider.
    pub provider: &'a str,
    /// Segments whose last PUT's outcome is unknown: the change of `update_time` it may have
    /// made is the mirror's own, not a person's edit.
    pub puts_in_doubt: &'a std::sync::Mutex<std::collections::HashSet<i64>>,
}

impl FlushContext<'_> {
    fn doubt(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<i64>> {
        self.puts_in_doubt
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The rendering of a segment: its first note is what the segment holds now.
struct Plan {
    note: RenderedNote,
    hash: String,
    /// More follows that does not fit this note.
    full: bool,
    first_message: Option<DateTime<Utc>>,
}

fn hash(html: &str) -> String {
    hex::encode(Sha256::digest(html.as_bytes()))
}

/// How long to wait after an error before the segment is tried again.
fn retry_after(error: &Error, attempts: i64) -> Duration {
    match error {
        Error::RateLimited { retry_in, .. } => *retry_in,
        // A budget day ends at midnight; the ledger stops every call meanwhile.
        Error::BudgetExhausted { .. } => Duration::from_secs(15 * 60),
        Error::Blocked { .. } | Error::Unauthorized { .. } => Duration::from_secs(30 * 60),
        _ => {
            let exponent = u32::try_from(attempts.clamp(0, 8)).unwrap_or(8);
            Duration::from_secs(5 * 2u64.pow(exponent)).min(Duration::from_secs(30 * 60))
        }
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The continuation of `segment`.
fn continuation(segment: &MirrorSegment, day: NaiveDate) -> NewSegment {
    let next = SegmentKey::new(
        &segment.channel_id,
        &segment.conversation_id,
        day,
        u32::try_from(segment.seq + 1).unwrap_or(u32::MAX),
    );
    NewSegment {
        channel_id: segment.channel_id.clone(),
        conversation_id: segment.conversation_id.clone(),
        day: segment.day.clone(),
        seq: segment.seq + 1,
        key: next.to_string(),
        marker: next.marker().as_str().to_owned(),
    }
}

/// Writes one segment claimed by `ctx.owner`, and releases it.
pub async fn flush(
    ctx: &FlushContext<'_>,
    segment: &MirrorSegment,
    link: &MirrorLink,
) -> Result<Flushed, StoreError> {
    let Ok(day) = NaiveDate::parse_from_str(&segment.day, "%Y-%m-%d") else {
        // Written by this crate: a bad day would be a bug; never write anything for it.
        ctx.store
            .mirror_retry_later(segment.id, ctx.owner, "not a day", i64::MAX / 2)
            .await?;
        return Ok(Flushed::Deferred(format!("bad day {:?}", segment.day)));
    };
    let Some(target) = &link.target else {
        // Claimed only when linked; unlinked meanwhile: it waits for its link.
        return defer(ctx, segment, "the conversation is no longer linked", 60_000).await;
    };
    let plan = plan(ctx, segment, day).await?;
    let Some(plan) = plan else {
        ctx.store
            .mirror_release_clean(segment.id, ctx.owner, segment.last_message_ms)
            .await?;
        return Ok(Flushed::Unchanged);
    };
    let links = NoteLinks {
        person_id: Some(target.person_id),
        deal_id: target.deal_id,
        lead_id: target.lead_id.clone(),
        org_id: target.org_id,
    };
    match segment.state {
        SegmentState::Live => update(ctx, segment, target.person_id, plan, &links).await,
        SegmentState::Creating | SegmentState::Uncertain => {
            // A POST may have made the note: look for it before posting.
            if !(ctx.allows)(Call::NotesList) {
                return defer(ctx, segment, "the token budget has no room now", 60_000).await;
            }
            // Among the notes of the person it was posted to (the link may have changed since),
            // from the day before its day to tomorrow: a company that refused `add_time` has
            // its notes at the time they were posted.
            let posted_to = segment.posted_person_id.unwrap_or(target.person_id);
            let mut filter = NoteFilter::for_segment(posted_to, day);
            let tomorrow = (Utc::now().date_naive() + chrono::Days::new(1))
                .format("%Y-%m-%d")
                .to_string();
            filter.end_date = filter.end_date.max(Some(tomorrow));
            let marker = Marker::from_hex(&segment.marker);
            match ctx.client.find_note_by_marker(&filter, &marker).await {
                Ok(Some(note)) => adopt(ctx, segment, plan, &links, target.person_id, note).await,
                Ok(None) => create(ctx, segment, plan, links).await,
                Err(e) => failed(ctx, segment, &e).await,
            }
        }
        SegmentState::Open => create(ctx, segment, plan, links).await,
        SegmentState::Sealed => Ok(Flushed::LostLease),
    }
}

/// Renders what the segment holds: the day's messages that no sealed segment of the day holds.
/// `None` when there is nothing.
async fn plan(
    ctx: &FlushContext<'_>,
    segment: &MirrorSegment,
    day: NaiveDate,
) -> Result<Option<Plan>, StoreError> {
    let (from, until) = source::day_bounds(day, ctx.render.time_zone);
    let stored = ctx
        .store
        .mirror_day_messages(&segment.channel_id, &segment.conversation_id, from, until)
        .await?;
    let people = People::read(ctx.store, &segment.channel_id, &segment.conversation_id)
        .await?
        .with_channel_name(ctx.channel_name);
    let info: ConversationInfo = source::conversation_info(
        &segment.channel_id,
        ctx.channel_name,
        ctx.provider,
        &segment.conversation_id,
        &people,
    );
    let mut messages: Vec<Message> = source::messages(&stored, &people);
    // A message is in one note: the day's sealed notes keep theirs, and a message whose
    // `created_at` moved to another day stays in the note that already holds it.
    let held_elsewhere: std::collections::HashSet<String> = ctx
        .store
        .mirror_segments(&segment.channel_id, &segment.conversation_id)
        .await?
        .into_iter()
        .filter(|s| s.id != segment.id)
        .flat_map(|s| s.written_ids())
        .collect();
    messages.retain(|m| !held_elsewhere.contains(&m.id));
    let seq = u32::try_from(segment.seq).unwrap_or(u32::MAX);
    let mut notes = render_day(&info, day, seq, &messages, ctx.render).into_iter();
    let Some(note) = notes.next() else {
        return Ok(None);
    };
    let first_message = messages
        .iter()
        .filter(|m| note.message_ids.contains(&m.id))
        .map(|m| m.created_at)
        .min();
    Ok(Some(Plan {
        hash: hash(&note.html),
        full: notes.next().is_some(),
        note,
        first_message,
    }))
}

fn written(segment: &MirrorSegment, plan: &Plan, note: &Note) -> NoteWritten {
    NoteWritten {
        note_id: note.id,
        rendered_hash: plan.hash.clone(),
        update_time: Some(note.update_time.clone()),
        user_id: note.last_update_user_id,
        // A full note stays dirty, so that the next flush seals it and its continuation
        // takes the rest.
        rendered_through_ms: if plan.full {
            Some(i64::MIN)
        } else {
            segment.last_message_ms
        },
        message_ids: plan.note.message_ids.clone(),
    }
}

async fn create(
    ctx: &FlushContext<'_>,
    segment: &MirrorSegment,
    plan: Plan,
    links: NoteLinks,
) -> Result<Flushed, StoreError> {
    if !(ctx.allows)(Call::NoteAdd) {
        return defer(ctx, segment, "the token budget has no room now", 60_000).await;
    }
    if !ctx
        .store
        .mirror_mark_creating(
            segment.id,
            ctx.owner,
            &plan.hash,
            links.person_id.unwrap_or_default(),
        )
        .await?
    {
        return Ok(Flushed::LostLease);
    }
    let mut note = NewNote {
        content: plan.note.html.clone(),
        links,
        add_time: ctx.add_time.load(Ordering::Relaxed).then_some(()).and(
            plan.first_message
                .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string()),
        ),
    };
    let mut answer = ctx.client.add_note(&note).await;
    if let Err(Error::Refused {
        status: 400 | 403, ..
    }) = &answer
        && note.add_time.is_some()
    {
        // Some companies refuse `add_time` to non-admin users (research §7): the note goes in
        // at the time it is written instead. Refused means nothing was made.
        tracing::info!("Pipedrive refused the note's add_time; posting it without, from now on");
        ctx.add_time.store(false, Ordering::Relaxed);
        note.add_time = None;
        answer = ctx.client.add_note(&note).await;
    }
    match answer {
        Ok(made) => {
            let done = ctx
                .store
                .mirror_settle_live(segment.id, ctx.owner, written(segment, &plan, &made))
                .await?;
            metrics::counter!("pdchannels_mirror_notes_total", "write" => "created").increment(1);
            Ok(if done {
                Flushed::Created(made.id)
            } else {
                Flushed::LostLease
            })
        }
        Err(e) if e.outcome() == Outcome::Unknown => {
            ctx.store
                .mirror_mark_uncertain(segment.id, ctx.owner, &e.to_string())
                .await?;
            Ok(Flushed::Deferred(e.to_string()))
        }
        Err(e) => post_refused(ctx, segment, &e).await,
    }
}

/// A note found by its marker after an unknown outcome: adopted, then brought up to date.
async fn adopt(
    ctx: &FlushContext<'_>,
    segment: &MirrorSegment,
    plan: Plan,
    links: &NoteLinks,
    person_id: i64,
    found: Note,
) -> Result<Flushed, StoreError> {
    metrics::counter!("pdchannels_mirror_notes_total", "write" => "reconciled").increment(1);
    let adopted = MirrorSegment {
        state: SegmentState::Live,
        note_id: Some(found.id),
        note_update_time: Some(found.update_time.clone()),
        note_user_id: found.last_update_user_id,
        ..segment.clone()
    };
    // What was posted (its hash was kept before the POST) is what would be written now.
    if segment.rendered_hash.as_deref() == Some(plan.hash.as_str())
        || found.content == plan.note.html
    {
        let done = ctx
            .store
            .mirror_settle_live(segment.id, ctx.owner, written(segment, &plan, &found))
            .await?;
        return Ok(if done {
            Flushed::Reconciled(found.id)
        } else {
            Flushed::LostLease
        });
    }
    // The found note is what an earlier render posted: bring it up to date (the edit guard
    // compares with what it holds now).
    write_update(ctx, &adopted, person_id, plan, links, found).await
}

async fn update(
    ctx: &FlushContext<'_>,
    segment: &MirrorSegment,
    person_id: i64,
    plan: Plan,
    links: &NoteLinks,
) -> Result<Flushed, StoreError> {
    let Some(note_id) = segment.note_id else {
        return create(ctx, segment, plan, links.clone()).await;
    };
    if segment.rendered_hash.as_deref() == Some(plan.hash.as_str()) {
        if plan.full {
            return seal(ctx, segment, "full").await;
        }
        ctx.store
            .mirror_release_clean(segment.id, ctx.owner, segment.last_message_ms)
            .await?;
        return Ok(Flushed::Unchanged);
    }
    // The edit guard reads the note before any PUT: a person's edit is never overwritten.
    if !(ctx.allows)(Call::NoteGet) || !(ctx.allows)(Call::NoteUpdate) {
        return defer(ctx, segment, "the token budget has no room now", 60_000).await;
    }
    let current = match ctx.client.note(note_id).await {
        Ok(Some(note)) => note,
        Ok(None) => return seal(ctx, segment, "deleted in Pipedrive").await,
        Err(e) => return failed(ctx, segment, &e).await,
    };
    write_update(ctx, segment, person_id, plan, links, current).await
}

/// Rewrites the note unless a person edited it or it moved to another person.
async fn write_update(
    ctx: &FlushContext<'_>,
    segment: &MirrorSegment,
    person_id: i64,
    plan: Plan,
    links: &NoteLinks,
    current: Note,
) -> Result<Flushed, StoreError> {
    let ours =
        segment.note_user_id.is_none() || current.last_update_user_id == segment.note_user_id;
    // A PUT of ours whose answer was lost changed `update_time` itself.
    let our_lost_put = ours && ctx.doubt().contains(&segment.id);
    let edited = !ours
        || (segment.note_update_time.as_deref() != Some(current.update_time.as_str())
            && !our_lost_put);
    if edited {
        return seal(ctx, segment, "edited in Pipedrive").await;
    }
    if current.person_id.is_some_and(|p| p != person_id) {
        return seal(ctx, segment, "linked to another person").await;
    }
    match ctx
        .client
        .update_note(current.id, &plan.note.html, Some(links))
        .await
    {
        Ok(note) => {
            ctx.doubt().remove(&segment.id);
            let done = ctx
                .store
                .mirror_settle_live(segment.id, ctx.owner, written(segment, &plan, &note))
                .await?;
            metrics::counter!("pdchannels_mirror_notes_total", "write" => "updated").increment(1);
            Ok(if done {
                Flushed::Updated(note.id)
            } else {
                Flushed::LostLease
            })
        }
        Err(Error::NotFound { .. }) => seal(ctx, segment, "deleted in Pipedrive").await,
        // A PUT carries the whole note: sending it again is safe, whatever its outcome.
        Err(e) => {
            if e.outcome() == Outcome::Unknown {
                ctx.doubt().insert(segment.id);
            }
            failed(ctx, segment, &e).await
        }
    }
}

async fn seal(
    ctx: &FlushContext<'_>,
    segment: &MirrorSegment,
    why: &'static str,
) -> Result<Flushed, StoreError> {
    let Ok(day) = NaiveDate::parse_from_str(&segment.day, "%Y-%m-%d") else {
        return Ok(Flushed::Deferred("bad day".into()));
    };
    let next = continuation(segment, day);
    Ok(
        match ctx.store.mirror_seal(segment.id, ctx.owner, next).await? {
            Some(_) => {
                tracing::info!(segment = %segment.key, why, "a mirror note is sealed; the day continues in a new note");
                metrics::counter!("pdchannels_mirror_notes_total", "write" => "sealed")
                    .increment(1);
                Flushed::Sealed(why)
            }
            None => Flushed::LostLease,
        },
    )
}

/// A call failed: tried again later. A segment whose POST may be under way stays to be
/// reconciled (only [`create`]'s own refused POST makes it `open` again).
async fn failed(
    ctx: &FlushContext<'_>,
    segment: &MirrorSegment,
    error: &Error,
) -> Result<Flushed, StoreError> {
    let wait = retry_after(error, segment.attempts);
    tracing::warn!(segment = %segment.key, error = %error, retry_in = ?wait, "a mirror note was not written");
    defer(ctx, segment, &error.to_string(), millis(wait)).await
}

/// The POST surely made nothing: the segment is `open` again.
async fn post_refused(
    ctx: &FlushContext<'_>,
    segment: &MirrorSegment,
    error: &Error,
) -> Result<Flushed, StoreError> {
    let wait = retry_after(error, segment.attempts);
    tracing::warn!(segment = %segment.key, error = %error, retry_in = ?wait, "a mirror note was not posted");
    let retry_at = pdchannels_model::Timestamp::now().unix_millis() + millis(wait);
    ctx.store
        .mirror_failed(segment.id, ctx.owner, &error.to_string(), retry_at)
        .await?;
    Ok(Flushed::Deferred(error.to_string()))
}

async fn defer(
    ctx: &FlushContext<'_>,
    segment: &MirrorSegment,
    why: &str,
    wait_ms: i64,
) -> Result<Flushed, StoreError> {
    let retry_at = pdchannels_model::Timestamp::now().unix_millis() + wait_ms;
    ctx.store
        .mirror_retry_later(segment.id, ctx.owner, why, retry_at)
        .await?;
    Ok(Flushed::Deferred(why.to_owned()))
}
