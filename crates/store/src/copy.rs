//! `pdchannels db copy`: a SQLite hub's whole state into a PostgreSQL database, ids kept.
//!
//! Both ends are opened with [`Store::connect`] first, so that the source is brought up to date
//! (or refused, if a newer pdchannels wrote it) and the target's schema is made by our own
//! migrations. Then each table is read from SQLite in key order, in batches, and written with
//! PostgreSQL's `COPY … FROM STDIN` (CSV): one transaction per batch, which also records how far
//! the copy got. The whole source is read in one SQLite read transaction, so the copy is of one
//! moment of it even if something writes it meanwhile (stop the hub first all the same: what it
//! writes later is not copied).
//!
//! On the copy's own connection `pdchannels.copying` is on, so the messages triggers (which
//! create conversations and participants from messages) leave the copied messages alone: the
//! conversations and participants are copied as they are, counts, times and join order included.
//! Other connections to the target keep their triggers.
//!
//! At the end every identity sequence is set past the largest id copied, and each table's rows
//! (and the conversations' message counts, and the messages' payload bytes) are counted on both
//! sides: any difference is an error.
//!
//! The notes mirror's links and segments are copied (without their leases): a hub that lost them
//! would post every note again. So are its settings (the time zone its notes' days were cut in:
//! a copied hub must not accept another), its intake cursor and its daily token ledger, and each
//! person's read state in the inbox. Login sessions and links are not: people log in again.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::TryStreamExt;
use serde::Serialize;
use sqlx::sqlite::SqliteRow;
use sqlx::{Connection, PgConnection, Row, SqliteConnection};

use crate::{Database, PostgresUrl, Store, StoreError, open};

/// How many rows one batch (one transaction on the target) carries at most.
const BATCH_ROWS: i64 = 20_000;
/// How long a copy waits for the target's lock, which a copy killed a moment ago holds until
/// PostgreSQL notices its connection is gone.
const LOCK_WAIT: Duration = Duration::from_secs(10);

/// How much CSV is gathered before it is sent to the server.
const SEND_BYTES: usize = 1 << 20;

/// What a copy does besides copying.
#[derive(Debug, Clone, Copy, Default)]
pub struct CopyOptions {
    /// Continue a copy into this target that was interrupted (or verify one that finished),
    /// rather than refusing a target that is not empty.
    pub resume: bool,
}

/// How far a copy is, for a progress bar or a log line.
#[derive(Debug, Clone, Copy)]
pub enum CopyProgress {
    /// Rows of `table` copied so far (of `total`); `done` once the table is finished.
    Copied {
        /// The table.
        table: &'static str,
        /// Rows in the target so far (including those of an earlier, interrupted run).
        copied: u64,
        /// Rows in the source.
        total: u64,
        /// Whether the table is finished.
        done: bool,
    },
    /// Every table is copied; the counts are being compared.
    Verifying,
}

/// What a finished copy did.
#[derive(Debug, Clone, Serialize)]
pub struct CopyReport {
    /// The source (a SQLite file).
    pub from: String,
    /// The target, without its password.
    pub to: String,
    /// Whether an interrupted copy was continued.
    pub resumed: bool,
    /// Each table's rows, the same in the source and the target (checked).
    pub tables: Vec<TableCount>,
    /// The sum of the conversations' message counts (checked too).
    pub message_count_sum: i64,
    /// The bytes of all message payloads (checked too).
    pub payload_bytes: i64,
    /// How long the copy took (this run), in seconds.
    pub seconds: f64,
}

/// One table's rows.
#[derive(Debug, Clone, Serialize)]
pub struct TableCount {
    /// The table.
    pub table: &'static str,
    /// Its rows (in both databases).
    pub rows: i64,
}

/// Why a copy was refused or failed. Each is one line that says what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CopyError {
    /// The source is not a SQLite file.
    #[error(
        "--from {0} is a PostgreSQL database: db copy copies a SQLite file (--from PATH) into PostgreSQL (--to postgres://…)"
    )]
    SourceNotSqlite(Database),
    /// The target is not a PostgreSQL database.
    #[error(
        "--to {0} is a SQLite file: db copy copies into a PostgreSQL database (--to postgres://USER@HOST:PORT/DB)"
    )]
    TargetNotPostgres(Database),
    /// No file at the source's path.
    #[error(
        "no database at {}: pass the SQLite file the hub uses as --from (`pdchannels paths` shows the default)",
        .0.display()
    )]
    NoSource(PathBuf),
    /// The source file is not a pdchannels database.
    #[error("{} is not a pdchannels database ({why}): pass the hub's SQLite file as --from", path.display())]
    NotPdchannels {
        /// The file.
        path: PathBuf,
        /// What it lacks, or what SQLite said.
        why: String,
    },
    /// The source could not be opened or read.
    #[error("{0}")]
    Source(StoreError),
    /// The target could not be opened or written.
    #[error("{0}")]
    Target(StoreError),
    /// The target holds data that no copy of this source put there, or a copy not to be
    /// continued without `--resume`.
    #[error("the target {target} is not empty: {what}; {fix}")]
    NotEmpty {
        /// The target, without its password.
        target: String,
        /// What it holds.
        what: String,
        /// What to do.
        fix: &'static str,
    },
    /// Another `db copy` into this target is running.
    #[error("another `pdchannels db copy` into {0} is running: wait for it to finish")]
    Busy(String),
    /// The counts differ after the copy.
    #[error(
        "the copy in {target} differs from {from}: {differences}; was the source written during the copy? Copy again into an empty database"
    )]
    Mismatch {
        /// The source file.
        from: String,
        /// The target, without its password.
        target: String,
        /// What differs (`messages: 10 in the source, 9 in the target`, ...).
        differences: String,
    },
}

/// How a column is read from SQLite and written as CSV.
#[derive(Clone, Copy)]
enum Kind {
    Int,
    Text,
    /// An INTEGER 0/1 in SQLite, a BOOLEAN in PostgreSQL.
    Bool,
    /// A BLOB in SQLite, a BYTEA in PostgreSQL.
    Bytes,
}

/// How a table is walked: by an integer key (`pk`, or `rowid` for participants), by the
/// conversations' `(channel_pk, conversation_id)`, or whole in one batch (the small tables keyed
/// by a name or a day, and the inbox's read marks, one per person and conversation read).
#[derive(Clone, Copy, PartialEq)]
enum Key {
    Int,
    Conversation,
    Whole,
}

/// One table to copy: the SQLite query of a batch (its columns in the target's order, the key
/// first), and the target's columns.
struct Table {
    name: &'static str,
    key: Key,
    select: &'static str,
    columns: &'static str,
    kinds: &'static [Kind],
}

use Kind::{Bool, Bytes, Int, Text};

/// In the order of their foreign keys: channels, then conversations (their participants, their
/// messages), then the rest. A `Key::Whole` table's select takes no parameters.
const TABLES: &[Table] = &[
    Table {
        name: "apps",
        key: Key::Int,
        select: "SELECT pk, name, client_id, client_secret, manifest, manifest_source,
                        backfill_pages, created_at_ms, updated_at_ms, credentials_invalid_at_ms,
                        paused_until_ms, last_error
                   FROM apps WHERE pk > $1 ORDER BY pk LIMIT $2",
        columns: "pk, name, client_id, client_secret, manifest, manifest_source, backfill_pages, \
                  created_at_ms, updated_at_ms, credentials_invalid_at_ms, paused_until_ms, \
                  last_error",
        kinds: &[
            Int, Text, Text, Text, Text, Text, Int, Int, Int, Int, Int, Text,
        ],
    },
    Table {
        name: "channels",
        key: Key::Int,
        select: "SELECT pk, id, provider_channel_id, name, avatar_url, template_support,
                        provider_type, created_at_ms, updated_at_ms, app_name, suspended_at_ms
                   FROM channels WHERE pk > $1 ORDER BY pk LIMIT $2",
        columns: "pk, id, provider_channel_id, name, avatar_url, template_support, provider_type, \
                  created_at_ms, updated_at_ms, app_name, suspended_at_ms",
        kinds: &[Int, Text, Text, Text, Text, Bool, Text, Int, Int, Text, Int],
    },
    Table {
        name: "conversations",
        key: Key::Conversation,
        select:
            "SELECT channel_pk, conversation_id, created_at_ms, last_activity_ms, message_count,
                        link, state, seen, next_messages_cursor, details_at_ms,
                        last_incoming_ms, last_outgoing_ms
                   FROM conversations WHERE (channel_pk, conversation_id) > ($1, $2)
                  ORDER BY channel_pk, conversation_id LIMIT $3",
        columns: "channel_pk, conversation_id, created_at_ms, last_activity_ms, message_count, \
                  link, state, seen, next_messages_cursor, details_at_ms, last_incoming_ms, \
                  last_outgoing_ms",
        kinds: &[
            Int, Text, Int, Int, Int, Text, Text, Bool, Text, Int, Int, Int,
        ],
    },
    Table {
        name: "participants",
        key: Key::Int,
        // SQLite's rowid is the order in which they joined: PostgreSQL keeps it in `seq`.
        select: "SELECT rowid, channel_pk, conversation_id, participant_id, joined_at_ms, name,
                        role, avatar_url, fetch_avatar, avatar_expires, sender_fetched_at_ms
                   FROM participants WHERE rowid > $1 ORDER BY rowid LIMIT $2",
        columns: "seq, channel_pk, conversation_id, participant_id, joined_at_ms, name, role, \
                  avatar_url, fetch_avatar, avatar_expires, sender_fetched_at_ms",
        kinds: &[Int, Int, Text, Text, Int, Text, Text, Text, Bool, Bool, Int],
    },
    Table {
        name: "messages",
        key: Key::Int,
        select: "SELECT pk, channel_pk, message_id, conversation_id, sender_id, status,
                        created_at_ms, received_at_ms, updated_at_ms, payload
                   FROM messages WHERE pk > $1 ORDER BY pk LIMIT $2",
        columns: "pk, channel_pk, message_id, conversation_id, sender_id, status, created_at_ms, \
                  received_at_ms, updated_at_ms, payload",
        kinds: &[Int, Int, Text, Text, Text, Text, Int, Int, Int, Text],
    },
    Table {
        name: "api_tokens",
        key: Key::Int,
        select: "SELECT pk, id, name, sha256, created_at_ms, revoked_at_ms, app_name
                   FROM api_tokens WHERE pk > $1 ORDER BY pk LIMIT $2",
        columns: "pk, id, name, sha256, created_at_ms, revoked_at_ms, app_name",
        kinds: &[Int, Text, Text, Bytes, Int, Int, Text],
    },
    Table {
        name: "inbox_reads",
        key: Key::Whole,
        select: "SELECT token_id, channel_pk, conversation_id, read_through_ms, marked_unread
                   FROM inbox_reads",
        columns: "token_id, channel_pk, conversation_id, read_through_ms, marked_unread",
        kinds: &[Text, Int, Text, Int, Bool],
    },
    Table {
        name: "outgoing_messages",
        key: Key::Int,
        select: "SELECT pk, local_id, channel_pk, conversation_id, sender_id, recipient_ids,
                        message, template_id, state, message_id, failure, attempts,
                        created_at_ms, updated_at_ms
                   FROM outgoing_messages WHERE pk > $1 ORDER BY pk LIMIT $2",
        columns: "pk, local_id, channel_pk, conversation_id, sender_id, recipient_ids, message, \
                  template_id, state, message_id, failure, attempts, created_at_ms, updated_at_ms",
        kinds: &[
            Int, Text, Int, Text, Text, Text, Text, Text, Text, Text, Text, Int, Int, Int,
        ],
    },
    Table {
        name: "app_calls",
        key: Key::Int,
        // Leases are not copied, as for the outbox.
        select: "SELECT pk, app_name, endpoint, channel_id, subject, params, state, attempts,
                        next_attempt_at_ms, NULL, NULL, created_at_ms, updated_at_ms,
                        last_status, last_error, last_answer
                   FROM app_calls WHERE pk > $1 ORDER BY pk LIMIT $2",
        columns: "pk, app_name, endpoint, channel_id, subject, params, state, attempts, \
                  next_attempt_at_ms, lease_owner, lease_until_ms, created_at_ms, updated_at_ms, \
                  last_status, last_error, last_answer",
        kinds: &[
            Int, Text, Text, Text, Text, Text, Text, Int, Int, Text, Int, Int, Int, Int, Text, Text,
        ],
    },
    Table {
        name: "outbox",
        key: Key::Int,
        // Leases are not copied: the relays that held them run on the old database.
        select: "SELECT pk, operation, channel_key, conversation_key, request, idempotency_key,
                        state, attempts, next_attempt_at_ms, NULL, NULL, first_failed_at_ms,
                        last_error, response, created_at_ms, updated_at_ms, in_doubt
                   FROM outbox WHERE pk > $1 ORDER BY pk LIMIT $2",
        columns: "pk, operation, channel_key, conversation_key, request, idempotency_key, state, \
                  attempts, next_attempt_at_ms, lease_until_ms, lease_owner, first_failed_at_ms, \
                  last_error, response, created_at_ms, updated_at_ms, in_doubt",
        kinds: &[
            Int, Text, Text, Text, Text, Text, Text, Int, Int, Int, Text, Int, Text, Text, Int,
            Int, Bool,
        ],
    },
    Table {
        name: "mirror_links",
        key: Key::Int,
        select: "SELECT pk, channel_pk, conversation_id, state, how, person_id, org_id, deal_id,
                        lead_id, candidates, looked_up_at_ms, linked_at_ms, updated_at_ms
                   FROM mirror_links WHERE pk > $1 ORDER BY pk LIMIT $2",
        columns: "pk, channel_pk, conversation_id, state, how, person_id, org_id, deal_id, \
                  lead_id, candidates, looked_up_at_ms, linked_at_ms, updated_at_ms",
        kinds: &[
            Int, Int, Text, Text, Text, Int, Int, Int, Text, Text, Int, Int, Int,
        ],
    },
    Table {
        name: "mirror_segments",
        key: Key::Int,
        // The notes the mirror wrote: without them the copy would post every note again.
        // Leases are not copied, as for the outbox.
        select: "SELECT pk, channel_pk, conversation_id, day, seq, segment_key, marker, state,
                        note_id, rendered_hash, note_update_time, note_user_id,
                        first_message_ms, dirty_since_ms, last_message_ms, last_flush_ms,
                        next_attempt_at_ms, attempts, last_error, NULL, NULL,
                        created_at_ms, updated_at_ms, message_ids, posted_person_id
                   FROM mirror_segments WHERE pk > $1 ORDER BY pk LIMIT $2",
        columns: "pk, channel_pk, conversation_id, day, seq, segment_key, marker, state, \
                  note_id, rendered_hash, note_update_time, note_user_id, first_message_ms, \
                  dirty_since_ms, last_message_ms, last_flush_ms, next_attempt_at_ms, attempts, \
                  last_error, lease_owner, lease_until_ms, created_at_ms, updated_at_ms, \
                  message_ids, posted_person_id",
        kinds: &[
            Int, Int, Text, Text, Int, Text, Text, Text, Int, Text, Text, Int, Int, Int, Int, Int,
            Int, Int, Text, Text, Int, Int, Int, Text, Int,
        ],
    },
    Table {
        name: "mirror_settings",
        key: Key::Whole,
        select: "SELECT name, value, updated_at_ms FROM mirror_settings",
        columns: "name, value, updated_at_ms",
        kinds: &[Text, Text, Int],
    },
    Table {
        name: "mirror_cursor",
        key: Key::Whole,
        select: "SELECT name, position_ms, updated_at_ms FROM mirror_cursor",
        columns: "name, position_ms, updated_at_ms",
        kinds: &[Text, Int, Int],
    },
    Table {
        name: "mirror_budget_days",
        key: Key::Whole,
        select: "SELECT day, tokens, updated_at_ms FROM mirror_budget_days",
        columns: "day, tokens, updated_at_ms",
        kinds: &[Text, Int, Int],
    },
];

/// The identity columns whose sequences are set past the largest id copied.
const IDENTITIES: &[(&str, &str)] = &[
    ("apps", "pk"),
    ("app_calls", "pk"),
    ("outgoing_messages", "pk"),
    ("channels", "pk"),
    ("participants", "seq"),
    ("messages", "pk"),
    ("api_tokens", "pk"),
    ("outbox", "pk"),
    ("mirror_links", "pk"),
    ("mirror_segments", "pk"),
];

/// Copies the SQLite hub at `from` into the PostgreSQL database `to`, calling `progress` as it
/// goes. The target must be empty, unless `options.resume` and it holds an interrupted copy of
/// the same source (which is then continued).
pub async fn copy_database(
    from: &Database,
    to: &Database,
    options: CopyOptions,
    progress: &mut (dyn FnMut(CopyProgress) + Send),
) -> Result<CopyReport, CopyError> {
    let started = Instant::now();
    let path = match from {
        Database::Sqlite(path) => path.clone(),
        Database::Postgres(_) => return Err(CopyError::SourceNotSqlite(from.clone())),
    };
    let url = match to {
        Database::Postgres(url) => url.clone(),
        Database::Sqlite(_) => return Err(CopyError::TargetNotPostgres(to.clone())),
    };
    check_source(&path).await?;
    // Both ends opened as a hub opens them: the source brought up to date (or a newer schema
    // refused), the target's schema created by our migrations.
    Store::connect(from)
        .await
        .map_err(CopyError::Source)?
        .close()
        .await;
    Store::connect(to)
        .await
        .map_err(CopyError::Target)?
        .close()
        .await;

    let source_failed = |doing: &'static str| {
        let database = from.clone();
        move |cause| {
            CopyError::Source(StoreError::Query {
                doing,
                database: database.clone(),
                cause: Arc::new(cause),
            })
        }
    };
    let target_failed = |doing: &'static str| {
        let database = to.clone();
        move |cause| {
            CopyError::Target(StoreError::Query {
                doing,
                database: database.clone(),
                cause: Arc::new(cause),
            })
        }
    };

    let mut src = SqliteConnection::connect_with(&open::connect_options(&path))
        .await
        .map_err(|cause| {
            CopyError::Source(StoreError::Open {
                database: from.clone(),
                cause,
            })
        })?;
    // One read transaction for the whole copy: every table as of one moment.
    sqlx::query("BEGIN")
        .execute(&mut src)
        .await
        .map_err(source_failed("start reading"))?;
    let mut dst = connect_target(&url, to).await?;

    // A copy killed a moment ago holds the lock until PostgreSQL notices its connection is
    // gone: a resume started at once waits for that, a copy still running is refused.
    let waiting_since = Instant::now();
    loop {
        let locked: bool =
            sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtext('pdchannels db copy'))")
                .fetch_one(&mut dst)
                .await
                .map_err(target_failed("lock the target for the copy"))?;
        if locked {
            break;
        }
        if waiting_since.elapsed() >= LOCK_WAIT {
            return Err(CopyError::Busy(to.to_string()));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let source_name = path
        .canonicalize()
        .unwrap_or_else(|_| path.clone())
        .display()
        .to_string();
    let state = source_state(&mut src)
        .await
        .map_err(source_failed("read the source's state"))?;
    let resumed = begin_or_resume(&mut dst, to, &source_name, &state, options).await?;

    // What there is to copy (in the source's snapshot): the totals of the progress, and what
    // the target is checked against at the end.
    let mut totals = Vec::with_capacity(TABLES.len());
    for table in TABLES {
        let rows: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM {}",
            table.name
        )))
        .fetch_one(&mut src)
        .await
        .map_err(source_failed("count the source's rows"))?;
        totals.push(rows);
    }

    for (table, &total) in TABLES.iter().zip(&totals) {
        copy_table(
            &mut src,
            &mut dst,
            table,
            total as u64,
            progress,
            &source_failed,
            &target_failed,
        )
        .await?;
    }

    set_sequences(&mut src, &mut dst, &source_failed, &target_failed).await?;

    progress(CopyProgress::Verifying);
    let source_sums = sums(&mut src)
        .await
        .map_err(source_failed("sum the source's messages"))?;
    let target_sums = target_sums(&mut dst)
        .await
        .map_err(target_failed("sum the copied messages"))?;
    let mut differences = Vec::new();
    let mut tables = Vec::with_capacity(TABLES.len());
    for (table, &in_source) in TABLES.iter().zip(&totals) {
        let in_target: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM {}",
            table.name
        )))
        .fetch_one(&mut dst)
        .await
        .map_err(target_failed("count the copied rows"))?;
        if in_source != in_target {
            differences.push(format!(
                "{}: {in_source} rows in the source, {in_target} in the target",
                table.name
            ));
        }
        tables.push(TableCount {
            table: table.name,
            rows: in_source,
        });
    }
    for (what, s, t) in [
        ("sum of message_count", source_sums.0, target_sums.0),
        ("message payload bytes", source_sums.1, target_sums.1),
    ] {
        if s != t {
            differences.push(format!("{what}: {s} in the source, {t} in the target"));
        }
    }
    if !differences.is_empty() {
        return Err(CopyError::Mismatch {
            from: source_name,
            target: to.to_string(),
            differences: differences.join("; "),
        });
    }
    sqlx::query("UPDATE pdchannels_copy SET finished_at_ms = $1")
        .bind(now_ms())
        .execute(&mut dst)
        .await
        .map_err(target_failed("record the finished copy"))?;
    let _ = sqlx::query("ROLLBACK").execute(&mut src).await;
    let _ = src.close().await;
    let _ = dst.close().await;
    Ok(CopyReport {
        from: source_name,
        to: to.to_string(),
        resumed,
        tables,
        message_count_sum: source_sums.0,
        payload_bytes: source_sums.1,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Refuses a source that is not there, or not a pdchannels database, before anything opens it
/// for writing: `Store::connect` would create a missing file, and add our tables to any SQLite
/// database.
async fn check_source(path: &Path) -> Result<(), CopyError> {
    if !path.exists() {
        return Err(CopyError::NoSource(path.to_owned()));
    }
    let not_ours = |why: String| CopyError::NotPdchannels {
        path: path.to_owned(),
        why,
    };
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .read_only(true);
    let mut conn = SqliteConnection::connect_with(&options)
        .await
        .map_err(|e| not_ours(sqlite_words(&e)))?;
    let found: Result<i64, sqlx::Error> = sqlx::query_scalar(
        "SELECT count(*) FROM sqlite_master
          WHERE type = 'table' AND name IN ('_sqlx_migrations', 'channels', 'messages')",
    )
    .fetch_one(&mut conn)
    .await;
    let _ = conn.close().await;
    match found {
        Ok(3) => Ok(()),
        Ok(_) => Err(not_ours("it has no pdchannels tables".to_owned())),
        Err(e) => Err(not_ours(sqlite_words(&e))),
    }
}

fn sqlite_words(error: &sqlx::Error) -> String {
    match error {
        sqlx::Error::Database(e) => e.message().to_owned(),
        other => other.to_string(),
    }
}

/// The copy's own connection to the target, on which the messages triggers stand aside.
async fn connect_target(url: &PostgresUrl, to: &Database) -> Result<PgConnection, CopyError> {
    let open_failed = |cause| {
        CopyError::Target(StoreError::Open {
            database: to.clone(),
            cause,
        })
    };
    let options = open::postgres_options(url)
        .map_err(open_failed)?
        .application_name("pdchannels db copy")
        .options([("pdchannels.copying", "on")]);
    PgConnection::connect_with(&options)
        .await
        .map_err(open_failed)
}

/// Starts a copy (recording its source in the target), or continues the one recorded there.
///
/// Why a record in the target, rather than resuming from each table's largest key: the record
/// says which source the rows came from (a `--resume` from another file is refused instead of
/// mixing two hubs), tells a half-done copy from a hub's own data (which is never overwritten),
/// and keeps each table's position in the same transaction as its rows, so a kill at any
/// moment leaves the two in agreement. It stays after the copy, as a note of where the data
/// came from; the hub ignores it.
async fn begin_or_resume(
    dst: &mut PgConnection,
    to: &Database,
    source: &str,
    state: &str,
    options: CopyOptions,
) -> Result<bool, CopyError> {
    let failed = |doing: &'static str| {
        move |cause| {
            CopyError::Target(StoreError::Query {
                doing,
                database: to.clone(),
                cause: Arc::new(cause),
            })
        }
    };
    let has_record: bool = sqlx::query_scalar("SELECT to_regclass('pdchannels_copy') IS NOT NULL")
        .fetch_one(&mut *dst)
        .await
        .map_err(failed("look for an earlier copy"))?;
    let record: Option<(String, Option<i64>, Option<String>)> = if has_record {
        sqlx::query("ALTER TABLE pdchannels_copy ADD COLUMN IF NOT EXISTS source_state TEXT")
            .execute(&mut *dst)
            .await
            .map_err(failed("read the earlier copy's record"))?;
        sqlx::query_as("SELECT source, finished_at_ms, source_state FROM pdchannels_copy")
            .fetch_optional(&mut *dst)
            .await
            .map_err(failed("read the earlier copy's record"))?
    } else {
        None
    };
    match record {
        Some((recorded, finished, recorded_state)) => {
            if !options.resume {
                let what = match finished {
                    Some(_) => format!("it holds a finished copy of {recorded}"),
                    None => format!("it holds an interrupted copy of {recorded}"),
                };
                return Err(CopyError::NotEmpty {
                    target: to.to_string(),
                    what,
                    fix: "pass --resume to continue (or check) that copy, or copy into an empty database",
                });
            }
            if recorded != source {
                return Err(CopyError::NotEmpty {
                    target: to.to_string(),
                    what: format!("it holds a copy of {recorded}, not of {source}"),
                    fix: "resume with that --from, or copy into an empty database",
                });
            }
            // Rows copied before the interruption would not be copied again: a source that
            // changed since would leave the target silently different (found by an outside
            // test: an edit of the same length passed the final counts).
            if recorded_state.as_deref().is_some_and(|s| s != state) {
                return Err(CopyError::NotEmpty {
                    target: to.to_string(),
                    what: format!(
                        "it holds an interrupted copy of {recorded}, and that file changed since (a hub wrote to it)"
                    ),
                    fix: "stop every hub on the source, then copy again into a new, empty database (dropdb and createdb the target)",
                });
            }
            Ok(true)
        }
        None => {
            let mut held = Vec::new();
            for table in TABLES {
                let any: bool = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                    "SELECT EXISTS (SELECT 1 FROM {})",
                    table.name
                )))
                .fetch_one(&mut *dst)
                .await
                .map_err(failed("look at what the target holds"))?;
                if any {
                    held.push(table.name);
                }
            }
            if !held.is_empty() {
                return Err(CopyError::NotEmpty {
                    target: to.to_string(),
                    what: format!("its {} hold rows that no copy put there", held.join(", ")),
                    fix: "copy into a new, empty database (createdb NAME); a hub's data is never overwritten",
                });
            }
            let mut tx = dst.begin().await.map_err(failed("start the copy"))?;
            for statement in [
                "CREATE TABLE IF NOT EXISTS pdchannels_copy (
                     source         TEXT   NOT NULL,  -- the SQLite file copied
                     started_at_ms  BIGINT NOT NULL,
                     finished_at_ms BIGINT,           -- set once the counts matched
                     source_state   TEXT              -- what the source held: see source_state()
                 )",
                "CREATE TABLE IF NOT EXISTS pdchannels_copy_tables (
                     table_name TEXT    PRIMARY KEY,
                     last_int   BIGINT  NOT NULL,  -- the key of the last row copied
                     last_text  TEXT    NOT NULL,  -- (conversations: channel_pk, conversation_id)
                     copied     BIGINT  NOT NULL,
                     done       BOOLEAN NOT NULL
                 )",
                "DELETE FROM pdchannels_copy",
                "DELETE FROM pdchannels_copy_tables",
            ] {
                sqlx::query(statement)
                    .execute(&mut *tx)
                    .await
                    .map_err(failed("record the copy"))?;
            }
            sqlx::query(
                "INSERT INTO pdchannels_copy (source, started_at_ms, source_state) VALUES ($1, $2, $3)",
            )
            .bind(source)
            .bind(now_ms())
            .bind(state)
                .execute(&mut *tx)
                .await
                .map_err(failed("record the copy"))?;
            tx.commit().await.map_err(failed("record the copy"))?;
            Ok(false)
        }
    }
}

/// What the source holds, in a few numbers: each table's rows and its latest change. Every
/// write a hub makes adds a row or moves a time forward (read marks, which keep no time of
/// their own, by their sums), so a resumed copy can tell whether the source changed since the
/// copy began.
async fn source_state(src: &mut SqliteConnection) -> Result<String, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT (SELECT count(*) || ':' || coalesce(max(updated_at_ms), 0) FROM channels)
             || '/' || (SELECT count(*) || ':' || coalesce(max(last_activity_ms), 0) FROM conversations)
             || '/' || (SELECT count(*) FROM participants)
             || '/' || (SELECT count(*) || ':' || coalesce(max(updated_at_ms), 0) FROM messages)
             || '/' || (SELECT count(*) || ':' || coalesce(max(revoked_at_ms), 0) FROM api_tokens)
             || '/' || (SELECT count(*) || ':' || coalesce(max(updated_at_ms), 0) FROM outbox)
             || '/' || (SELECT count(*) || ':' || coalesce(max(updated_at_ms), 0) FROM apps)
             || '/' || (SELECT count(*) || ':' || coalesce(max(updated_at_ms), 0) FROM app_calls)
             || '/' || (SELECT count(*) || ':' || coalesce(max(updated_at_ms), 0) FROM outgoing_messages)
             || '/' || (SELECT count(*) || ':' || total(read_through_ms) || ':' || total(marked_unread) FROM inbox_reads)
             || '/' || (SELECT count(*) || ':' || coalesce(max(updated_at_ms), 0) FROM mirror_links)
             || '/' || (SELECT count(*) || ':' || coalesce(max(updated_at_ms), 0) FROM mirror_segments)
             || '/' || (SELECT count(*) || ':' || coalesce(max(updated_at_ms), 0) FROM mirror_budget_days)
             || '/' || (SELECT count(*) || ':' || coalesce(max(updated_at_ms), 0) FROM mirror_settings)
             || '/' || (SELECT count(*) || ':' || coalesce(max(updated_at_ms), 0) FROM mirror_cursor)",
    )
    .fetch_one(src)
    .await
}

/// Copies what is left of one table, batch by batch.
async fn copy_table<S, T>(
    src: &mut SqliteConnection,
    dst: &mut PgConnection,
    table: &Table,
    total: u64,
    progress: &mut (dyn FnMut(CopyProgress) + Send),
    source_failed: &impl Fn(&'static str) -> S,
    target_failed: &impl Fn(&'static str) -> T,
) -> Result<(), CopyError>
where
    S: Fn(sqlx::Error) -> CopyError,
    T: Fn(sqlx::Error) -> CopyError,
{
    let position: Option<(i64, String, i64, bool)> = sqlx::query_as(
        "SELECT last_int, last_text, copied, done FROM pdchannels_copy_tables WHERE table_name = $1",
    )
    .bind(table.name)
    .fetch_optional(&mut *dst)
    .await
    .map_err(target_failed("read how far the copy got"))?;
    let (mut last_int, mut last_text, mut copied, done) =
        position.unwrap_or((i64::MIN, String::new(), 0, false));
    progress(CopyProgress::Copied {
        table: table.name,
        copied: copied as u64,
        total,
        done,
    });
    if done {
        return Ok(());
    }
    let statement = format!(
        "COPY {} ({}) FROM STDIN WITH (FORMAT csv)",
        table.name, table.columns
    );
    let mut csv = Vec::with_capacity(SEND_BYTES + 64 * 1024);
    loop {
        sqlx::query("BEGIN")
            .execute(&mut *dst)
            .await
            .map_err(target_failed("start a batch"))?;
        let mut copy = dst
            .copy_in_raw(&statement)
            .await
            .map_err(target_failed("start copying rows"))?;
        let query = sqlx::query(table.select);
        let query = match table.key {
            Key::Int => query.bind(last_int).bind(BATCH_ROWS),
            Key::Conversation => query
                .bind(last_int)
                .bind(last_text.clone())
                .bind(BATCH_ROWS),
            Key::Whole => query,
        };
        let mut rows = query.fetch(&mut *src);
        let mut in_batch = 0i64;
        let read = async {
            while let Some(row) = rows.try_next().await.map_err(source_failed("read rows"))? {
                encode(&row, table.kinds, &mut csv).map_err(source_failed("read rows"))?;
                if table.key != Key::Whole {
                    last_int = row.try_get(0).map_err(source_failed("read rows"))?;
                }
                if table.key == Key::Conversation {
                    last_text = row.try_get(1).map_err(source_failed("read rows"))?;
                }
                in_batch += 1;
                if csv.len() >= SEND_BYTES {
                    copy.send(csv.as_slice())
                        .await
                        .map_err(target_failed("copy rows"))?;
                    csv.clear();
                }
            }
            if !csv.is_empty() {
                copy.send(csv.as_slice())
                    .await
                    .map_err(target_failed("copy rows"))?;
                csv.clear();
            }
            Ok::<(), CopyError>(())
        }
        .await;
        drop(rows);
        if let Err(e) = read {
            csv.clear();
            let _ = copy.abort("pdchannels db copy failed").await;
            let _ = sqlx::query("ROLLBACK").execute(&mut *dst).await;
            return Err(e);
        }
        copy.finish().await.map_err(target_failed("copy rows"))?;
        copied += in_batch;
        let finished = table.key == Key::Whole || in_batch < BATCH_ROWS;
        sqlx::query(
            "INSERT INTO pdchannels_copy_tables (table_name, last_int, last_text, copied, done)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (table_name) DO UPDATE
                SET last_int = excluded.last_int, last_text = excluded.last_text,
                    copied = excluded.copied, done = excluded.done",
        )
        .bind(table.name)
        .bind(last_int)
        .bind(&last_text)
        .bind(copied)
        .bind(finished)
        .execute(&mut *dst)
        .await
        .map_err(target_failed("record how far the copy got"))?;
        // The messages' foreign key to their conversation is checked here (deferred).
        sqlx::query("COMMIT")
            .execute(&mut *dst)
            .await
            .map_err(target_failed("commit a batch"))?;
        progress(CopyProgress::Copied {
            table: table.name,
            copied: copied as u64,
            total,
            done: finished,
        });
        if finished {
            return Ok(());
        }
    }
}

/// Appends `row` as one CSV line: every text quoted (so that an empty text is not NULL, and no
/// value is taken for the end-of-data marker), NULL as nothing, bytes in bytea's hex form.
fn encode(row: &SqliteRow, kinds: &[Kind], csv: &mut Vec<u8>) -> Result<(), sqlx::Error> {
    let mut number = String::new();
    for (i, kind) in kinds.iter().enumerate() {
        if i > 0 {
            csv.push(b',');
        }
        match kind {
            Kind::Int => {
                if let Some(n) = row.try_get::<Option<i64>, _>(i)? {
                    number.clear();
                    let _ = write!(number, "{n}");
                    csv.extend_from_slice(number.as_bytes());
                }
            }
            Kind::Bool => {
                if let Some(n) = row.try_get::<Option<i64>, _>(i)? {
                    csv.push(if n != 0 { b't' } else { b'f' });
                }
            }
            Kind::Text => {
                if let Some(text) = row.try_get::<Option<&str>, _>(i)? {
                    csv.push(b'"');
                    if text.contains('"') {
                        for &b in text.as_bytes() {
                            if b == b'"' {
                                csv.push(b'"');
                            }
                            csv.push(b);
                        }
                    } else {
                        csv.extend_from_slice(text.as_bytes());
                    }
                    csv.push(b'"');
                }
            }
            Kind::Bytes => {
                if let Some(bytes) = row.try_get::<Option<&[u8]>, _>(i)? {
                    csv.extend_from_slice(b"\"\\x");
                    for b in bytes {
                        number.clear();
                        let _ = write!(number, "{b:02x}");
                        csv.extend_from_slice(number.as_bytes());
                    }
                    csv.push(b'"');
                }
            }
        }
    }
    csv.push(b'\n');
    Ok(())
}

/// Sets each identity past the largest id copied, so that the hub's new rows never collide
/// with copied ones. The outbox goes past SQLite's AUTOINCREMENT counter too: an outbox id is
/// never reused, even that of a call dropped before the copy.
async fn set_sequences<S, T>(
    src: &mut SqliteConnection,
    dst: &mut PgConnection,
    source_failed: &impl Fn(&'static str) -> S,
    target_failed: &impl Fn(&'static str) -> T,
) -> Result<(), CopyError>
where
    S: Fn(sqlx::Error) -> CopyError,
    T: Fn(sqlx::Error) -> CopyError,
{
    let outbox_counter: Option<i64> =
        sqlx::query_scalar("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'")
            .fetch_optional(&mut *src)
            .await
            .map_err(source_failed("read the outbox's id counter"))?;
    for (table, column) in IDENTITIES {
        let floor = if *table == "outbox" {
            outbox_counter.unwrap_or(0)
        } else {
            0
        };
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT setval(pg_get_serial_sequence('{table}', '{column}'), m)
               FROM (SELECT greatest(max({column}), $1) AS m FROM {table}) t WHERE m > 0"
        )))
        .bind(floor)
        .execute(&mut *dst)
        .await
        .map_err(target_failed("set the ids' sequences"))?;
    }
    Ok(())
}

/// The sum of the conversations' message counts, and the bytes of all payloads.
async fn sums(src: &mut SqliteConnection) -> Result<(i64, i64), sqlx::Error> {
    sqlx::query_as(
        "SELECT (SELECT coalesce(sum(message_count), 0) FROM conversations),
                (SELECT coalesce(sum(length(CAST(payload AS BLOB))), 0) FROM messages)",
    )
    .fetch_one(src)
    .await
}

async fn target_sums(dst: &mut PgConnection) -> Result<(i64, i64), sqlx::Error> {
    sqlx::query_as(
        "SELECT (SELECT coalesce(sum(message_count), 0)::BIGINT FROM conversations),
                (SELECT coalesce(sum(octet_length(payload)), 0)::BIGINT FROM messages)",
    )
    .fetch_one(dst)
    .await
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}
