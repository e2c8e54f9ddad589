//! The outbox's writes, each one function, applied by the store's single writer inside its
//! group's transaction like every other write, on either backend.

use super::lanes::heads;
use super::row::{COLUMNS, OutboxRow, entries};
use super::vocabulary::{NewOutboxEntry, OutboxEntry, OutboxState, Settlement};
use crate::backend::{Conn, on_conn};
use crate::lease_owner;

/// An outbox write. Each carries the time it was asked at (`now`, ms since the epoch), except
/// where the writer's own clock is as good.
#[derive(Clone)]
pub(crate) enum OutboxWrite {
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
    RetryAll {
        now: i64,
        state: Option<OutboxState>,
    },
    ReleaseBackoff {
        now: i64,
    },
    ReleaseLeasesOf(Vec<String>),
    /// This relay is alive (PostgreSQL: recorded for the others); the leases of relays silent
    /// for longer than `stale_ms` are taken back.
    Heartbeat {
        now: i64,
        stale_ms: i64,
    },
    Drop {
        id: i64,
    },
}

/// What an outbox write answers: the new call's id, the calls claimed, or how many calls
/// changed.
#[derive(Debug)]
pub(crate) enum OutboxAnswer {
    Enqueued(i64),
    Claimed(Vec<OutboxEntry>),
    Changed(u64),
}

pub(crate) async fn apply(
    conn: &mut Conn,
    write: OutboxWrite,
    writer_now: i64,
) -> Result<OutboxAnswer, sqlx::Error> {
    use OutboxAnswer::{Changed, Claimed, Enqueued};
    Ok(match write {
        OutboxWrite::Enqueue(entry) => Enqueued(enqueue(conn, entry, writer_now).await?),
        OutboxWrite::Claim {
            now,
            limit,
            lease_ms,
        } => Claimed(claim(conn, now, limit, lease_ms).await?),
        OutboxWrite::Settle {
            id,
            now,
            settlement,
        } => Changed(settle(conn, id, now, settlement).await?),
        OutboxWrite::Retry { id, now } => Changed(retry(conn, id, now).await?),
        OutboxWrite::RetryAll { now, state } => Changed(retry_all(conn, now, state).await?),
        OutboxWrite::ReleaseBackoff { now } => Changed(release_backoff(conn, now).await?),
        OutboxWrite::ReleaseLeasesOf(owners) => Changed(release_leases_of(conn, &owners).await?),
        OutboxWrite::Heartbeat { now, stale_ms } => Changed(heartbeat(conn, now, stale_ms).await?),
        OutboxWrite::Drop { id } => Changed(drop_call(conn, id, writer_now).await?),
    })
}

/// Runs one statement that changes rows, on either backend: how many it changed.
macro_rules! changed {
    ($conn:expr, $query:expr) => {
        on_conn!($conn, c => $query.execute(c).await.map(|done| done.rows_affected()))
    };
}

async fn enqueue(conn: &mut Conn, entry: NewOutboxEntry, now: i64) -> Result<i64, sqlx::Error> {
    let inserted: Option<i64> = on_conn!(conn, c => sqlx::query_scalar(
        "INSERT INTO outbox (operation, channel_key, conversation_key, request,
                             idempotency_key, next_attempt_at_ms, created_at_ms,
                             updated_at_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $6, $6)
         ON CONFLICT (idempotency_key) DO NOTHING
         RETURNING pk",
    )
    .bind(entry.operation.as_str())
    .bind(&entry.channel_key)
    .bind(&entry.conversation_key)
    .bind(entry.request.to_string())
    .bind(&entry.idempotency_key)
    .bind(now)
    .fetch_optional(c)
    .await)?;
    match inserted {
        Some(id) => Ok(id),
        // The caller handed in this very call before (same key): it is (or was) delivered
        // once. A NULL key never conflicts, so this is only keyed calls.
        None => on_conn!(conn, c => sqlx::query_scalar(
            "SELECT pk FROM outbox WHERE idempotency_key = $1",
        )
        .bind(&entry.idempotency_key)
        .fetch_one(c)
        .await),
    }
}

/// Who leases a call: on SQLite this process (`PID:START`, checked in `/proc`), on PostgreSQL
/// this relay instance (checked by its heartbeat, from any machine).
fn owner(conn: &Conn) -> &'static str {
    if conn.is_postgres() {
        lease_owner::this_instance()
    } else {
        lease_owner::this_process()
    }
}

async fn claim(
    conn: &mut Conn,
    now: i64,
    limit: i64,
    lease_ms: i64,
) -> Result<Vec<OutboxEntry>, sqlx::Error> {
    // On PostgreSQL several relays claim at once: a head another relay is claiming right now is
    // skipped (`SKIP LOCKED`), not waited for; and `state = 'pending'` is checked again on the
    // locked row, so a head settled since this statement's snapshot is not sent again.
    let heads = heads(conn.is_postgres());
    let lock = if conn.is_postgres() {
        "FOR UPDATE OF o SKIP LOCKED"
    } else {
        ""
    };
    let sql = format!(
        "{heads}
         UPDATE outbox
            SET in_doubt = (in_doubt OR lease_until_ms IS NOT NULL),
                lease_until_ms = $1 + $3, lease_owner = $4, attempts = attempts + 1,
                updated_at_ms = $1
          WHERE pk IN (SELECT o.pk FROM outbox o JOIN heads h ON h.pk = o.pk
                        WHERE o.state = 'pending' AND o.next_attempt_at_ms <= $1
                          AND (o.lease_until_ms IS NULL OR o.lease_until_ms <= $1)
                        ORDER BY o.pk LIMIT $2 {lock})
         RETURNING {COLUMNS}"
    );
    let owner = owner(conn);
    let rows: Vec<OutboxRow> = on_conn!(conn, c => sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(now)
        .bind(limit)
        .bind(lease_ms)
        .bind(owner)
        .fetch_all(c)
        .await)?;
    let mut claimed = entries(rows)?;
    claimed.sort_by_key(|e| e.id);
    Ok(claimed)
}

/// Only the relay holding the lease settles a call (`$9`, this relay): one whose lease was taken
/// back and claimed by another relay meanwhile is that relay's to settle now.
const MINE: &str = "(lease_owner IS NULL OR lease_owner = $9)";

async fn settle(
    conn: &mut Conn,
    id: i64,
    now: i64,
    settlement: Settlement,
) -> Result<u64, sqlx::Error> {
    // One statement for the three outcomes, each a CASE on `$2`; `$9` is this relay.
    let (outcome, response, error, retry_at, in_doubt) = match settlement {
        Settlement::Delivered(response) => ("delivered", Some(response), None, None, false),
        Settlement::RetryAt {
            at,
            error,
            in_doubt,
        } => ("retry", None, Some(error), Some(at), in_doubt),
        Settlement::Dead(error) => ("dead", None, Some(error), None, false),
    };
    let sql = format!(
        "UPDATE outbox
            SET state = CASE $2 WHEN 'delivered' THEN 'delivered'
                                WHEN 'dead' THEN 'dead' ELSE state END,
                response = CASE WHEN $2 = 'delivered' THEN $3 ELSE response END,
                last_error = $4,
                next_attempt_at_ms = CASE WHEN $2 = 'retry' THEN $5 ELSE next_attempt_at_ms END,
                first_failed_at_ms = CASE WHEN $2 = 'retry'
                                          THEN coalesce(first_failed_at_ms, $6)
                                          ELSE first_failed_at_ms END,
                in_doubt = (in_doubt OR $7),
                lease_until_ms = NULL, updated_at_ms = $6
          WHERE pk = $1 AND state = 'pending' AND ($8 OR {MINE})"
    );
    let owner = owner(conn);
    // A relay's leases are fenced on PostgreSQL only: on SQLite a call's lease is taken back
    // only from a process that is gone, which settles nothing any more.
    let unfenced = !conn.is_postgres();
    changed!(
        conn,
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .bind(outcome)
            .bind(response)
            .bind(error)
            .bind(retry_at)
            .bind(now)
            .bind(in_doubt)
            .bind(unfenced)
            .bind(owner)
    )
}

/// What a person's retry does to a call: back in line, due now, and since it is asked for after
/// a fix, the give-up count and clock start afresh. `$1` is now. The one definition for
/// [`retry`] and [`retry_all`].
const PUT_BACK_IN_LINE: &str = "UPDATE outbox
    SET state = 'pending', next_attempt_at_ms = $1, lease_until_ms = NULL, attempts = 0,
        first_failed_at_ms = NULL, updated_at_ms = $1";

/// Not while a relay is sending it: that would send it twice at once (`$1` is now).
const NOT_LEASED: &str = "(lease_until_ms IS NULL OR lease_until_ms <= $1)";

async fn retry(conn: &mut Conn, id: i64, now: i64) -> Result<u64, sqlx::Error> {
    let sql = format!(
        "{PUT_BACK_IN_LINE} WHERE pk = $2 AND state IN ('dead', 'pending') AND {NOT_LEASED}"
    );
    changed!(
        conn,
        sqlx::query(sqlx::AssertSqlSafe(sql)).bind(now).bind(id)
    )
}

/// Puts back in line every dead call (unless `state` is `Pending`) and every pending call
/// waiting out a backoff (unless `state` is `Dead`); delivered calls never go again.
async fn retry_all(
    conn: &mut Conn,
    now: i64,
    state: Option<OutboxState>,
) -> Result<u64, sqlx::Error> {
    let dead = matches!(state, None | Some(OutboxState::Dead));
    let waiting = matches!(state, None | Some(OutboxState::Pending));
    let sql = format!(
        "{PUT_BACK_IN_LINE}
          WHERE {NOT_LEASED}
            AND (($2 AND state = 'dead')
                 OR ($3 AND state = 'pending'
                     AND (first_failed_at_ms IS NOT NULL OR next_attempt_at_ms > $1)))"
    );
    changed!(
        conn,
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(now)
            .bind(dead)
            .bind(waiting)
    )
}

/// Makes due now every pending call waiting out the backoff of earlier failures. Only those
/// calls are read: `outbox_in_backoff` holds exactly them, so the cost does not grow with the
/// calls that never failed.
async fn release_backoff(conn: &mut Conn, now: i64) -> Result<u64, sqlx::Error> {
    let sql = release_backoff_sql(conn.is_postgres());
    changed!(conn, sqlx::query(sqlx::AssertSqlSafe(sql)).bind(now))
}

/// The statement of [`release_backoff`], apart so a test can check how SQLite runs it. On
/// SQLite the index is named: without statistics SQLite prefers `outbox_by_state` and reads
/// every pending call (PostgreSQL's planner has statistics). Its `WHERE` must name the index's
/// condition word for word, or SQLite cannot use it.
pub(crate) fn release_backoff_sql(postgres: bool) -> String {
    let indexed_by = if postgres {
        ""
    } else {
        "INDEXED BY outbox_in_backoff"
    };
    format!(
        "UPDATE outbox {indexed_by}
            SET next_attempt_at_ms = $1, updated_at_ms = $1
          WHERE state = 'pending' AND first_failed_at_ms IS NOT NULL AND next_attempt_at_ms > $1
            AND {NOT_LEASED}"
    )
}

async fn release_leases_of(conn: &mut Conn, owners: &[String]) -> Result<u64, sqlx::Error> {
    // Leases taken before owners were recorded have none: theirs are released too. Their sends
    // may have reached the upstream before the process died: in doubt.
    match conn {
        Conn::Sqlite(c) => sqlx::query(
            "UPDATE outbox SET lease_until_ms = NULL, in_doubt = 1
              WHERE state = 'pending' AND lease_until_ms IS NOT NULL
                AND (lease_owner IS NULL
                     OR lease_owner IN (SELECT value FROM json_each($1)))",
        )
        .bind(serde_json::to_string(owners).expect("strings always serialize"))
        .execute(c)
        .await
        .map(|done| done.rows_affected()),
        Conn::Postgres(c) => sqlx::query(
            "UPDATE outbox SET lease_until_ms = NULL, in_doubt = true
              WHERE state = 'pending' AND lease_until_ms IS NOT NULL
                AND (lease_owner IS NULL OR lease_owner = ANY($1))",
        )
        .bind(owners)
        .execute(c)
        .await
        .map(|done| done.rows_affected()),
    }
}

/// PostgreSQL: records this relay as alive and takes back the leases of relays not heard from
/// for `stale_ms` (any machine's). SQLite: the processes gone are found in `/proc` instead
/// (see [`crate::Outbox::release_leases_of_stopped_relays`]); nothing to record.
async fn heartbeat(conn: &mut Conn, now: i64, stale_ms: i64) -> Result<u64, sqlx::Error> {
    let Conn::Postgres(c) = conn else {
        return Ok(0);
    };
    let me = lease_owner::this_instance();
    sqlx::query(
        "INSERT INTO relay_instances (owner, seen_at_ms) VALUES ($1, $2)
         ON CONFLICT (owner) DO UPDATE SET seen_at_ms = excluded.seen_at_ms",
    )
    .bind(me)
    .bind(now)
    .execute(&mut *c)
    .await?;
    sqlx::query("DELETE FROM relay_instances WHERE seen_at_ms < $1")
        .bind(now - 10 * stale_ms)
        .execute(&mut *c)
        .await?;
    Ok(sqlx::query(
        "UPDATE outbox SET lease_until_ms = NULL, in_doubt = true
          WHERE state = 'pending' AND lease_until_ms > $1
            AND lease_owner IS DISTINCT FROM $2
            AND NOT EXISTS (SELECT 1 FROM relay_instances r
                             WHERE r.owner = outbox.lease_owner AND r.seen_at_ms >= $1 - $3)",
    )
    .bind(now)
    .bind(me)
    .bind(stale_ms)
    .execute(&mut *c)
    .await?
    .rows_affected())
}

async fn drop_call(conn: &mut Conn, id: i64, now: i64) -> Result<u64, sqlx::Error> {
    // Not while a relay is sending it: the next call of its conversation would go out while
    // this one may still arrive, out of order.
    let sql = format!("DELETE FROM outbox WHERE pk = $2 AND {NOT_LEASED}");
    changed!(
        conn,
        sqlx::query(sqlx::AssertSqlSafe(sql)).bind(now).bind(id)
    )
}
