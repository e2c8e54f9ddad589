//! The relay's outbox: durable before anything is sent, delivered in order per conversation.
//!
//! A call is one row, however alike two calls are (only calls a caller names with the same
//! idempotency key are one). Rows of one conversation are delivered in the order they were
//! accepted; a channel-wide call (add or delete a channel) waits for everything accepted before
//! it in that channel, and everything after it waits for it. Different conversations go in
//! parallel.
//!
//! Each conversation is a lane, and so are a channel's channel-wide calls (see `lanes`). A
//! claim looks at every lane's head and nothing else, so a head that keeps failing holds back
//! its own lane only, and a claim costs one index seek per lane whatever the number of calls
//! queued behind the heads.
//!
//! - `vocabulary`: the public types (states, entries, settlements, stats).
//! - `row`: reading stored rows into them.
//! - `lanes`: the order rules as SQL.
//! - `writes`: each write, applied by the store's single writer.
//! - [`Outbox`] (here): the handle every caller uses.

mod lanes;
mod row;
mod vocabulary;
mod writes;

use std::time::Duration;

pub use vocabulary::{
    CallStatus, NewOutboxEntry, OutboxEntry, OutboxState, OutboxStats, Settlement,
    UnknownOutboxState,
};
pub(crate) use writes::{OutboxAnswer, OutboxWrite, apply};

use lanes::{heads, held_behind};
use row::{COLUMNS, OutboxRow, StatusRow, entries};

use crate::backend::{Pool, on_pool};
use crate::writer::Write;
use crate::{Store, StoreError};

/// The outbox of a [`Store`]: `store.outbox()`. Cheap to make and to clone (it shares the
/// store's handle); every method is durable when it returns, like the store's own writes.
#[derive(Debug, Clone)]
pub struct Outbox {
    store: Store,
}

fn now_ms() -> i64 {
    pdchannels_model::Timestamp::now().unix_millis()
}

impl Store {
    /// The relay's outbox in this database.
    pub fn outbox(&self) -> Outbox {
        Outbox {
            store: self.clone(),
        }
    }
}

impl OutboxAnswer {
    fn enqueued(self) -> i64 {
        match self {
            Self::Enqueued(id) => id,
            other => unreachable!("an enqueue is answered with an id, not {other:?}"),
        }
    }

    fn claimed(self) -> Vec<OutboxEntry> {
        match self {
            Self::Claimed(entries) => entries,
            other => unreachable!("a claim is answered with entries, not {other:?}"),
        }
    }

    fn changed(self) -> u64 {
        match self {
            Self::Changed(count) => count,
            other => unreachable!("a change is answered with a count, not {other:?}"),
        }
    }
}

impl Outbox {
    async fn write(&self, write: OutboxWrite) -> Result<OutboxAnswer, StoreError> {
        self.store
            .write(|reply| Write::Outbox(write.clone(), reply))
            .await
    }

    /// Writes a call to the outbox; durable when this returns. Each call is a row of its own,
    /// unless it carries an idempotency key already in the outbox: then that row's id is
    /// answered and nothing is added.
    pub async fn enqueue(&self, entry: NewOutboxEntry) -> Result<i64, StoreError> {
        Ok(self.write(OutboxWrite::Enqueue(entry)).await?.enqueued())
    }

    /// Leases up to `limit` calls that may be sent now, for `lease`: the oldest pending call
    /// of each lane that is due, not already leased, and not held back by its channel.
    pub async fn claim(
        &self,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        let write = OutboxWrite::Claim {
            now: now_ms(),
            limit: i64::try_from(limit).unwrap_or(i64::MAX),
            lease_ms: i64::try_from(lease.as_millis()).unwrap_or(i64::MAX / 2),
        };
        Ok(self.write(write).await?.claimed())
    }

    /// Records how a send ended; `false` if the call is no longer pending (settled or dropped
    /// meanwhile).
    pub async fn settle(&self, id: i64, settlement: Settlement) -> Result<bool, StoreError> {
        let write = OutboxWrite::Settle {
            id,
            now: now_ms(),
            settlement,
        };
        Ok(self.write(write).await?.changed() == 1)
    }

    /// Puts a dead (or waiting) call back in line, due now, its give-up count and clock
    /// afresh; `false` if there is no such call or a relay is sending it right now.
    pub async fn retry(&self, id: i64) -> Result<bool, StoreError> {
        let write = OutboxWrite::Retry { id, now: now_ms() };
        Ok(self.write(write).await?.changed() == 1)
    }

    /// Puts back in line, due now, every call not being sent that is dead or waiting out a
    /// backoff (`state: None`), or only the dead ones (`Some(Dead)`), or only the waiting ones
    /// (`Some(Pending)`); delivered calls never go again (`Some(Delivered)` retries none).
    /// Like [`Outbox::retry`], each one's give-up count and clock start afresh. Answers how
    /// many calls were put back.
    pub async fn retry_all(&self, state: Option<OutboxState>) -> Result<u64, StoreError> {
        let write = OutboxWrite::RetryAll {
            now: now_ms(),
            state,
        };
        Ok(self.write(write).await?.changed())
    }

    /// Makes every pending call that failed before and waits out its backoff (not being sent)
    /// due at `now` (ms since the epoch): the upstream answers again, so the calls waiting
    /// for their own backoff go now. Their attempts and give-up clock are kept. Answers how
    /// many calls were released; cheap however many calls are pending.
    pub async fn release_backoff(&self, now: i64) -> Result<u64, StoreError> {
        Ok(self
            .write(OutboxWrite::ReleaseBackoff { now })
            .await?
            .changed())
    }

    /// Removes a call from the outbox for good; `false` if there is no such call or a relay is
    /// sending it right now.
    pub async fn drop(&self, id: i64) -> Result<bool, StoreError> {
        Ok(self.write(OutboxWrite::Drop { id }).await?.changed() == 1)
    }

    /// Frees the leases held by `owners` (processes known to be gone, see
    /// [`crate::lease_owner`]), so that what they were sending is sent again now rather than
    /// when the leases lapse; `false` if they held none.
    pub async fn release_leases_of(&self, owners: &[String]) -> Result<bool, StoreError> {
        let write = OutboxWrite::ReleaseLeasesOf(owners.to_vec());
        Ok(self.write(write).await?.changed() > 0)
    }

    /// Says this relay is alive and takes back the calls of relays that stopped: on PostgreSQL
    /// those not heard from for `stale` (on any machine; a relay calls this every few seconds,
    /// well within `stale`), on SQLite those whose process is gone. Answers whether any call
    /// was taken back. See [`Outbox::release_leases_of_stopped_relays`].
    pub async fn heartbeat(&self, stale: Duration) -> Result<bool, StoreError> {
        let write = OutboxWrite::Heartbeat {
            now: now_ms(),
            stale_ms: i64::try_from(stale.as_millis()).unwrap_or(i64::MAX / 4),
        };
        let taken_over = self.write(write).await?.changed() > 0;
        Ok(self.release_leases_of_stopped_relays().await? || taken_over)
    }

    /// One call.
    pub async fn entry(&self, id: i64) -> Result<Option<OutboxEntry>, StoreError> {
        let failed = self.store.query_failed("read an outbox call");
        let row: Option<OutboxRow> =
            on_pool!(self.store.reads(), p => sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM outbox WHERE pk = $1"
        )))
        .bind(id)
        .fetch_optional(p).await)
            .map_err(&failed)?;
        row.map(OutboxEntry::try_from).transpose().map_err(failed)
    }

    /// Up to `limit` calls in `state` (or any), oldest first, after id `after`.
    pub async fn list(
        &self,
        state: Option<OutboxState>,
        after: i64,
        limit: i64,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        let failed = self.store.query_failed("list the outbox");
        let rows: Vec<OutboxRow> =
            on_pool!(self.store.reads(), p => sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM outbox WHERE ($1 IS NULL OR state = $1) AND pk > $2
              ORDER BY pk LIMIT $3"
        )))
        .bind(state.map(OutboxState::as_str))
        .bind(after)
        .bind(limit)
        .fetch_all(p).await)
            .map_err(&failed)?;
        entries(rows).map_err(failed)
    }

    /// Where each of `ids` stands (ids not in the outbox are left out), in id order.
    pub async fn statuses(&self, ids: &[i64]) -> Result<Vec<CallStatus>, StoreError> {
        let failed = self.store.query_failed("read the outbox");
        // One statement for any number of ids: a JSON array on SQLite, an array on PostgreSQL.
        let rows: Vec<StatusRow> = match self.store.reads() {
            Pool::Sqlite(p) => {
                sqlx::query_as(
                    "SELECT pk AS id, state, last_error FROM outbox
                      WHERE pk IN (SELECT value FROM json_each($1)) ORDER BY pk",
                )
                .bind(serde_json::to_string(ids).expect("integers always serialize"))
                .fetch_all(p)
                .await
            }
            Pool::Postgres(p) => {
                sqlx::query_as(
                    "SELECT pk AS id, state, last_error FROM outbox
                      WHERE pk = ANY($1) ORDER BY pk",
                )
                .bind(ids)
                .fetch_all(p)
                .await
            }
        }
        .map_err(&failed)?;
        rows.into_iter()
            .map(CallStatus::try_from)
            .collect::<Result<_, _>>()
            .map_err(failed)
    }

    /// Counts per state, the oldest pending call, the next due.
    pub async fn stats(&self) -> Result<OutboxStats, StoreError> {
        let (pending, delivered, dead, oldest): (i64, i64, i64, Option<i64>) =
            on_pool!(self.store.reads(), p => sqlx::query_as(
            "SELECT count(*) FILTER (WHERE state = 'pending'),
                    count(*) FILTER (WHERE state = 'delivered'),
                    count(*) FILTER (WHERE state = 'dead'),
                    min(created_at_ms) FILTER (WHERE state = 'pending')
               FROM outbox",
        )
        .fetch_one(p).await)
            .map_err(self.store.query_failed("count the outbox's calls"))?;
        Ok(OutboxStats {
            pending,
            delivered,
            dead,
            oldest_pending_at_ms: oldest,
            next_attempt_at_ms: self.next_due().await?,
        })
    }

    /// When the next deliverable call is due (the earliest head not leased), if any.
    pub async fn next_due(&self) -> Result<Option<i64>, StoreError> {
        // The later of the two, said in SQL both backends read alike (SQLite has no greatest()).
        self.earliest_head(
            "CASE WHEN o.next_attempt_at_ms > coalesce(o.lease_until_ms, 0)
                  THEN o.next_attempt_at_ms ELSE coalesce(o.lease_until_ms, 0) END",
        )
        .await
    }

    /// When the next attempt of a deliverable call is due, counting calls being sent now as due
    /// now (their lease is not a wait): `Some(t <= now)` while anything goes or may go.
    pub async fn next_attempt(&self) -> Result<Option<i64>, StoreError> {
        self.earliest_head("o.next_attempt_at_ms").await
    }

    /// The least `expression` over the heads (each lane's deliverable oldest pending call).
    async fn earliest_head(&self, expression: &str) -> Result<Option<i64>, StoreError> {
        let heads = heads(self.store.is_postgres());
        on_pool!(self.store.reads(), p => sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "{heads}
             SELECT min({expression})
               FROM outbox o JOIN heads h ON h.pk = o.pk"
        )))
        .fetch_one(p).await)
        .map_err(self.store.query_failed("find the outbox's next due call"))
    }

    /// For a pending call that may not go yet because of the order rules, the id of the call
    /// that holds it back: the head of its conversation (or of its channel's channel-wide
    /// calls), or else the channel-wide call (for a channel-wide call: any call of its channel)
    /// accepted before it. `None` for a call nothing holds back (it waits, if at all, for its
    /// own backoff), and for one that is not pending or not in the outbox.
    pub async fn held_behind(&self, id: i64) -> Result<Option<i64>, StoreError> {
        let held: Option<Option<i64>> = on_pool!(self.store.reads(), p => sqlx::query_scalar(
                sqlx::AssertSqlSafe(held_behind(self.store.is_postgres())))
            .bind(id)
            .fetch_optional(p).await)
        .map_err(
            self.store
                .query_failed("find what holds an outbox call back"),
        )?;
        Ok(held.flatten())
    }

    /// Takes back the calls leased by relays whose process is gone (a crash, a kill), so they
    /// can be sent, retried or dropped now rather than when their leases lapse; answers whether
    /// any was. Relays still running on this database keep theirs: taking a call from under one
    /// could reorder its conversation. A process id on another machine cannot be checked: see
    /// [`crate::lease_owner`].
    pub async fn release_leases_of_stopped_relays(&self) -> Result<bool, StoreError> {
        let gone: Vec<String> = self
            .lease_owners()
            .await?
            .into_iter()
            .filter(|owner| crate::lease_owner::is_gone(owner))
            .collect();
        if gone.is_empty() {
            return Ok(false);
        }
        self.release_leases_of(&gone).await
    }

    /// The processes (see [`crate::lease_owner`]) holding leases on pending calls.
    pub async fn lease_owners(&self) -> Result<Vec<String>, StoreError> {
        on_pool!(self.store.reads(), p => sqlx::query_scalar(
            "SELECT DISTINCT lease_owner FROM outbox
              WHERE state = 'pending' AND lease_until_ms IS NOT NULL AND lease_owner IS NOT NULL",
        )
        .fetch_all(p).await)
        .map_err(self.store.query_failed("read the outbox's leases"))
    }
}

#[cfg(test)]
mod tests {
    use sqlx::Connection;

    /// Releasing the backoff must not read every pending call: SQLite must search the partial
    /// index of the calls in backoff, not scan the table or the index of all pending calls.
    #[tokio::test]
    async fn releasing_the_backoff_searches_only_the_calls_in_backoff() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plan.db");
        crate::Store::open(&path).await.unwrap().close().await;
        let mut conn = sqlx::SqliteConnection::connect_with(&crate::open::connect_options(&path))
            .await
            .unwrap();
        let plan: Vec<(i64, i64, i64, String)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "EXPLAIN QUERY PLAN {}",
            super::writes::release_backoff_sql(false)
        )))
        .bind(0_i64)
        .fetch_all(&mut conn)
        .await
        .unwrap();
        let details: Vec<&str> = plan.iter().map(|(.., detail)| detail.as_str()).collect();
        assert!(
            details
                .iter()
                .any(|d| d.contains("SEARCH") && d.contains("outbox_in_backoff")),
            "release_backoff should search outbox_in_backoff; the plan is {details:?}"
        );
    }
}
