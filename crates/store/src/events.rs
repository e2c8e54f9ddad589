//! Live updates: what changed in the store, for whoever shows it live (the inbox's stream).
//!
//! The writer publishes an event for each write that changed something, once its group is
//! committed. On SQLite the store is one process's, so events go straight to that process's
//! subscribers. On PostgreSQL several hubs share the database, so the writer sends them with
//! `NOTIFY` and every store that has subscribers (this one included) hears them on its own
//! `LISTEN` connection: a client of any hub sees what any hub wrote.
//!
//! Events say what changed, not the new state: a subscriber reads the state it shows. They are
//! not durable: a subscriber that fell behind, or a hub whose `LISTEN` connection dropped, gets
//! [`StoreEvent::Resync`] and rereads what it shows.

use serde::{Deserialize, Serialize};
use sqlx::postgres::{PgListener, PgPool, PgPoolOptions};
use tokio::sync::{Mutex, broadcast};

use crate::backend::Conn;

/// The PostgreSQL notification channel the hubs on one database talk on.
const CHANNEL: &str = "pdchannels_events";

/// How many events a subscriber may fall behind before it is told to resync.
const BACKLOG: usize = 1024;

/// PostgreSQL refuses a notification payload of 8000 bytes or more; events are sent in JSON
/// arrays kept under this size.
const MAX_PAYLOAD: usize = 7_000;

/// Something that changed in the store. Ids are the provider's (`provider_channel_id`, the
/// conversation and message ids the provider chose).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum StoreEvent {
    /// A message was stored, or a stored one changed (its status, its text).
    MessageStored {
        /// The channel's `provider_channel_id`.
        channel_id: String,
        /// The conversation it is in.
        conversation_id: String,
        /// The message.
        message_id: String,
        /// Whether the message is new (`false`: a stored one changed).
        new: bool,
    },
    /// A conversation and its messages were deleted.
    ConversationDeleted {
        /// The channel's `provider_channel_id`.
        channel_id: String,
        /// The conversation.
        conversation_id: String,
    },
    /// A provider app told who is in a conversation and how it stands (its participants'
    /// names and roles, its link, open or closed).
    ConversationDescribed {
        /// The channel's `provider_channel_id`.
        channel_id: String,
        /// The conversation.
        conversation_id: String,
    },
    /// What the inbox shows of it changed, its messages aside: a person read it, marked it
    /// unread, closed or reopened it; a reply of it failed.
    ConversationMarked {
        /// The channel's `provider_channel_id`.
        channel_id: String,
        /// The conversation.
        conversation_id: String,
    },
    /// A channel was added, or its name, avatar or settings changed.
    ChannelAdded {
        /// The channel's `provider_channel_id`.
        channel_id: String,
    },
    /// A channel and everything in it were deleted.
    ChannelDeleted {
        /// The channel's `provider_channel_id`.
        channel_id: String,
    },
    /// A call to a provider app was queued (the hubs' workers look for work at once).
    AppCallQueued {
        /// The app's name.
        app: String,
    },
    /// Events may have been missed (the subscriber fell behind, or the connection that hears
    /// other hubs dropped): reread whatever is shown.
    Resync,
}

/// A subscription to the store's events; see [`crate::Store::subscribe`].
pub struct Subscription {
    receiver: broadcast::Receiver<StoreEvent>,
}

impl Subscription {
    /// The next event, or `None` once the store is closed. A subscriber that fell more than
    /// 1024 events behind gets one [`StoreEvent::Resync`] for all it missed.
    pub async fn next(&mut self) -> Option<StoreEvent> {
        match self.receiver.recv().await {
            Ok(event) => Some(event),
            Err(broadcast::error::RecvError::Lagged(_)) => Some(StoreEvent::Resync),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }
}

/// The store's side of the events: where the writer publishes, where subscribers listen.
pub(crate) struct Events {
    local: broadcast::Sender<StoreEvent>,
    /// PostgreSQL: the task that forwards what `LISTEN` hears, started by the first subscriber
    /// and stopped when the store closes.
    listener: Mutex<Option<ListenerTask>>,
}

impl Default for Events {
    fn default() -> Self {
        Self {
            local: broadcast::channel(BACKLOG).0,
            listener: Mutex::new(None),
        }
    }
}

/// Aborts the listening task when the store goes away.
struct ListenerTask(tokio::task::JoinHandle<()>);

impl Drop for ListenerTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Events {
    /// A new subscription. On PostgreSQL the first one starts listening, and returns once the
    /// store listens, so no event committed after this returns is missed.
    pub(crate) async fn subscribe(
        &self,
        postgres: Option<&PgPool>,
    ) -> Result<Subscription, sqlx::Error> {
        let receiver = self.local.subscribe();
        if let Some(reads) = postgres {
            let mut listener = self.listener.lock().await;
            if listener.is_none() {
                // Its own connection, not one of the readers': it is held for as long as the
                // store lives, and the readers' pool waits for all its connections to close.
                let own = PgPoolOptions::new()
                    .max_connections(1)
                    .max_lifetime(None)
                    .idle_timeout(None)
                    .connect_lazy_with((*reads.connect_options()).clone());
                let mut listening = PgListener::connect_with(&own).await?;
                listening.listen(CHANNEL).await?;
                *listener = Some(ListenerTask(tokio::spawn(forward(
                    listening,
                    self.local.clone(),
                ))));
            }
        }
        Ok(Subscription { receiver })
    }

    /// Stops listening (the store is closing).
    pub(crate) async fn stop(&self) {
        self.listener.lock().await.take();
    }

    /// Publishes what a committed group changed: to this process's subscribers on SQLite; to
    /// every store listening on the database on PostgreSQL. Best effort: the writes are
    /// durable whatever happens here, and a failure is only logged.
    pub(crate) async fn publish(&self, conn: &mut Conn, events: Vec<StoreEvent>) {
        if events.is_empty() {
            return;
        }
        match conn {
            Conn::Sqlite(_) => {
                for event in events {
                    // No subscriber is not an error.
                    let _ = self.local.send(event);
                }
            }
            Conn::Postgres(c) => {
                let payloads = payloads(&events);
                let sent = sqlx::query("SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p")
                    .bind(CHANNEL)
                    .bind(&payloads)
                    .execute(c)
                    .await;
                if let Err(e) = sent {
                    tracing::warn!(error = %e, "sending live updates to the other hubs failed; their clients will miss these changes until they reload");
                }
            }
        }
    }
}

/// The events as JSON arrays, each under PostgreSQL's payload limit.
fn payloads(events: &[StoreEvent]) -> Vec<String> {
    let mut payloads = Vec::new();
    let mut current: Vec<String> = Vec::new();
    let mut size = 2;
    for event in events {
        let json = serde_json::to_string(event).expect("an event serializes");
        if !current.is_empty() && size + json.len() + 1 > MAX_PAYLOAD {
            payloads.push(format!("[{}]", current.join(",")));
            current.clear();
            size = 2;
        }
        size += json.len() + 1;
        current.push(json);
    }
    if !current.is_empty() {
        payloads.push(format!("[{}]", current.join(",")));
    }
    payloads
}

/// Forwards what the `LISTEN` connection hears to the local subscribers, until aborted. A
/// dropped connection is reconnected (by `PgListener`) and said as a [`StoreEvent::Resync`].
async fn forward(mut listener: PgListener, local: broadcast::Sender<StoreEvent>) {
    loop {
        match listener.try_recv().await {
            Ok(Some(notification)) => {
                match serde_json::from_str::<Vec<StoreEvent>>(notification.payload()) {
                    Ok(events) => {
                        for event in events {
                            let _ = local.send(event);
                        }
                    }
                    // Another version of pdchannels on the same database: what it changed is
                    // unknown here, so subscribers reread.
                    Err(_) => drop(local.send(StoreEvent::Resync)),
                }
            }
            Ok(None) => {
                tracing::warn!(
                    "the connection that hears other hubs' changes dropped; reconnecting"
                );
                let _ = local.send(StoreEvent::Resync);
            }
            Err(e) => {
                tracing::warn!(error = %e, "listening for other hubs' changes failed; retrying in a second");
                let _ = local.send(StoreEvent::Resync);
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_stay_under_postgresqls_limit_and_keep_every_event() {
        let events: Vec<StoreEvent> = (0..500)
            .map(|i| StoreEvent::MessageStored {
                channel_id: format!("channel-{i}"),
                conversation_id: "c".repeat(100),
                message_id: format!("m{i}"),
                new: true,
            })
            .collect();
        let payloads = payloads(&events);
        assert!(payloads.len() > 1);
        let mut back = Vec::new();
        for p in &payloads {
            assert!(p.len() < MAX_PAYLOAD, "{} bytes", p.len());
            back.extend(serde_json::from_str::<Vec<StoreEvent>>(p).unwrap());
        }
        assert_eq!(back, events);
    }

    #[test]
    fn events_are_tagged_json() {
        let json = serde_json::to_value(StoreEvent::ChannelDeleted {
            channel_id: "wa".into(),
        })
        .unwrap();
        assert_eq!(
            json,
            serde_json::json!({"event": "channel_deleted", "channel_id": "wa"})
        );
    }
}
