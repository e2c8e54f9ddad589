//! The web inbox's list: every channel's conversations together (or one channel's), newest
//! activity first, each with what a row shows: the customer, the channel, the last message.

use serde::Serialize;

use crate::backend::on_pool;
use crate::{Store, StoreError};

/// One row of the inbox's list.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InboxRow {
    /// The channel's `provider_channel_id`.
    pub channel_id: String,
    /// The channel's name.
    pub channel_name: String,
    /// The conversation's id.
    pub conversation_id: String,
    /// The customer: the first `end_user` participant's name, or its id (or the first
    /// participant's, before the app said who is who).
    pub customer: Option<String>,
    /// `open` or `closed`, if the app said.
    pub state: Option<String>,
    /// When a message of it was last stored or changed (ms since the epoch).
    pub last_activity_ms: i64,
    /// Its last message as stored (the receive payload), if any.
    pub last_message: Option<serde_json::Value>,
    /// Where the list goes on after this row: `(last_activity_ms, channel row, conversation)`.
    #[serde(skip)]
    pub position: (i64, i64, String),
}

type Row = (
    String,
    String,
    i64,
    String,
    i64,
    Option<String>,
    Option<String>,
    Option<String>,
);

impl Store {
    /// Up to `limit` conversations after `after` (a row's `position`), newest activity first,
    /// of `channel_id` or of every channel.
    pub async fn inbox_rows(
        &self,
        channel_id: Option<&str>,
        after: Option<(i64, i64, String)>,
        limit: u32,
    ) -> Result<Vec<InboxRow>, StoreError> {
        let (after_ms, after_pk, after_id) = after.unwrap_or((i64::MAX, i64::MAX, String::new()));
        let rows: Vec<Row> = on_pool!(self.reads(), p => sqlx::query_as(
            "SELECT c.provider_channel_id, c.name, c.pk, v.conversation_id, v.last_activity_ms,
                    v.state,
                    (SELECT coalesce(p.name, p.participant_id) FROM participants p
                      WHERE p.channel_pk = v.channel_pk AND p.conversation_id = v.conversation_id
                      ORDER BY CASE WHEN p.role = 'end_user' THEN 0
                                    WHEN p.role IS NULL THEN 1 ELSE 2 END, p.joined_at_ms
                      LIMIT 1),
                    (SELECT m.payload FROM messages m
                      WHERE m.channel_pk = v.channel_pk AND m.conversation_id = v.conversation_id
                      ORDER BY m.created_at_ms DESC, m.pk DESC LIMIT 1)
               FROM conversations v JOIN channels c ON c.pk = v.channel_pk
              WHERE ($1 IS NULL OR c.provider_channel_id = $1)
                AND (v.last_activity_ms < $2
                     OR (v.last_activity_ms = $2 AND (v.channel_pk < $3
                         OR (v.channel_pk = $3 AND v.conversation_id < $4))))
              ORDER BY v.last_activity_ms DESC, v.channel_pk DESC, v.conversation_id DESC
              LIMIT $5",
        )
        .bind(channel_id)
        .bind(after_ms)
        .bind(after_pk)
        .bind(&after_id)
        .bind(i64::from(limit))
        .fetch_all(p)
        .await)
        .map_err(self.query_failed("list the inbox's conversations"))?;
        Ok(rows
            .into_iter()
            .map(
                |(
                    channel_id,
                    channel_name,
                    channel_pk,
                    conversation_id,
                    last_activity_ms,
                    state,
                    customer,
                    payload,
                )| {
                    InboxRow {
                        position: (last_activity_ms, channel_pk, conversation_id.clone()),
                        channel_id,
                        channel_name,
                        conversation_id,
                        customer,
                        state,
                        last_activity_ms,
                        last_message: payload.and_then(|p| serde_json::from_str(&p).ok()),
                    }
                },
            )
            .collect())
    }
}
