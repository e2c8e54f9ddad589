//! The notes mirror's durable state (issue 13; the mirror itself is `crates/mirror`): how each
//! conversation is linked to a Pipedrive person and deal or lead, the segments (one note per
//! conversation per local day, and its continuations) with the state of their write, and the
//! tokens the mirror spent each day.
//!
//! A segment goes `open` → (claimed) → `creating` (written before the POST) → `live`; a POST
//! whose outcome is unknown leaves it `uncertain` (reconciled by its marker before any second
//! POST; a `creating` segment whose lease ran out is the same case: the process stopped during
//! the POST). A `live` segment is rewritten by PUT while it takes new messages, and `sealed` when a
//! person edited it, it is full, or its link changed; the day continues in `seq + 1`.
//!
//! Segment keys and markers are made by the mirror crate and stored as given; which message is in
//! which segment follows from the messages' `created_at` and the company's time zone.
//!
//! Every change to a claimed segment names the lease's owner: a hub whose lease ran out (and was
//! taken by another) changes nothing, and learns it from the `false` it gets back.

use serde_json::Value;
use sqlx::FromRow;

use crate::backend::{on_conn, on_pool};
use crate::{Store, StoreError};

/// A conversation that has not been looked up in Pipedrive yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorConversation {
    /// The channel (its provider channel id, as in the API).
    pub channel_id: String,
    /// The conversation.
    pub conversation_id: String,
    /// When the hub first saw it (ms).
    pub created_at_ms: i64,
}

/// Where a conversation's notes go: a person, and a deal or a lead (not both).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MirrorTarget {
    /// The person.
    pub person_id: i64,
    /// The person's organisation, if the note should carry it.
    pub org_id: Option<i64>,
    /// A deal.
    pub deal_id: Option<i64>,
    /// Or a lead (Pipedrive's lead ids are UUIDs).
    pub lead_id: Option<String>,
}

impl MirrorTarget {
    /// A lead id as Pipedrive writes them (a UUID, lowercase with hyphens), from one a person
    /// typed; `None` if it is no UUID (a note sent to it would only be refused).
    pub fn lead_id(typed: &str) -> Option<String> {
        uuid::Uuid::try_parse(typed.trim())
            .ok()
            .map(|id| id.hyphenated().to_string())
    }
}

/// What a look-up found.
#[derive(Debug, Clone, PartialEq)]
pub enum MirrorMatch {
    /// One person (and deal or lead).
    Linked(MirrorTarget),
    /// Several candidates: parked until a person chooses (`candidates` as the matcher gives them).
    Parked(Value),
    /// Nobody.
    Unmatched,
}

/// A conversation's link, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct MirrorLink {
    /// The channel.
    pub channel_id: String,
    /// The conversation.
    pub conversation_id: String,
    /// `linked`, `parked` or `unmatched`.
    pub state: String,
    /// `auto` (the matcher's) or `manual` (a person's; never replaced by a look-up).
    pub how: String,
    /// The target, when linked.
    pub target: Option<MirrorTarget>,
    /// A parked conversation's candidates.
    pub candidates: Option<Value>,
    /// When it was last looked up or linked (ms).
    pub updated_at_ms: i64,
}

/// A segment's write state (see the module's doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentState {
    /// No note yet.
    Open,
    /// A POST may be under way (or was, when the process stopped).
    Creating,
    /// A POST's outcome is unknown: reconcile by the marker before posting again.
    Uncertain,
    /// The note exists.
    Live,
    /// No longer written.
    Sealed,
}

impl From<String> for SegmentState {
    fn from(text: String) -> Self {
        match text.as_str() {
            "creating" => Self::Creating,
            "uncertain" => Self::Uncertain,
            "live" => Self::Live,
            "sealed" => Self::Sealed,
            _ => Self::Open,
        }
    }
}

/// A new segment's identity, as the mirror crate makes it (`SegmentKey` and its marker).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSegment {
    /// The channel.
    pub channel_id: String,
    /// The conversation.
    pub conversation_id: String,
    /// The local day, `YYYY-MM-DD`.
    pub day: String,
    /// 0, or a continuation's number.
    pub seq: i64,
    /// `channel/conversation/day/seq`.
    pub key: String,
    /// Its marker.
    pub marker: String,
}

/// A segment, as stored.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct MirrorSegment {
    /// Its row (what the methods that change it take).
    pub id: i64,
    /// The channel.
    pub channel_id: String,
    /// The conversation.
    pub conversation_id: String,
    /// The local day, `YYYY-MM-DD`.
    pub day: String,
    /// Its number in the day.
    pub seq: i64,
    /// Its key.
    pub key: String,
    /// Its marker.
    pub marker: String,
    /// Its write state.
    #[sqlx(try_from = "String")]
    pub state: SegmentState,
    /// The note, once known.
    pub note_id: Option<i64>,
    /// The hash of what was last written (or is being posted).
    pub rendered_hash: Option<String>,
    /// The note's `update_time` as Pipedrive answered our last write.
    pub note_update_time: Option<String>,
    /// The note's `last_update_user_id` as Pipedrive answered our last write.
    pub note_user_id: Option<i64>,
    /// When its first message was seen (ms): the note's `add_time`.
    pub first_message_ms: Option<i64>,
    /// When the first message not yet written was seen (ms); `None`: nothing to write.
    pub dirty_since_ms: Option<i64>,
    /// When its last message was seen (ms).
    pub last_message_ms: Option<i64>,
    /// When it was last written (ms).
    pub last_flush_ms: Option<i64>,
    /// Failed or unknown attempts since the last success.
    pub attempts: i64,
    /// The last failure.
    pub last_error: Option<String>,
    /// Who holds it.
    pub lease_owner: Option<String>,
    /// Until when (ms).
    pub lease_until_ms: Option<i64>,
    /// The ids of the messages its note holds as last written (a JSON array; see
    /// [`MirrorSegment::written_ids`]).
    pub message_ids: Option<String>,
    /// The person its note was (or is being) posted to.
    pub posted_person_id: Option<i64>,
}

impl MirrorSegment {
    /// The ids of the messages its note holds as last written (none before the first write).
    pub fn written_ids(&self) -> Vec<String> {
        self.message_ids
            .as_deref()
            .and_then(|ids| serde_json::from_str(ids).ok())
            .unwrap_or_default()
    }
}

/// A conversation with messages stored or changed since the intake's cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorChange {
    /// The channel.
    pub channel_id: String,
    /// The conversation.
    pub conversation_id: String,
    /// Its messages stored or changed since the cursor: `(created_at_ms, updated_at_ms)`.
    pub messages: Vec<(i64, i64)>,
}

/// What changed since the intake's cursor, oldest change first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MirrorChanges {
    /// By conversation.
    pub conversations: Vec<MirrorChange>,
    /// How many messages were read (the batch is full when it is the limit asked).
    pub messages: usize,
    /// The newest `updated_at_ms` read (where the cursor moves to).
    pub through_ms: Option<i64>,
}

/// A message as the mirror renders it.
#[derive(Debug, Clone, PartialEq)]
pub struct MirrorMessage {
    /// The message as stored (the receive payload).
    pub payload: Value,
    /// Its `created_at` (ms).
    pub created_at_ms: i64,
}

/// What a successful write (POST, PUT, or a reconciliation that found the note) answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteWritten {
    /// The note.
    pub note_id: i64,
    /// The hash of the content written.
    pub rendered_hash: String,
    /// Its `update_time`.
    pub update_time: Option<String>,
    /// Its `last_update_user_id`.
    pub user_id: Option<i64>,
    /// The `last_message_ms` of the segment as it was claimed: messages seen later keep it dirty.
    pub rendered_through_ms: Option<i64>,
    /// The ids of the messages the note holds now.
    pub message_ids: Vec<String>,
}

/// When a segment is due: quiet for `quiet_ms`, or dirty for `max_wait_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlushTiming {
    /// The quiet period.
    pub quiet_ms: i64,
    /// The longest a message waits.
    pub max_wait_ms: i64,
}

/// The mirror at a glance (`pdchannels mirror status`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MirrorStatus {
    /// Conversations not looked up yet.
    pub to_look_up: i64,
    /// Linked conversations.
    pub linked: i64,
    /// Parked (several candidates).
    pub parked: i64,
    /// Unmatched.
    pub unmatched: i64,
    /// Notes written and still written to.
    pub notes_live: i64,
    /// Notes sealed.
    pub notes_sealed: i64,
    /// Segments whose POST's outcome is unknown (or under way).
    pub uncertain: i64,
    /// Segments of linked conversations with messages not yet written (a parked or unmatched
    /// conversation's wait for a link, and are not counted).
    pub dirty: i64,
    /// Tokens spent on `day`.
    pub tokens_today: i64,
    /// Why the mirror is stopped for the day, if it is (as the running mirror recorded it).
    pub stopped: Option<String>,
    /// Why every call to Pipedrive fails, and what to fix (as the running mirror recorded it).
    pub trouble: Option<String>,
    /// When the next segment is due (ms; quiet, waited long enough, and past its backoff), if
    /// one is waiting. In the past when one is due now.
    pub next_flush_ms: Option<i64>,
}

const SEGMENT_COLUMNS: &str = "s.pk AS id, c.provider_channel_id AS channel_id, s.conversation_id, \
     s.day, s.seq, s.segment_key AS key, s.marker, s.state, s.note_id, s.rendered_hash, \
     s.note_update_time, s.note_user_id, s.first_message_ms, s.dirty_since_ms, s.last_message_ms, \
     s.last_flush_ms, s.attempts, s.last_error, s.lease_owner, s.lease_until_ms, s.message_ids, \
     s.posted_person_id";

/// The channel's pk by its id, as a sub-select on `$1`.
const CHANNEL_PK: &str = "(SELECT pk FROM channels WHERE provider_channel_id = $1)";

type LinkRow = (
    String,
    String,
    String,
    String,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<String>,
    Option<String>,
    i64,
);

fn link(row: LinkRow) -> MirrorLink {
    let (channel_id, conversation_id, state, how, person, org, deal, lead, candidates, updated) =
        row;
    MirrorLink {
        channel_id,
        conversation_id,
        state,
        how,
        target: person.map(|person_id| MirrorTarget {
            person_id,
            org_id: org,
            deal_id: deal,
            lead_id: lead,
        }),
        candidates: candidates.and_then(|c| serde_json::from_str(&c).ok()),
        updated_at_ms: updated,
    }
}

const LINK_COLUMNS: &str = "c.provider_channel_id, l.conversation_id, l.state, l.how, \
     l.person_id, l.org_id, l.deal_id, l.lead_id, l.candidates, l.updated_at_ms";

/// The claim, which differs between the backends only in its lock clause. A segment is due when
/// it is dirty, its conversation is linked, no live lease holds it, its backoff is over, and it
/// was quiet for `$3` or dirty for `$4`. A `creating` segment whose lease ran out is claimed as it
/// is (its process stopped during the POST: the worker reconciles it as `uncertain`).
fn claim_sql(postgres: bool) -> String {
    let lock = if postgres {
        "FOR UPDATE OF s SKIP LOCKED"
    } else {
        ""
    };
    format!(
        "UPDATE mirror_segments
            SET lease_owner = $1, lease_until_ms = $2 + $5, updated_at_ms = $2
          WHERE pk IN (
                SELECT s.pk FROM mirror_segments s
                  JOIN mirror_links l ON l.channel_pk = s.channel_pk
                                     AND l.conversation_id = s.conversation_id
                 WHERE l.state = 'linked' AND s.state <> 'sealed'
                   AND s.dirty_since_ms IS NOT NULL
                   AND s.next_attempt_at_ms <= $2
                   AND (s.lease_until_ms IS NULL OR s.lease_until_ms < $2)
                   AND (coalesce(s.last_message_ms, s.dirty_since_ms) <= $2 - $3
                        OR s.dirty_since_ms <= $2 - $4)
                 ORDER BY s.dirty_since_ms, s.pk
                 LIMIT $6 {lock})
         RETURNING pk"
    )
}

impl Store {
    /// Conversations the mirror has to look up, among those active since `active_since_ms`
    /// (`i64::MIN`: all; a later time reads only the newest part of the activity index), the
    /// most recently active first: those never looked up, then those parked or unmatched by a
    /// look-up before `relook_before_ms` that were active since (the customer may have been
    /// added to Pipedrive meanwhile). A manual link is never looked up again.
    pub async fn mirror_conversations_to_look_up(
        &self,
        limit: i64,
        relook_before_ms: i64,
        active_since_ms: i64,
    ) -> Result<Vec<MirrorConversation>, StoreError> {
        let rows: Vec<(String, String, i64)> = on_pool!(self.reads(), p => sqlx::query_as(
            "SELECT c.provider_channel_id, v.conversation_id, v.created_at_ms
               FROM conversations v JOIN channels c ON c.pk = v.channel_pk
               LEFT JOIN mirror_links l
                 ON l.channel_pk = v.channel_pk AND l.conversation_id = v.conversation_id
              WHERE v.last_activity_ms >= $3
                AND (l.pk IS NULL
                     OR (l.how = 'auto' AND l.state <> 'linked' AND l.looked_up_at_ms < $2
                         AND v.last_activity_ms > l.looked_up_at_ms))
              ORDER BY l.pk IS NOT NULL, v.last_activity_ms DESC, v.channel_pk, v.conversation_id
              LIMIT $1",
        )
        .bind(limit)
        .bind(relook_before_ms)
        .bind(active_since_ms)
        .fetch_all(p)
        .await)
        .map_err(self.query_failed("list the conversations the mirror has to look up"))?;
        Ok(rows
            .into_iter()
            .map(
                |(channel_id, conversation_id, created_at_ms)| MirrorConversation {
                    channel_id,
                    conversation_id,
                    created_at_ms,
                },
            )
            .collect())
    }

    /// Records what a look-up found. A manual link is never replaced (`false` then, and when
    /// there is no such conversation).
    pub async fn mirror_record_match(
        &self,
        channel_id: &str,
        conversation_id: &str,
        found: MirrorMatch,
    ) -> Result<bool, StoreError> {
        self.mirror_upsert_link(channel_id, conversation_id, found, false)
            .await
    }

    /// Links a conversation by hand (`mirror link`): it replaces whatever was there, and no
    /// look-up replaces it. `false` if there is no such conversation.
    pub async fn mirror_link_manually(
        &self,
        channel_id: &str,
        conversation_id: &str,
        target: MirrorTarget,
    ) -> Result<bool, StoreError> {
        self.mirror_upsert_link(
            channel_id,
            conversation_id,
            MirrorMatch::Linked(target),
            true,
        )
        .await
    }

    async fn mirror_upsert_link(
        &self,
        channel_id: &str,
        conversation_id: &str,
        found: MirrorMatch,
        manual: bool,
    ) -> Result<bool, StoreError> {
        let (channel_id, conversation_id) = (channel_id.to_owned(), conversation_id.to_owned());
        let (state, target, candidates) = match found {
            MirrorMatch::Linked(t) => ("linked", t, None),
            MirrorMatch::Parked(c) => ("parked", MirrorTarget::default(), Some(c.to_string())),
            MirrorMatch::Unmatched => ("unmatched", MirrorTarget::default(), None),
        };
        let person = (state == "linked").then_some(target.person_id);
        let how = if manual { "manual" } else { "auto" };
        self.run_write("link a conversation for the mirror", move |conn, now| {
            Box::pin(async move {
                let changed = on_conn!(conn, c => sqlx::query(
                    "INSERT INTO mirror_links (channel_pk, conversation_id, state, how, person_id,
                                               org_id, deal_id, lead_id, candidates,
                                               looked_up_at_ms, linked_at_ms, updated_at_ms)
                     SELECT v.channel_pk, v.conversation_id, $3, $4, $5, $6, $7, $8, $9, $10,
                            CASE WHEN $3 = 'linked' THEN $10 END, $10
                       FROM conversations v JOIN channels c ON c.pk = v.channel_pk
                      WHERE c.provider_channel_id = $1 AND v.conversation_id = $2
                     ON CONFLICT (channel_pk, conversation_id) DO UPDATE
                        SET state = excluded.state, how = excluded.how,
                            person_id = excluded.person_id, org_id = excluded.org_id,
                            deal_id = excluded.deal_id, lead_id = excluded.lead_id,
                            candidates = excluded.candidates,
                            looked_up_at_ms = excluded.looked_up_at_ms,
                            linked_at_ms = excluded.linked_at_ms,
                            updated_at_ms = excluded.updated_at_ms
                      WHERE excluded.how = 'manual' OR mirror_links.how = 'auto'",
                )
                .bind(&channel_id)
                .bind(&conversation_id)
                .bind(state)
                .bind(how)
                .bind(person)
                .bind(target.org_id)
                .bind(target.deal_id)
                .bind(&target.lead_id)
                .bind(&candidates)
                .bind(now)
                .execute(c)
                .await
                .map(|r| r.rows_affected()))?;
                Ok((changed > 0, Vec::new()))
            })
        })
        .await
    }

    /// Forgets a conversation's link (manual or not): it is looked up again. Its segments stay
    /// (the worker seals a live one before it writes to another person). `false` if it had none.
    pub async fn mirror_unlink(
        &self,
        channel_id: &str,
        conversation_id: &str,
    ) -> Result<bool, StoreError> {
        let (channel_id, conversation_id) = (channel_id.to_owned(), conversation_id.to_owned());
        let sql = format!(
            "DELETE FROM mirror_links WHERE channel_pk = {CHANNEL_PK} AND conversation_id = $2"
        );
        self.run_write(
            "unlink a conversation from the mirror",
            move |conn, _now| {
                Box::pin(async move {
                    let gone = on_conn!(conn, c => sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(&channel_id)
                    .bind(&conversation_id)
                    .execute(c)
                    .await
                    .map(|r| r.rows_affected()))?;
                    Ok((gone > 0, Vec::new()))
                })
            },
        )
        .await
    }

    /// A conversation's link, if it was looked up.
    pub async fn mirror_link(
        &self,
        channel_id: &str,
        conversation_id: &str,
    ) -> Result<Option<MirrorLink>, StoreError> {
        let sql = format!(
            "SELECT {LINK_COLUMNS} FROM mirror_links l JOIN channels c ON c.pk = l.channel_pk
              WHERE c.provider_channel_id = $1 AND l.conversation_id = $2"
        );
        let row: Option<LinkRow> =
            on_pool!(self.reads(), p => sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(channel_id)
            .bind(conversation_id)
            .fetch_optional(p)
            .await)
            .map_err(self.query_failed("read a conversation's mirror link"))?;
        Ok(row.map(link))
    }

    /// The conversations waiting for a person (`mirror pending`): parked ones (with their
    /// candidates) and unmatched ones, the most recently looked up first.
    pub async fn mirror_pending(&self, limit: i64) -> Result<Vec<MirrorLink>, StoreError> {
        let sql = format!(
            "SELECT {LINK_COLUMNS} FROM mirror_links l JOIN channels c ON c.pk = l.channel_pk
              WHERE l.state <> 'linked'
              ORDER BY l.updated_at_ms DESC, l.pk DESC LIMIT $1"
        );
        let rows: Vec<LinkRow> =
            on_pool!(self.reads(), p => sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(limit)
            .fetch_all(p)
            .await)
            .map_err(self.query_failed("list the mirror's pending conversations"))?;
        Ok(rows.into_iter().map(link).collect())
    }

    /// A message of a conversation-day was seen at `at_ms`: the day's current segment is marked
    /// dirty (its first dirty moment kept), and made if the day has none (`segment`, with the
    /// `seq` after the day's last sealed one, which the caller reads with
    /// [`Store::mirror_segments`]). Returns the current segment's id; `None` if there is no such
    /// conversation.
    pub async fn mirror_touch(
        &self,
        segment: NewSegment,
        at_ms: i64,
    ) -> Result<Option<i64>, StoreError> {
        Ok(self
            .mirror_touch_many(vec![(segment, at_ms)])
            .await?
            .pop()
            .flatten())
    }

    /// [`Store::mirror_touch`] for many conversation-days, in one transaction (the mirror's
    /// intake marks a whole batch at once: one write instead of one per conversation).
    pub async fn mirror_touch_many(
        &self,
        touches: Vec<(NewSegment, i64)>,
    ) -> Result<Vec<Option<i64>>, StoreError> {
        let sql = format!(
            "UPDATE mirror_segments
                SET dirty_since_ms = coalesce(dirty_since_ms, $4),
                    last_message_ms = CASE WHEN coalesce(last_message_ms, 0) > $4
                                           THEN last_message_ms ELSE $4 END,
                    first_message_ms = coalesce(first_message_ms, $4),
                    updated_at_ms = $5
              WHERE channel_pk = {CHANNEL_PK} AND conversation_id = $2 AND day = $3
                AND state <> 'sealed'
             RETURNING pk"
        );
        self.run_write("mark mirror segments dirty", move |conn, now| {
            Box::pin(async move {
                let mut ids = Vec::with_capacity(touches.len());
                for (segment, at_ms) in &touches {
                    let found: Option<i64> = on_conn!(conn, c => sqlx::query_scalar(sqlx::AssertSqlSafe(sql.clone()))
                        .bind(&segment.channel_id)
                        .bind(&segment.conversation_id)
                        .bind(&segment.day)
                        .bind(*at_ms)
                        .bind(now)
                        .fetch_optional(c)
                        .await)?;
                    if found.is_some() {
                        ids.push(found);
                        continue;
                    }
                    ids.push(insert_segment(conn, segment, *at_ms, *at_ms, now).await?);
                }
                Ok((ids, Vec::new()))
            })
        })
        .await
    }

    /// A conversation's segments, by day and seq.
    pub async fn mirror_segments(
        &self,
        channel_id: &str,
        conversation_id: &str,
    ) -> Result<Vec<MirrorSegment>, StoreError> {
        let sql = format!(
            "SELECT {SEGMENT_COLUMNS} FROM mirror_segments s JOIN channels c ON c.pk = s.channel_pk
              WHERE c.provider_channel_id = $1 AND s.conversation_id = $2
              ORDER BY s.day, s.seq"
        );
        on_pool!(self.reads(), p => sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(channel_id)
            .bind(conversation_id)
            .fetch_all(p)
            .await)
        .map_err(self.query_failed("list a conversation's mirror segments"))
    }

    /// One segment by its id.
    pub async fn mirror_segment(&self, id: i64) -> Result<Option<MirrorSegment>, StoreError> {
        let sql = format!(
            "SELECT {SEGMENT_COLUMNS} FROM mirror_segments s JOIN channels c ON c.pk = s.channel_pk
              WHERE s.pk = $1"
        );
        on_pool!(self.reads(), p => sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(p)
            .await)
        .map_err(self.query_failed("read a mirror segment"))
    }

    /// Claims up to `limit` segments due to be written, for `lease_ms`, as `owner` (the worker
    /// passes `lease_owner::this_instance()`). On PostgreSQL rows another hub is claiming are
    /// skipped (`SKIP LOCKED`), so two hubs never take the same segment.
    pub async fn mirror_claim_due(
        &self,
        owner: &str,
        timing: FlushTiming,
        lease_ms: i64,
        limit: i64,
    ) -> Result<Vec<MirrorSegment>, StoreError> {
        let owner = owner.to_owned();
        let select = format!(
            "SELECT {SEGMENT_COLUMNS} FROM mirror_segments s JOIN channels c ON c.pk = s.channel_pk
              WHERE s.lease_owner = $1 AND s.lease_until_ms = $2 + $3
              ORDER BY s.dirty_since_ms, s.pk"
        );
        self.run_write("claim mirror segments due", move |conn, now| {
            Box::pin(async move {
                let sql = claim_sql(conn.is_postgres());
                let claimed: Vec<i64> = on_conn!(conn, c => sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                    .bind(&owner)
                    .bind(now)
                    .bind(timing.quiet_ms)
                    .bind(timing.max_wait_ms)
                    .bind(lease_ms)
                    .bind(limit)
                    .fetch_all(c)
                    .await)?;
                if claimed.is_empty() {
                    return Ok((Vec::new(), Vec::new()));
                }
                let rows: Vec<MirrorSegment> = on_conn!(conn, c => sqlx::query_as(sqlx::AssertSqlSafe(select))
                    .bind(&owner)
                    .bind(now)
                    .bind(lease_ms)
                    .fetch_all(c)
                    .await)?;
                let rows = rows.into_iter().filter(|s| claimed.contains(&s.id)).collect();
                Ok((rows, Vec::new()))
            })
        })
        .await
    }

    /// Before a POST: the segment is `creating`, with the hash of what is posted and the person
    /// it is posted to, durably. `false` if `owner` no longer holds it (post nothing then).
    pub async fn mirror_mark_creating(
        &self,
        id: i64,
        owner: &str,
        rendered_hash: &str,
        person_id: i64,
    ) -> Result<bool, StoreError> {
        self.mirror_update(
            "mark a mirror segment creating",
            id,
            owner,
            "state = 'creating', rendered_hash = $3, posted_person_id = $5",
            (Some(rendered_hash.to_owned()), person_id),
        )
        .await
    }

    /// A POST's outcome is unknown (`error` says why): the segment is `uncertain`, stays dirty,
    /// and is released to be reconciled by its marker.
    pub async fn mirror_mark_uncertain(
        &self,
        id: i64,
        owner: &str,
        error: &str,
    ) -> Result<bool, StoreError> {
        self.mirror_update(
            "mark a mirror segment uncertain",
            id,
            owner,
            "state = 'uncertain', attempts = attempts + 1, last_error = $3, \
             lease_owner = NULL, lease_until_ms = NULL",
            (Some(error.to_owned()), 0),
        )
        .await
    }

    /// A POST that surely did not take effect (refused, or not sent): released, tried again
    /// from `retry_at_ms`. A `creating` segment goes back to `open`.
    pub async fn mirror_failed(
        &self,
        id: i64,
        owner: &str,
        error: &str,
        retry_at_ms: i64,
    ) -> Result<bool, StoreError> {
        self.mirror_update(
            "record a failed mirror write",
            id,
            owner,
            "state = CASE WHEN state = 'creating' THEN 'open' ELSE state END, \
             attempts = attempts + 1, last_error = $3, next_attempt_at_ms = $5, \
             lease_owner = NULL, lease_until_ms = NULL",
            (Some(error.to_owned()), retry_at_ms),
        )
        .await
    }

    /// Not written now (the budget, a rate limit, a failed read or PUT), tried again from
    /// `retry_at_ms`, released. Unlike [`Store::mirror_failed`] a `creating` segment becomes
    /// `uncertain`: its POST's outcome is still to be reconciled.
    pub async fn mirror_retry_later(
        &self,
        id: i64,
        owner: &str,
        error: &str,
        retry_at_ms: i64,
    ) -> Result<bool, StoreError> {
        self.mirror_update(
            "put off a mirror write",
            id,
            owner,
            "state = CASE WHEN state = 'creating' THEN 'uncertain' ELSE state END, \
             attempts = attempts + 1, last_error = $3, next_attempt_at_ms = $5, \
             lease_owner = NULL, lease_until_ms = NULL",
            (Some(error.to_owned()), retry_at_ms),
        )
        .await
    }

    /// A write succeeded (or reconciliation found the note): the segment is `live` with what
    /// Pipedrive answered, and released. It stays dirty if a message was seen after
    /// `written.rendered_through_ms`.
    pub async fn mirror_settle_live(
        &self,
        id: i64,
        owner: &str,
        written: NoteWritten,
    ) -> Result<bool, StoreError> {
        let owner = owner.to_owned();
        self.run_write("settle a mirror segment live", move |conn, now| {
            Box::pin(async move {
                let changed = on_conn!(conn, c => sqlx::query(
                    "UPDATE mirror_segments
                        SET state = 'live', note_id = $3, rendered_hash = $4,
                            note_update_time = $5, note_user_id = $6, last_flush_ms = $8,
                            message_ids = $9,
                            dirty_since_ms = CASE WHEN coalesce(last_message_ms, 0)
                                                       > coalesce($7, last_message_ms, 0)
                                                  THEN last_message_ms END,
                            attempts = 0, last_error = NULL, next_attempt_at_ms = 0,
                            lease_owner = NULL, lease_until_ms = NULL, updated_at_ms = $8
                      WHERE pk = $1 AND lease_owner = $2 AND state <> 'sealed'",
                )
                .bind(id)
                .bind(&owner)
                .bind(written.note_id)
                .bind(&written.rendered_hash)
                .bind(&written.update_time)
                .bind(written.user_id)
                .bind(written.rendered_through_ms)
                .bind(now)
                .bind(serde_json::to_string(&written.message_ids).unwrap_or_default())
                .execute(c)
                .await
                .map(|r| r.rows_affected()))?;
                Ok((changed > 0, Vec::new()))
            })
        })
        .await
    }

    /// Seals a segment (a person edited or deleted its note, it is full, or its link changed)
    /// and opens `next` (the day's `seq + 1`), which takes over what was still to write. Works on
    /// a claimed segment (`owner`) and releases it; answers the new segment's id, `None` if
    /// `owner` no longer holds it.
    pub async fn mirror_seal(
        &self,
        id: i64,
        owner: &str,
        next: NewSegment,
    ) -> Result<Option<i64>, StoreError> {
        let owner = owner.to_owned();
        self.run_write("seal a mirror segment", move |conn, now| {
            Box::pin(async move {
                // What the sealed note did not hold yet goes into its continuation.
                let held: Option<(Option<i64>, Option<i64>)> = on_conn!(conn, c => sqlx::query_as(
                    "SELECT dirty_since_ms, last_message_ms FROM mirror_segments
                      WHERE pk = $1 AND lease_owner = $2 AND state <> 'sealed'",
                )
                .bind(id)
                .bind(&owner)
                .fetch_optional(c)
                .await)?;
                let Some((dirty, last)) = held else {
                    return Ok((None, Vec::new()));
                };
                on_conn!(conn, c => sqlx::query(
                    "UPDATE mirror_segments
                        SET state = 'sealed', lease_owner = NULL, lease_until_ms = NULL,
                            dirty_since_ms = NULL, updated_at_ms = $2
                      WHERE pk = $1",
                )
                .bind(id)
                .bind(now)
                .execute(c)
                .await
                .map(drop))?;
                // A continuation starts dirty: at worst it is written once more than needed.
                let dirty = dirty.unwrap_or(now);
                let made = insert_segment(conn, &next, dirty, last.unwrap_or(dirty), now).await?;
                Ok((made, Vec::new()))
            })
        })
        .await
    }

    /// Adds `tokens` to what the mirror spent on `day` (`YYYY-MM-DD`, Pipedrive's day);
    /// answers the day's total.
    pub async fn mirror_spend(&self, day: &str, tokens: i64) -> Result<i64, StoreError> {
        let day = day.to_owned();
        self.run_write("record the mirror's tokens", move |conn, now| {
            Box::pin(async move {
                let total: i64 = on_conn!(conn, c => sqlx::query_scalar(
                    "INSERT INTO mirror_budget_days (day, tokens, updated_at_ms) VALUES ($1, $2, $3)
                     ON CONFLICT (day) DO UPDATE
                        SET tokens = mirror_budget_days.tokens + excluded.tokens,
                            updated_at_ms = excluded.updated_at_ms
                     RETURNING tokens",
                )
                .bind(&day)
                .bind(tokens)
                .bind(now)
                .fetch_one(c)
                .await)?;
                Ok((total, Vec::new()))
            })
        })
        .await
    }

    /// What the mirror spent on `day` (0 for a day it spent nothing).
    pub async fn mirror_spent(&self, day: &str) -> Result<i64, StoreError> {
        let spent: Option<i64> = on_pool!(self.reads(), p => sqlx::query_scalar(
            "SELECT tokens FROM mirror_budget_days WHERE day = $1",
        )
        .bind(day)
        .fetch_optional(p)
        .await)
        .map_err(self.query_failed("read the mirror's tokens"))?;
        Ok(spent.unwrap_or(0))
    }

    /// The mirror at a glance, with the tokens of `day` and flush timing `timing`.
    pub async fn mirror_status(
        &self,
        day: &str,
        timing: FlushTiming,
    ) -> Result<MirrorStatus, StoreError> {
        type Counts = (i64, i64, i64, i64, i64, i64, i64, i64, Option<i64>);
        let counts: Counts = on_pool!(self.reads(), p => sqlx::query_as(
            "SELECT
               (SELECT count(*) FROM conversations v
                 WHERE NOT EXISTS (SELECT 1 FROM mirror_links l
                                    WHERE l.channel_pk = v.channel_pk
                                      AND l.conversation_id = v.conversation_id)),
               (SELECT count(*) FROM mirror_links WHERE state = 'linked'),
               (SELECT count(*) FROM mirror_links WHERE state = 'parked'),
               (SELECT count(*) FROM mirror_links WHERE state = 'unmatched'),
               (SELECT count(*) FROM mirror_segments WHERE state = 'live'),
               (SELECT count(*) FROM mirror_segments WHERE state = 'sealed'),
               (SELECT count(*) FROM mirror_segments WHERE state IN ('creating', 'uncertain')),
               -- Only what a mirror will write: a parked or unmatched conversation's days
               -- wait for a link, and are not counted as waiting to be written.
               (SELECT count(*) FROM mirror_segments s
                  JOIN mirror_links l ON l.channel_pk = s.channel_pk
                                     AND l.conversation_id = s.conversation_id
                 WHERE s.dirty_since_ms IS NOT NULL AND l.state = 'linked'
                   AND s.state <> 'sealed'),
               (SELECT min(CASE WHEN d.due < d.next_attempt_at_ms THEN d.next_attempt_at_ms
                                ELSE d.due END)
                  FROM (SELECT s.next_attempt_at_ms,
                               CASE WHEN coalesce(s.last_message_ms, s.dirty_since_ms) + $1
                                         < s.dirty_since_ms + $2
                                    THEN coalesce(s.last_message_ms, s.dirty_since_ms) + $1
                                    ELSE s.dirty_since_ms + $2 END AS due
                  FROM mirror_segments s
                  JOIN mirror_links l ON l.channel_pk = s.channel_pk
                                     AND l.conversation_id = s.conversation_id
                 WHERE l.state = 'linked' AND s.state <> 'sealed'
                   AND s.dirty_since_ms IS NOT NULL) d)",
        )
        .bind(timing.quiet_ms)
        .bind(timing.max_wait_ms)
        .fetch_one(p)
        .await)
        .map_err(self.query_failed("summarise the mirror"))?;
        let (
            to_look_up,
            linked,
            parked,
            unmatched,
            notes_live,
            notes_sealed,
            uncertain,
            dirty,
            next,
        ) = counts;
        Ok(MirrorStatus {
            to_look_up,
            linked,
            parked,
            unmatched,
            notes_live,
            notes_sealed,
            uncertain,
            dirty,
            tokens_today: self.mirror_spent(day).await?,
            stopped: self.mirror_setting("stopped").await?,
            trouble: self.mirror_setting("trouble").await?,
            next_flush_ms: next,
        })
    }

    /// A mirror setting (`time_zone`), if it was ever recorded.
    pub async fn mirror_setting(&self, name: &str) -> Result<Option<String>, StoreError> {
        on_pool!(self.reads(), p => sqlx::query_scalar(
            "SELECT value FROM mirror_settings WHERE name = $1",
        )
        .bind(name)
        .fetch_optional(p)
        .await)
        .map_err(self.query_failed("read a mirror setting"))
    }

    /// Sets a mirror setting (`None`: removes it).
    pub async fn mirror_put_setting(
        &self,
        name: &str,
        value: Option<&str>,
    ) -> Result<(), StoreError> {
        let (name, value) = (name.to_owned(), value.map(str::to_owned));
        self.run_write("change a mirror setting", move |conn, now| {
            Box::pin(async move {
                match &value {
                    Some(value) => on_conn!(conn, c => sqlx::query(
                        "INSERT INTO mirror_settings (name, value, updated_at_ms) VALUES ($1, $2, $3)
                         ON CONFLICT (name) DO UPDATE
                            SET value = excluded.value, updated_at_ms = excluded.updated_at_ms",
                    )
                    .bind(&name)
                    .bind(value)
                    .bind(now)
                    .execute(c)
                    .await
                    .map(drop))?,
                    None => on_conn!(conn, c => sqlx::query(
                        "DELETE FROM mirror_settings WHERE name = $1",
                    )
                    .bind(&name)
                    .execute(c)
                    .await
                    .map(drop))?,
                }
                Ok(((), Vec::new()))
            })
        })
        .await
    }

    /// Records a mirror setting if it has none yet; answers the value it has now (the one
    /// recorded first, when two mirrors start at once).
    pub async fn mirror_setting_or_record(
        &self,
        name: &str,
        value: &str,
    ) -> Result<String, StoreError> {
        let (name, value) = (name.to_owned(), value.to_owned());
        self.run_write("record a mirror setting", move |conn, now| {
            Box::pin(async move {
                on_conn!(conn, c => sqlx::query(
                    "INSERT INTO mirror_settings (name, value, updated_at_ms) VALUES ($1, $2, $3)
                     ON CONFLICT (name) DO NOTHING",
                )
                .bind(&name)
                .bind(&value)
                .bind(now)
                .execute(c)
                .await
                .map(drop))?;
                let kept: String = on_conn!(conn, c => sqlx::query_scalar(
                    "SELECT value FROM mirror_settings WHERE name = $1",
                )
                .bind(&name)
                .fetch_one(c)
                .await)?;
                Ok((kept, Vec::new()))
            })
        })
        .await
    }

    /// Where the intake `name` has read up to (`last_activity_ms`), if it ever read.
    pub async fn mirror_cursor(&self, name: &str) -> Result<Option<i64>, StoreError> {
        on_pool!(self.reads(), p => sqlx::query_scalar(
            "SELECT position_ms FROM mirror_cursor WHERE name = $1",
        )
        .bind(name)
        .fetch_optional(p)
        .await)
        .map_err(self.query_failed("read the mirror's intake cursor"))
    }

    /// Moves the intake `name` to `position_ms` (never backwards).
    pub async fn mirror_set_cursor(&self, name: &str, position_ms: i64) -> Result<(), StoreError> {
        let name = name.to_owned();
        self.run_write("move the mirror's intake cursor", move |conn, now| {
            Box::pin(async move {
                on_conn!(conn, c => sqlx::query(
                    "INSERT INTO mirror_cursor (name, position_ms, updated_at_ms) VALUES ($1, $2, $3)
                     ON CONFLICT (name) DO UPDATE
                        SET position_ms = excluded.position_ms,
                            updated_at_ms = excluded.updated_at_ms
                      WHERE mirror_cursor.position_ms < excluded.position_ms",
                )
                .bind(&name)
                .bind(position_ms)
                .bind(now)
                .execute(c)
                .await
                .map(drop))?;
                Ok(((), Vec::new()))
            })
        })
        .await
    }

    /// The first `limit` messages (oldest change first) stored or changed at or after
    /// `since_ms`, by conversation. The intake marks their days' segments dirty, then moves its
    /// cursor to `through_ms`.
    pub async fn mirror_changes_since(
        &self,
        since_ms: i64,
        limit: i64,
    ) -> Result<MirrorChanges, StoreError> {
        type Row = (String, String, i64, i64);
        let rows: Vec<Row> = on_pool!(self.reads(), p => sqlx::query_as(
            "SELECT c.provider_channel_id, m.conversation_id, m.created_at_ms, m.updated_at_ms
               FROM messages m JOIN channels c ON c.pk = m.channel_pk
              WHERE m.updated_at_ms >= $1
              ORDER BY m.updated_at_ms
              LIMIT $2",
        )
        .bind(since_ms)
        .bind(limit)
        .fetch_all(p)
        .await)
        .map_err(self.query_failed("read what changed for the mirror"))?;
        let mut out = MirrorChanges {
            messages: rows.len(),
            through_ms: rows.last().map(|r| r.3),
            ..MirrorChanges::default()
        };
        let mut by_conversation: std::collections::HashMap<(String, String), usize> =
            std::collections::HashMap::new();
        for (channel_id, conversation_id, created, updated) in rows {
            let key = (channel_id, conversation_id);
            if let Some(&at) = by_conversation.get(&key) {
                out.conversations[at].messages.push((created, updated));
                continue;
            }
            by_conversation.insert(key.clone(), out.conversations.len());
            out.conversations.push(MirrorChange {
                channel_id: key.0,
                conversation_id: key.1,
                messages: vec![(created, updated)],
            });
        }
        Ok(out)
    }

    /// A conversation's messages created in `[from_ms, until_ms)`, in `created_at` order (the
    /// messages of one local day).
    pub async fn mirror_day_messages(
        &self,
        channel_id: &str,
        conversation_id: &str,
        from_ms: i64,
        until_ms: i64,
    ) -> Result<Vec<MirrorMessage>, StoreError> {
        let rows: Vec<(String, i64)> = on_pool!(self.reads(), p => sqlx::query_as(
            "SELECT m.payload, m.created_at_ms
               FROM messages m JOIN channels c ON c.pk = m.channel_pk
              WHERE c.provider_channel_id = $1 AND m.conversation_id = $2
                AND m.created_at_ms >= $3 AND m.created_at_ms < $4
              ORDER BY m.created_at_ms, m.pk",
        )
        .bind(channel_id)
        .bind(conversation_id)
        .bind(from_ms)
        .bind(until_ms)
        .fetch_all(p)
        .await)
        .map_err(self.query_failed("read a day of a conversation for the mirror"))?;
        Ok(rows
            .into_iter()
            .map(|(payload, created_at_ms)| MirrorMessage {
                payload: serde_json::from_str(&payload).unwrap_or(Value::Null),
                created_at_ms,
            })
            .collect())
    }

    /// A claimed segment had nothing to write (its messages were deleted, or its note already
    /// holds exactly what it would write): clean, released, its note unchanged.
    pub async fn mirror_release_clean(
        &self,
        id: i64,
        owner: &str,
        seen_through_ms: Option<i64>,
    ) -> Result<bool, StoreError> {
        let owner = owner.to_owned();
        self.run_write("release a clean mirror segment", move |conn, now| {
            Box::pin(async move {
                let changed = on_conn!(conn, c => sqlx::query(
                    "UPDATE mirror_segments
                        SET dirty_since_ms = CASE WHEN coalesce(last_message_ms, 0)
                                                       > coalesce($3, last_message_ms, 0)
                                                  THEN last_message_ms END,
                            attempts = 0, last_error = NULL, next_attempt_at_ms = 0,
                            lease_owner = NULL, lease_until_ms = NULL, updated_at_ms = $4
                      WHERE pk = $1 AND lease_owner = $2 AND state <> 'sealed'",
                )
                .bind(id)
                .bind(&owner)
                .bind(seen_through_ms)
                .bind(now)
                .execute(c)
                .await
                .map(|r| r.rows_affected()))?;
                Ok((changed > 0, Vec::new()))
            })
        })
        .await
    }

    /// `UPDATE … SET {set}` on segment `id` if `owner` holds its lease and it is not sealed;
    /// `$3` and `$5` are `binds`, `$4` the time.
    async fn mirror_update(
        &self,
        doing: &'static str,
        id: i64,
        owner: &str,
        set: &'static str,
        binds: (Option<String>, i64),
    ) -> Result<bool, StoreError> {
        let owner = owner.to_owned();
        let sql = format!(
            "UPDATE mirror_segments SET {set}, updated_at_ms = $4
              WHERE pk = $1 AND lease_owner = $2 AND state <> 'sealed'"
        );
        self.run_write(doing, move |conn, now| {
            Box::pin(async move {
                let changed = on_conn!(conn, c => sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(id)
                    .bind(&owner)
                    .bind(&binds.0)
                    .bind(now)
                    .bind(binds.1)
                    .execute(c)
                    .await
                    .map(|r| r.rows_affected()))?;
                Ok((changed > 0, Vec::new()))
            })
        })
        .await
    }
}

/// Inserts a segment of an existing conversation, dirty since `dirty_since_ms`, its last message
/// seen at `last_message_ms`; `None` if there is no such conversation.
async fn insert_segment(
    conn: &mut crate::backend::Conn,
    segment: &NewSegment,
    dirty_since_ms: i64,
    last_message_ms: i64,
    now: i64,
) -> Result<Option<i64>, sqlx::Error> {
    on_conn!(conn, c => sqlx::query_scalar(
        "INSERT INTO mirror_segments (channel_pk, conversation_id, day, seq, segment_key, marker,
                                      first_message_ms, dirty_since_ms, last_message_ms,
                                      created_at_ms, updated_at_ms)
         SELECT v.channel_pk, v.conversation_id, $3, $4, $5, $6, $7, $7, $8, $9, $9
           FROM conversations v JOIN channels c ON c.pk = v.channel_pk
          WHERE c.provider_channel_id = $1 AND v.conversation_id = $2
         RETURNING pk",
    )
    .bind(&segment.channel_id)
    .bind(&segment.conversation_id)
    .bind(&segment.day)
    .bind(segment.seq)
    .bind(&segment.key)
    .bind(&segment.marker)
    .bind(dirty_since_ms)
    .bind(last_message_ms)
    .bind(now)
    .fetch_optional(c)
    .await)
}
