//! Replies sent through a provider app's postMessage: stored before the app is called (so a
//! reply is never lost, and a failed one can be sent again on request), then joined to the
//! conversation's messages under the id the app answered.

use pdchannels_model::{ReceiveMessage, Timestamp};
use serde::Serialize;

use crate::backend::{Conn, on_conn};
use crate::{Store, StoreError, StoreEvent};

/// Why a reply cannot be sent; nothing was stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendRefused {
    /// No channel has this `provider_channel_id`.
    NoChannel,
    /// The channel has no conversation of this id.
    NoConversation,
    /// The channel belongs to no provider app: nobody could deliver the reply.
    NoApp,
    /// The app's account for this channel is suspended.
    Suspended,
    /// The conversation's `reply_by` passed (ms since the epoch): free text is refused.
    ReplyWindowClosed(i64),
    /// No failed reply of this conversation has this local id (for a retry).
    NothingToRetry,
}

/// A reply stored and ready to go to the app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outgoing {
    /// Ours: the reply's handle until the app names it, and the `Idempotency-Key` sent.
    pub local_id: String,
    /// The app to call.
    pub app: String,
    /// The channel's `provider_channel_id`.
    pub channel_id: String,
    /// The conversation.
    pub conversation_id: String,
    /// Who sends it: the conversation's `source_user` (the company's side).
    pub sender_id: String,
    /// Who gets it: the conversation's `end_user`s.
    pub recipient_ids: Vec<String>,
    /// The text.
    pub message: String,
    /// The template it was written from, if any.
    pub template_id: Option<String>,
}

/// What a reply is now, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutgoingState {
    /// The reply's local id.
    pub local_id: String,
    /// `sending`, `sent` or `failed`.
    pub state: String,
    /// The app's id for it, once it answered.
    pub message_id: Option<String>,
    /// Why sending failed.
    pub failure: Option<String>,
    /// How many times it was handed to the app.
    pub attempts: i64,
}

impl Store {
    /// Stores a new reply (`retry`: `None`), or takes back a failed one to send it again
    /// (`retry`: its local id), and answers what the app must be called with.
    pub async fn start_outgoing(
        &self,
        channel_id: &str,
        conversation_id: &str,
        message: &str,
        template_id: Option<&str>,
        retry: Option<&str>,
    ) -> Result<Result<Outgoing, SendRefused>, StoreError> {
        let (channel_id, conversation_id, message) = (
            channel_id.to_owned(),
            conversation_id.to_owned(),
            message.to_owned(),
        );
        let (template_id, retry) = (template_id.map(str::to_owned), retry.map(str::to_owned));
        self.run_write("store a reply", move |conn, now| {
            Box::pin(async move {
                let answer = start(
                    conn,
                    now,
                    &channel_id,
                    &conversation_id,
                    &message,
                    template_id,
                    retry,
                )
                .await?;
                Ok((answer, Vec::new()))
            })
        })
        .await
    }

    /// Records how the app answered: `Ok(its id)` makes the reply a message of the conversation
    /// (status `sent`; if the app already reported it by a receive, that message stands), `Err`
    /// leaves it `failed` with the reason.
    pub async fn finish_outgoing(
        &self,
        outgoing: &Outgoing,
        answer: Result<String, String>,
    ) -> Result<(), StoreError> {
        let outgoing = outgoing.clone();
        self.run_write("record how a reply went", move |conn, now| {
            Box::pin(async move {
                let (state, message_id, failure) = match &answer {
                    Ok(id) => ("sent", Some(id.as_str()), None),
                    Err(why) => ("failed", None, Some(why.as_str())),
                };
                on_conn!(conn, c => sqlx::query(
                    "UPDATE outgoing_messages SET state = $2, message_id = $3, failure = $4,
                                                  updated_at_ms = $5
                      WHERE local_id = $1",
                )
                .bind(&outgoing.local_id)
                .bind(state)
                .bind(message_id)
                .bind(failure)
                .bind(now)
                .execute(c)
                .await
                .map(drop))?;
                let mut events = Vec::new();
                if answer.is_err() {
                    // Open tabs show it failed, with Retry, at once.
                    events.push(StoreEvent::ConversationMarked {
                        channel_id: outgoing.channel_id.clone(),
                        conversation_id: outgoing.conversation_id.clone(),
                    });
                }
                if let Ok(id) = &answer {
                    let payload = serde_json::json!({
                        "id": id, "channel_id": outgoing.channel_id,
                        "conversation_id": outgoing.conversation_id, "sender_id": outgoing.sender_id,
                        "message": outgoing.message, "status": "sent",
                        "created_at": Timestamp::from_unix_millis(now).map(|t| t.to_string()),
                    });
                    // The app's id is its own: if it does not make a valid message id, the reply
                    // stays recorded here (sent, with the id) without joining the messages.
                    if let Ok(message) = ReceiveMessage::parse(&payload, &pdchannels_model::Limits::default()) {
                        let inserted = crate::writer::insert_new_messages(conn, &[&message], now).await?;
                        if inserted.first() == Some(&true) {
                            events.push(StoreEvent::MessageStored {
                                channel_id: outgoing.channel_id.clone(),
                                conversation_id: outgoing.conversation_id.clone(),
                                message_id: id.clone(),
                                new: true,
                            });
                        }
                    }
                }
                Ok(((), events))
            })
        })
        .await
    }

    /// Replies still `sending` that were last touched before `before_ms`: the hub that was
    /// sending them stopped mid-call (a crash, a kill). Each becomes `failed` with the reason, so
    /// a person sees it and can retry; never sent again on its own, as the app may have got it.
    /// Answers how many.
    pub async fn fail_abandoned_replies(&self, before_ms: i64) -> Result<u64, StoreError> {
        self.run_write("fail replies a stopped hub left sending", move |conn, now| {
            Box::pin(async move {
                let rows: Vec<(String, String)> = on_conn!(conn, c => sqlx::query_as(
                    "UPDATE outgoing_messages
                        SET state = 'failed', updated_at_ms = $2,
                            failure = 'the hub stopped while it was handing this reply to the app, so it may or may not have reached the customer: check with them, then retry if it did not'
                      WHERE state = 'sending' AND updated_at_ms < $1
                  RETURNING (SELECT provider_channel_id FROM channels WHERE pk = channel_pk),
                            conversation_id",
                )
                .bind(before_ms)
                .bind(now)
                .fetch_all(c)
                .await)?;
                let mut events: Vec<StoreEvent> = Vec::new();
                for (channel_id, conversation_id) in &rows {
                    let event = StoreEvent::ConversationMarked {
                        channel_id: channel_id.clone(),
                        conversation_id: conversation_id.clone(),
                    };
                    if !events.contains(&event) {
                        events.push(event);
                    }
                }
                Ok((rows.len() as u64, events))
            })
        })
        .await
    }

    /// The reply with this local id.
    pub async fn outgoing(&self, local_id: &str) -> Result<Option<OutgoingState>, StoreError> {
        crate::backend::on_pool!(self.reads(), p => sqlx::query_as::<_, (String, String, Option<String>, Option<String>, i64)>(
            "SELECT local_id, state, message_id, failure, attempts FROM outgoing_messages WHERE local_id = $1",
        )
        .bind(local_id)
        .fetch_optional(p)
        .await)
        .map(|row| {
            row.map(|(local_id, state, message_id, failure, attempts)| OutgoingState {
                local_id,
                state,
                message_id,
                failure,
                attempts,
            })
        })
        .map_err(self.query_failed("read a reply"))
    }
}

#[allow(clippy::too_many_arguments)]
async fn start(
    conn: &mut Conn,
    now: i64,
    channel_id: &str,
    conversation_id: &str,
    message: &str,
    template_id: Option<String>,
    retry: Option<String>,
) -> Result<Result<Outgoing, SendRefused>, sqlx::Error> {
    let channel: Option<(i64, Option<String>, Option<i64>)> = on_conn!(conn, c => sqlx::query_as(
        "SELECT pk, app_name, suspended_at_ms FROM channels WHERE provider_channel_id = $1",
    )
    .bind(channel_id)
    .fetch_optional(c)
    .await)?;
    let Some((channel_pk, app, suspended)) = channel else {
        return Ok(Err(SendRefused::NoChannel));
    };
    let exists: Option<i64> = on_conn!(conn, c => sqlx::query_scalar(
        "SELECT message_count FROM conversations WHERE channel_pk = $1 AND conversation_id = $2",
    )
    .bind(channel_pk)
    .bind(conversation_id)
    .fetch_optional(c)
    .await)?;
    if exists.is_none() {
        return Ok(Err(SendRefused::NoConversation));
    }
    let Some(app) = app else {
        return Ok(Err(SendRefused::NoApp));
    };
    if suspended.is_some() {
        return Ok(Err(SendRefused::Suspended));
    }
    // The latest `reply_by` the provider set on the conversation's messages: after it, the
    // provider (WhatsApp's 24-hour window) accepts only templates.
    let latest: Option<String> = on_conn!(conn, c => sqlx::query_scalar(
        "SELECT payload FROM messages WHERE channel_pk = $1 AND conversation_id = $2
          ORDER BY created_at_ms DESC, pk DESC LIMIT 1",
    )
    .bind(channel_pk)
    .bind(conversation_id)
    .fetch_optional(c)
    .await)?;
    let reply_by = latest
        .and_then(|p| serde_json::from_str::<serde_json::Value>(&p).ok())
        .and_then(|p| {
            p.get("reply_by")
                .and_then(|v| v.as_str())
                .map(str::to_owned)
        })
        .and_then(|t| Timestamp::parse(&t).ok())
        .map(Timestamp::unix_millis);
    if template_id.is_none()
        && let Some(by) = reply_by
        && by < now
    {
        return Ok(Err(SendRefused::ReplyWindowClosed(by)));
    }
    let order = if conn.is_postgres() { "seq" } else { "rowid" };
    let people: Vec<(String, Option<String>)> = on_conn!(conn, c => sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT participant_id, role FROM participants
          WHERE channel_pk = $1 AND conversation_id = $2 ORDER BY {order}"
    )))
    .bind(channel_pk)
    .bind(conversation_id)
    .fetch_all(c)
    .await)?;
    // The company's side: the participant the app called `source_user`; the customers: the
    // `end_user`s. Before the app described the conversation (no roles yet), the customers are
    // those who wrote, and the sender is the channel itself.
    let sender_id = people
        .iter()
        .find(|(_, role)| role.as_deref() == Some("source_user"))
        .map_or_else(|| channel_id.to_owned(), |(id, _)| id.clone());
    let mut recipient_ids: Vec<String> = people
        .iter()
        .filter(|(_, role)| role.as_deref() == Some("end_user"))
        .map(|(id, _)| id.clone())
        .collect();
    if recipient_ids.is_empty() {
        recipient_ids = people
            .iter()
            .filter(|(id, role)| role.is_none() && *id != sender_id)
            .map(|(id, _)| id.clone())
            .collect();
    }
    let local_id = match retry {
        Some(local_id) => {
            let taken = on_conn!(conn, c => sqlx::query(
                "UPDATE outgoing_messages SET state = 'sending', attempts = attempts + 1,
                                              failure = NULL, updated_at_ms = $4
                  WHERE local_id = $1 AND state = 'failed'
                    AND channel_pk = $2 AND conversation_id = $3",
            )
            .bind(&local_id)
            .bind(channel_pk)
            .bind(conversation_id)
            .bind(now)
            .execute(c)
            .await
            .map(|r| r.rows_affected()))?;
            if taken != 1 {
                return Ok(Err(SendRefused::NothingToRetry));
            }
            let stored: (String, Option<String>) = on_conn!(conn, c => sqlx::query_as(
                "SELECT message, template_id FROM outgoing_messages WHERE local_id = $1",
            )
            .bind(&local_id)
            .fetch_one(c)
            .await)?;
            return Ok(Ok(Outgoing {
                local_id,
                app,
                channel_id: channel_id.to_owned(),
                conversation_id: conversation_id.to_owned(),
                sender_id,
                recipient_ids,
                message: stored.0,
                template_id: stored.1,
            }));
        }
        None => format!("out_{}", uuid::Uuid::now_v7().simple()),
    };
    on_conn!(conn, c => sqlx::query(
        "INSERT INTO outgoing_messages (local_id, channel_pk, conversation_id, sender_id,
                                        recipient_ids, message, template_id, state, attempts,
                                        created_at_ms, updated_at_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'sending', 1, $8, $8)",
    )
    .bind(&local_id)
    .bind(channel_pk)
    .bind(conversation_id)
    .bind(&sender_id)
    .bind(serde_json::to_string(&recipient_ids).expect("ids serialize"))
    .bind(message)
    .bind(&template_id)
    .bind(now)
    .execute(c)
    .await
    .map(drop))?;
    Ok(Ok(Outgoing {
        local_id,
        app,
        channel_id: channel_id.to_owned(),
        conversation_id: conversation_id.to_owned(),
        sender_id,
        recipient_ids,
        message: message.to_owned(),
        template_id,
    }))
}
