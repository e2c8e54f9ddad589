//! Renewed attachment links (getMessageById): a stored message takes new attachments only if it
//! is still exactly as it was read, so a renewal never undoes an edit or a status received
//! meanwhile, nor brings back a message deleted meanwhile.

use crate::backend::{on_conn, on_pool};
use crate::{Store, StoreError};

impl Store {
    /// The stored payload of message `message_id` of channel `channel_id`, as stored (JSON text).
    pub async fn message_payload(
        &self,
        channel_id: &str,
        message_id: &str,
    ) -> Result<Option<String>, StoreError> {
        on_pool!(self.reads(), p => sqlx::query_scalar(
            "SELECT m.payload FROM messages m JOIN channels c ON c.pk = m.channel_pk
              WHERE c.provider_channel_id = $1 AND m.message_id = $2",
        )
        .bind(channel_id)
        .bind(message_id)
        .fetch_optional(p)
        .await)
        .map_err(self.query_failed("read a message"))
    }

    /// Replaces the payload of a message with `renewed` if it is still `read` (the payload it had
    /// when read). `false` if it changed or is gone meanwhile: nothing is written then.
    pub async fn renew_message_payload(
        &self,
        channel_id: &str,
        message_id: &str,
        read: String,
        renewed: String,
    ) -> Result<bool, StoreError> {
        let (channel_id, message_id) = (channel_id.to_owned(), message_id.to_owned());
        self.run_write("store a message's renewed links", move |conn, now| {
            Box::pin(async move {
                let changed = on_conn!(conn, c => sqlx::query(
                    "UPDATE messages SET payload = $4, updated_at_ms = $5
                      WHERE channel_pk = (SELECT pk FROM channels WHERE provider_channel_id = $1)
                        AND message_id = $2 AND payload = $3",
                )
                .bind(&channel_id)
                .bind(&message_id)
                .bind(&read)
                .bind(&renewed)
                .bind(now)
                .execute(c)
                .await
                .map(|r| r.rows_affected()))?;
                Ok((changed == 1, Vec::new()))
            })
        })
        .await
    }
}
