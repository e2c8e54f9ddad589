//! The relay's outbox: durable before anything is sent, delivered in order per conversation.
//!
//! A call is one row, however alike two calls are (only calls a caller names with the same
//! idempotency key are one). Rows of one conversation are delivered in the order they were
//! accepted; a channel-wide call (add or delete a channel) waits for everything accepted before
//! it in that channel, and everything after it waits for it. Different conversations go in
//! parallel.
//!
//! Each conversation is a lane, and so are a channel's channel-wide calls (the `outbox_lanes`
//! table, kept by triggers: see migration 0005). A claim looks at every lane's head and nothing
//! else, so a head that keeps failing holds back its own lane only, and a claim costs one index
//! seek per lane whatever the number of calls queued behind the heads.

use serde::Serialize;
use sqlx::SqliteConnection;

use crate::Store;
use crate::writer::Write;

/// A call to enqueue.
#[derive(Debug, Clone)]
pub struct NewOutboxEntry {
    /// `receive_message`, `add_channel`, `delete_channel`, `delete_conversation`.
    pub operation: &'static str,
    /// The channel's provider id.
    pub channel_key: String,
    /// The conversation's provider id, for calls within one conversation.
    pub conversation_key: Option<String>,
    /// The call, as JSON: `{"method", "path", "body"}`.
    pub request: serde_json::Value,
    /// Set only by a caller that may hand in the very same call again (an import resumed after
    /// a crash names each line): a call with a key already in the outbox is not added again.
    /// `None`: the call is new, even if its request has the same bytes as an earlier one.
    pub idempotency_key: Option<String>,
}

/// A row of the outbox.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct OutboxEntry {
    /// The outbox id.
    pub id: i64,
    /// What kind of call.
    pub operation: String,
    /// The channel.
    pub channel_key: String,
    /// The conversation, if the call is within one.
    pub conversation_key: Option<String>,
    /// The call, as JSON text.
    pub request: String,
    /// `pending`, `delivered` or `dead`.
    pub state: String,
    /// Sends tried so far.
    pub attempts: i64,
    /// When the next send may happen.
    pub next_attempt_at_ms: i64,
    /// When the current run of failed sends began (the give-up clock counts from it).
    pub first_failed_at_ms: Option<i64>,
    /// Why the last send failed.
    pub last_error: Option<String>,
    /// An earlier send may have reached the upstream though no answer came back (a timeout,
    /// a connection lost after sending, a relay that died mid-send).
    pub in_doubt: bool,
    /// The upstream's answer once delivered.
    pub response: Option<String>,
    /// When it was accepted.
    pub created_at_ms: i64,
    /// When it last changed.
    pub updated_at_ms: i64,
}

/// How a send ended.
#[derive(Debug, Clone)]
pub enum Settlement {
    /// The upstream accepted it; its answer.
    Delivered(String),
    /// A transient failure: try again `at` this time.
    RetryAt {
        /// When the next send may happen.
        at: i64,
        /// Why this one failed.
        error: String,
        /// Whether this send may have reached the upstream all the same.
        in_doubt: bool,
    },
    /// Rejected for good.
    Dead(String),
}

/// Where one call stands, for a caller following its own calls (an import, say).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct OutboxState {
    /// The outbox id.
    pub id: i64,
    /// `pending`, `delivered` or `dead`.
    pub state: String,
    /// Why the last send failed.
    pub last_error: Option<String>,
}

/// Counts per state, and the age of the oldest pending call.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct OutboxStats {
    /// Waiting to be delivered (including in flight).
    pub pending: i64,
    /// Delivered.
    pub delivered: i64,
    /// Rejected for good.
    pub dead: i64,
    /// When the oldest pending call was accepted.
    pub oldest_pending_at_ms: Option<i64>,
    /// When the next deliverable call is due.
    pub next_attempt_at_ms: Option<i64>,
}

/// An outbox write, done by the store's single writer like every other write.
pub(crate) enum OutboxWrite {
    ReleaseLeasesOf(Vec<String>),
    Enqueue(NewOutboxEntry),
    Claim {
        now: i64,
        limit: i64,
        lease_ms: i64,
    },
    Settle {
        id: i64,
        now: i64,
        settlement: Settlement,
    },
    Retry {
        id: i64,
        now: i64,
    },
    Drop {
        id: i64,
    },
}

/// What an outbox write answers.
#[derive(Debug)]
pub(crate) enum OutboxAnswer {
    Enqueued(i64),
    Claimed(Vec<OutboxEntry>),
    Changed(bool),
}

/// The deliverable heads: the first call of each conversation, unless a channel-wide call of
/// its channel comes before it; a channel-wide call only when it is the first of its channel.
/// Only the lanes' heads are read (the first pending call of a lane is one seek in
/// `outbox_pending_by_lane`), so the backlog behind them costs nothing.
const HEADS: &str = "WITH lane_heads AS MATERIALIZED (
         SELECT l.channel_key, l.conversation_key,
                (SELECT min(o.pk) FROM outbox o
                  WHERE o.state = 'pending' AND o.channel_key = l.channel_key
                    AND o.conversation_key IS nullif(l.conversation_key, '')) AS pk
           FROM outbox_lanes l),
     ranked AS (
         SELECT pk, conversation_key,
                min(pk) OVER (PARTITION BY channel_key) AS first_in_channel,
                min(CASE WHEN conversation_key = '' THEN pk END)
                    OVER (PARTITION BY channel_key) AS first_channel_wide
           FROM lane_heads WHERE pk IS NOT NULL),
     heads AS (
         SELECT pk FROM ranked
          WHERE (conversation_key = '' AND pk = first_in_channel)
             OR (conversation_key <> ''
                 AND (first_channel_wide IS NULL OR first_channel_wide > pk)))";

const COLUMNS: &str =
    "pk AS id, operation, channel_key, conversation_key, request, state, attempts,
    next_attempt_at_ms, first_failed_at_ms, last_error, in_doubt, response, created_at_ms,
    updated_at_ms";

pub(crate) async fn apply(
    conn: &mut SqliteConnection,
    write: OutboxWrite,
    now_ms: i64,
) -> Result<OutboxAnswer, sqlx::Error> {
    match write {
        OutboxWrite::Enqueue(entry) => {
            let inserted: Option<i64> = sqlx::query_scalar(
                "INSERT INTO outbox (operation, channel_key, conversation_key, request,
                                     idempotency_key, next_attempt_at_ms, created_at_ms,
                                     updated_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?6)
                 ON CONFLICT (idempotency_key) DO NOTHING
                 RETURNING pk",
            )
            .bind(entry.operation)
            .bind(&entry.channel_key)
            .bind(&entry.conversation_key)
            .bind(entry.request.to_string())
            .bind(&entry.idempotency_key)
            .bind(now_ms)
            .fetch_optional(&mut *conn)
            .await?;
            let id = match inserted {
                Some(id) => id,
                // The caller handed in this very call before (same key): it is (or was)
                // delivered once. A NULL key never conflicts, so this is only keyed calls.
                None => {
                    sqlx::query_scalar("SELECT pk FROM outbox WHERE idempotency_key = ?1")
                        .bind(&entry.idempotency_key)
                        .fetch_one(&mut *conn)
                        .await?
                }
            };
            Ok(OutboxAnswer::Enqueued(id))
        }
        OutboxWrite::Claim {
            now,
            limit,
            lease_ms,
        } => {
            let sql = format!(
                "{HEADS}
                 UPDATE outbox
                    SET in_doubt = (in_doubt OR lease_until_ms IS NOT NULL),
                        lease_until_ms = ?1 + ?3, lease_owner = ?4, attempts = attempts + 1,
                        updated_at_ms = ?1
                  WHERE pk IN (SELECT o.pk FROM outbox o JOIN heads h ON h.pk = o.pk
                                WHERE o.next_attempt_at_ms <= ?1
                                  AND (o.lease_until_ms IS NULL OR o.lease_until_ms <= ?1)
                                ORDER BY o.pk LIMIT ?2)
                 RETURNING {COLUMNS}"
            );
            let mut claimed: Vec<OutboxEntry> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(now)
                .bind(limit)
                .bind(lease_ms)
                .bind(crate::lease_owner::this_process())
                .fetch_all(&mut *conn)
                .await?;
            claimed.sort_by_key(|e| e.id);
            Ok(OutboxAnswer::Claimed(claimed))
        }
        OutboxWrite::Settle {
            id,
            now,
            settlement,
        } => {
            let query = match settlement {
                Settlement::Delivered(response) => sqlx::query(
                    "UPDATE outbox SET state = 'delivered', response = ?2, lease_until_ms = NULL,
                                       last_error = NULL, updated_at_ms = ?3
                      WHERE pk = ?1 AND state = 'pending'",
                )
                .bind(id)
                .bind(response)
                .bind(now),
                Settlement::RetryAt {
                    at,
                    error,
                    in_doubt,
                } => sqlx::query(
                    "UPDATE outbox SET next_attempt_at_ms = ?2, last_error = ?3,
                                       lease_until_ms = NULL, updated_at_ms = ?4,
                                       first_failed_at_ms = coalesce(first_failed_at_ms, ?4),
                                       in_doubt = (in_doubt OR ?5)
                      WHERE pk = ?1 AND state = 'pending'",
                )
                .bind(id)
                .bind(at)
                .bind(error)
                .bind(now)
                .bind(in_doubt),
                Settlement::Dead(error) => sqlx::query(
                    "UPDATE outbox SET state = 'dead', last_error = ?2, lease_until_ms = NULL,
                                       updated_at_ms = ?3
                      WHERE pk = ?1 AND state = 'pending'",
                )
                .bind(id)
                .bind(error)
                .bind(now),
            };
            Ok(OutboxAnswer::Changed(
                query.execute(&mut *conn).await?.rows_affected() == 1,
            ))
        }
        OutboxWrite::Retry { id, now } => {
            let changed = sqlx::query(
                // Asked for by a person after a fix: the give-up count and clock start afresh.
                "UPDATE outbox SET state = 'pending', next_attempt_at_ms = ?2, lease_until_ms = NULL,
                                   attempts = 0, first_failed_at_ms = NULL, updated_at_ms = ?2
                  WHERE pk = ?1 AND state IN ('dead', 'pending')
                    -- Not while a relay is sending it: that would send it twice at once.
                    AND (lease_until_ms IS NULL OR lease_until_ms <= ?2)",
            )
            .bind(id)
            .bind(now)
            .execute(&mut *conn)
            .await?
            .rows_affected();
            Ok(OutboxAnswer::Changed(changed == 1))
        }
        OutboxWrite::ReleaseLeasesOf(owners) => {
            // Leases taken before owners were recorded have none: theirs are released too.
            let changed = sqlx::query(
                // Their sends may have reached the upstream before the process died.
                "UPDATE outbox SET lease_until_ms = NULL, in_doubt = 1
                  WHERE state = 'pending' AND lease_until_ms IS NOT NULL
                    AND (lease_owner IS NULL
                         OR lease_owner IN (SELECT value FROM json_each(?1)))",
            )
            .bind(serde_json::to_string(&owners).expect("integers always serialize"))
            .execute(&mut *conn)
            .await?
            .rows_affected();
            Ok(OutboxAnswer::Changed(changed > 0))
        }
        OutboxWrite::Drop { id } => {
            // Not while a relay is sending it: the next call of its conversation would go out
            // while this one may still arrive, out of order.
            let changed = sqlx::query(
                "DELETE FROM outbox WHERE pk = ?1
                    AND (lease_until_ms IS NULL OR lease_until_ms <= ?2)",
            )
            .bind(id)
            .bind(now_ms)
            .execute(&mut *conn)
            .await?
            .rows_affected();
            Ok(OutboxAnswer::Changed(changed == 1))
        }
    }
}

fn now_ms() -> i64 {
    pdchannels_model::Timestamp::now().unix_millis()
}

impl Store {
    async fn outbox_write(&self, write: OutboxWrite) -> Result<OutboxAnswer, String> {
        self.write(|reply| Write::Outbox(write, reply))
            .await
            .map_err(|e| e.to_string())
    }

    /// Writes a call to the outbox; durable when this returns. Each call is a row of its own,
    /// unless it carries an idempotency key already in the outbox: then that row's id is
    /// answered and nothing is added.
    pub async fn enqueue(&self, entry: NewOutboxEntry) -> Result<i64, String> {
        match self.outbox_write(OutboxWrite::Enqueue(entry)).await? {
            OutboxAnswer::Enqueued(id) => Ok(id),
            other => Err(format!("unexpected outbox answer {other:?}")),
        }
    }

    /// Leases up to `limit` calls that may be sent now, for `lease_ms`: the oldest pending call
    /// of each conversation that is due and not already leased.
    pub async fn claim(&self, limit: i64, lease_ms: i64) -> Result<Vec<OutboxEntry>, String> {
        let now = now_ms();
        match self
            .outbox_write(OutboxWrite::Claim {
                now,
                limit,
                lease_ms,
            })
            .await?
        {
            OutboxAnswer::Claimed(entries) => Ok(entries),
            other => Err(format!("unexpected outbox answer {other:?}")),
        }
    }

    /// Records how a send ended.
    pub async fn settle(&self, id: i64, settlement: Settlement) -> Result<bool, String> {
        let now = now_ms();
        match self
            .outbox_write(OutboxWrite::Settle {
                id,
                now,
                settlement,
            })
            .await?
        {
            OutboxAnswer::Changed(changed) => Ok(changed),
            other => Err(format!("unexpected outbox answer {other:?}")),
        }
    }

    /// Puts a dead (or waiting) call back in line, due now; `false` if there is no such call or
    /// a relay is sending it right now.
    pub async fn retry_outbox(&self, id: i64) -> Result<bool, String> {
        match self
            .outbox_write(OutboxWrite::Retry { id, now: now_ms() })
            .await?
        {
            OutboxAnswer::Changed(changed) => Ok(changed),
            other => Err(format!("unexpected outbox answer {other:?}")),
        }
    }

    /// Removes a call from the outbox for good; `false` if there is no such call or a relay is
    /// sending it right now.
    pub async fn drop_outbox(&self, id: i64) -> Result<bool, String> {
        match self.outbox_write(OutboxWrite::Drop { id }).await? {
            OutboxAnswer::Changed(changed) => Ok(changed),
            other => Err(format!("unexpected outbox answer {other:?}")),
        }
    }

    /// When the next deliverable call is due (the earliest head not leased), if any.
    pub async fn outbox_next_due(&self) -> Result<Option<i64>, sqlx::Error> {
        self.earliest_head("max(o.next_attempt_at_ms, coalesce(o.lease_until_ms, 0))")
            .await
    }

    /// When the next attempt of a deliverable call is due, counting calls being sent now as due
    /// now (their lease is not a wait): `Some(t <= now)` while anything goes or may go.
    pub async fn outbox_next_attempt(&self) -> Result<Option<i64>, sqlx::Error> {
        self.earliest_head("o.next_attempt_at_ms").await
    }

    /// The least `expression` over the heads (each conversation's oldest pending call).
    async fn earliest_head(&self, expression: &str) -> Result<Option<i64>, sqlx::Error> {
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "{HEADS}
             SELECT min({expression})
               FROM outbox o JOIN heads h ON h.pk = o.pk"
        )))
        .fetch_one(self.reads())
        .await
    }

    /// The processes (see [`crate::lease_owner`]) holding leases on pending calls.
    pub async fn lease_owners(&self) -> Result<Vec<String>, sqlx::Error> {
        sqlx::query_scalar(
            "SELECT DISTINCT lease_owner FROM outbox
              WHERE state = 'pending' AND lease_until_ms IS NOT NULL AND lease_owner IS NOT NULL",
        )
        .fetch_all(self.reads())
        .await
    }

    /// Frees the leases held by `owners` (processes known to be gone), so that what they were
    /// sending is sent again now rather than when the leases lapse.
    pub async fn release_leases_of(&self, owners: &[String]) -> Result<bool, String> {
        match self
            .outbox_write(OutboxWrite::ReleaseLeasesOf(owners.to_vec()))
            .await?
        {
            OutboxAnswer::Changed(changed) => Ok(changed),
            other => Err(format!("unexpected outbox answer {other:?}")),
        }
    }

    /// One outbox row.
    pub async fn outbox_entry(&self, id: i64) -> Result<Option<OutboxEntry>, sqlx::Error> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM outbox WHERE pk = ?1"
        )))
        .bind(id)
        .fetch_optional(self.reads())
        .await
    }

    /// Up to `limit` rows in `state` (or any), oldest first, after id `after`.
    pub async fn outbox_list(
        &self,
        state: Option<&str>,
        after: i64,
        limit: i64,
    ) -> Result<Vec<OutboxEntry>, sqlx::Error> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM outbox WHERE (?1 IS NULL OR state = ?1) AND pk > ?2
              ORDER BY pk LIMIT ?3"
        )))
        .bind(state)
        .bind(after)
        .bind(limit)
        .fetch_all(self.reads())
        .await
    }

    /// Where each of `ids` stands (ids not in the outbox are left out), in id order.
    pub async fn outbox_states(&self, ids: &[i64]) -> Result<Vec<OutboxState>, sqlx::Error> {
        // One statement for any number of ids: they travel as one JSON array.
        let ids = serde_json::to_string(ids).expect("integers always serialize");
        sqlx::query_as(
            "SELECT pk AS id, state, last_error FROM outbox
              WHERE pk IN (SELECT value FROM json_each(?1)) ORDER BY pk",
        )
        .bind(ids)
        .fetch_all(self.reads())
        .await
    }

    /// Counts per state.
    pub async fn outbox_stats(&self) -> Result<OutboxStats, sqlx::Error> {
        let (pending, delivered, dead, oldest): (i64, i64, i64, Option<i64>) = sqlx::query_as(
            "SELECT coalesce(sum(state = 'pending'), 0), coalesce(sum(state = 'delivered'), 0),
                    coalesce(sum(state = 'dead'), 0),
                    min(CASE WHEN state = 'pending' THEN created_at_ms END)
               FROM outbox",
        )
        .fetch_one(self.reads())
        .await?;
        let next = self.outbox_next_due().await?;
        Ok(OutboxStats {
            pending,
            delivered,
            dead,
            oldest_pending_at_ms: oldest,
            next_attempt_at_ms: next,
        })
    }
}
