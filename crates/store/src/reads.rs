//! Looking at what is stored.

use serde::Serialize;
use sqlx::FromRow;

use crate::Store;

/// A stored message: the JSON answered for it, and when it was stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredMessage {
    /// The message exactly as the API answers it.
    pub message: serde_json::Value,
    /// When it was first stored, in milliseconds since the epoch.
    pub received_at_ms: i64,
    /// When it last changed, in milliseconds since the epoch.
    pub updated_at_ms: i64,
}

/// One conversation with its participants and messages (oldest first).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConversationView {
    /// The provider's conversation id.
    pub conversation_id: String,
    /// When its first message was stored.
    pub created_at_ms: i64,
    /// When a message of it was last stored or changed.
    pub last_activity_ms: i64,
    /// Everyone who sent a message in it, in the order they joined.
    pub participants: Vec<String>,
    /// Its messages in `created_at` order.
    pub messages: Vec<StoredMessage>,
}

#[derive(FromRow)]
struct MessageRow {
    payload: String,
    received_at_ms: i64,
    updated_at_ms: i64,
}

impl From<MessageRow> for StoredMessage {
    fn from(row: MessageRow) -> Self {
        Self {
            message: serde_json::from_str(&row.payload).unwrap_or(serde_json::Value::Null),
            received_at_ms: row.received_at_ms,
            updated_at_ms: row.updated_at_ms,
        }
    }
}

impl Store {
    /// The stored message with this id in this channel.
    pub async fn message(
        &self,
        channel_id: &str,
        message_id: &str,
    ) -> Result<Option<StoredMessage>, sqlx::Error> {
        let row: Option<MessageRow> = sqlx::query_as(
            "SELECT m.payload, m.received_at_ms, m.updated_at_ms
               FROM messages m JOIN channels c ON c.pk = m.channel_pk
              WHERE c.provider_channel_id = ?1 AND m.message_id = ?2",
        )
        .bind(channel_id)
        .bind(message_id)
        .fetch_optional(self.reads())
        .await?;
        Ok(row.map(StoredMessage::from))
    }

    /// One conversation of a channel, with all its participants and messages.
    pub async fn conversation(
        &self,
        channel_id: &str,
        conversation_id: &str,
    ) -> Result<Option<ConversationView>, sqlx::Error> {
        let head: Option<(i64, i64, i64)> = sqlx::query_as(
            "SELECT v.channel_pk, v.created_at_ms, v.last_activity_ms
               FROM conversations v JOIN channels c ON c.pk = v.channel_pk
              WHERE c.provider_channel_id = ?1 AND v.conversation_id = ?2",
        )
        .bind(channel_id)
        .bind(conversation_id)
        .fetch_optional(self.reads())
        .await?;
        let Some((channel_pk, created_at_ms, last_activity_ms)) = head else {
            return Ok(None);
        };
        let participants = sqlx::query_scalar(
            "SELECT participant_id FROM participants
              WHERE channel_pk = ?1 AND conversation_id = ?2
              ORDER BY rowid",
        )
        .bind(channel_pk)
        .bind(conversation_id)
        .fetch_all(self.reads())
        .await?;
        let messages: Vec<MessageRow> = sqlx::query_as(
            "SELECT payload, received_at_ms, updated_at_ms FROM messages
              WHERE channel_pk = ?1 AND conversation_id = ?2
              ORDER BY created_at_ms, pk",
        )
        .bind(channel_pk)
        .bind(conversation_id)
        .fetch_all(self.reads())
        .await?;
        Ok(Some(ConversationView {
            conversation_id: conversation_id.to_owned(),
            created_at_ms,
            last_activity_ms,
            participants,
            messages: messages.into_iter().map(StoredMessage::from).collect(),
        }))
    }

    /// How many messages are stored, in every channel.
    pub async fn count_messages(&self) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar("SELECT count(*) FROM messages")
            .fetch_one(self.reads())
            .await
    }

    /// How many conversations and participants a channel has: `None` if the channel is unknown.
    pub async fn channel_counts(
        &self,
        channel_id: &str,
    ) -> Result<Option<(i64, i64)>, sqlx::Error> {
        sqlx::query_as(
            "SELECT (SELECT count(*) FROM conversations v WHERE v.channel_pk = c.pk),
                    (SELECT count(*) FROM messages m WHERE m.channel_pk = c.pk)
               FROM channels c WHERE c.provider_channel_id = ?1",
        )
        .bind(channel_id)
        .fetch_optional(self.reads())
        .await
    }
}
