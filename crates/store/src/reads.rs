//! Looking at what is stored.

use pdchannels_model::{ChannelId, HttpUrl, Limits, Name, ProviderType, Timestamp};
use serde::Serialize;
use sqlx::FromRow;

use crate::backend::{Pool, on_pool};
use crate::{Store, StoreError};

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
    ) -> Result<Option<StoredMessage>, StoreError> {
        let failed = self.query_failed("read a message");
        let row: Option<MessageRow> = on_pool!(self.reads(), p => sqlx::query_as(
            "SELECT m.payload, m.received_at_ms, m.updated_at_ms
               FROM messages m JOIN channels c ON c.pk = m.channel_pk
              WHERE c.provider_channel_id = $1 AND m.message_id = $2",
        )
        .bind(channel_id)
        .bind(message_id)
        .fetch_optional(p).await)
        .map_err(&failed)?;
        Ok(row.map(StoredMessage::from))
    }

    /// One conversation of a channel, with all its participants and messages.
    pub async fn conversation(
        &self,
        channel_id: &str,
        conversation_id: &str,
    ) -> Result<Option<ConversationView>, StoreError> {
        let failed = self.query_failed("read a conversation");
        let head: Option<(i64, i64, i64)> = on_pool!(self.reads(), p => sqlx::query_as(
            "SELECT v.channel_pk, v.created_at_ms, v.last_activity_ms
               FROM conversations v JOIN channels c ON c.pk = v.channel_pk
              WHERE c.provider_channel_id = $1 AND v.conversation_id = $2",
        )
        .bind(channel_id)
        .bind(conversation_id)
        .fetch_optional(p).await)
        .map_err(&failed)?;
        let Some((channel_pk, created_at_ms, last_activity_ms)) = head else {
            return Ok(None);
        };
        let participants = self.participants(channel_pk, conversation_id).await?;
        let messages: Vec<MessageRow> = on_pool!(self.reads(), p => sqlx::query_as(
            "SELECT payload, received_at_ms, updated_at_ms FROM messages
              WHERE channel_pk = $1 AND conversation_id = $2
              ORDER BY created_at_ms, pk",
        )
        .bind(channel_pk)
        .bind(conversation_id)
        .fetch_all(p).await)
        .map_err(&failed)?;
        Ok(Some(ConversationView {
            conversation_id: conversation_id.to_owned(),
            created_at_ms,
            last_activity_ms,
            participants,
            messages: messages.into_iter().map(StoredMessage::from).collect(),
        }))
    }

    /// How many messages are stored, in every channel.
    pub async fn count_messages(&self) -> Result<i64, StoreError> {
        let failed = self.query_failed("count the messages");
        on_pool!(self.reads(), p => sqlx::query_scalar("SELECT count(*) FROM messages")
            .fetch_one(p).await)
        .map_err(failed)
    }

    /// How many conversations and participants a channel has: `None` if the channel is unknown.
    pub async fn channel_counts(&self, channel_id: &str) -> Result<Option<(i64, i64)>, StoreError> {
        let failed = self.query_failed("count a channel's conversations and messages");
        on_pool!(self.reads(), p => sqlx::query_as(
            "SELECT (SELECT count(*) FROM conversations v WHERE v.channel_pk = c.pk),
                    (SELECT count(*) FROM messages m WHERE m.channel_pk = c.pk)
               FROM channels c WHERE c.provider_channel_id = $1",
        )
        .bind(channel_id)
        .fetch_optional(p).await)
        .map_err(failed)
    }
}

/// A channel as listed by the read API: the same shape `POST /channels` answers.
pub type ChannelRecord = pdchannels_model::Channel;

/// One conversation in a channel's list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct ConversationSummary {
    /// The provider's conversation id.
    pub conversation_id: String,
    /// When its first message was stored.
    pub created_at: Timestamp,
    /// When a message of it was last stored or changed.
    pub last_activity_at: Timestamp,
    /// How many messages it holds.
    pub message_count: i64,
}

/// A conversation with its participants, and one page of its messages.
#[derive(Debug, Clone, Serialize)]
pub struct ConversationPage {
    /// The provider's conversation id.
    pub conversation_id: String,
    /// When its first message was stored.
    pub created_at: Timestamp,
    /// When a message of it was last stored or changed.
    pub last_activity_at: Timestamp,
    /// Everyone who sent a message in it, in the order they joined.
    pub participants: Vec<String>,
    /// Messages in `created_at` order, exactly as the API answered them (stored JSON, not
    /// re-encoded).
    pub messages: Vec<Box<serde_json::value::RawValue>>,
    /// Where the next page starts, if there is one: `(created_at_ms, row)` of the last message.
    #[serde(skip)]
    pub next: Option<(i64, i64)>,
}

/// Stored messages as they are (their JSON not re-encoded), from `(created_at_ms, row, payload)`.
pub(crate) fn raw_payloads(rows: Vec<(i64, i64, String)>) -> Vec<Box<serde_json::value::RawValue>> {
    rows.into_iter()
        .filter_map(|(_, _, payload)| serde_json::value::RawValue::from_string(payload).ok())
        .collect()
}

fn timestamp(ms: i64) -> Timestamp {
    Timestamp::from_unix_millis(ms).unwrap_or_else(Timestamp::now)
}

#[derive(FromRow)]
struct ChannelRow {
    pk: i64,
    id: String,
    provider_channel_id: String,
    name: String,
    avatar_url: Option<String>,
    template_support: bool,
    provider_type: String,
    created_at_ms: i64,
}

impl ChannelRow {
    /// Values were validated when stored; they are read back without size limits.
    fn into_record(self) -> Option<ChannelRecord> {
        let limits = Limits::stored();
        Some(ChannelRecord {
            id: self.id,
            name: Name::parse(&self.name, &limits).ok()?,
            avatar_url: self
                .avatar_url
                .and_then(|u| HttpUrl::parse(&u, &limits).ok()),
            provider_channel_id: ChannelId::parse(&self.provider_channel_id, &limits).ok()?,
            created_at: timestamp(self.created_at_ms),
            provider_type: ProviderType::parse(&self.provider_type).ok()?,
            template_support: self.template_support,
        })
    }
}

impl Store {
    /// Up to `limit` channels after the one with row `after`, oldest first; each with its row.
    pub async fn list_channels(
        &self,
        after: Option<i64>,
        limit: u32,
    ) -> Result<Vec<(i64, ChannelRecord)>, StoreError> {
        let failed = self.query_failed("list the channels");
        let rows: Vec<ChannelRow> = on_pool!(self.reads(), p => sqlx::query_as(
            "SELECT pk, id, provider_channel_id, name, avatar_url, template_support, provider_type,
                    created_at_ms
               FROM channels WHERE pk > $1 ORDER BY pk LIMIT $2",
        )
        .bind(after.unwrap_or(0))
        .bind(i64::from(limit))
        .fetch_all(p).await)
        .map_err(&failed)?;
        Ok(rows
            .into_iter()
            .filter_map(|r| {
                let pk = r.pk;
                r.into_record().map(|c| (pk, c))
            })
            .collect())
    }

    /// Up to `limit` conversations of a channel, newest activity first, after the cursor
    /// `(last_activity_ms, conversation_id)`. `None` if the channel is unknown.
    pub async fn list_conversations(
        &self,
        channel_id: &str,
        after: Option<(i64, String)>,
        limit: u32,
    ) -> Result<Option<Vec<ConversationSummary>>, StoreError> {
        let failed = self.query_failed("list a channel's conversations");
        let Some(channel_pk) = self.channel_pk(channel_id).await? else {
            return Ok(None);
        };
        let (after_ms, after_id) = after.unwrap_or((i64::MAX, String::new()));
        let rows: Vec<(String, i64, i64, i64)> = on_pool!(self.reads(), p => sqlx::query_as(
            "SELECT v.conversation_id, v.created_at_ms, v.last_activity_ms, v.message_count
               FROM conversations v
              WHERE v.channel_pk = $1
                AND (v.last_activity_ms < $2 OR (v.last_activity_ms = $2 AND v.conversation_id < $3)
                     OR $4)
              ORDER BY v.last_activity_ms DESC, v.conversation_id DESC
              LIMIT $5",
        )
        .bind(channel_pk)
        .bind(after_ms)
        .bind(&after_id)
        // The first page has no cursor: everything qualifies.
        .bind(after_id.is_empty() && after_ms == i64::MAX)
        .bind(i64::from(limit))
        .fetch_all(p).await)
        .map_err(&failed)?;
        Ok(Some(
            rows.into_iter()
                .map(
                    |(conversation_id, created, last, count)| ConversationSummary {
                        conversation_id,
                        created_at: timestamp(created),
                        last_activity_at: timestamp(last),
                        message_count: count,
                    },
                )
                .collect(),
        ))
    }

    /// A conversation with its participants and up to `limit` messages after the cursor
    /// `(created_at_ms, row)`. `None` if the channel or conversation is unknown.
    pub async fn conversation_page(
        &self,
        channel_id: &str,
        conversation_id: &str,
        after: Option<(i64, i64)>,
        limit: u32,
    ) -> Result<Option<ConversationPage>, StoreError> {
        let failed = self.query_failed("read a page of a conversation");
        let head: Option<(i64, i64, i64)> = on_pool!(self.reads(), p => sqlx::query_as(
            "SELECT v.channel_pk, v.created_at_ms, v.last_activity_ms
               FROM conversations v JOIN channels c ON c.pk = v.channel_pk
              WHERE c.provider_channel_id = $1 AND v.conversation_id = $2",
        )
        .bind(channel_id)
        .bind(conversation_id)
        .fetch_optional(p).await)
        .map_err(&failed)?;
        let Some((channel_pk, created_at_ms, last_activity_ms)) = head else {
            return Ok(None);
        };
        let participants = self.participants(channel_pk, conversation_id).await?;
        let (after_ms, after_pk) = after.unwrap_or((i64::MIN, i64::MIN));
        // One row more than asked tells whether another page follows.
        let mut rows: Vec<(i64, i64, String)> = on_pool!(self.reads(), p => sqlx::query_as(
            "SELECT created_at_ms, pk, payload FROM messages
              WHERE channel_pk = $1 AND conversation_id = $2
                AND (created_at_ms > $3 OR (created_at_ms = $3 AND pk > $4))
              ORDER BY created_at_ms, pk
              LIMIT $5",
        )
        .bind(channel_pk)
        .bind(conversation_id)
        .bind(after_ms)
        .bind(after_pk)
        .bind(i64::from(limit) + 1)
        .fetch_all(p).await)
        .map_err(&failed)?;
        let next = if rows.len() > limit as usize {
            rows.truncate(limit as usize);
            rows.last().map(|(ms, pk, _)| (*ms, *pk))
        } else {
            None
        };
        Ok(Some(ConversationPage {
            conversation_id: conversation_id.to_owned(),
            created_at: timestamp(created_at_ms),
            last_activity_at: timestamp(last_activity_ms),
            participants,
            messages: crate::reads::raw_payloads(rows),
            next,
        }))
    }

    /// How many channels there are (also a cheap check that the database answers).
    pub async fn count_channels(&self) -> Result<i64, StoreError> {
        let failed = self.query_failed("count the channels");
        on_pool!(self.reads(), p => sqlx::query_scalar("SELECT count(*) FROM channels")
            .fetch_one(p).await)
        .map_err(failed)
    }

    /// A conversation's participants in the order they joined: SQLite's rowid is that order,
    /// PostgreSQL keeps it in `seq`.
    async fn participants(
        &self,
        channel_pk: i64,
        conversation_id: &str,
    ) -> Result<Vec<String>, StoreError> {
        let failed = self.query_failed("read a conversation's participants");
        match self.reads() {
            Pool::Sqlite(p) => sqlx::query_scalar(
                "SELECT participant_id FROM participants
                  WHERE channel_pk = $1 AND conversation_id = $2 ORDER BY rowid",
            )
            .bind(channel_pk)
            .bind(conversation_id)
            .fetch_all(p)
            .await
            .map_err(failed),
            Pool::Postgres(p) => sqlx::query_scalar(
                "SELECT participant_id FROM participants
                  WHERE channel_pk = $1 AND conversation_id = $2 ORDER BY seq",
            )
            .bind(channel_pk)
            .bind(conversation_id)
            .fetch_all(p)
            .await
            .map_err(failed),
        }
    }

    async fn channel_pk(&self, channel_id: &str) -> Result<Option<i64>, StoreError> {
        let failed = self.query_failed("find a channel");
        on_pool!(self.reads(), p => sqlx::query_scalar("SELECT pk FROM channels WHERE provider_channel_id = $1")
            .bind(channel_id)
            .fetch_optional(p).await)
            .map_err(failed)
    }
}
