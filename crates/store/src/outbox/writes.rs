//! The outbox's writes, each one function, applied by the store's single writer inside its
//! group's transaction like every other write.

use sqlx::SqliteConnection;

use super::lanes::HEADS;
use super::row::{COLUMNS, OutboxRow, entries};
use super::vocabulary::{NewOutboxEntry, OutboxEntry, OutboxState, Settlement};

/// An outbox write. Each carries the time it was asked at (`now`, ms since the epoch), except
/// where the writer's own clock is as good.
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
    conn: &mut SqliteConnection,
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
        OutboxWrite::Drop { id } => Changed(drop_call(conn, id, writer_now).await?),
    })
}

async fn enqueue(
    conn: &mut SqliteConnection,
    entry: NewOutboxEntry,
    now: i64,
) -> Result<i64, sqlx::Error> {
    let inserted: Option<i64> = sqlx::query_scalar(
        "INSERT INTO outbox (operation, channel_key, conversation_key, request,
                             idempotency_key, next_attempt_at_ms, created_at_ms,
                             updated_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?6)
         ON CONFLICT (idempotency_key) DO NOTHING
         RETURNING pk",
    )
    .bind(entry.operation.as_str())
    .bind(&entry.channel_key)
    .bind(&entry.conversation_key)
    .bind(entry.request.to_string())
    .bind(&entry.idempotency_key)
    .bind(now)
    .fetch_optional(&mut *conn)
    .await?;
    match inserted {
        Some(id) => Ok(id),
        // The caller handed in this very call before (same key): it is (or was) delivered
        // once. A NULL key never conflicts, so this is only keyed calls.
        None => {
            sqlx::query_scalar("SELECT pk FROM outbox WHERE idempotency_key = ?1")
                .bind(&entry.idempotency_key)
                .fetch_one(&mut *conn)
                .await
        }
    }
}

async fn claim(
    conn: &mut SqliteConnection,
    now: i64,
    limit: i64,
    lease_ms: i64,
) -> Result<Vec<OutboxEntry>, sqlx::Error> {
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
    let rows: Vec<OutboxRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(now)
        .bind(limit)
        .bind(lease_ms)
        .bind(crate::lease_owner::this_process())
        .fetch_all(&mut *conn)
        .await?;
    let mut claimed = entries(rows)?;
    claimed.sort_by_key(|e| e.id);
    Ok(claimed)
}

async fn settle(
    conn: &mut SqliteConnection,
    id: i64,
    now: i64,
    settlement: Settlement,
) -> Result<u64, sqlx::Error> {
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
    Ok(query.execute(&mut *conn).await?.rows_affected())
}

/// What a person's retry does to a call: back in line, due now, and since it is asked for after
/// a fix, the give-up count and clock start afresh. `?1` is now. The one definition for
/// [`retry`] and [`retry_all`].
const PUT_BACK_IN_LINE: &str = "UPDATE outbox
    SET state = 'pending', next_attempt_at_ms = ?1, lease_until_ms = NULL, attempts = 0,
        first_failed_at_ms = NULL, updated_at_ms = ?1";

/// Not while a relay is sending it: that would send it twice at once (`?1` is now).
const NOT_LEASED: &str = "(lease_until_ms IS NULL OR lease_until_ms <= ?1)";

async fn retry(conn: &mut SqliteConnection, id: i64, now: i64) -> Result<u64, sqlx::Error> {
    let sql = format!(
        "{PUT_BACK_IN_LINE} WHERE pk = ?2 AND state IN ('dead', 'pending') AND {NOT_LEASED}"
    );
    Ok(sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(now)
        .bind(id)
        .execute(&mut *conn)
        .await?
        .rows_affected())
}

/// Puts back in line every dead call (unless `state` is `Pending`) and every pending call
/// waiting out a backoff (unless `state` is `Dead`); delivered calls never go again.
async fn retry_all(
    conn: &mut SqliteConnection,
    now: i64,
    state: Option<OutboxState>,
) -> Result<u64, sqlx::Error> {
    let dead = matches!(state, None | Some(OutboxState::Dead));
    let waiting = matches!(state, None | Some(OutboxState::Pending));
    let sql = format!(
        "{PUT_BACK_IN_LINE}
          WHERE {NOT_LEASED}
            AND ((?2 AND state = 'dead')
                 OR (?3 AND state = 'pending'
                     AND (first_failed_at_ms IS NOT NULL OR next_attempt_at_ms > ?1)))"
    );
    Ok(sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(now)
        .bind(dead)
        .bind(waiting)
        .execute(&mut *conn)
        .await?
        .rows_affected())
}

/// Makes due now every pending call waiting out the backoff of earlier failures. Only those
/// calls are read: `outbox_in_backoff` (migration 0007) holds exactly them, so the cost does
/// not grow with the calls that never failed.
async fn release_backoff(conn: &mut SqliteConnection, now: i64) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(sqlx::AssertSqlSafe(release_backoff_sql()))
        .bind(now)
        .execute(&mut *conn)
        .await?
        .rows_affected())
}

/// The statement of [`release_backoff`], apart so a test can check how SQLite runs it. The
/// index is named: without statistics SQLite prefers `outbox_by_state` and reads every pending
/// call. Its `WHERE` must name the index's condition word for word, or SQLite cannot use it.
pub(crate) fn release_backoff_sql() -> String {
    format!(
        "UPDATE outbox INDEXED BY outbox_in_backoff
            SET next_attempt_at_ms = ?1, updated_at_ms = ?1
          WHERE state = 'pending' AND first_failed_at_ms IS NOT NULL AND next_attempt_at_ms > ?1
            AND {NOT_LEASED}"
    )
}

async fn release_leases_of(
    conn: &mut SqliteConnection,
    owners: &[String],
) -> Result<u64, sqlx::Error> {
    // Leases taken before owners were recorded have none: theirs are released too.
    Ok(sqlx::query(
        // Their sends may have reached the upstream before the process died.
        "UPDATE outbox SET lease_until_ms = NULL, in_doubt = 1
          WHERE state = 'pending' AND lease_until_ms IS NOT NULL
            AND (lease_owner IS NULL
                 OR lease_owner IN (SELECT value FROM json_each(?1)))",
    )
    .bind(serde_json::to_string(owners).expect("strings always serialize"))
    .execute(&mut *conn)
    .await?
    .rows_affected())
}

async fn drop_call(conn: &mut SqliteConnection, id: i64, now: i64) -> Result<u64, sqlx::Error> {
    // Not while a relay is sending it: the next call of its conversation would go out while
    // this one may still arrive, out of order.
    let sql = format!("DELETE FROM outbox WHERE pk = ?2 AND {NOT_LEASED}");
    Ok(sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(now)
        .bind(id)
        .execute(&mut *conn)
        .await?
        .rows_affected())
}
