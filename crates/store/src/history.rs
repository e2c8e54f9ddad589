//! A conversation read the way a person or an agent reads before answering: who is in it, what
//! the app said about it, its latest messages (oldest of them first), and the replies that did
//! not go out. Earlier pages go back in time from a cursor.

use schemars::JsonSchema;
use serde::Serialize;

use crate::backend::on_pool;
use crate::{ParticipantDetails, Store, StoreError};

/// A conversation's latest messages, and what is known about it.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ConversationHistory {
    /// The provider's conversation id.
    pub conversation_id: String,
    /// The conversation's page at the provider, if the app gave one.
    pub link: Option<String>,
    /// `open` or `closed`, if the app said.
    pub state: Option<String>,
    /// Everyone in it, in the order they joined, with what the app said about them.
    pub participants: Vec<ParticipantDetails>,
    /// Messages as stored (the receive payloads), oldest first: the latest page, or the page
    /// before the cursor.
    #[schemars(with = "Vec<serde_json::Map<String, serde_json::Value>>")]
    pub messages: Vec<Box<serde_json::value::RawValue>>,
    /// Replies that did not reach the app (`failed`) or are on their way (`sending`).
    pub unsent: Vec<UnsentReply>,
    /// Where the page before this one ends: `(created_at_ms, row)` of its oldest message.
    #[serde(skip)]
    pub older: Option<(i64, i64)>,
    /// Whether the app holds older messages than the oldest stored one.
    #[serde(skip)]
    pub app_has_older: bool,
}

/// A reply that is not (yet) a message of the conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct UnsentReply {
    /// Ours: send it again with this as `retry`.
    pub local_id: String,
    /// `sending` or `failed`.
    pub state: String,
    /// The text.
    pub message: String,
    /// Why it failed.
    pub failure: Option<String>,
}

impl Store {
    /// The `limit` messages of a conversation just before `before` (the latest ones without
    /// it), oldest first; `None` when the channel or conversation does not exist.
    pub async fn conversation_history(
        &self,
        channel_id: &str,
        conversation_id: &str,
        before: Option<(i64, i64)>,
        limit: u32,
    ) -> Result<Option<ConversationHistory>, StoreError> {
        let failed = self.query_failed("read a conversation's history");
        type Head = (i64, Option<String>, Option<String>, Option<String>);
        let head: Option<Head> = on_pool!(self.reads(), p => sqlx::query_as(
            "SELECT v.channel_pk, v.link, v.state, v.next_messages_cursor
               FROM conversations v JOIN channels c ON c.pk = v.channel_pk
              WHERE c.provider_channel_id = $1 AND v.conversation_id = $2",
        )
        .bind(channel_id)
        .bind(conversation_id)
        .fetch_optional(p).await)
        .map_err(&failed)?;
        let Some((channel_pk, link, state, next_messages_cursor)) = head else {
            return Ok(None);
        };
        let (before_ms, before_pk) = before.unwrap_or((i64::MAX, i64::MAX));
        // One row more than asked tells whether an earlier page follows.
        let mut rows: Vec<(i64, i64, String)> = on_pool!(self.reads(), p => sqlx::query_as(
            "SELECT created_at_ms, pk, payload FROM messages
              WHERE channel_pk = $1 AND conversation_id = $2
                AND (created_at_ms < $3 OR (created_at_ms = $3 AND pk < $4))
              ORDER BY created_at_ms DESC, pk DESC
              LIMIT $5",
        )
        .bind(channel_pk)
        .bind(conversation_id)
        .bind(before_ms)
        .bind(before_pk)
        .bind(i64::from(limit) + 1)
        .fetch_all(p).await)
        .map_err(&failed)?;
        let older = if rows.len() > limit as usize {
            rows.truncate(limit as usize);
            rows.last().map(|(ms, pk, _)| (*ms, *pk))
        } else {
            None
        };
        rows.reverse();
        let unsent: Vec<(String, String, String, Option<String>)> =
            on_pool!(self.reads(), p => sqlx::query_as(
            "SELECT local_id, state, message, failure FROM outgoing_messages
              WHERE channel_pk = $1 AND conversation_id = $2 AND state <> 'sent'
              ORDER BY pk",
        )
        .bind(channel_pk)
        .bind(conversation_id)
        .fetch_all(p).await)
            .map_err(&failed)?;
        Ok(Some(ConversationHistory {
            conversation_id: conversation_id.to_owned(),
            link: link.filter(|l| !l.is_empty()),
            state,
            participants: self
                .participant_details(channel_id, conversation_id)
                .await?,
            messages: crate::reads::raw_payloads(rows),
            unsent: unsent
                .into_iter()
                .map(|(local_id, state, message, failure)| UnsentReply {
                    local_id,
                    state,
                    message,
                    failure,
                })
                .collect(),
            app_has_older: next_messages_cursor.is_some_and(|c| !c.is_empty()),
            older,
        }))
    }

    /// The app's cursor to the messages of a conversation older than the stored ones
    /// (`next_messages_cursor`), if it said it holds more.
    pub async fn messages_cursor(
        &self,
        channel_id: &str,
        conversation_id: &str,
    ) -> Result<Option<String>, StoreError> {
        let cursor: Option<Option<String>> = on_pool!(self.reads(), p => sqlx::query_scalar(
            "SELECT v.next_messages_cursor
               FROM conversations v JOIN channels c ON c.pk = v.channel_pk
              WHERE c.provider_channel_id = $1 AND v.conversation_id = $2",
        )
        .bind(channel_id)
        .bind(conversation_id)
        .fetch_optional(p).await)
        .map_err(self.query_failed("read a conversation's cursor at its app"))?;
        Ok(cursor.flatten().filter(|c| !c.is_empty()))
    }

    /// Moves a conversation's cursor at its app from `from` to `to` (`None`: the app holds no
    /// more), only if it is still `from`: of two readers fetching the same page, the one that
    /// comes second cannot undo what the first learned. `false` if it had moved on.
    pub async fn advance_messages_cursor(
        &self,
        channel_id: &str,
        conversation_id: &str,
        from: &str,
        to: Option<String>,
    ) -> Result<bool, StoreError> {
        let (channel_id, conversation_id, from) = (
            channel_id.to_owned(),
            conversation_id.to_owned(),
            from.to_owned(),
        );
        self.run_write("move a conversation's cursor at its app", move |conn, _| {
            Box::pin(async move {
                let changed = crate::backend::on_conn!(conn, c => sqlx::query(
                    "UPDATE conversations SET next_messages_cursor = $4
                      WHERE channel_pk = (SELECT pk FROM channels WHERE provider_channel_id = $1)
                        AND conversation_id = $2 AND next_messages_cursor = $3",
                )
                .bind(&channel_id)
                .bind(&conversation_id)
                .bind(&from)
                .bind(&to)
                .execute(c)
                .await
                .map(|r| r.rows_affected()))?;
                Ok((changed == 1, Vec::new()))
            })
        })
        .await
    }
}
