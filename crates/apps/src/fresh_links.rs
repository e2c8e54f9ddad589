//! getMessageById: an attachment whose link expires (`link_expires`) gets a fresh link from the
//! channel's app when someone asks for the message, at most once per message every 5 minutes
//! (in memory, per hub). The stored message takes the app's attachments; if the app cannot
//! answer, the stored message is shown with a warning rather than not at all.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pdchannels_model::manifest::Endpoint;
use pdchannels_model::{Limits, ReceiveMessage};
use pdchannels_store::Store;
use serde_json::Value;

use crate::call::{Answer, AppClient};

/// The least time between two asks about one message.
const ASK_EVERY: Duration = Duration::from_secs(5 * 60);

/// An attachment's fields in the contract.
const ATTACHMENT_FIELDS: &[&str] = &[
    "id",
    "type",
    "url",
    "name",
    "size",
    "preview_url",
    "link_expires",
];

/// The most messages remembered at once (the bound on this map).
const MAX_REMEMBERED: usize = 100_000;

/// When each message's links were last asked for. Clones share one memory.
#[derive(Clone, Default)]
pub struct FreshLinks {
    asked: Arc<Mutex<HashMap<(String, String), Instant>>>,
}

/// What asking for fresh links did to a message.
#[derive(Debug, Clone, PartialEq)]
pub enum Refreshed {
    /// No link of it expires, it was asked about lately, or its app has no getMessageById: the
    /// stored message as it is.
    AsStored(Value),
    /// The message with the app's fresh attachments, stored.
    Fresh(Value),
    /// The app could not give fresh links: the stored message, and why.
    Stale(Value, String),
}

impl FreshLinks {
    /// An empty memory.
    pub fn new() -> Self {
        Self::default()
    }

    /// `stored` (a message of `channel_id`), with fresh links from its app if any expire.
    pub async fn refresh(
        &self,
        store: &Store,
        client: &AppClient,
        limits: &Limits,
        channel_id: &str,
        stored: Value,
    ) -> Refreshed {
        let expires = stored["attachments"]
            .as_array()
            .is_some_and(|a| a.iter().any(|a| a["link_expires"] == Value::Bool(true)));
        let Some(message_id) = stored["id"].as_str().map(str::to_owned) else {
            return Refreshed::AsStored(stored);
        };
        if !expires || !self.time_to_ask(channel_id, &message_id) {
            return Refreshed::AsStored(stored);
        }
        match ask(store, client, limits, channel_id, &message_id, &stored).await {
            Ok(Some(fresh)) => Refreshed::Fresh(fresh),
            Ok(None) => Refreshed::AsStored(stored),
            Err(why) => Refreshed::Stale(stored, why),
        }
    }

    /// Whether the message may be asked about now; if so, it counts as asked.
    fn time_to_ask(&self, channel_id: &str, message_id: &str) -> bool {
        let mut asked = self
            .asked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = (channel_id.to_owned(), message_id.to_owned());
        if asked.get(&key).is_some_and(|at| at.elapsed() < ASK_EVERY) {
            return false;
        }
        if asked.len() >= MAX_REMEMBERED {
            asked.retain(|_, at| at.elapsed() < ASK_EVERY);
            if asked.len() >= MAX_REMEMBERED {
                // Every entry is recent: a flood of distinct messages. Asking again early is
                // harmless; growing without bound is not.
                asked.clear();
            }
        }
        asked.insert(key, Instant::now());
        true
    }
}

/// Asks the app; `Ok(None)` when there is no app or no getMessageById to ask.
async fn ask(
    store: &Store,
    client: &AppClient,
    limits: &Limits,
    channel_id: &str,
    message_id: &str,
    stored: &Value,
) -> Result<Option<Value>, String> {
    let text = |e: pdchannels_store::StoreError| e.to_string();
    let Some(app) = crate::call::app_of_channel(store, channel_id)
        .await
        .map_err(text)?
    else {
        return Ok(None);
    };
    if !app.manifest.has(Endpoint::GetMessageById) {
        return Ok(None);
    }
    crate::call::callable(&app)?;
    // The payload as it is now: the renewal is written only if it is still this.
    let Some(read) = store
        .message_payload(channel_id, message_id)
        .await
        .map_err(text)?
    else {
        return Ok(None);
    };
    let conversation_id = stored["conversation_id"].as_str().unwrap_or_default();
    let Some(called) = client
        .get(
            &app,
            Endpoint::GetMessageById,
            &[
                ("providerChannelId", channel_id),
                ("sourceConversationId", conversation_id),
                ("sourceMessageId", message_id),
            ],
            &[],
        )
        .await
    else {
        return Ok(None);
    };
    let answer = match called.answer {
        Answer::Data(answer) => answer,
        Answer::Refused(r) => {
            crate::call::remember_refusal(store, &app.name, &r)
                .await
                .map_err(text)?;
            return Err(format!("the app refused: {}", r.describe()));
        }
        Answer::Failed(why) => return Err(why),
    };
    // Only the attachments are taken: the message itself is the one stored, whatever else the
    // app's answer says (another id, another conversation).
    let Some(attachments) = answer.get("attachments").and_then(Value::as_array) else {
        return Err("the app's answer has no attachments list".to_owned());
    };
    // Read leniently: fields the contract does not name are left out, not refused.
    let attachments: Vec<Value> = attachments
        .iter()
        .map(|a| match a {
            Value::Object(fields) => Value::Object(
                fields
                    .iter()
                    .filter(|(k, _)| ATTACHMENT_FIELDS.contains(&k.as_str()))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            ),
            other => other.clone(),
        })
        .collect();
    let mut fresh: Value = serde_json::from_str(&read).map_err(|e| e.to_string())?;
    fresh["attachments"] = Value::Array(attachments);
    let message = ReceiveMessage::parse(&fresh, limits)
        .map_err(|problems| format!("the app's attachments are not valid: {problems}"))?;
    let renewed = serde_json::to_value(&message).map_err(|e| e.to_string())?;
    let written = store
        .renew_message_payload(channel_id, message_id, read, renewed.to_string())
        .await
        .map_err(text)?;
    if written {
        Ok(Some(renewed))
    } else {
        Err("the message changed or was deleted while its links were renewed".to_owned())
    }
}
