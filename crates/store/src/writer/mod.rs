//! The single writer: applies writes in groups, one transaction and one fsync per group.
//!
//! SQLite allows one writer at a time, and on either backend a durable commit costs an fsync
//! (PostgreSQL's `synchronous_commit = on` waits for its WAL flush). Rather than have
//! every request wait its turn for its own fsync, requests queue on a channel; the writer takes
//! everything queued, applies it in one transaction, commits once, and only then answers each
//! request. Under load a commit carries many writes; alone, a write is committed immediately.

mod channels;

pub(crate) use channels::insert_new_messages;

use std::any::Any;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use futures_util::future::BoxFuture;
use pdchannels_model::{
    AddChannel, Channel, ChannelsError, DeleteChannel, DeleteConversation, ReceiveMessage,
    ReceiveOutcome, Received, Timestamp,
};
use tokio::sync::{mpsc, oneshot};

use crate::backend::Conn;
use crate::diagnosis::{Diagnosis, connection_lost};
use crate::events::{Events, StoreEvent};
use crate::health::{FailureLog, WriteHealth};
use crate::outbox::{self, OutboxAnswer, OutboxWrite};
use crate::{Database, StoreError, open};
use channels::{
    add_channel, answer_unchanged, delete_channel, delete_conversation, receive, update_existing,
};

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
    /// Any other write, run in the group's transaction like the rest (see [`Work`]).
    Run(&'static str, Work, Reply<Box<dyn Any + Send>>),
    /// Finish what is queued before this, then stop.
    Close(oneshot::Sender<()>),
}

/// A write taken from the queue, with its result once applied (`None`: not applied, because
/// the group failed), held until the group's commit decides whether it stands.
enum Done {
    Channel(Reply<Answer<Channel>>, Option<Answer<Channel>>),
    Received(Reply<Answer<Received>>, Option<Answer<Received>>),
    /// A delete, with the event it is once it succeeds.
    Deleted(Reply<Answer<()>>, Option<Answer<()>>, StoreEvent),
    Outbox(Reply<OutboxAnswer>, Option<OutboxAnswer>),
    Probed(Reply<()>),
    Ran(&'static str, Reply<Box<dyn Any + Send>>, Option<Worked>),
}

/// A write of a feature beyond the Channels operations (apps, outgoing messages, ...): applied on
/// the writer's connection inside the group's transaction, answered once the group is durable.
/// Its result, and the events it caused, come back boxed; [`crate::Store::run_write`] unboxes.
pub(crate) type Work =
    Box<dyn for<'c> FnOnce(&'c mut Conn, i64) -> BoxFuture<'c, Result<Worked, sqlx::Error>> + Send>;

/// What a [`Work`] did: its answer and the live updates it caused.
pub(crate) type Worked = (Box<dyn Any + Send>, Vec<StoreEvent>);

impl Done {
    /// A write the group did not get to (a write before it failed): answered with the failure.
    fn unapplied(write: Write) -> Self {
        match write {
            Write::AddChannel(_, reply) => Done::Channel(reply, None),
            Write::Receive(_, reply) => Done::Received(reply, None),
            Write::DeleteChannel(request, reply) => {
                Done::Deleted(reply, None, channel_deleted(&request))
            }
            Write::DeleteConversation(request, reply) => {
                Done::Deleted(reply, None, conversation_deleted(&request))
            }
            Write::Outbox(_, reply) => Done::Outbox(reply, None),
            Write::Probe(reply) => Done::Probed(reply),
            Write::Run(doing, _, reply) => Done::Ran(doing, reply, None),
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
            Done::Ran(doing, ..) => doing,
        }
    }

    /// What this write changed, for live updates.
    fn events(&self) -> Vec<StoreEvent> {
        match self {
            Done::Channel(_, Some(Ok(channel))) => vec![StoreEvent::ChannelAdded {
                channel_id: channel.provider_channel_id.as_str().to_owned(),
            }],
            Done::Received(_, Some(Ok(received))) => message_stored(received).into_iter().collect(),
            Done::Deleted(_, Some(Ok(())), event) => vec![event.clone()],
            Done::Ran(_, _, Some((_, events))) => events.clone(),
            _ => Vec::new(),
        }
    }

    /// Answers a write its group committed.
    fn send(self) {
        // A caller that went away no longer needs its answer; the write stands regardless.
        // Every write of a committed group was applied, so each has its answer.
        match self {
            Done::Channel(reply, Some(answer)) => drop(reply.send(Ok(answer))),
            Done::Received(reply, Some(answer)) => drop(reply.send(Ok(answer))),
            Done::Deleted(reply, Some(answer), _) => drop(reply.send(Ok(answer))),
            Done::Outbox(reply, Some(answer)) => drop(reply.send(Ok(answer))),
            Done::Probed(reply) => drop(reply.send(Ok(()))),
            Done::Ran(_, reply, Some((answer, _))) => drop(reply.send(Ok(answer))),
            Done::Ran(_, _, None)
            | Done::Channel(_, None)
            | Done::Received(_, None)
            | Done::Deleted(_, None, _)
            | Done::Outbox(_, None) => {}
        }
    }

    /// Answers a write its group failed: the one failure, said as this write's.
    fn fail(self, database: &Database, cause: &Arc<sqlx::Error>) {
        let error = StoreError::Query {
            doing: self.doing(),
            database: database.clone(),
            cause: cause.clone(),
        };
        match self {
            Done::Channel(reply, _) => drop(reply.send(Err(error))),
            Done::Received(reply, _) => drop(reply.send(Err(error))),
            Done::Deleted(reply, ..) => drop(reply.send(Err(error))),
            Done::Outbox(reply, _) => drop(reply.send(Err(error))),
            Done::Probed(reply) => drop(reply.send(Err(error))),
            Done::Ran(_, reply, _) => drop(reply.send(Err(error))),
        }
    }
}

/// The event of a receive that changed something.
fn message_stored(received: &Received) -> Option<StoreEvent> {
    let new = match received.outcome {
        ReceiveOutcome::Created => true,
        ReceiveOutcome::Updated => false,
        _ => return None,
    };
    let message = &received.message;
    Some(StoreEvent::MessageStored {
        channel_id: message.channel_id.as_str().to_owned(),
        conversation_id: message.conversation_id.as_str().to_owned(),
        message_id: message.id.as_str().to_owned(),
        new,
    })
}

fn channel_deleted(request: &DeleteChannel) -> StoreEvent {
    StoreEvent::ChannelDeleted {
        channel_id: request.id.as_str().to_owned(),
    }
}

fn conversation_deleted(request: &DeleteConversation) -> StoreEvent {
    StoreEvent::ConversationDeleted {
        channel_id: request.channel_id.as_str().to_owned(),
        conversation_id: request.conversation_id.as_str().to_owned(),
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

/// Runs until a `Close` arrives or every sender is gone. Each commit's result goes to `health`,
/// and what it changed to `events`; each non-empty group is counted in `groups` as it is taken,
/// before its commit. `database` is named in the errors writes are answered with.
pub(crate) async fn run(
    mut conn: Conn,
    database: Database,
    mut queue: mpsc::Receiver<Write>,
    groups: Arc<AtomicU64>,
    health: Arc<WriteHealth>,
    events: Arc<Events>,
    mut reconnect: Reconnect,
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
            reconnect.if_wanted(&mut conn).await;
        }
        let mut changed = Vec::new();
        let group = std::mem::take(&mut group);
        let committed = commit_group(&mut conn, &database, group, &mut changed).await;
        record(&committed, database.is_postgres(), &health, &mut failures);
        if let Committed::Failed(e) = &committed
            && connection_lost(e)
        {
            reconnect.wanted();
        }
        events.publish(&mut conn, changed).await;
    }
    if let Err(e) = conn.close().await {
        tracing::warn!(error = %e, "closing the database connection failed");
    }
    if let Some(done) = closing {
        let _ = done.send(());
    }
}

/// A new writer connection to PostgreSQL when the last one was lost (a server restart, a
/// failover, an administrator ending sessions): without it the writer would fail every later
/// write. SQLite's file connection does not get lost.
pub(crate) struct Reconnect {
    options: Option<sqlx::postgres::PgConnectOptions>,
    wanted: bool,
}

impl Reconnect {
    /// For a PostgreSQL writer connected with `options`; `None` for SQLite.
    pub(crate) fn with(options: Option<sqlx::postgres::PgConnectOptions>) -> Self {
        Self {
            options,
            wanted: false,
        }
    }

    fn wanted(&mut self) {
        self.wanted = self.options.is_some();
    }

    /// Replaces `conn` with a new connection if the last one was lost. If connecting fails too,
    /// the group fails on the old one (saying why) and the next group tries again.
    async fn if_wanted(&mut self, conn: &mut Conn) {
        use sqlx::Connection;
        let (true, Some(options)) = (self.wanted, &self.options) else {
            return;
        };
        match sqlx::PgConnection::connect_with(options).await {
            Ok(new) => {
                tracing::warn!("reconnected to PostgreSQL after the writer's connection was lost");
                *conn = Conn::Postgres(new);
                self.wanted = false;
            }
            Err(e) => {
                tracing::debug!(error = %e, "reconnecting to PostgreSQL failed; trying again at the next write");
            }
        }
    }
}

/// Tells `health` and the log how a group went. Every failure is counted; few are logged.
fn record(committed: &Committed, postgres: bool, health: &WriteHealth, failures: &mut FailureLog) {
    match committed {
        Committed::Nothing => {}
        Committed::Durable => {
            health.succeeded();
            if let Some(line) = failures.succeeded() {
                line.emit();
            }
        }
        Committed::Failed(e) => {
            let diagnosis = Diagnosis::of(e, postgres).to_string();
            health.failed(diagnosis.clone());
            if let Some(line) = failures.failed(Instant::now(), diagnosis) {
                line.emit();
            }
        }
    }
}

/// Commits a group: receives alone first try [`insert_receives_at_once`]; whatever is left goes
/// through [`commit_in_transaction`]. What durably changed is added to `changed`.
async fn commit_group(
    conn: &mut Conn,
    database: &Database,
    group: Vec<Write>,
    changed: &mut Vec<StoreEvent>,
) -> Committed {
    // A group holding only a close has nothing to write (and must not take the write lock).
    if group.is_empty() {
        return Committed::Nothing;
    }
    let now = Timestamp::now().unix_millis();
    if group.iter().all(|w| matches!(w, Write::Receive(..))) {
        return match insert_receives_at_once(conn, database, group, now, changed).await {
            AtOnce::Finished(committed) => committed,
            AtOnce::Rest(rest) => {
                commit_in_transaction(conn, database, rest, Receives::Known, now, changed).await
            }
        };
    }
    commit_in_transaction(conn, database, group, Receives::Unknown, now, changed).await
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
    conn: &mut Conn,
    database: &Database,
    group: Vec<Write>,
    now: i64,
    changed: &mut Vec<StoreEvent>,
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
                .for_each(|write| Done::unapplied(write).fail(database, &cause));
            return AtOnce::Finished(Committed::Failed(cause));
        }
    };
    let inserted_any = inserted.contains(&true);
    let mut rest = Vec::new();
    for (write, inserted) in group.into_iter().zip(inserted) {
        match write {
            Write::Receive(message, reply) if inserted => {
                let received = Received {
                    message,
                    outcome: ReceiveOutcome::Created,
                };
                changed.extend(message_stored(&received));
                let _ = reply.send(Ok(Ok(received)));
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
    conn: &mut Conn,
    database: &Database,
    group: Vec<Write>,
    receives: Receives,
    now: i64,
    changed: &mut Vec<StoreEvent>,
) -> Committed {
    let mut done = Vec::with_capacity(group.len());
    let mut writes = group.into_iter();
    // BEGIN and COMMIT by hand, not sqlx's `Transaction`: when a COMMIT fails for lack of space
    // or an I/O error, SQLite may roll the transaction back by itself, and sqlx, still counting
    // it as open, would refuse every later BEGIN: the writer would never write again.
    let outcome: Result<(), sqlx::Error> = async {
        conn.begin().await?;
        let group_len = writes.len();
        let inserted = insert_receives_first(
            conn,
            receives_of(writes.as_slice(), receives),
            group_len,
            now,
        )
        .await?;
        for (i, write) in writes.by_ref().enumerate() {
            let (applied, failure) = match write {
                Write::Receive(message, reply) if inserted.get(i) == Some(&true) => {
                    let received = Received {
                        message,
                        outcome: ReceiveOutcome::Created,
                    };
                    (Done::Received(reply, Some(Ok(received))), None)
                }
                write => apply(conn, write, receives, now).await,
            };
            done.push(applied);
            if let Some(e) = failure {
                return Err(e);
            }
        }
        conn.commit().await?;
        Ok(())
    }
    .await;
    match outcome {
        Ok(()) => {
            changed.extend(done.iter().flat_map(Done::events));
            done.into_iter().for_each(Done::send);
            Committed::Durable
        }
        Err(e) => {
            rollback(conn).await;
            let cause = Arc::new(e);
            done.into_iter()
                .chain(writes.map(Done::unapplied))
                .for_each(|d| d.fail(database, &cause));
            Committed::Failed(cause)
        }
    }
}

/// A group that is not only receives (a provider app's answer, a reply, a read marker queued
/// among a stream of receives) inserts its receives' new messages first, in one statement, as a
/// group of receives alone does: not one statement per receive. Says, by place in the group,
/// which receives that inserted; the others are applied in order with the rest (a stored id, or
/// a channel an earlier write of the group adds). The receives were queued concurrently with the
/// group's other writes, so storing them first is one order they could have arrived in.
async fn insert_receives_first(
    conn: &mut Conn,
    receives: (Vec<usize>, Vec<&ReceiveMessage>),
    group_len: usize,
    now: i64,
) -> Result<Vec<bool>, sqlx::Error> {
    let (places, messages) = receives;
    // One receive alone gains nothing from a batch.
    if messages.len() < 2 {
        return Ok(Vec::new());
    }
    let inserted = insert_new_messages(conn, &messages, now).await?;
    let mut by_place = vec![false; group_len];
    for (place, inserted) in places.into_iter().zip(inserted) {
        by_place[place] = inserted;
    }
    Ok(by_place)
}

/// The receives of a group, and their places in it, for [`insert_receives_first`]; none when
/// they are known to be of stored messages.
fn receives_of(writes: &[Write], receives: Receives) -> (Vec<usize>, Vec<&ReceiveMessage>) {
    if receives == Receives::Known {
        return (Vec::new(), Vec::new());
    }
    writes
        .iter()
        .enumerate()
        .filter_map(|(i, write)| match write {
            Write::Receive(message, _) => Some((i, message)),
            _ => None,
        })
        .unzip()
}

/// Applies one write inside the group's transaction: its result, and the database failure that
/// stopped it, if one did.
async fn apply(
    tx: &mut Conn,
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
            Done::Deleted(reply, r, channel_deleted(&request))
        }),
        Write::DeleteConversation(request, reply) => {
            split(delete_conversation(tx, &request).await, |r| {
                Done::Deleted(reply, r, conversation_deleted(&request))
            })
        }
        Write::Outbox(write, reply) => split(outbox::apply(tx, write, now).await, |r| {
            Done::Outbox(reply, r)
        }),
        Write::Probe(reply) => split(open::probe_in_group(tx).await, |_| Done::Probed(reply)),
        Write::Run(doing, work, reply) => {
            split(work(tx, now).await, |r| Done::Ran(doing, reply, r))
        }
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
async fn rollback(conn: &mut Conn) {
    if let Err(e) = conn.rollback().await {
        tracing::debug!(error = %e, "rolling back a failed write group");
    }
}
