//! What apps say about a sender when asked (getSenderById): a name and an avatar for the
//! participant across the channel's conversations, and when it was last asked, so that a
//! sender is asked once (or, when its avatar expires, at most daily).

use crate::backend::{on_conn, on_pool};
use crate::{Store, StoreError};

/// What an app answered about a sender.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SenderDetails {
    /// Its name, when the app said one.
    pub name: Option<String>,
    /// Its picture, when the app said one.
    pub avatar_url: Option<String>,
}

impl Store {
    /// When the hub last asked the channel's app about `sender_id` (ms since the epoch).
    pub async fn sender_fetched_at(
        &self,
        channel_id: &str,
        sender_id: &str,
    ) -> Result<Option<i64>, StoreError> {
        on_pool!(self.reads(), p => sqlx::query_scalar(
            "SELECT max(p.sender_fetched_at_ms)
               FROM participants p JOIN channels ch ON ch.pk = p.channel_pk
              WHERE ch.provider_channel_id = $1 AND p.participant_id = $2",
        )
        .bind(channel_id)
        .bind(sender_id)
        .fetch_one(p)
        .await)
        .map_err(self.query_failed("read when a sender was last asked about"))
    }

    /// Records that the app was asked about `sender_id`, with what it said (nothing said keeps
    /// the name and avatar stored), in every conversation of the channel it is in.
    pub async fn record_sender(
        &self,
        channel_id: &str,
        sender_id: &str,
        details: SenderDetails,
    ) -> Result<(), StoreError> {
        let (channel_id, sender_id) = (channel_id.to_owned(), sender_id.to_owned());
        self.run_write(
            "record what a provider app said about a sender",
            move |conn, now| {
                Box::pin(async move {
                    on_conn!(conn, c => sqlx::query(
                    "UPDATE participants
                        SET name = coalesce($3, name), avatar_url = coalesce($4, avatar_url),
                            sender_fetched_at_ms = $5
                      WHERE channel_pk = (SELECT pk FROM channels WHERE provider_channel_id = $1)
                        AND participant_id = $2",
                )
                .bind(&channel_id)
                .bind(&sender_id)
                .bind(&details.name)
                .bind(&details.avatar_url)
                .bind(now)
                .execute(c)
                .await
                .map(|r| r.rows_affected()))?;
                    Ok(((), Vec::new()))
                })
            },
        )
        .await
    }
}
