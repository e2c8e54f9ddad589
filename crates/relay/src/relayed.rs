//! The Channels operations over a remote Channels API: each call is written to the outbox first,
//! then the caller waits for the relay's answer up to the delivery timeout.

use std::time::Duration;

use pdchannels_client::{UpstreamRequest, is_dot_segment};
use pdchannels_model::{
    AddChannel, Channel, Channels, ChannelsError, DeleteChannel, DeleteConversation, Operation,
    Problems, ReceiveMessage, ReceiveOutcome, Received, Timestamp,
};
use pdchannels_store::{NewOutboxEntry, OutboxState};
use serde_json::Value;

use crate::queued_reason::{queued_reason, retrying_in};
use crate::relay::{Progress, Relay};

/// [`Channels`] over a remote Channels API, through the durable outbox.
#[derive(Debug, Clone)]
pub struct RelayedChannels {
    relay: Relay,
}

/// How a relayed call ended for its caller.
enum Answer {
    Delivered(Value),
    Queued { outbox_id: i64, reason: String },
}

impl RelayedChannels {
    /// Relays through `relay` (whose worker must run somewhere for calls to be delivered).
    pub fn new(relay: Relay) -> Self {
        Self { relay }
    }

    /// The base URL of the Channels API this relays to.
    pub fn upstream(&self) -> &str {
        self.relay.client().base_url()
    }

    /// Writes a receive to the outbox (durable when this returns) and tells the worker, without
    /// waiting for its delivery; answers its outbox id. The one place a receive's outbox entry is
    /// built, for every command that relays one. `idempotency_key`: set only by a caller that
    /// may hand in the very same call again (an import names each line), so that it is queued
    /// once; `None` makes every call its own.
    pub async fn enqueue_receive(
        &self,
        message: &ReceiveMessage,
        idempotency_key: Option<String>,
    ) -> Result<i64, ChannelsError> {
        self.enqueue(NewOutboxEntry {
            operation: Operation::ReceiveMessage,
            channel_key: message.channel_id.to_string(),
            conversation_key: Some(message.conversation_id.to_string()),
            request: to_value(&UpstreamRequest::receive_message(message)),
            idempotency_key,
        })
        .await
    }

    /// Writes a call to the outbox (durably) and wakes the worker.
    async fn enqueue(&self, entry: NewOutboxEntry) -> Result<i64, ChannelsError> {
        let id = self.relay.store().outbox().enqueue(entry).await?;
        self.relay.wake();
        Ok(id)
    }

    /// Enqueues (durably) and waits for the upstream's answer up to the delivery timeout.
    async fn call(&self, entry: NewOutboxEntry) -> Result<Answer, ChannelsError> {
        let id = self.enqueue(entry).await?;
        self.follow(id).await
    }

    /// Waits for call `id`'s answer up to the delivery timeout: delivered, rejected, or still
    /// queued with the true reason (what it is held behind, or why it failed and when it goes
    /// again).
    async fn follow(&self, id: i64) -> Result<Answer, ChannelsError> {
        let outbox = self.relay.store().outbox();
        // Declared before `progress`, so dropped after it, on every return: no waiter is left
        // behind for a call settled elsewhere.
        let _unwatch = Unwatch {
            relay: &self.relay,
            id,
        };
        let mut progress = self.relay.watch(id);
        // The same call may have been settled already (enqueued before, or just now).
        if let Ok(Some(stored)) = outbox.entry(id).await {
            match stored.state {
                OutboxState::Delivered => {
                    let data = stored
                        .response
                        .and_then(|r| serde_json::from_str(&r).ok())
                        .unwrap_or(Value::Null);
                    return Ok(Answer::Delivered(data));
                }
                OutboxState::Dead => {
                    return Err(ChannelsError::Rejected {
                        status: 0,
                        code: None,
                        message: stored.last_error.unwrap_or_default(),
                        outbox_id: id,
                        retry_command: self.relay.command_line().outbox("retry", id),
                    });
                }
                OutboxState::Pending => {}
            }
        }
        let deadline = tokio::time::Instant::now() + self.relay.config().deliver_timeout;
        // Why it failed, once a send of its own did: the freshest word on it.
        let mut failed: Option<String> = None;
        let queued = |failed: Option<String>| async move {
            let reason = match failed {
                Some(reason) => reason,
                None => queued_reason(&outbox, id).await,
            };
            Ok(Answer::Queued {
                outbox_id: id,
                reason,
            })
        };
        loop {
            let current = progress.borrow_and_update().clone();
            match current {
                Progress::Delivered(data) => return Ok(Answer::Delivered(data)),
                Progress::Rejected {
                    status,
                    code,
                    message,
                } => {
                    return Err(ChannelsError::Rejected {
                        status,
                        code,
                        message,
                        outbox_id: id,
                        retry_command: self.relay.command_line().outbox("retry", id),
                    });
                }
                Progress::Retrying {
                    reason: why,
                    next_attempt_at_ms,
                } => {
                    let retry_in = next_attempt_at_ms - Timestamp::now().unix_millis();
                    let retry = format!("{why}; {}", retrying_in(retry_in));
                    // No point waiting past the deadline for a retry that comes after it.
                    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                    if Duration::from_millis(u64::try_from(retry_in).unwrap_or(0)) >= left {
                        return queued(Some(retry)).await;
                    }
                    failed = Some(retry);
                }
                Progress::Waiting => {}
            }
            tokio::select! {
                changed = progress.changed() => {
                    if changed.is_err() {
                        return queued(failed).await;
                    }
                }
                () = tokio::time::sleep_until(deadline) => return queued(failed).await,
            }
        }
    }
}

impl RelayedChannels {
    /// A call accepted into the outbox, not delivered yet.
    fn queued(&self, outbox_id: i64, reason: String) -> ChannelsError {
        ChannelsError::Queued {
            outbox_id,
            reason,
            show_command: self.relay.command_line().outbox("show", outbox_id),
        }
    }
}

impl Channels for RelayedChannels {
    async fn add_channel(&self, request: AddChannel) -> Result<Channel, ChannelsError> {
        let entry = NewOutboxEntry {
            operation: Operation::AddChannel,
            channel_key: request.provider_channel_id.to_string(),
            conversation_key: None,
            request: to_value(&UpstreamRequest::add_channel(&request)),
            idempotency_key: None,
        };
        match self.call(entry).await? {
            Answer::Delivered(data) => Ok(Channel {
                id: data["id"].as_str().unwrap_or_default().to_owned(),
                name: request.name,
                avatar_url: request.avatar_url,
                provider_channel_id: request.provider_channel_id,
                created_at: data["created_at"]
                    .as_str()
                    .and_then(|t| Timestamp::parse(t).ok())
                    .unwrap_or_else(Timestamp::now),
                provider_type: request.provider_type,
                template_support: request.template_support,
            }),
            Answer::Queued { outbox_id, reason } => Err(self.queued(outbox_id, reason)),
        }
    }

    async fn receive_message(&self, message: ReceiveMessage) -> Result<Received, ChannelsError> {
        let id = self.enqueue_receive(&message, None).await?;
        let outcome = match self.follow(id).await? {
            Answer::Delivered(upstream) => ReceiveOutcome::Delivered { upstream },
            Answer::Queued { outbox_id, reason } => ReceiveOutcome::Queued { outbox_id, reason },
        };
        Ok(Received { message, outcome })
    }

    async fn delete_channel(&self, request: DeleteChannel) -> Result<(), ChannelsError> {
        refuse_dot_segment(Operation::DeleteChannel, "id", request.id.as_str())?;
        let entry = NewOutboxEntry {
            operation: Operation::DeleteChannel,
            channel_key: request.id.to_string(),
            conversation_key: None,
            request: to_value(&UpstreamRequest::delete_channel(&request.id)),
            idempotency_key: None,
        };
        match self.call(entry).await? {
            Answer::Delivered(_) => Ok(()),
            Answer::Queued { outbox_id, reason } => Err(self.queued(outbox_id, reason)),
        }
    }

    async fn delete_conversation(&self, request: DeleteConversation) -> Result<(), ChannelsError> {
        refuse_dot_segment(
            Operation::DeleteConversation,
            "channel_id",
            request.channel_id.as_str(),
        )?;
        refuse_dot_segment(
            Operation::DeleteConversation,
            "conversation_id",
            request.conversation_id.as_str(),
        )?;
        let entry = NewOutboxEntry {
            operation: Operation::DeleteConversation,
            channel_key: request.channel_id.to_string(),
            conversation_key: Some(request.conversation_id.to_string()),
            request: to_value(&UpstreamRequest::delete_conversation(
                &request.channel_id,
                &request.conversation_id,
            )),
            idempotency_key: None,
        };
        match self.call(entry).await? {
            Answer::Delivered(_) => Ok(()),
            Answer::Queued { outbox_id, reason } => Err(self.queued(outbox_id, reason)),
        }
    }
}

/// An id that goes into the URL path must survive as a segment: `.` and `..` do not (see
/// [`is_dot_segment`]), and sent anyway a delete would reach another resource. Refused before
/// anything is queued, naming the field.
fn refuse_dot_segment(operation: Operation, field: &str, id: &str) -> Result<(), ChannelsError> {
    if !is_dot_segment(id) {
        return Ok(());
    }
    Err(ChannelsError::Invalid {
        operation,
        problems: Problems::single(
            field,
            format!(
                "{id:?} cannot be relayed: it goes into the URL path, where every HTTP client \
                 resolves `.` and `..` away (even percent-encoded as %2E%2E), so the delete would \
                 reach another resource; nothing was queued. Delete it on the upstream with a \
                 client that sends the path as it is (curl --path-as-is)"
            ),
        ),
    })
}

fn to_value(request: &UpstreamRequest) -> Value {
    serde_json::to_value(request).expect("a request always serializes")
}

/// Forgets a call's waiters when its caller stops following it.
struct Unwatch<'a> {
    relay: &'a Relay,
    id: i64,
}

impl Drop for Unwatch<'_> {
    fn drop(&mut self) {
        self.relay.unwatch_if_unfollowed(self.id);
    }
}
