//! Sending a reply through the channel's app (postMessage): stored first, then handed to the
//! app once; the app's `data.id` becomes the message's id. One rule for every face (the HTTP
//! route, the CLI; the MCP tool next).

use pdchannels_store::{SendRefused, Store, StoreError};
use serde::Serialize;
use serde_json::Value;

use crate::call::{Answer, AppClient};

/// The longest reply: the receive contract's message limit.
const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// A reply to send.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The channel's `provider_channel_id`.
    pub channel_id: String,
    /// The conversation.
    pub conversation_id: String,
    /// The text (ignored for a retry: the stored text goes again).
    pub message: String,
    /// The template it was written from, if any (allowed after `reply_by`).
    pub template_id: Option<String>,
    /// Send again the failed reply with this local id.
    pub retry: Option<String>,
}

/// A reply the app took.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Sent {
    /// The app's id for it: the message's id from now on.
    pub id: String,
    /// Ours.
    pub local_id: String,
    /// `sent`: later receives with `id` move it to delivered, read or failed.
    pub status: &'static str,
    /// Who it was sent as.
    pub sender_id: String,
    /// Who it was sent to.
    pub recipient_ids: Vec<String>,
}

/// Why a reply was not sent, said for the person or agent who sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// The request is wrong; nothing was stored. (`field`, what to do.)
    Invalid(&'static str, String),
    /// No such channel or conversation.
    NotFound(String),
    /// It cannot be sent as things are (no app, suspended, `reply_by` passed).
    Refused(String),
    /// The app did not take it: stored as failed; retry with its local id.
    Failed {
        /// The reply's local id, for the retry.
        local_id: String,
        /// Why.
        reason: String,
    },
    /// The store failed.
    Store(String),
}

impl From<StoreError> for SendError {
    fn from(e: StoreError) -> Self {
        SendError::Store(e.to_string())
    }
}

/// Stores the reply, hands it to the app once, and records the answer. It runs to the end
/// even if the caller goes away (a client that disconnects mid-request): a reply stored but
/// never settled would stay `sending`, neither sent nor retryable.
pub async fn send_reply(
    store: &Store,
    client: &AppClient,
    reply: Reply,
) -> Result<Sent, SendError> {
    if reply.channel_id.contains('\0') || reply.conversation_id.contains('\0') {
        return Err(SendError::NotFound(
            "no channel or conversation id holds a NUL character".to_owned(),
        ));
    }
    if reply.message.contains('\0') {
        return Err(SendError::Invalid(
            "message",
            "contains a NUL character, which a message cannot hold".to_owned(),
        ));
    }
    let (store, client) = (store.clone(), client.clone());
    tokio::spawn(async move { send_to_the_end(&store, &client, reply).await })
        .await
        .unwrap_or_else(|e| Err(SendError::Store(format!("sending stopped: {e}"))))
}

async fn send_to_the_end(
    store: &Store,
    client: &AppClient,
    reply: Reply,
) -> Result<Sent, SendError> {
    if reply.retry.is_none() {
        if reply.message.trim().is_empty() {
            return Err(SendError::Invalid(
                "message",
                "the reply is empty: write the text to send".to_owned(),
            ));
        }
        if reply.message.len() > MAX_MESSAGE_BYTES {
            return Err(SendError::Invalid(
                "message",
                format!(
                    "the reply is {} bytes; the limit is 64 KiB",
                    reply.message.len()
                ),
            ));
        }
    }
    let outgoing = match store
        .start_outgoing(
            &reply.channel_id,
            &reply.conversation_id,
            &reply.message,
            reply.template_id.as_deref(),
            reply.retry.as_deref(),
        )
        .await?
    {
        Ok(outgoing) => outgoing,
        Err(refused) => return Err(refusal(&reply, &refused)),
    };
    let Some(app) = store.app_credentials(&outgoing.app).await? else {
        let reason = format!(
            "the app {} is gone or its manifest no longer parses",
            outgoing.app
        );
        store
            .finish_outgoing(&outgoing, Err(reason.clone()))
            .await?;
        return Err(SendError::Failed {
            local_id: outgoing.local_id,
            reason,
        });
    };
    // An app that refuses the hub's credentials, or asked it to wait, is not called: the reply
    // is kept failed with why, to be sent again once it may.
    let answer = match crate::call::callable(&app) {
        Err(why) => Err(why),
        Ok(()) => post(store, client, &app, &outgoing).await,
    };
    store.finish_outgoing(&outgoing, answer.clone()).await?;
    match answer {
        Ok(id) => Ok(Sent {
            id,
            local_id: outgoing.local_id,
            status: "sent",
            sender_id: outgoing.sender_id,
            recipient_ids: outgoing.recipient_ids,
        }),
        Err(reason) => Err(SendError::Failed {
            local_id: outgoing.local_id,
            reason,
        }),
    }
}

/// postMessage, once: the app's id for the message, or why there is none.
async fn post(
    store: &Store,
    client: &AppClient,
    app: &pdchannels_store::AppCredentials,
    outgoing: &pdchannels_store::Outgoing,
) -> Result<String, String> {
    match client.post_message(app, outgoing).await {
        None => Err("the app's manifest has no postMessage".to_owned()),
        Some(called) => match called.answer {
            Answer::Data(data) => match data.get("id") {
                Some(Value::String(id)) if !id.is_empty() => Ok(id.clone()),
                Some(Value::Number(n)) => Ok(n.to_string()),
                _ => Err(format!(
                    "the app answered {} without a message id (data.id)",
                    called.status.unwrap_or(200)
                )),
            },
            Answer::Refused(r) => {
                if let Err(e) = crate::call::remember_refusal(store, &app.name, &r).await {
                    tracing::warn!(error = %e, app = %app.name, "recording an app's refusal failed");
                }
                Err(format!("the app refused the reply ({})", r.describe()))
            }
            // Maybe it reached the app: not sent again on its own (postMessage is not
            // idempotent); the person decides.
            Answer::Failed(why) => Err(format!("{why}; the app may or may not have sent it")),
        },
    }
}

fn refusal(reply: &Reply, refused: &SendRefused) -> SendError {
    let (channel, conversation) = (&reply.channel_id, &reply.conversation_id);
    match refused {
        SendRefused::NoChannel => SendError::NotFound(format!("no channel has the id {channel:?}")),
        SendRefused::NoConversation => SendError::NotFound(format!(
            "the channel {channel:?} has no conversation {conversation:?}"
        )),
        SendRefused::NoApp => SendError::Refused(format!(
            "the channel {channel:?} belongs to no provider app, so nothing can deliver a reply; add the app (`pdchannels app add`) and link the channel to it (`pdchannels channels link {channel} APP`)"
        )),
        SendRefused::Suspended => SendError::Refused(format!(
            "the app says the account behind the channel {channel:?} is suspended; nothing can be sent until it is restored"
        )),
        &SendRefused::ReplyWindowClosed(by) => SendError::Refused(format!(
            "the time to reply to this conversation ended at {} (its reply_by): the provider accepts only templates now; send one with template_id",
            pdchannels_model::Timestamp::from_unix_millis(by)
                .map_or_else(|| by.to_string(), |t| t.to_string())
        )),
        SendRefused::NothingToRetry => SendError::Invalid(
            "retry",
            "no failed reply of this conversation has that local id (a sent one is not sent twice)"
                .to_owned(),
        ),
    }
}
