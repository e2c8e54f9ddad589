//! The Channels writes (add a channel, receive a message, delete a channel or conversation),
//! each applied by the writer inside its group's transaction, on either backend.

use std::collections::HashMap;

use pdchannels_model::{
    AddChannel, Channel, ChannelsError, ConversationId, DeleteChannel, DeleteConversation, HttpUrl,
    Limits, MessageStatus, ReceiveMessage, ReceiveOutcome, Received, Timestamp,
};

use super::{Answer, Write};
use crate::backend::{Conn, on_conn};

/// A domain failure (`Ok(Err(..))`) leaves the transaction usable; a database failure (`Err`)
/// aborts the whole group.
pub(super) type Step<T> = Result<Answer<T>, sqlx::Error>;

pub(super) async fn add_channel(conn: &mut Conn, request: AddChannel, now: i64) -> Step<Channel> {
    let new_id = uuid::Uuid::now_v7().to_string();
    let (id, created_at_ms): (String, i64) = on_conn!(conn, c => sqlx::query_as(
        "INSERT INTO channels (id, provider_channel_id, name, avatar_url, template_support,
                               provider_type, created_at_ms, updated_at_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7)
         ON CONFLICT (provider_channel_id) DO UPDATE SET
             name = excluded.name, avatar_url = excluded.avatar_url,
             template_support = excluded.template_support, provider_type = excluded.provider_type,
             updated_at_ms = excluded.updated_at_ms
         RETURNING id, created_at_ms",
    )
    .bind(&new_id)
    .bind(request.provider_channel_id.as_str())
    .bind(request.name.as_str())
    .bind(request.avatar_url.as_ref().map(HttpUrl::as_str))
    .bind(request.template_support)
    .bind(request.provider_type.as_str())
    .bind(now)
    .fetch_one(c)
    .await)?;
    Ok(Ok(Channel {
        id,
        name: request.name,
        avatar_url: request.avatar_url,
        provider_channel_id: request.provider_channel_id,
        created_at: Timestamp::from_unix_millis(created_at_ms).unwrap_or_else(Timestamp::now),
        provider_type: request.provider_type,
        template_support: request.template_support,
    }))
}

/// The stored message with the id being received.
#[derive(sqlx::FromRow)]
struct Existing {
    message_pk: i64,
    conversation_id: String,
    status: String,
    payload: String,
}

/// Inserts each message whose channel exists and whose id is new there, in one statement, in
/// order; says for each whether it was inserted. Nothing is written for the others (a known id,
/// an unknown channel), and a second message with an id already in `messages` is not inserted.
pub(crate) async fn insert_new_messages(
    conn: &mut Conn,
    messages: &[&ReceiveMessage],
    now: i64,
) -> Result<Vec<bool>, sqlx::Error> {
    // Each (channel, id) is sent once, at its first place: only the first can be inserted.
    let mut first_at: HashMap<(&str, &str), usize> = HashMap::with_capacity(messages.len());
    for (i, m) in messages.iter().enumerate() {
        first_at
            .entry((m.channel_id.as_str(), m.id.as_str()))
            .or_insert(i);
    }
    // The rows travel as one JSON array: one prepared statement for any group size.
    let rows: Vec<serde_json::Value> = messages
        .iter()
        .enumerate()
        .filter(|(i, m)| first_at[&(m.channel_id.as_str(), m.id.as_str())] == *i)
        .map(|(i, m)| {
            serde_json::json!({
                "position": i,
                "channel_id": m.channel_id.as_str(),
                "id": m.id.as_str(),
                "conversation_id": m.conversation_id.as_str(),
                "sender_id": m.sender_id.as_str(),
                "status": m.status.as_str(),
                "created_at_ms": m.created_at.unix_millis(),
                "payload": serde_json::to_string(m).expect("a message always serializes"),
            })
        })
        .collect();
    let rows = serde_json::Value::Array(rows).to_string();
    let inserted: Vec<(String, String)> =
        match conn {
            Conn::Sqlite(c) => sqlx::query_as(
                "INSERT INTO messages (channel_pk, message_id, conversation_id, sender_id, status,
                                       created_at_ms, received_at_ms, updated_at_ms, payload)
                 SELECT channel_pk, message_id, conversation_id, sender_id, status, created_at_ms,
                        $2, $2, payload
                   FROM (SELECT (SELECT pk FROM channels
                                  WHERE provider_channel_id = r.value ->> 'channel_id')
                                    AS channel_pk,
                                r.value ->> 'id' AS message_id,
                                r.value ->> 'conversation_id' AS conversation_id,
                                r.value ->> 'sender_id' AS sender_id,
                                r.value ->> 'status' AS status,
                                r.value ->> 'created_at_ms' AS created_at_ms,
                                r.value ->> 'payload' AS payload,
                                r.value ->> 'position' AS position
                           FROM json_each($1) r)
                  WHERE channel_pk IS NOT NULL
                  ORDER BY position
                 ON CONFLICT (channel_pk, message_id) DO NOTHING
                 RETURNING (SELECT provider_channel_id FROM channels WHERE pk = channel_pk),
                           message_id",
            )
            .bind(rows)
            .bind(now)
            .fetch_all(c)
            .await?,
            // In key order, so that hubs inserting into the same conversations take their locks
            // in one order (the trigger upserts the conversations) and cannot deadlock.
            Conn::Postgres(c) => sqlx::query_as(
                "INSERT INTO messages (channel_pk, message_id, conversation_id, sender_id, status,
                                       created_at_ms, received_at_ms, updated_at_ms, payload)
                 SELECT c.pk, r.id, r.conversation_id, r.sender_id, r.status, r.created_at_ms,
                        $2, $2, r.payload
                   FROM jsonb_to_recordset($1::jsonb)
                            AS r(position BIGINT, channel_id TEXT, id TEXT, conversation_id TEXT,
                                 sender_id TEXT, status TEXT, created_at_ms BIGINT, payload TEXT)
                   JOIN channels c ON c.provider_channel_id = r.channel_id
                  ORDER BY c.pk, r.conversation_id, r.position
                 ON CONFLICT (channel_pk, message_id) DO NOTHING
                 RETURNING (SELECT provider_channel_id FROM channels WHERE pk = channel_pk),
                           message_id",
            )
            .bind(rows)
            .bind(now)
            .fetch_all(c)
            .await?,
        };
    let mut flags = vec![false; messages.len()];
    for (channel_id, message_id) in &inserted {
        if let Some(&i) = first_at.get(&(channel_id.as_str(), message_id.as_str())) {
            flags[i] = true;
        }
    }
    Ok(flags)
}

pub(super) async fn receive(conn: &mut Conn, message: ReceiveMessage, now: i64) -> Step<Received> {
    if insert_new_messages(conn, &[&message], now).await?[0] {
        return Ok(Ok(Received {
            message,
            outcome: ReceiveOutcome::Created,
        }));
    }
    update_existing(conn, message, now).await
}

/// The message as a receive would store it over a stored one with `stored_status`, and its
/// payload: a late, older status is accepted but must not undo the newer one.
fn merge_with_stored(message: ReceiveMessage, stored_status: &str) -> (ReceiveMessage, String) {
    let stored_status = MessageStatus::parse(stored_status).expect("the schema checks statuses");
    let mut merged = message;
    merged.status = stored_status.merge(merged.status);
    let payload = serde_json::to_string(&merged).expect("a message always serializes");
    (merged, payload)
}

/// Answers at once, from one read, the receives (all already stored, none new) that would change
/// nothing: importing a file again costs one statement a group, not a transaction's worth of
/// per-row queries. Answers the others, to be applied in a transaction. A (channel, id) that
/// occurs twice in `receives` is left to the transaction, which applies them in order.
pub(super) async fn answer_unchanged(
    conn: &mut Conn,
    receives: Vec<Write>,
) -> Result<Vec<Write>, (Vec<Write>, sqlx::Error)> {
    let keys: Vec<(&str, &str)> = receives
        .iter()
        .filter_map(|w| match w {
            Write::Receive(m, _) => Some((m.channel_id.as_str(), m.id.as_str())),
            _ => None,
        })
        .collect();
    let mut occurrences: HashMap<(&str, &str), usize> = HashMap::with_capacity(keys.len());
    for key in &keys {
        *occurrences.entry(*key).or_default() += 1;
    }
    let keys_json = serde_json::to_string(&keys).expect("strings always serialize");
    let stored: Result<Vec<(i64, String, String, String)>, sqlx::Error> = match conn {
        Conn::Sqlite(c) => {
            sqlx::query_as(
                "SELECT CAST(r.key AS INTEGER), m.conversation_id, m.status, m.payload
                   FROM json_each($1) r
                   JOIN channels c ON c.provider_channel_id = r.value ->> 0
                   JOIN messages m ON m.channel_pk = c.pk AND m.message_id = r.value ->> 1",
            )
            .bind(keys_json)
            .fetch_all(c)
            .await
        }
        Conn::Postgres(c) => {
            sqlx::query_as(
                "SELECT r.position - 1, m.conversation_id, m.status, m.payload
                   FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS r(key, position)
                   JOIN channels c ON c.provider_channel_id = r.key ->> 0
                   JOIN messages m ON m.channel_pk = c.pk AND m.message_id = r.key ->> 1",
            )
            .bind(keys_json)
            .fetch_all(c)
            .await
        }
    };
    let stored = match stored {
        Ok(stored) => stored,
        Err(e) => return Err((receives, e)),
    };
    let mut unchanged_at: HashMap<usize, (String, String, String)> = stored
        .into_iter()
        .filter_map(|(i, conversation, status, payload)| {
            let i = usize::try_from(i).ok()?;
            (occurrences.get(keys.get(i)?) == Some(&1))
                .then_some((i, (conversation, status, payload)))
        })
        .collect();
    let mut rest = Vec::new();
    for (i, write) in receives.into_iter().enumerate() {
        match (write, unchanged_at.remove(&i)) {
            (Write::Receive(message, reply), Some((conversation, status, stored_payload)))
                if conversation == message.conversation_id.as_str() =>
            {
                let (merged, payload) = merge_with_stored(message, &status);
                if payload == stored_payload {
                    let _ = reply.send(Ok(Ok(Received {
                        message: merged,
                        outcome: ReceiveOutcome::Unchanged,
                    })));
                } else {
                    // Merging again over the same (or a newer) status changes nothing.
                    rest.push(Write::Receive(merged, reply));
                }
            }
            (write, _) => rest.push(write),
        }
    }
    Ok(rest)
}

/// Applies a receive for a message id that is already stored (or reports the unknown channel).
pub(super) async fn update_existing(
    conn: &mut Conn,
    message: ReceiveMessage,
    now: i64,
) -> Step<Received> {
    // On PostgreSQL another hub may change the row meanwhile: it is locked (`FOR UPDATE`) until
    // this group commits, so the status order is applied over the latest stored status. On
    // SQLite the group's transaction already holds the database's one write lock.
    let existing: Option<Existing> = match conn {
        Conn::Sqlite(c) => {
            sqlx::query_as(
                "SELECT m.pk AS message_pk, m.conversation_id, m.status, m.payload
                   FROM channels c
                   JOIN messages m ON m.channel_pk = c.pk AND m.message_id = $1
                  WHERE c.provider_channel_id = $2",
            )
            .bind(message.id.as_str())
            .bind(message.channel_id.as_str())
            .fetch_optional(c)
            .await?
        }
        Conn::Postgres(c) => {
            sqlx::query_as(
                "SELECT m.pk AS message_pk, m.conversation_id, m.status, m.payload
                   FROM channels c
                   JOIN messages m ON m.channel_pk = c.pk AND m.message_id = $1
                  WHERE c.provider_channel_id = $2
                    FOR UPDATE OF m",
            )
            .bind(message.id.as_str())
            .bind(message.channel_id.as_str())
            .fetch_optional(c)
            .await?
        }
    };
    let Some(Existing {
        message_pk,
        conversation_id: stored_conversation,
        status: stored_status,
        payload: stored_payload,
    }) = existing
    else {
        return stored_meanwhile_or_unknown_channel(conn, message, now).await;
    };

    if stored_conversation != message.conversation_id.as_str() {
        let stored = ConversationId::parse(&stored_conversation, &Limits::stored())
            .expect("stored ids were valid when stored");
        return Ok(Err(ChannelsError::MessageInOtherConversation {
            message_id: message.id,
            stored,
            requested: message.conversation_id,
        }));
    }

    let (merged, payload) = merge_with_stored(message, &stored_status);
    if payload == stored_payload {
        return Ok(Ok(Received {
            message: merged,
            outcome: ReceiveOutcome::Unchanged,
        }));
    }
    on_conn!(conn, c => sqlx::query(
        "UPDATE messages
            SET sender_id = $1, status = $2, created_at_ms = $3, updated_at_ms = $4, payload = $5
          WHERE pk = $6",
    )
    .bind(merged.sender_id.as_str())
    .bind(merged.status.as_str())
    .bind(merged.created_at.unix_millis())
    .bind(now)
    .bind(payload)
    .bind(message_pk)
    .execute(c)
    .await
    .map(drop))?;
    Ok(Ok(Received {
        message: merged,
        outcome: ReceiveOutcome::Updated,
    }))
}

/// A receive found no stored message to update. Within one writer that means the channel is
/// unknown; with several processes on one PostgreSQL database the message may also have been
/// deleted (its conversation or channel) since the insert was tried: then it is inserted now.
async fn stored_meanwhile_or_unknown_channel(
    conn: &mut Conn,
    message: ReceiveMessage,
    now: i64,
) -> Step<Received> {
    if conn.is_postgres() && insert_new_messages(conn, &[&message], now).await?[0] {
        return Ok(Ok(Received {
            message,
            outcome: ReceiveOutcome::Created,
        }));
    }
    Ok(Err(ChannelsError::ChannelNotFound {
        channel_id: message.channel_id,
    }))
}

pub(super) async fn delete_channel(conn: &mut Conn, request: &DeleteChannel) -> Step<()> {
    let deleted = on_conn!(conn, c => sqlx::query("DELETE FROM channels WHERE provider_channel_id = $1")
        .bind(request.id.as_str())
        .execute(c)
        .await
        .map(|done| done.rows_affected()))?;
    Ok(if deleted == 0 {
        Err(ChannelsError::ChannelNotFound {
            channel_id: request.id.clone(),
        })
    } else {
        Ok(())
    })
}

pub(super) async fn delete_conversation(conn: &mut Conn, request: &DeleteConversation) -> Step<()> {
    let channel_pk: Option<i64> = on_conn!(conn, c => sqlx::query_scalar(
        "SELECT pk FROM channels WHERE provider_channel_id = $1",
    )
    .bind(request.channel_id.as_str())
    .fetch_optional(c)
    .await)?;
    let Some(channel_pk) = channel_pk else {
        return Ok(Err(ChannelsError::ChannelNotFound {
            channel_id: request.channel_id.clone(),
        }));
    };
    let deleted = on_conn!(conn, c => sqlx::query(
        "DELETE FROM conversations WHERE channel_pk = $1 AND conversation_id = $2",
    )
    .bind(channel_pk)
    .bind(request.conversation_id.as_str())
    .execute(c)
    .await
    .map(|done| done.rows_affected()))?;
    Ok(if deleted == 0 {
        Err(ChannelsError::ConversationNotFound {
            channel_id: request.channel_id.clone(),
            conversation_id: request.conversation_id.clone(),
        })
    } else {
        Ok(())
    })
}
