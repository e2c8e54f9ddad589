//! The store behind pdchannels: channels, conversations, participants and messages in one SQLite
//! file (the default), or in a PostgreSQL database that several pdchannels processes share.
//!
//! # Layout
//!
//! - [`Database`]: which one (`--db PATH` or `--db postgres://…`).
//! - [`Store`]: opens the database (SQLite: owner-only, WAL, `synchronous = FULL`; PostgreSQL:
//!   `synchronous_commit = on`; migrations embedded in the binary, a probe write) and implements
//!   [`Channels`] over it. Nothing above the store knows which backend it talks to.
//! - `backend`: a connection or pool of either backend, and the macros that run one query on
//!   whichever it is.
//! - `writer`: the single writer task; writes are grouped into one transaction per commit, and
//!   each caller is answered only once its write is on disk.
//! - `health`: the writer's last result (for `/healthz`) and its rate-limited failure log.
//! - [`reads`]: queries for looking at what is stored (and the read API's pages).
//! - [`cursor`]: opaque page cursors (the read API's and the MCP tools').
//! - `history`: a conversation's latest messages and participants, as people and agents read it.
//! - `tokens`: the hub's API tokens, stored hashed.
//! - `apps`: provider apps, their credentials and manifests, and the channels that are theirs.
//! - [`Outbox`] (`store.outbox()`): the relay's durable outbox.
//! - [`StoreError`]: how every store method fails (the [`Channels`] methods answer the model's
//!   [`ChannelsError`], into which a `StoreError` converts as `Unavailable`).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use pdchannels_model::{AddChannel, Channels, Limits};
//! let store = pdchannels_store::Store::open("channels.db".as_ref()).await?;
//! let request = serde_json::json!({"name": "Sales", "provider_channel_id": "wa-1"});
//! store.add_channel(AddChannel::parse(&request, &Limits::default())?).await?;
//! store.close().await;
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

mod app_calls;
mod apps;
mod attachments;
mod backend;
mod copy;
pub mod cursor;
mod database;
mod diagnosis;
mod error;
mod events;
mod health;
mod history;
mod inbox_list;
mod inbox_reads;
mod inbox_sessions;
pub mod lease_owner;
mod mirror;
mod open;
mod outbox;
mod outgoing;
mod permissions;
mod rate_usage;
pub mod reads;
mod senders;
mod tokens;
mod writer;

use std::path::Path;
use std::sync::Arc;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use pdchannels_model::{
    AddChannel, Channel, Channels, ChannelsError, DeleteChannel, DeleteConversation,
    ReceiveMessage, Received,
};
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::SqlitePoolOptions;
use sqlx::{Connection, PgConnection, SqliteConnection};
use tokio::sync::{mpsc, oneshot};

pub use app_calls::{AppCall, CallEnd, ConversationDetails, NewAppCall, ParticipantDetails};
pub use apps::{AppCredentials, AppInfo, AppState, Link, NewApp};
pub use copy::{CopyError, CopyOptions, CopyProgress, CopyReport, TableCount, copy_database};
pub use database::{BadDatabase, Database, PostgresUrl};
pub use error::StoreError;
pub use events::{StoreEvent, Subscription};
pub use history::{ConversationHistory, UnsentReply};
pub use inbox_list::{InboxFilter, InboxRow};
pub use inbox_reads::UNREAD_COUNT_WINDOW;
pub use inbox_sessions::{InboxSession, LOGIN_LINK_MS, NewInboxSession};
pub use mirror::{
    FlushTiming, MirrorChange, MirrorChanges, MirrorConversation, MirrorLink, MirrorMatch,
    MirrorMessage, MirrorSegment, MirrorStatus, MirrorTarget, NewSegment, NoteWritten,
    SegmentState,
};
pub use outbox::{
    CallStatus, NewOutboxEntry, Outbox, OutboxEntry, OutboxState, OutboxStats, Settlement,
    UnknownOutboxState,
};
pub use outgoing::{Outgoing, OutgoingState, SendRefused};
pub use rate_usage::RateUsage;
pub use reads::{
    ChannelRecord, ConversationPage, ConversationSummary, ConversationView, StoredMessage,
};
pub use senders::SenderDetails;
pub use tokens::{NewToken, TokenInfo, TokenUser};

use backend::{Conn, Pool};
use events::Events;
use health::WriteHealth;
use writer::Write;

/// The clock of health probes (monotonic; the first probe is always allowed).
static PROBE_CLOCK: LazyLock<Instant> = LazyLock::new(Instant::now);

/// How many writes may wait for the writer before callers wait to enqueue.
const QUEUE_DEPTH: usize = 4096;

/// How many times a write that lost a race with another process (PostgreSQL) is sent again.
const RACE_RETRIES: u32 = 5;

/// How long to wait before sending a write again after its `attempt`th lost race: a few
/// milliseconds, growing, with jitter so that the processes that collided do not collide again.
fn race_backoff(attempt: u32) -> std::time::Duration {
    let jitter = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() % 5_000);
    std::time::Duration::from_micros(u64::from(attempt * 5_000 + jitter))
}

/// The most connections a store's readers hold on a PostgreSQL server: with the writer's one,
/// what each process costs the server's `max_connections` (see docs/scaling.md).
const READ_CONNECTIONS: u32 = 8;

/// A handle on the database; cheap to clone, all clones share one writer.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    database: Database,
    writes: mpsc::Sender<Write>,
    reads: Pool,
    /// How many groups the writer has taken; see [`Store::write_groups`].
    write_groups: Arc<AtomicU64>,
    health: Arc<WriteHealth>,
    /// When `write_failure` last probed (ms since the store opened): at most one a second.
    last_probe_ms: AtomicU64,
    /// Live updates: the writer publishes, [`Store::subscribe`] listens.
    events: Arc<Events>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("database", &self.inner.database)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens the SQLite database at `path`, creating it (owner-only) and bringing its schema up
    /// to date, and proves with a probe write that it can be written: a store that cannot write
    /// is refused here rather than failing every write later. Warns if others than the owner
    /// may read an existing database. The parent directory must exist.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        Self::connect(&Database::from(path)).await
    }

    /// Opens `database`, SQLite or PostgreSQL: as [`Store::open`] does for a file; for
    /// PostgreSQL, the database must exist (the schema is created in it).
    pub async fn connect(database: &Database) -> Result<Self, StoreError> {
        let (writer, reads, reconnect) = match database {
            Database::Sqlite(path) => {
                let (writer, reads) = Self::open_sqlite(path, database).await?;
                (writer, reads, writer::Reconnect::with(None))
            }
            Database::Postgres(url) => {
                let (writer, reads, options) = Self::open_postgres(url, database).await?;
                (writer, reads, writer::Reconnect::with(Some(options)))
            }
        };
        let (writes, queue) = mpsc::channel(QUEUE_DEPTH);
        let write_groups = Arc::new(AtomicU64::new(0));
        let health = Arc::new(WriteHealth::default());
        let events = Arc::new(Events::default());
        tokio::spawn(writer::run(
            writer,
            database.clone(),
            queue,
            write_groups.clone(),
            health.clone(),
            events.clone(),
            reconnect,
        ));
        Ok(Self {
            inner: Arc::new(Inner {
                database: database.clone(),
                writes,
                reads,
                write_groups,
                health,
                last_probe_ms: AtomicU64::new(0),
                events,
            }),
        })
    }

    async fn open_sqlite(path: &Path, database: &Database) -> Result<(Conn, Pool), StoreError> {
        let open_error = |cause| StoreError::Open {
            database: database.clone(),
            cause,
        };
        permissions::create_owner_only_or_open_for_writing(path)
            .map_err(|e| open_error(sqlx::Error::Io(e)))?;
        permissions::warn_if_others_may_read(path);
        let options = open::connect_options(path);
        let mut writer = SqliteConnection::connect_with(&options)
            .await
            .map_err(open_error)?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&mut writer)
            .await
            .map_err(|cause| StoreError::Migrate {
                database: database.clone(),
                cause,
            })?;
        open::probe_write(&mut writer)
            .await
            .map_err(|cause| StoreError::NotWritable {
                database: database.clone(),
                cause,
            })?;
        let reads = SqlitePoolOptions::new()
            .max_connections(4)
            .min_connections(0)
            .connect_lazy_with(open::read_options(options));
        Ok((Conn::Sqlite(writer), Pool::Sqlite(reads)))
    }

    /// PostgreSQL: one writer connection (the group commit, as on SQLite) and a pool for reads.
    /// Several processes may open the same database at once: the migrations take an advisory
    /// lock, so only one of them applies each.
    async fn open_postgres(
        url: &PostgresUrl,
        database: &Database,
    ) -> Result<(Conn, Pool, sqlx::postgres::PgConnectOptions), StoreError> {
        let open_error = |cause| StoreError::Open {
            database: database.clone(),
            cause,
        };
        let options = open::postgres_options(url).map_err(open_error)?;
        let mut writer = PgConnection::connect_with(&options)
            .await
            .map_err(open_error)?;
        sqlx::migrate!("./migrations/postgres")
            .run(&mut writer)
            .await
            .map_err(|cause| StoreError::Migrate {
                database: database.clone(),
                cause,
            })?;
        open::probe_postgres(&mut writer)
            .await
            .map_err(|cause| StoreError::NotWritable {
                database: database.clone(),
                cause,
            })?;
        let reads = PgPoolOptions::new()
            .max_connections(READ_CONNECTIONS)
            .min_connections(0)
            .acquire_timeout(std::time::Duration::from_secs(10))
            .connect_lazy_with(options.clone());
        Ok((Conn::Postgres(writer), Pool::Postgres(reads), options))
    }

    /// Why the store cannot write, or `None` while it can: the writer's last commit failed and
    /// none has succeeded since (the reason says the cause and what to do). While failing, each
    /// call first commits a probe write, so the answer turns healthy as soon as writes work
    /// again, even when no other write comes to show it.
    pub async fn write_failure(&self) -> Option<String> {
        self.inner.health.failure()?;
        // At most one probe a second: `/healthz` needs no token, so anyone could otherwise make
        // a failing store attempt a write per request.
        let now = PROBE_CLOCK.elapsed().as_millis() as u64 + 1_000;
        let last = self.inner.last_probe_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= 1_000
            && self
                .inner
                .last_probe_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            // The probe's own result reaches `health` through the writer, like every commit's.
            let _ = self.write_once(Write::Probe).await;
        }
        self.inner.health.failure()
    }

    /// Live updates: an event for each write that changes something, once it is durable, from
    /// this store and, on PostgreSQL, from every other process writing the same database
    /// (one more connection to the server, opened by the first subscription). See
    /// [`StoreEvent`].
    pub async fn subscribe(&self) -> Result<Subscription, StoreError> {
        let postgres = match self.reads() {
            Pool::Postgres(pool) => Some(pool),
            Pool::Sqlite(_) => None,
        };
        self.inner
            .events
            .subscribe(postgres)
            .await
            .map_err(self.query_failed("listen for changes made by other processes"))
    }

    /// The database this store is.
    pub fn database(&self) -> &Database {
        &self.inner.database
    }

    /// The SQLite file, if the store is one.
    pub fn path(&self) -> Option<&Path> {
        self.inner.database.sqlite_path()
    }

    /// Finishes every write queued so far, then closes the database. Writes sent afterwards
    /// fail with [`StoreError::Closed`] ([`ChannelsError::Unavailable`] for the [`Channels`]
    /// methods).
    pub async fn close(&self) {
        let (done, closed) = oneshot::channel();
        if self.inner.writes.send(Write::Close(done)).await.is_ok() {
            let _ = closed.await;
        }
        self.inner.events.stop().await;
        self.inner.reads.close().await;
    }

    /// How many write groups the writer has taken since the store opened (a group is counted
    /// before its commit, so any answered write's group is in the count). Each group is one
    /// commit (one fsync) however many writes it carries, so many concurrent writes and few
    /// groups is group commit at work; the tests check exactly that.
    pub fn write_groups(&self) -> u64 {
        self.inner.write_groups.load(Ordering::Relaxed)
    }

    /// Whether the store is on PostgreSQL (where some statements are said differently).
    pub(crate) fn is_postgres(&self) -> bool {
        self.inner.database.is_postgres()
    }

    pub(crate) fn reads(&self) -> &Pool {
        &self.inner.reads
    }

    /// How a query for `doing` ("list the channels") failed: the one place a database error
    /// becomes a [`StoreError`].
    pub(crate) fn query_failed(&self, doing: &'static str) -> impl Fn(sqlx::Error) -> StoreError {
        let database = self.inner.database.clone();
        move |cause| StoreError::Query {
            doing,
            database: database.clone(),
            cause: Arc::new(cause),
        }
    }

    /// Queues a write and waits until it is durable (or refused). On PostgreSQL a group that
    /// lost a race with another process's writes (a deadlock, a row deleted meanwhile) was
    /// rolled back whole: the write is sent again, a few times, rather than failed (`make`
    /// makes it anew each time).
    pub(crate) async fn write<T>(
        &self,
        make: impl Fn(oneshot::Sender<Result<T, StoreError>>) -> Write,
    ) -> Result<T, StoreError> {
        let mut attempt = 0;
        loop {
            match self.write_once(&make).await {
                Err(e) if e.lost_a_race() && attempt < RACE_RETRIES => {
                    attempt += 1;
                    tokio::time::sleep(race_backoff(attempt)).await;
                }
                answer => return answer,
            }
        }
    }

    /// Queues a write once and waits until it is durable (or refused).
    pub(crate) async fn write_once<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Write,
    ) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.inner
            .writes
            .send(make(reply))
            .await
            .map_err(|_| StoreError::Closed)?;
        // A write the writer took is always answered, except once it has stopped (closed).
        answer.await.map_err(|_| StoreError::Closed)?
    }
}

impl Store {
    /// Runs `work` on the writer's connection, inside a group's transaction like every write,
    /// and answers once that group is durable: the way features beyond the Channels operations
    /// write. `work` gets the connection and the group's time (ms since the epoch) and returns
    /// its answer and the live updates it caused. `doing` names it in errors ("record a reply").
    pub(crate) async fn run_write<T, F>(
        &self,
        doing: &'static str,
        work: F,
    ) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(
                &'c mut Conn,
                i64,
            ) -> futures_util::future::BoxFuture<
                'c,
                Result<(T, Vec<StoreEvent>), sqlx::Error>,
            > + Send
            + 'static,
    {
        let work: writer::Work = Box::new(move |conn, now| {
            Box::pin(async move {
                let (answer, events) = work(conn, now).await?;
                Ok((Box::new(answer) as Box<dyn std::any::Any + Send>, events))
            })
        });
        let answer = self
            .write_once(|reply| Write::Run(doing, work, reply))
            .await?;
        Ok(*answer
            .downcast::<T>()
            .expect("a write answers the type its work returned"))
    }
}

impl Channels for Store {
    async fn add_channel(&self, request: AddChannel) -> Result<Channel, ChannelsError> {
        self.write(|reply| Write::AddChannel(request.clone(), reply))
            .await?
    }

    async fn receive_message(&self, message: ReceiveMessage) -> Result<Received, ChannelsError> {
        self.write(|reply| Write::Receive(message.clone(), reply))
            .await?
    }

    async fn delete_channel(&self, request: DeleteChannel) -> Result<(), ChannelsError> {
        self.write(|reply| Write::DeleteChannel(request.clone(), reply))
            .await?
    }

    async fn delete_conversation(&self, request: DeleteConversation) -> Result<(), ChannelsError> {
        self.write(|reply| Write::DeleteConversation(request.clone(), reply))
            .await?
    }
}
