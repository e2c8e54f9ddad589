//! The counters behind the hub's rate limits, kept in the database on PostgreSQL so that every
//! hub sharing it counts each token's requests together: N hubs never admit N times a limit.
//!
//! The store keeps the counters; the hub decides (its rule is in one place, `hub::rate_limit`,
//! whether the counters are its own memory or these rows).

use crate::backend::Pool;
use crate::{Store, StoreError};

/// What one API token has used.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RateUsage {
    /// When each request of the rolling window was admitted, oldest first (ms since the epoch).
    pub admitted_ms: Vec<u64>,
    /// The UTC day (days since the epoch) that `spent_today` counts.
    pub day: u64,
    /// The cost spent on `day`.
    pub spent_today: u64,
}

impl Store {
    /// Whether this store keeps rate-limit counters shared by every process on the database
    /// (PostgreSQL). On SQLite one hub serves a file and counts in its own memory.
    pub fn shares_rate_limits(&self) -> bool {
        self.is_postgres()
    }

    /// Reads `token_id`'s counters, lets `decide` change them (given the database's clock, in
    /// ms since the epoch, so hubs whose clocks differ still agree), and stores the result, with
    /// the row locked throughout so that concurrent decisions on any hub wait their turn.
    /// `None` on SQLite, which keeps no shared counters ([`Store::shares_rate_limits`]).
    ///
    /// The commit does not wait for the disk (`synchronous_commit = off`): a server crash can
    /// forget the last few counts, which lets a few requests more through, and never loses data.
    pub async fn update_rate_usage<R>(
        &self,
        token_id: &str,
        decide: impl FnOnce(&mut RateUsage, u64) -> R,
    ) -> Result<Option<R>, StoreError> {
        let Pool::Postgres(pool) = self.reads() else {
            return Ok(None);
        };
        let failed = self.query_failed("count a request against its token's rate limits");
        let mut tx = pool.begin().await.map_err(&failed)?;
        sqlx::query("SET LOCAL synchronous_commit = off")
            .execute(&mut *tx)
            .await
            .map_err(&failed)?;
        // An upsert that changes nothing still locks the row, and creates it the first time.
        let (admitted, day, spent, now): (Vec<i64>, i64, i64, i64) = sqlx::query_as(
            "INSERT INTO rate_limit_usage (token_id) VALUES ($1)
             ON CONFLICT (token_id) DO UPDATE SET token_id = EXCLUDED.token_id
             RETURNING admitted_ms, day, spent,
                       (extract(epoch FROM clock_timestamp()) * 1000)::bigint",
        )
        .bind(token_id)
        .fetch_one(&mut *tx)
        .await
        .map_err(&failed)?;
        let before = RateUsage {
            admitted_ms: admitted.into_iter().map(|t| t.max(0) as u64).collect(),
            day: day.max(0) as u64,
            spent_today: spent.max(0) as u64,
        };
        let mut usage = before.clone();
        let decided = decide(&mut usage, now.max(0) as u64);
        if usage != before {
            let admitted: Vec<i64> = usage.admitted_ms.iter().map(|&t| t as i64).collect();
            sqlx::query(
                "UPDATE rate_limit_usage SET admitted_ms = $2, day = $3, spent = $4
                 WHERE token_id = $1",
            )
            .bind(token_id)
            .bind(admitted)
            .bind(usage.day as i64)
            .bind(usage.spent_today as i64)
            .execute(&mut *tx)
            .await
            .map_err(&failed)?;
        }
        tx.commit().await.map_err(&failed)?;
        Ok(Some(decided))
    }
}
