//! The single writer: applies writes in groups, one transaction and one fsync per group.
//!
//! SQLite allows one writer at a time, and a durable commit costs an fsync. Rather than have
//! every request wait its turn for its own fsync, requests queue on a channel; the writer takes
//! everything queued, applies it in one transaction, commits once, and only then answers each
//! request. Under load a commit carries many writes; alone, a write is committed immediately.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use pdchannels_model::{
    AddChannel, Channel, ChannelsError, ConversationId, DeleteChannel, DeleteConversation, HttpUrl,
    Limits, MessageStatus, ReceiveMessage, ReceiveOutcome, Received, Timestamp,
};
use sqlx::SqliteConnection;
use tokio::sync::{mpsc, oneshot};

use crate::StoreError;
use crate::diagnosis::Diagnosis;
use crate::health::{FailureLog, WriteHealth};
use crate::open;
use crate::outbox::{self, OutboxAnswer, OutboxWrite};

/// The most writes committed in one transaction; bounds the latency a large group adds.
const MAX_GROUP: usize = 512;

/// Where a write's answer goes: the store failing is a [`StoreError`], whatever the write.
type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// What a Channels write answers once the store did its part: the operation's own result.
type Answer<T> = Result<T, ChannelsError>;

/// One write, with where to send its result once it is durable.
pub(crate) enum Write {
    AddChannel(AddChannel, Reply<Answer<Channel>>),
    Receive(ReceiveMessage, Reply<Answer<Received>>),
    DeleteChannel(DeleteChannel, Reply<Answer<()>>),
    DeleteConversation(DeleteConversation, Reply<Answer<()>>),
    Outbox(OutboxWrite, Reply<OutboxAnswer>),
    /// Commit a write that changes nothing, to learn whether writes work.
    Probe(Reply<()>),
    /// Finish what is queued before this, then stop.
    Close(oneshot::Sender<()>),
}

/// A write taken from the queue, with its result once applied (`None`: not applied, because
/// the group failed), held until the group's commit decides whether it stands.
enum Done {
    Channel(Reply<Answer<Channel>>, Option<Answer<Channel>>),
    Received(Reply<Answer<Received>>, Option<Answer<Received>>),
    Deleted(Reply<Answer<()>>, Option<Answer<()>>),
    Outbox(Reply<OutboxAnswer>, Option<OutboxAnswer>),
    Probed(Reply<()>),
}

impl Done {
    /// A write the group did not get to (a write before it failed): answered with the failure.
    fn unapplied(write: Write) -> Self {
        match write {
            Write::AddChannel(_, reply) => Done::Channel(reply, None),
            Write::Receive(_, reply) => Done::Received(reply, None),
            Write::DeleteChannel(_, reply) | Write::DeleteConversation(_, reply) => {
                Done::Deleted(reply, None)
            }
            Write::Outbox(_, reply) => Done::Outbox(reply, None),
            Write::Probe(reply) => Done::Probed(reply),
            Write::Close(_) => unreachable!("close is taken out of the group"),
        }
    }

    /// What the write was doing, for its caller's error.
    fn doing(&self) -> &'static str {
        match self {
            Done::Channel(..) => "add a channel",
            Done::Received(..) => "store a message",
            Done::Deleted(..) => "delete a channel or conversation",
            Done::Outbox(..) => "write to the outbox",
            Done::Probed(..) => "write a probe",
        }
    }

    /// Answers a write its group committed.
    fn send(self) {
        // A caller that went away no longer needs its answer; the write stands regardless.
        // Every write of a committed group was applied, so each has its answer.
        match self {
            Done::Channel(reply, Some(answer)) => drop(reply.send(Ok(answer))),
            Done::Received(reply, Some(answer)) => drop(reply.send(Ok(answer))),
            Done::Deleted(reply, Some(answer)) => drop(reply.send(Ok(answer))),
            Done::Outbox(reply, Some(answer)) => drop(reply.send(Ok(answer))),
            Done::Probed(reply) => drop(reply.send(Ok(()))),
            Done::Channel(_, None)
            | Done::Received(_, None)
            | Done::Deleted(_, None)
            | Done::Outbox(_, None) => {}
        }
    }

    /// Answers a write its group failed: the one failure, said as this write's.
    fn fail(self, path: &Path, cause: &Arc<sqlx::Error>) {
        let error = StoreError::Query {
            doing: self.doing(),
            path: path.to_owned(),
            cause: cause.clone(),
        };
        match self {
            Done::Channel(reply, _) => drop(reply.send(Err(error))),
            Done::Received(reply, _) => drop(reply.send(Err(error))),
            Done::Deleted(reply, _) => drop(reply.send(Err(error))),
            Done::Outbox(reply, _) => drop(reply.send(Err(error))),
            Done::Probed(reply) => drop(reply.send(Err(error))),
        }
    }
}

/// What a group did to the database.
enum Committed {
    /// Nothing needed writing (every write was answered from a read, or the group was empty).
    Nothing,
    /// The group's writes are on disk.
    Durable,
    /// The group was rolled back; every write in it was answered with this failure.
    Failed(Arc<sqlx::Error>),
}

/// Runs until a `Close` arrives or every sender is gone. Each commit's result goes to `health`;
/// each non-empty group is counted in `groups` as it is taken, before its commit. `path` is
/// the database file, named in the errors writes are answered with.
pub(crate) async fn run(
    mut conn: SqliteConnection,
    path: PathBuf,
    mut queue: mpsc::Receiver<Write>,
    groups: Arc<AtomicU64>,
    health: Arc<WriteHealth>,
) {
    let mut failures = FailureLog::default();
    let mut group = Vec::new();
    let mut closing = None;
    while closing.is_none() {
        let Some(first) = queue.recv().await else {
            break;
        };
        group.push(first);
        while group.len() < MAX_GROUP {
            match queue.try_recv() {
                Ok(next) => group.push(next),
                Err(_) => break,
            }
        }
        if let Some(at) = group.iter().position(|w| matches!(w, Write::Close(_))) {
            // Writes queued after the close are answered as "closed" when dropped.
            if let Write::Close(done) = group.swap_remove(at) {
                closing = Some(done);
            }
            group.truncate(at);
        }
        if !group.is_empty() {
            // Counted before the commit, so whoever got an answer sees its group counted.
            groups.fetch_add(1, Ordering::Relaxed);
        }
        let committed = commit_group(&mut conn, &path, std::mem::take(&mut group)).await;
        record(&committed, &health, &mut failures);
    }
    if let Err(e) = sqlx::Connection::close(conn).await {
        tracing::warn!(error = %e, "closing the database connection failed");
    }
    if let Some(done) = closing {
        let _ = done.send(());
    }
}

/// Tells `health` and the log how a group went. Every failure is counted; few are logged.
fn record(committed: &Committed, health: &WriteHealth, failures: &mut FailureLog) {
    match committed {
        Committed::Nothing => {}
        Committed::Durable => {
            health.succeeded();
            if let Some(line) = failures.succeeded() {
                line.emit();
            }
        }
        Committed::Failed(e) => {
            let diagnosis = Diagnosis::of(e).to_string();
            health.failed(diagnosis.clone());
            if let Some(line) = failures.failed(Instant::now(), diagnosis) {
                line.emit();
            }
        }
    }
}

/// Commits a group: receives alone first try [`insert_receives_at_once`]; whatever is left goes
/// through [`commit_in_transaction`].
async fn commit_group(conn: &mut SqliteConnection, path: &Path, group: Vec<Write>) -> Committed {
    // A group holding only a close has nothing to write (and must not take the write lock).
    if group.is_empty() {
        return Committed::Nothing;
    }
    let now = Timestamp::now().unix_millis();
    if group.iter().all(|w| matches!(w, Write::Receive(..))) {
        return match insert_receives_at_once(conn, path, group, now).await {
            AtOnce::Finished(committed) => committed,
            AtOnce::Rest(rest) => {
                commit_in_transaction(conn, path, rest, Receives::Known, now).await
            }
        };
    }
    commit_in_transaction(conn, path, group, Receives::Unknown, now).await
}

/// How far [`insert_receives_at_once`] got.
enum AtOnce {
    /// Every receive was answered.
    Finished(Committed),
    /// These receives (of messages already stored) still need the transactional path.
    Rest(Vec<Write>),
}

/// Whether the receives of a group are known to be of stored messages (what the fast path left).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Receives {
    Known,
    Unknown,
}

/// A group of receives (the common case) first inserts every new message in one statement:
/// atomic and durable by itself, no BEGIN or COMMIT round trips, whatever the group's size.
/// Then the receives that change nothing are answered from one read. What is left (an update,
/// an unknown channel) takes the transactional path.
async fn insert_receives_at_once(
    conn: &mut SqliteConnection,
    path: &Path,
    group: Vec<Write>,
    now: i64,
) -> AtOnce {
    let messages: Vec<&ReceiveMessage> = group
        .iter()
        .filter_map(|w| match w {
            Write::Receive(message, _) => Some(message),
            _ => None,
        })
        .collect();
    let inserted = match insert_new_messages(conn, &messages, now).await {
        Ok(inserted) => inserted,
        Err(e) => {
            let cause = Arc::new(e);
            group
                .into_iter()
                .for_each(|write| Done::unapplied(write).fail(path, &cause));
            return AtOnce::Finished(Committed::Failed(cause));
        }
    };
    let inserted_any = inserted.contains(&true);
    let mut rest = Vec::new();
    for (write, inserted) in group.into_iter().zip(inserted) {
        match write {
            Write::Receive(message, reply) if inserted => {
                let _ = reply.send(Ok(Ok(Received {
                    message,
                    outcome: ReceiveOutcome::Created,
                })));
            }
            other => rest.push(other),
        }
    }
    let rest = match answer_unchanged(conn, rest).await {
        Ok(rest) => rest,
        Err((rest, e)) => {
            // The read is only a shortcut: the transactional path decides, and logs if it
            // fails too (a line here for every group would flood the log).
            tracing::debug!(error = %e, "reading stored messages failed");
            rest
        }
    };
    if !rest.is_empty() {
        return AtOnce::Rest(rest);
    }
    // Everything was inserted (durable) or answered unchanged from the read.
    AtOnce::Finished(if inserted_any {
        Committed::Durable
    } else {
        Committed::Nothing
    })
}

/// Applies the group in one transaction and commits it; answers every write once the commit
/// decided. A database failure stops the group: it is rolled back, and every write in it,
/// applied or not, is answered with that failure.
async fn commit_in_transaction(
    conn: &mut SqliteConnection,
    path: &Path,
    group: Vec<Write>,
    receives: Receives,
    now: i64,
) -> Committed {
    let mut done = Vec::with_capacity(group.len());
    let mut writes = group.into_iter();
    // BEGIN and COMMIT by hand, not sqlx's `Transaction`: when a COMMIT fails for lack of space
    // or an I/O error, SQLite may roll the transaction back by itself, and sqlx, still counting
    // it as open, would refuse every later BEGIN: the writer would never write again.
    let outcome: Result<(), sqlx::Error> = async {
        sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
        for write in writes.by_ref() {
            let (applied, failure) = apply(conn, write, receives, now).await;
            done.push(applied);
            if let Some(e) = failure {
                return Err(e);
            }
        }
        sqlx::query("COMMIT").execute(&mut *conn).await?;
        Ok(())
    }
    .await;
    match outcome {
        Ok(()) => {
            done.into_iter().for_each(Done::send);
            Committed::Durable
        }
        Err(e) => {
            rollback(conn).await;
            let cause = Arc::new(e);
            done.into_iter()
                .chain(writes.map(Done::unapplied))
                .for_each(|d| d.fail(path, &cause));
            Committed::Failed(cause)
        }
    }
}

/// Applies one write inside the group's transaction: its result, and the database failure that
/// stopped it, if one did.
async fn apply(
    tx: &mut SqliteConnection,
    write: Write,
    receives: Receives,
    now: i64,
) -> (Done, Option<sqlx::Error>) {
    match write {
        Write::AddChannel(request, reply) => split(add_channel(tx, request, now).await, |r| {
            Done::Channel(reply, r)
        }),
        Write::Receive(message, reply) if receives == Receives::Known => {
            split(update_existing(tx, message, now).await, |r| {
                Done::Received(reply, r)
            })
        }
        Write::Receive(message, reply) => split(receive(tx, message, now).await, |r| {
            Done::Received(reply, r)
        }),
        Write::DeleteChannel(request, reply) => split(delete_channel(tx, &request).await, |r| {
            Done::Deleted(reply, r)
        }),
        Write::DeleteConversation(request, reply) => {
            split(delete_conversation(tx, &request).await, |r| {
                Done::Deleted(reply, r)
            })
        }
        Write::Outbox(write, reply) => split(outbox::apply(tx, write, now).await, |r| {
            Done::Outbox(reply, r)
        }),
        Write::Probe(reply) => split(open::rewrite_header(tx).await, |_| Done::Probed(reply)),
        Write::Close(_) => unreachable!("close is taken out of the group"),
    }
}

/// A write's result as its [`Done`], and the database failure apart (it fails the whole group).
fn split<T>(
    result: Result<T, sqlx::Error>,
    done: impl FnOnce(Option<T>) -> Done,
) -> (Done, Option<sqlx::Error>) {
    match result {
        Ok(answer) => (done(Some(answer)), None),
        Err(e) => (done(None), Some(e)),
    }
}

/// Ends a failed transaction. Where SQLite already rolled it back by itself, ROLLBACK fails
/// with "no transaction is active": the end wanted, so that failure is only worth a debug line.
async fn rollback(conn: &mut SqliteConnection) {
    if let Err(e) = sqlx::query("ROLLBACK").execute(&mut *conn).await {
        tracing::debug!(error = %e, "rolling back a failed write group");
    }
}

/// A domain failure (`Ok(Err(..))`) leaves the transaction usable; a database failure (`Err`)
/// aborts the whole group.
type Step<T> = Result<Answer<T>, sqlx::Error>;

async fn add_channel(conn: &mut SqliteConnection, request: AddChannel, now: i64) -> Step<Channel> {
    let new_id = uuid::Uuid::now_v7().to_string();
    let (id, created_at_ms): (String, i64) = sqlx::query_as(
        "INSERT INTO channels (id, provider_channel_id, name, avatar_url, template_support,
                               provider_type, created_at_ms, updated_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)
         ON CONFLICT (provider_channel_id) DO UPDATE SET
             name = excluded.name, avatar_url = excluded.avatar_url,
             template_support = excluded.template_support, provider_type = excluded.provider_type,
             updated_at_ms = excluded.updated_at_ms
         RETURNING id, created_at_ms",
    )
    .bind(&new_id)
    .bind(request.provider_channel_id.as_str())
    .bind(request.name.as_str())
    .bind(request.avatar_url.as_ref().map(HttpUrl::as_str))
    .bind(request.template_support)
    .bind(request.provider_type.as_str())
    .bind(now)
    .fetch_one(&mut *conn)
    .await?;
    Ok(Ok(Channel {
        id,
        name: request.name,
        avatar_url: request.avatar_url,
        provider_channel_id: request.provider_channel_id,
        created_at: Timestamp::from_unix_millis(created_at_ms).unwrap_or_else(Timestamp::now),
        provider_type: request.provider_type,
        template_support: request.template_support,
    }))
}

/// The stored message with the id being received.
#[derive(sqlx::FromRow)]
struct Existing {
    message_pk: i64,
    conversation_id: String,
    status: String,
    payload: String,
}

/// Inserts each message whose channel exists and whose id is new there, in one statement, in
/// order; says for each whether it was inserted. Nothing is written for the others (a known id,
/// an unknown channel), and a second message with an id already in `messages` is not inserted.
async fn insert_new_messages(
    conn: &mut SqliteConnection,
    messages: &[&ReceiveMessage],
    now: i64,
) -> Result<Vec<bool>, sqlx::Error> {
    // The rows travel as one JSON array: one prepared statement for any group size.
    let rows: Vec<serde_json::Value> = messages
        .iter()
        .map(|m| {
            serde_json::json!({
                "channel_id": m.channel_id.as_str(),
                "id": m.id.as_str(),
                "conversation_id": m.conversation_id.as_str(),
                "sender_id": m.sender_id.as_str(),
                "status": m.status.as_str(),
                "created_at_ms": m.created_at.unix_millis(),
                "payload": serde_json::to_string(m).expect("a message always serializes"),
            })
        })
        .collect();
    let inserted: Vec<(String, String)> = sqlx::query_as(
        "INSERT INTO messages (channel_pk, message_id, conversation_id, sender_id, status,
                               created_at_ms, received_at_ms, updated_at_ms, payload)
         SELECT channel_pk, message_id, conversation_id, sender_id, status, created_at_ms,
                ?2, ?2, payload
           FROM (SELECT (SELECT pk FROM channels WHERE provider_channel_id = r.value ->> 'channel_id')
                            AS channel_pk,
                        r.value ->> 'id' AS message_id,
                        r.value ->> 'conversation_id' AS conversation_id,
                        r.value ->> 'sender_id' AS sender_id,
                        r.value ->> 'status' AS status,
                        r.value ->> 'created_at_ms' AS created_at_ms,
                        r.value ->> 'payload' AS payload,
                        r.key AS position
                   FROM json_each(?1) r)
          WHERE channel_pk IS NOT NULL
          ORDER BY position
         ON CONFLICT (channel_pk, message_id) DO NOTHING
         RETURNING (SELECT provider_channel_id FROM channels WHERE pk = channel_pk), message_id",
    )
    .bind(serde_json::Value::Array(rows).to_string())
    .bind(now)
    .fetch_all(&mut *conn)
    .await?;
    // Each inserted (channel, id) is the first message in the group with that key.
    let mut flags = vec![false; messages.len()];
    let mut first_at: HashMap<(&str, &str), usize> = HashMap::with_capacity(messages.len());
    for (i, m) in messages.iter().enumerate() {
        first_at
            .entry((m.channel_id.as_str(), m.id.as_str()))
            .or_insert(i);
    }
    for (channel_id, message_id) in &inserted {
        if let Some(&i) = first_at.get(&(channel_id.as_str(), message_id.as_str())) {
            flags[i] = true;
        }
    }
    Ok(flags)
}

async fn receive(conn: &mut SqliteConnection, message: ReceiveMessage, now: i64) -> Step<Received> {
    if insert_new_messages(conn, &[&message], now).await?[0] {
        return Ok(Ok(Received {
            message,
            outcome: ReceiveOutcome::Created,
        }));
    }
    update_existing(conn, message, now).await
}

/// The message as a receive would store it over a stored one with `stored_status`, and its
/// payload: a late, older status is accepted but must not undo the newer one.
fn merge_with_stored(message: ReceiveMessage, stored_status: &str) -> (ReceiveMessage, String) {
    let stored_status = MessageStatus::parse(stored_status).expect("the schema checks statuses");
    let mut merged = message;
    merged.status = stored_status.merge(merged.status);
    let payload = serde_json::to_string(&merged).expect("a message always serializes");
    (merged, payload)
}

/// Answers at once, from one read, the receives (all already stored, none new) that would change
/// nothing: importing a file again costs one statement a group, not a transaction's worth of
/// per-row queries. Answers the others, to be applied in a transaction. A (channel, id) that
/// occurs twice in `receives` is left to the transaction, which applies them in order.
async fn answer_unchanged(
    conn: &mut SqliteConnection,
    receives: Vec<Write>,
) -> Result<Vec<Write>, (Vec<Write>, sqlx::Error)> {
    let keys: Vec<(&str, &str)> = receives
        .iter()
        .filter_map(|w| match w {
            Write::Receive(m, _) => Some((m.channel_id.as_str(), m.id.as_str())),
            _ => None,
        })
        .collect();
    let mut occurrences: HashMap<(&str, &str), usize> = HashMap::with_capacity(keys.len());
    for key in &keys {
        *occurrences.entry(*key).or_default() += 1;
    }
    let stored: Vec<(i64, String, String, String)> = match sqlx::query_as(
        "SELECT CAST(r.key AS INTEGER), m.conversation_id, m.status, m.payload
           FROM json_each(?1) r
           JOIN channels c ON c.provider_channel_id = r.value ->> 0
           JOIN messages m ON m.channel_pk = c.pk AND m.message_id = r.value ->> 1",
    )
    .bind(serde_json::to_string(&keys).expect("strings always serialize"))
    .fetch_all(&mut *conn)
    .await
    {
        Ok(stored) => stored,
        Err(e) => return Err((receives, e)),
    };
    let mut unchanged_at: HashMap<usize, (String, String, String)> = stored
        .into_iter()
        .filter_map(|(i, conversation, status, payload)| {
            let i = usize::try_from(i).ok()?;
            (occurrences.get(keys.get(i)?) == Some(&1))
                .then_some((i, (conversation, status, payload)))
        })
        .collect();
    let mut rest = Vec::new();
    for (i, write) in receives.into_iter().enumerate() {
        match (write, unchanged_at.remove(&i)) {
            (Write::Receive(message, reply), Some((conversation, status, stored_payload)))
                if conversation == message.conversation_id.as_str() =>
            {
                let (merged, payload) = merge_with_stored(message, &status);
                if payload == stored_payload {
                    let _ = reply.send(Ok(Ok(Received {
                        message: merged,
                        outcome: ReceiveOutcome::Unchanged,
                    })));
                } else {
                    // Merging again over the same (or a newer) status changes nothing.
                    rest.push(Write::Receive(merged, reply));
                }
            }
            (write, _) => rest.push(write),
        }
    }
    Ok(rest)
}

/// Applies a receive for a message id that is already stored (or reports the unknown channel).
async fn update_existing(
    conn: &mut SqliteConnection,
    message: ReceiveMessage,
    now: i64,
) -> Step<Received> {
    let existing: Option<Existing> = sqlx::query_as(
        "SELECT m.pk AS message_pk, m.conversation_id, m.status, m.payload
           FROM channels c
           JOIN messages m ON m.channel_pk = c.pk AND m.message_id = ?1
          WHERE c.provider_channel_id = ?2",
    )
    .bind(message.id.as_str())
    .bind(message.channel_id.as_str())
    .fetch_optional(&mut *conn)
    .await?;
    // Inside this transaction nothing else writes: no row means the channel is unknown.
    let Some(Existing {
        message_pk,
        conversation_id: stored_conversation,
        status: stored_status,
        payload: stored_payload,
    }) = existing
    else {
        return Ok(Err(ChannelsError::ChannelNotFound {
            channel_id: message.channel_id,
        }));
    };

    if stored_conversation != message.conversation_id.as_str() {
        let stored = ConversationId::parse(&stored_conversation, &Limits::stored())
            .expect("stored ids were valid when stored");
        return Ok(Err(ChannelsError::MessageInOtherConversation {
            message_id: message.id,
            stored,
            requested: message.conversation_id,
        }));
    }

    let (merged, payload) = merge_with_stored(message, &stored_status);
    if payload == stored_payload {
        return Ok(Ok(Received {
            message: merged,
            outcome: ReceiveOutcome::Unchanged,
        }));
    }
    sqlx::query(
        "UPDATE messages
            SET sender_id = ?1, status = ?2, created_at_ms = ?3, updated_at_ms = ?4, payload = ?5
          WHERE pk = ?6",
    )
    .bind(merged.sender_id.as_str())
    .bind(merged.status.as_str())
    .bind(merged.created_at.unix_millis())
    .bind(now)
    .bind(payload)
    .bind(message_pk)
    .execute(&mut *conn)
    .await?;
    Ok(Ok(Received {
        message: merged,
        outcome: ReceiveOutcome::Updated,
    }))
}

async fn delete_channel(conn: &mut SqliteConnection, request: &DeleteChannel) -> Step<()> {
    let deleted = sqlx::query("DELETE FROM channels WHERE provider_channel_id = ?1")
        .bind(request.id.as_str())
        .execute(&mut *conn)
        .await?
        .rows_affected();
    Ok(if deleted == 0 {
        Err(ChannelsError::ChannelNotFound {
            channel_id: request.id.clone(),
        })
    } else {
        Ok(())
    })
}

async fn delete_conversation(
    conn: &mut SqliteConnection,
    request: &DeleteConversation,
) -> Step<()> {
    let channel_pk: Option<i64> =
        sqlx::query_scalar("SELECT pk FROM channels WHERE provider_channel_id = ?1")
            .bind(request.channel_id.as_str())
            .fetch_optional(&mut *conn)
            .await?;
    let Some(channel_pk) = channel_pk else {
        return Ok(Err(ChannelsError::ChannelNotFound {
            channel_id: request.channel_id.clone(),
        }));
    };
    let deleted =
        sqlx::query("DELETE FROM conversations WHERE channel_pk = ?1 AND conversation_id = ?2")
            .bind(channel_pk)
            .bind(request.conversation_id.as_str())
            .execute(&mut *conn)
            .await?
            .rows_affected();
    Ok(if deleted == 0 {
        Err(ChannelsError::ConversationNotFound {
            channel_id: request.channel_id.clone(),
            conversation_id: request.conversation_id.clone(),
        })
    } else {
        Ok(())
    })
}
