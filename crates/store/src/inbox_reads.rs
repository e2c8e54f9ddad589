//! The web inbox's read state, per person (the API token a session acts as): opening a
//! conversation marks it read through the customer's last message; "mark unread" undoes that;
//! closing and reopening set the conversation's `state`. A conversation is unread for a person
//! when the customer wrote after they last opened it, or when they marked it unread.

use crate::StoreEvent;
use crate::backend::{on_conn, on_pool};
use crate::{Store, StoreError};

/// The conversations the tab title's unread count looks at: the most recently active ones, so
/// that the count costs the same at 100 conversations and at 100,000.
pub const UNREAD_COUNT_WINDOW: i64 = 1_000;

/// The SQL of "unread for the person whose read row is `r`", over the conversation `v`: 1 or 0.
pub(crate) const UNREAD: &str = "CAST(CASE WHEN r.marked_unread \
     OR coalesce(v.last_incoming_ms, 0) > coalesce(r.read_through_ms, 0) THEN 1 ELSE 0 END AS BIGINT)";

/// The SQL of "the customer wrote last": 1 or 0.
pub(crate) const AWAITING: &str = "CAST(CASE WHEN coalesce(v.last_incoming_ms, 0) \
     > coalesce(v.last_outgoing_ms, 0) THEN 1 ELSE 0 END AS BIGINT)";

impl Store {
    /// Marks a conversation read for `token_id`, through the customer's last message. `false`
    /// if there is no such conversation. Writes only when something changes: opening a read
    /// conversation again costs a read.
    pub async fn mark_inbox_read(
        &self,
        token_id: &str,
        channel_id: &str,
        conversation_id: &str,
    ) -> Result<bool, StoreError> {
        self.set_read_state(token_id, channel_id, conversation_id, false)
            .await
    }

    /// Marks a conversation unread for `token_id` until they open it again. `false` if there is
    /// no such conversation.
    pub async fn mark_inbox_unread(
        &self,
        token_id: &str,
        channel_id: &str,
        conversation_id: &str,
    ) -> Result<bool, StoreError> {
        self.set_read_state(token_id, channel_id, conversation_id, true)
            .await
    }

    /// Whether `token_id` has the conversation unread (`None`: no such conversation). A read:
    /// opening a thread writes only when this says so.
    pub async fn inbox_unread(
        &self,
        token_id: &str,
        channel_id: &str,
        conversation_id: &str,
    ) -> Result<Option<bool>, StoreError> {
        let sql = format!(
            "SELECT {UNREAD}
               FROM conversations v JOIN channels c ON c.pk = v.channel_pk
               LEFT JOIN inbox_reads r
                 ON r.token_id = $1 AND r.channel_pk = v.channel_pk
                AND r.conversation_id = v.conversation_id
              WHERE c.provider_channel_id = $2 AND v.conversation_id = $3"
        );
        let unread: Option<i64> =
            on_pool!(self.reads(), p => sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(token_id)
            .bind(channel_id)
            .bind(conversation_id)
            .fetch_optional(p)
            .await)
            .map_err(self.query_failed("read whether a conversation is unread"))?;
        Ok(unread.map(|u| u == 1))
    }

    async fn set_read_state(
        &self,
        token_id: &str,
        channel_id: &str,
        conversation_id: &str,
        unread: bool,
    ) -> Result<bool, StoreError> {
        let (token_id, channel_id, conversation_id) = (
            token_id.to_owned(),
            channel_id.to_owned(),
            conversation_id.to_owned(),
        );
        let doing = if unread {
            "mark a conversation unread"
        } else {
            "mark a conversation read"
        };
        self.run_write(doing, move |conn, _now| {
            Box::pin(async move {
                // Upserted only when it changes what the person sees (the WHERE of DO UPDATE),
                // so a conversation opened again leaves no write behind.
                let changed = on_conn!(conn, c => sqlx::query(
                    "INSERT INTO inbox_reads (token_id, channel_pk, conversation_id,
                                              read_through_ms, marked_unread)
                     SELECT $1, v.channel_pk, v.conversation_id,
                            coalesce(v.last_incoming_ms, 0), $4
                       FROM conversations v JOIN channels c ON c.pk = v.channel_pk
                      WHERE c.provider_channel_id = $2 AND v.conversation_id = $3
                     ON CONFLICT (token_id, channel_pk, conversation_id) DO UPDATE
                        SET read_through_ms = CASE WHEN excluded.marked_unread
                                                   THEN inbox_reads.read_through_ms
                                                   ELSE excluded.read_through_ms END,
                            marked_unread = excluded.marked_unread
                      WHERE inbox_reads.marked_unread <> excluded.marked_unread
                         OR (NOT excluded.marked_unread
                             AND inbox_reads.read_through_ms <> excluded.read_through_ms)",
                )
                .bind(&token_id)
                .bind(&channel_id)
                .bind(&conversation_id)
                .bind(unread)
                .execute(c)
                .await
                .map(|r| r.rows_affected()))?;
                let exists = changed > 0
                    || on_conn!(conn, c => sqlx::query_scalar::<_, i64>(
                        "SELECT count(*) FROM conversations v JOIN channels c ON c.pk = v.channel_pk
                          WHERE c.provider_channel_id = $1 AND v.conversation_id = $2",
                    )
                    .bind(&channel_id)
                    .bind(&conversation_id)
                    .fetch_one(c)
                    .await)?
                        > 0;
                let events = if changed > 0 {
                    vec![StoreEvent::ConversationMarked {
                        channel_id,
                        conversation_id,
                    }]
                } else {
                    Vec::new()
                };
                Ok((exists, events))
            })
        })
        .await
    }

    /// Closes (`closed`) or reopens a conversation, as a person in the inbox did. `false` if
    /// there is no such conversation.
    pub async fn set_conversation_closed(
        &self,
        channel_id: &str,
        conversation_id: &str,
        closed: bool,
    ) -> Result<bool, StoreError> {
        let (channel_id, conversation_id) = (channel_id.to_owned(), conversation_id.to_owned());
        self.run_write("close or reopen a conversation", move |conn, _now| {
            Box::pin(async move {
                let state = if closed { "closed" } else { "open" };
                let found = on_conn!(conn, c => sqlx::query(
                    "UPDATE conversations SET state = $3
                      WHERE channel_pk = (SELECT pk FROM channels WHERE provider_channel_id = $1)
                        AND conversation_id = $2",
                )
                .bind(&channel_id)
                .bind(&conversation_id)
                .bind(state)
                .execute(c)
                .await
                .map(|r| r.rows_affected()))?
                    > 0;
                let events = if found {
                    vec![StoreEvent::ConversationMarked {
                        channel_id,
                        conversation_id,
                    }]
                } else {
                    Vec::new()
                };
                Ok((found, events))
            })
        })
        .await
    }

    /// How many of the 1,000 most recently active conversations are unread for `token_id` (the
    /// tab title's count); `reading` (`channel_id`, `conversation_id`), the one being opened,
    /// counts as read, whether or not its read marker is written yet.
    pub async fn inbox_unread_count(
        &self,
        token_id: &str,
        reading: Option<(&str, &str)>,
    ) -> Result<i64, StoreError> {
        let sql = format!(
            "SELECT CAST(coalesce(sum(CASE WHEN v.channel_pk = (SELECT pk FROM channels
                                                                WHERE provider_channel_id = $3)
                                            AND v.conversation_id = $4 THEN 0
                                           ELSE {UNREAD} END), 0) AS BIGINT)
               FROM (SELECT channel_pk, conversation_id, last_incoming_ms
                       FROM conversations
                      ORDER BY last_activity_ms DESC, channel_pk DESC, conversation_id DESC
                      LIMIT $2) v
               LEFT JOIN inbox_reads r
                 ON r.token_id = $1 AND r.channel_pk = v.channel_pk
                AND r.conversation_id = v.conversation_id"
        );
        let (channel_id, conversation_id) = reading.unzip();
        let count: i64 = on_pool!(self.reads(), p => sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(token_id)
            .bind(UNREAD_COUNT_WINDOW)
            .bind(channel_id)
            .bind(conversation_id)
            .fetch_one(p)
            .await)
        .map_err(self.query_failed("count the inbox's unread conversations"))?;
        Ok(count)
    }
}
