//! The durable queue of reads the hub makes of provider apps (getConversations,
//! getConversationById, ...): each call pending until done, retried with backoff, dead after its
//! attempts and retryable by hand, with the app's last answer kept for whoever debugs it. Several
//! hubs on one PostgreSQL database share the queue (claims skip what another hub holds).
//!
//! Also what the apps' answers tell: a conversation's details and its participants.

use serde::Serialize;

use crate::backend::{Conn, on_conn, on_pool};
use crate::{Store, StoreError, lease_owner};

/// A call to queue.
#[derive(Debug, Clone)]
pub struct NewAppCall {
    /// The app's name.
    pub app: String,
    /// The manifest endpoint (`getConversations`, ...).
    pub endpoint: String,
    /// The channel's `provider_channel_id`.
    pub channel_id: String,
    /// The conversation, sender or message id the call is about (`""` for none).
    pub subject: String,
    /// What else the call needs (a cursor), as JSON.
    pub params: serde_json::Value,
}

/// A queued call.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AppCall {
    /// Its id (`app calls retry ID`).
    pub id: i64,
    /// The app's name.
    pub app: String,
    /// The manifest endpoint.
    pub endpoint: String,
    /// The channel's `provider_channel_id`.
    pub channel_id: String,
    /// The conversation, sender or message id (`""` for none).
    pub subject: String,
    /// What else the call needs.
    pub params: serde_json::Value,
    /// `pending`, `done` or `dead`.
    pub state: String,
    /// How many times it was tried.
    pub attempts: i64,
    /// When it is due (ms since the epoch).
    pub next_attempt_at_ms: i64,
    /// The app's last HTTP status.
    pub last_status: Option<i64>,
    /// What went wrong last.
    pub last_error: Option<String>,
    /// The start of the app's last answer.
    pub last_answer: Option<String>,
    /// When it was queued.
    pub created_at_ms: i64,
    /// When it last changed.
    pub updated_at_ms: i64,
}

/// How a call ended this time.
#[derive(Debug, Clone)]
pub enum CallEnd {
    /// Done: the app answered and the answer was applied.
    Done {
        /// The app's HTTP status.
        status: Option<u16>,
        /// The start of its answer.
        answer: Option<String>,
    },
    /// To be tried again at this time (ms since the epoch).
    Retry {
        /// When.
        at_ms: i64,
        /// The app's HTTP status, if it answered.
        status: Option<u16>,
        /// What went wrong.
        error: String,
        /// The start of its answer.
        answer: Option<String>,
    },
    /// Given up: the app refused it for good, or it failed too often.
    Dead {
        /// The app's HTTP status, if it answered.
        status: Option<u16>,
        /// Why.
        error: String,
        /// The start of its answer.
        answer: Option<String>,
    },
}

/// What an app said about a conversation (getConversations, getConversationById).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConversationDetails {
    /// The channel's `provider_channel_id`.
    pub channel_id: String,
    /// The conversation's id.
    pub conversation_id: String,
    /// Its page at the provider (`""`: none).
    pub link: Option<String>,
    /// `open` or `closed`.
    pub state: Option<String>,
    /// Whether it was seen.
    pub seen: Option<bool>,
    /// Where older messages start, for a later getConversationById (`None`: no more).
    pub next_messages_cursor: Option<String>,
    /// Who is in it.
    pub participants: Vec<ParticipantDetails>,
}

/// What an app said about a participant.
#[derive(Debug, Clone, Default, PartialEq, Serialize, schemars::JsonSchema)]
pub struct ParticipantDetails {
    /// Its id (the `sender_id` of its messages).
    pub id: String,
    /// Its name.
    pub name: Option<String>,
    /// `end_user` (the customer) or `source_user` (the company's side).
    pub role: Option<String>,
    /// Its picture.
    pub avatar_url: Option<String>,
    /// Whether the hub should ask getSenderById for the avatar.
    pub fetch_avatar: bool,
    /// Whether the avatar link expires.
    pub avatar_expires: bool,
}

/// The columns of [`AppCall`], in its order.
const COLUMNS: &str = "pk, app_name, endpoint, channel_id, subject, params, state, attempts, \
                       next_attempt_at_ms, last_status, last_error, last_answer, created_at_ms, \
                       updated_at_ms";

type CallRow = (
    i64,
    String,
    String,
    String,
    String,
    String,
    String,
    i64,
    i64,
    Option<i64>,
    Option<String>,
    Option<String>,
    i64,
    i64,
);

fn call(row: CallRow) -> AppCall {
    let (
        id,
        app,
        endpoint,
        channel_id,
        subject,
        params,
        state,
        attempts,
        next,
        status,
        error,
        answer,
        created,
        updated,
    ) = row;
    AppCall {
        id,
        app,
        endpoint,
        channel_id,
        subject,
        params: serde_json::from_str(&params).unwrap_or(serde_json::Value::Null),
        state,
        attempts,
        next_attempt_at_ms: next,
        last_status: status,
        last_error: error,
        last_answer: answer,
        created_at_ms: created,
        updated_at_ms: updated,
    }
}

/// SQL text that differs between the backends only in a lock clause.
fn claim_sql(postgres: bool) -> String {
    // `$5` lists the apps that have every place taken in this hub (`,a,b,`): they wait their
    // turn. Finding a name in it is `strpos` on PostgreSQL, `instr` on SQLite.
    let (find, lock) = if postgres {
        ("strpos", "FOR UPDATE OF a SKIP LOCKED")
    } else {
        ("instr", "")
    };
    format!(
        "UPDATE app_calls
            SET lease_owner = $1, lease_until_ms = $2 + $3, attempts = attempts + 1,
                updated_at_ms = $2
          WHERE pk IN (
                SELECT a.pk FROM app_calls a
                 WHERE a.state = 'pending' AND a.next_attempt_at_ms <= $2
                   AND (a.lease_until_ms IS NULL OR a.lease_until_ms < $2)
                   AND {find}($5, ',' || a.app_name || ',') = 0
                   -- An app that refused our credentials, or asked us to wait, is not called.
                   AND NOT EXISTS (
                       SELECT 1 FROM apps p
                        WHERE p.name = a.app_name
                          AND (p.credentials_invalid_at_ms IS NOT NULL
                               OR coalesce(p.paused_until_ms, 0) > $2))
                 ORDER BY a.next_attempt_at_ms, a.pk
                 LIMIT $4 {lock})
         RETURNING {COLUMNS}"
    )
}

impl Store {
    /// Queues a call; `false` if the same call (app, endpoint, channel, subject) is pending
    /// already: a burst of receives asks once.
    pub async fn enqueue_app_call(&self, new: NewAppCall) -> Result<bool, StoreError> {
        Ok(self.enqueue_app_calls(vec![new]).await? == 1)
    }

    /// Queues calls in one write (the worker queues up to 100 at once: one commit, not 100
    /// the receives would wait behind). Answers how many were queued (the others were pending).
    pub async fn enqueue_app_calls(&self, calls: Vec<NewAppCall>) -> Result<usize, StoreError> {
        self.run_write("queue calls to provider apps", move |conn, now| {
            Box::pin(async move {
                let mut queued = 0;
                let mut events = Vec::new();
                for new in calls {
                    let params = new.params.to_string();
                    let inserted = on_conn!(conn, c => sqlx::query(
                        "INSERT INTO app_calls (app_name, endpoint, channel_id, subject, params,
                                                state, next_attempt_at_ms, created_at_ms,
                                                updated_at_ms)
                         VALUES ($1, $2, $3, $4, $5, 'pending', $6, $6, $6)
                         ON CONFLICT (app_name, endpoint, channel_id, subject)
                             WHERE state = 'pending' DO NOTHING",
                    )
                    .bind(&new.app)
                    .bind(&new.endpoint)
                    .bind(&new.channel_id)
                    .bind(&new.subject)
                    .bind(&params)
                    .bind(now)
                    .execute(c)
                    .await.map(|r| r.rows_affected()))?;
                    if inserted == 1 {
                        queued += 1;
                        let event = crate::StoreEvent::AppCallQueued { app: new.app };
                        if !events.contains(&event) {
                            events.push(event);
                        }
                    }
                }
                Ok((queued, events))
            })
        })
        .await
    }

    /// Takes up to `limit` due calls for this process for `lease_ms`: no other hub takes them
    /// meanwhile. A call whose lease ran out (its hub died) is due again. The apps named in
    /// `busy_apps` (`,a,b,`) are left for later.
    pub async fn claim_app_calls(
        &self,
        limit: i64,
        lease_ms: i64,
        busy_apps: &str,
    ) -> Result<Vec<AppCall>, StoreError> {
        let owner = lease_owner::this_instance().to_owned();
        let busy_apps = busy_apps.to_owned();
        self.run_write("claim calls to provider apps", move |conn, now| {
            Box::pin(async move {
                let sql = claim_sql(conn.is_postgres());
                let rows: Vec<CallRow> = on_conn!(conn, c => sqlx::query_as(sqlx::AssertSqlSafe(sql))
                    .bind(&owner)
                    .bind(now)
                    .bind(lease_ms)
                    .bind(limit)
                    .bind(&busy_apps)
                    .fetch_all(c)
                    .await)?;
                let mut calls: Vec<AppCall> = rows.into_iter().map(call).collect();
                calls.sort_by_key(|c| (c.next_attempt_at_ms, c.id));
                Ok((calls, Vec::new()))
            })
        })
        .await
    }

    /// Whether any call could be claimed now, the apps in `busy_apps` (`,a,b,`) left out (a
    /// read: the worker claims, a write, only when one could). Under a stream of receives with
    /// every due call's app busy or paused, this keeps the worker from a write every round.
    pub async fn app_calls_due(&self, busy_apps: &str) -> Result<bool, StoreError> {
        let now = pdchannels_model::Timestamp::now().unix_millis();
        let find = if self.is_postgres() {
            "strpos"
        } else {
            "instr"
        };
        let sql = format!(
            "SELECT EXISTS (
                 SELECT 1 FROM app_calls a
                  WHERE a.state = 'pending' AND a.next_attempt_at_ms <= $1
                    AND (a.lease_until_ms IS NULL OR a.lease_until_ms < $1)
                    AND {find}($2, ',' || a.app_name || ',') = 0
                    AND NOT EXISTS (
                        SELECT 1 FROM apps p
                         WHERE p.name = a.app_name
                           AND (p.credentials_invalid_at_ms IS NOT NULL
                                OR coalesce(p.paused_until_ms, 0) > $1)))"
        );
        on_pool!(self.reads(), p => sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .bind(now)
        .bind(busy_apps)
        .fetch_one(p)
        .await)
        .map_err(self.query_failed("look for calls to provider apps"))
    }

    /// Records how a claimed call ended.
    pub async fn settle_app_call(&self, id: i64, end: CallEnd) -> Result<(), StoreError> {
        self.run_write("record a provider app's answer", move |conn, now| {
            Box::pin(async move {
                let (state, next, status, error, answer) = match end {
                    CallEnd::Done { status, answer } => ("done", None, status, None, answer),
                    CallEnd::Retry {
                        at_ms,
                        status,
                        error,
                        answer,
                    } => ("pending", Some(at_ms), status, Some(error), answer),
                    CallEnd::Dead {
                        status,
                        error,
                        answer,
                    } => ("dead", None, status, Some(error), answer),
                };
                on_conn!(conn, c => sqlx::query(
                    "UPDATE app_calls
                        SET state = $2, next_attempt_at_ms = coalesce($3, next_attempt_at_ms),
                            last_status = $4, last_error = $5, last_answer = $6,
                            lease_owner = NULL, lease_until_ms = NULL, updated_at_ms = $7
                      WHERE pk = $1",
                )
                .bind(id)
                .bind(state)
                .bind(next)
                .bind(status.map(i64::from))
                .bind(error)
                .bind(answer)
                .bind(now)
                .execute(c)
                .await.map(|r| r.rows_affected()))?;
                Ok(((), Vec::new()))
            })
        })
        .await
    }

    /// Puts a dead call back in line, due now, its attempts counted from zero; `false` if no
    /// dead call has this id.
    pub async fn retry_app_call(&self, id: i64) -> Result<bool, StoreError> {
        self.run_write("put a call to a provider app back in line", move |conn, now| {
            Box::pin(async move {
                let changed = on_conn!(conn, c => sqlx::query(
                    "UPDATE app_calls SET state = 'pending', attempts = 0, next_attempt_at_ms = $2,
                                          updated_at_ms = $2
                      WHERE pk = $1 AND state = 'dead'
                        AND NOT EXISTS (SELECT 1 FROM app_calls o
                                         WHERE o.state = 'pending' AND o.app_name = app_calls.app_name
                                           AND o.endpoint = app_calls.endpoint
                                           AND o.channel_id = app_calls.channel_id
                                           AND o.subject = app_calls.subject)",
                )
                .bind(id)
                .bind(now)
                .execute(c)
                .await.map(|r| r.rows_affected()))?;
                Ok((changed == 1, Vec::new()))
            })
        })
        .await
    }

    /// The calls in `state` (all when `None`), newest first, at most `limit`.
    pub async fn app_calls(
        &self,
        state: Option<&str>,
        limit: i64,
    ) -> Result<Vec<AppCall>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM app_calls WHERE ($1 IS NULL OR state = $1) ORDER BY pk DESC LIMIT $2"
        );
        let rows: Vec<CallRow> =
            on_pool!(self.reads(), p => sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(state)
            .bind(limit)
            .fetch_all(p)
            .await)
            .map_err(self.query_failed("list the calls to provider apps"))?;
        Ok(rows.into_iter().map(call).collect())
    }

    /// Conversations of apps' channels, active at or after `since_ms`, that no app has described
    /// yet and that no call is pending (or dead) for: (app, channel, conversation), at most
    /// `limit`. The worker asks about the conversations receives touched since its last look, so
    /// a look costs what arrived meanwhile, not every conversation the hub holds.
    pub async fn conversations_to_describe(
        &self,
        since_ms: i64,
        limit: i64,
    ) -> Result<Vec<(String, String, String)>, StoreError> {
        // From the apps' channels (few) to their recent conversations (the activity index):
        // SQLite joins in the order written with CROSS JOIN, and would otherwise walk every
        // undescribed conversation of every channel, apps' or not.
        let join = if self.is_postgres() {
            "JOIN"
        } else {
            "CROSS JOIN"
        };
        let sql = format!(
            "SELECT ch.app_name, ch.provider_channel_id, v.conversation_id
               FROM channels ch
               {join} conversations v
                 ON v.channel_pk = ch.pk AND v.last_activity_ms >= $2
                AND v.details_at_ms IS NULL
              WHERE ch.app_name IS NOT NULL
                AND NOT EXISTS (SELECT 1 FROM app_calls a
                                 WHERE a.state IN ('pending', 'dead')
                                   AND a.endpoint = 'getConversationById'
                                   AND a.channel_id = ch.provider_channel_id
                                   AND a.subject = v.conversation_id)
              LIMIT $1"
        );
        on_pool!(self.reads(), p => sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(limit)
        .bind(since_ms)
        .fetch_all(p)
        .await)
        .map_err(self.query_failed("find the conversations to ask apps about"))
    }

    /// Records what an app said about a conversation and its participants; with `create`, the
    /// conversation is created if it has no message yet. `false` if the channel is gone (or,
    /// without `create`, the conversation).
    pub async fn describe_conversation(
        &self,
        details: ConversationDetails,
        create: bool,
    ) -> Result<bool, StoreError> {
        self.run_write(
            "record what a provider app said about a conversation",
            move |conn, now| {
                Box::pin(async move {
                    let described = describe(conn, &details, create, now).await?;
                    let events = if described {
                        vec![crate::StoreEvent::ConversationDescribed {
                            channel_id: details.channel_id.clone(),
                            conversation_id: details.conversation_id.clone(),
                        }]
                    } else {
                        Vec::new()
                    };
                    Ok((described, events))
                })
            },
        )
        .await
    }

    /// Marks a conversation as asked about, though the app could not describe it (it answered
    /// 404): it is not asked about again.
    pub async fn mark_conversation_described(
        &self,
        channel_id: &str,
        conversation_id: &str,
    ) -> Result<(), StoreError> {
        let (channel_id, conversation_id) = (channel_id.to_owned(), conversation_id.to_owned());
        self.run_write(
            "record that a provider app could not describe a conversation",
            move |conn, now| {
                Box::pin(async move {
                    on_conn!(conn, c => sqlx::query(
                    "UPDATE conversations SET details_at_ms = $3
                      WHERE channel_pk = (SELECT pk FROM channels WHERE provider_channel_id = $1)
                        AND conversation_id = $2",
                )
                .bind(&channel_id)
                .bind(&conversation_id)
                .bind(now)
                .execute(c)
                .await.map(|r| r.rows_affected()))?;
                    Ok(((), Vec::new()))
                })
            },
        )
        .await
    }

    /// The participants of a conversation with what apps said about them, in joining order.
    pub async fn participant_details(
        &self,
        channel_id: &str,
        conversation_id: &str,
    ) -> Result<Vec<ParticipantDetails>, StoreError> {
        let order = if self.is_postgres() {
            "p.seq"
        } else {
            "p.rowid"
        };
        let sql = format!(
            "SELECT p.participant_id, p.name, p.role, p.avatar_url, p.fetch_avatar, p.avatar_expires
               FROM participants p JOIN channels ch ON ch.pk = p.channel_pk
              WHERE ch.provider_channel_id = $1 AND p.conversation_id = $2
              ORDER BY {order}"
        );
        type Row = (
            String,
            Option<String>,
            Option<String>,
            Option<String>,
            bool,
            bool,
        );
        let rows: Vec<Row> = on_pool!(self.reads(), p => sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(channel_id)
            .bind(conversation_id)
            .fetch_all(p)
            .await)
        .map_err(self.query_failed("read a conversation's participants"))?;
        Ok(rows
            .into_iter()
            .map(
                |(id, name, role, avatar_url, fetch_avatar, avatar_expires)| ParticipantDetails {
                    id,
                    name,
                    role,
                    avatar_url,
                    fetch_avatar,
                    avatar_expires,
                },
            )
            .collect())
    }
}

async fn describe(
    conn: &mut Conn,
    d: &ConversationDetails,
    create: bool,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let channel_pk: Option<i64> = on_conn!(conn, c => sqlx::query_scalar(
        "SELECT pk FROM channels WHERE provider_channel_id = $1",
    )
    .bind(&d.channel_id)
    .fetch_optional(c)
    .await)?;
    let Some(channel_pk) = channel_pk else {
        return Ok(false);
    };
    if !create {
        let exists: Option<i64> = on_conn!(conn, c => sqlx::query_scalar(
            "SELECT message_count FROM conversations WHERE channel_pk = $1 AND conversation_id = $2",
        )
        .bind(channel_pk)
        .bind(&d.conversation_id)
        .fetch_optional(c)
        .await)?;
        if exists.is_none() {
            return Ok(false);
        }
    }
    on_conn!(conn, c => sqlx::query(
        "INSERT INTO conversations (channel_pk, conversation_id, created_at_ms, last_activity_ms,
                                    message_count, link, state, seen, next_messages_cursor,
                                    details_at_ms)
         VALUES ($1, $2, $3, $3, 0, $4, $5, $6, $7, $3)
         ON CONFLICT (channel_pk, conversation_id) DO UPDATE SET
             link = excluded.link, state = excluded.state, seen = excluded.seen,
             next_messages_cursor = excluded.next_messages_cursor,
             details_at_ms = excluded.details_at_ms",
    )
    .bind(channel_pk)
    .bind(&d.conversation_id)
    .bind(now)
    .bind(&d.link)
    .bind(&d.state)
    .bind(d.seen)
    .bind(&d.next_messages_cursor)
    .execute(c)
    .await.map(|r| r.rows_affected()))?;
    for p in &d.participants {
        on_conn!(conn, c => sqlx::query(
            "INSERT INTO participants (channel_pk, conversation_id, participant_id, joined_at_ms,
                                       name, role, avatar_url, fetch_avatar, avatar_expires)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (channel_pk, conversation_id, participant_id) DO UPDATE SET
                 name = coalesce(excluded.name, participants.name),
                 role = coalesce(excluded.role, participants.role),
                 avatar_url = coalesce(excluded.avatar_url, participants.avatar_url),
                 fetch_avatar = excluded.fetch_avatar, avatar_expires = excluded.avatar_expires",
        )
        .bind(channel_pk)
        .bind(&d.conversation_id)
        .bind(&p.id)
        .bind(now)
        .bind(&p.name)
        .bind(&p.role)
        .bind(&p.avatar_url)
        .bind(p.fetch_avatar)
        .bind(p.avatar_expires)
        .execute(c)
        .await.map(|r| r.rows_affected()))?;
    }
    // The roles may say now that messages stored before were ours (the `source_user`'s): the
    // inbox's unread and awaiting-reply markers are counted again from the messages.
    on_conn!(conn, c => sqlx::query(
        "UPDATE conversations
            SET last_incoming_ms = (SELECT max(m.received_at_ms) FROM messages m
                                     WHERE m.channel_pk = $1 AND m.conversation_id = $2
                                       AND m.sender_id <> $3
                                       AND m.sender_id NOT IN (
                                           SELECT participant_id FROM participants
                                            WHERE channel_pk = $1 AND conversation_id = $2
                                              AND role = 'source_user')),
                last_outgoing_ms = (SELECT max(m.received_at_ms) FROM messages m
                                     WHERE m.channel_pk = $1 AND m.conversation_id = $2
                                       AND (m.sender_id = $3 OR m.sender_id IN (
                                           SELECT participant_id FROM participants
                                            WHERE channel_pk = $1 AND conversation_id = $2
                                              AND role = 'source_user')))
          WHERE channel_pk = $1 AND conversation_id = $2",
    )
    .bind(channel_pk)
    .bind(&d.conversation_id)
    .bind(&d.channel_id)
    .execute(c)
    .await.map(drop))?;
    Ok(true)
}
