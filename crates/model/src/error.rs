//! What can go wrong in a Channels operation, and the error envelope the API answers with.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::problems::{FieldProblem, Problems};
use crate::text::{ChannelId, ConversationId, MessageId};

/// The four operations of the Channels API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// `POST /channels`
    AddChannel,
    /// `POST /channels/messages/receive`
    ReceiveMessage,
    /// `DELETE /channels/{id}`
    DeleteChannel,
    /// `DELETE /channels/{channel-id}/conversations/{conversation-id}`
    DeleteConversation,
}

impl Operation {
    /// Every operation, in the API's order.
    pub const ALL: [Operation; 4] = [
        Self::AddChannel,
        Self::ReceiveMessage,
        Self::DeleteChannel,
        Self::DeleteConversation,
    ];

    /// The operation's name in snake case (`add_channel`, `receive_message`, `delete_channel`,
    /// `delete_conversation`): how the outbox stores it and how JSON shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AddChannel => "add_channel",
            Self::ReceiveMessage => "receive_message",
            Self::DeleteChannel => "delete_channel",
            Self::DeleteConversation => "delete_conversation",
        }
    }

    /// The code Pipedrive answers an invalid payload of this operation with.
    pub fn invalid_payload_code(self) -> &'static str {
        match self {
            Self::ReceiveMessage => "INVALID_RECEIVE_MESSAGE_PAYLOAD",
            _ => "INVALID_BODY",
        }
    }

    fn noun(self) -> &'static str {
        match self {
            Self::AddChannel => "add-channel",
            Self::ReceiveMessage => "receive-message",
            Self::DeleteChannel => "delete-channel",
            Self::DeleteConversation => "delete-conversation",
        }
    }
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Serialized as [`Operation::as_str`], so the text has one definition.
impl Serialize for Operation {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// A name that is not one of the four operations.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown operation {0:?}: expected add_channel, receive_message, delete_channel or delete_conversation"
)]
pub struct UnknownOperation(pub String);

impl std::str::FromStr for Operation {
    type Err = UnknownOperation;

    /// Reads [`Operation::as_str`]'s text back.
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|operation| operation.as_str() == name)
            .ok_or_else(|| UnknownOperation(name.to_owned()))
    }
}

/// A Channels operation that could not be carried out. Nothing was changed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ChannelsError {
    /// The payload broke one or more rules; every problem is listed.
    #[error("The {} payload is invalid: {problems}", operation.noun())]
    Invalid {
        /// Which operation was asked for.
        operation: Operation,
        /// Every problem found.
        problems: Problems,
    },
    /// No channel has this `provider_channel_id`.
    #[error("Channel not found.")]
    ChannelNotFound {
        /// The id that was looked up.
        channel_id: ChannelId,
    },
    /// The channel has no conversation with this id.
    #[error("Conversation not found.")]
    ConversationNotFound {
        /// The channel that was searched.
        channel_id: ChannelId,
        /// The conversation id that was looked up.
        conversation_id: ConversationId,
    },
    /// The message id is already stored in another conversation; a message cannot move.
    #[error(
        "Message `{message_id}` already belongs to conversation `{stored}`; it cannot move to `{requested}`."
    )]
    MessageInOtherConversation {
        /// The message.
        message_id: MessageId,
        /// Where the message is stored.
        stored: ConversationId,
        /// Where the request wanted it.
        requested: ConversationId,
    },
    /// The store failed; the operation may be retried.
    #[error("The message store is unavailable: {0}")]
    Unavailable(String),
    /// The upstream Channels API rejected the call for good (a 4xx retrying cannot fix); it is
    /// kept in the outbox as dead.
    #[error("The upstream Channels API rejected it: {message}")]
    Rejected {
        /// The upstream's HTTP status (0 when it never answered, e.g. a deprecated API).
        status: u16,
        /// The upstream's code, when it gave one.
        code: Option<String>,
        /// The upstream's error, quoted.
        message: String,
        /// The outbox id.
        outbox_id: i64,
        /// The command that sends it again, ready to paste (`pdchannels [--db PATH] outbox
        /// retry ID`).
        retry_command: String,
    },
    /// Relayed: durably in the outbox, not delivered yet (the relay keeps trying).
    #[error("Accepted into the outbox (id {outbox_id}), not delivered yet: {reason}")]
    Queued {
        /// The outbox id.
        outbox_id: i64,
        /// Why it is not delivered yet.
        reason: String,
        /// The command that shows its progress, ready to paste (`pdchannels [--db PATH] outbox
        /// show ID`).
        show_command: String,
    },
}

impl ChannelsError {
    /// The HTTP status this error is answered with.
    pub fn http_status(&self) -> u16 {
        match self {
            Self::Invalid { .. } => 400,
            Self::ChannelNotFound { .. } | Self::ConversationNotFound { .. } => 404,
            Self::MessageInOtherConversation { .. } => 409,
            Self::Unavailable(_) => 503,
            // The upstream refusing *our* credentials is not the caller's 401/403: passed on,
            // it would tell them their own token is wrong. A gateway error, naming the upstream's
            // status in its text, says whose it is.
            Self::Rejected {
                status: 401 | 403, ..
            } => 502,
            Self::Rejected { status, .. } if (400..500).contains(status) => *status,
            Self::Rejected { .. } => 502,
            Self::Queued { .. } => 202,
        }
    }

    /// The machine-readable code (`additional_data.code`).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Invalid { operation, .. } => operation.invalid_payload_code(),
            Self::ChannelNotFound { .. } | Self::ConversationNotFound { .. } => "NOT_FOUND",
            Self::MessageInOtherConversation { .. } => "MESSAGE_CONVERSATION_CONFLICT",
            Self::Unavailable(_) => "SERVICE_UNAVAILABLE",
            Self::Rejected { .. } => "UPSTREAM_REJECTED",
            Self::Queued { .. } => "QUEUED",
        }
    }

    /// What the caller should do about it, in one sentence.
    pub fn remedy(&self) -> String {
        match self {
            Self::Invalid { .. } => {
                "Fix the fields listed and send the request again; nothing was stored.".to_owned()
            }
            Self::ChannelNotFound { channel_id } => format!(
                "No channel has provider_channel_id `{channel_id}`. Create it first (channels_create / POST /channels) \
                 with that provider_channel_id, or check that you sent the provider_channel_id and not the channel's generated id."
            ),
            Self::ConversationNotFound {
                channel_id,
                conversation_id,
            } => format!(
                "Channel `{channel_id}` has no conversation `{conversation_id}`; it may have been deleted already."
            ),
            Self::MessageInOtherConversation { .. } => {
                "Use a new message id for a message in another conversation; nothing was changed."
                    .to_owned()
            }
            Self::Unavailable(_) => "Retry shortly; nothing was stored.".to_owned(),
            Self::Rejected {
                retry_command,
                code,
                ..
            } => format!(
                "Fix the cause{}, then `{retry_command}`; it is kept as dead in the outbox.",
                code.as_deref()
                    .map(|c| format!(" (upstream code {c})"))
                    .unwrap_or_default()
            ),
            Self::Queued { show_command, .. } => format!(
                "Nothing to do: the relay delivers it when the upstream accepts it. See `{show_command}`."
            ),
        }
    }

    /// The Pipedrive-style error envelope for this error.
    pub fn body(&self) -> ErrorBody {
        let (error, error_info, errors) = match self {
            Self::Invalid {
                operation,
                problems,
            } => (
                format!(
                    "The {} payload is invalid ({} problem{}).",
                    operation.noun(),
                    problems.as_slice().len(),
                    if problems.as_slice().len() == 1 {
                        ""
                    } else {
                        "s"
                    }
                ),
                problems.to_string(),
                Some(problems.as_slice().to_vec()),
            ),
            other => (other.to_string(), other.remedy(), None),
        };
        ErrorBody {
            success: false,
            error,
            error_info,
            data: None,
            additional_data: ErrorDetails {
                code: self.code().to_owned(),
                errors,
            },
        }
    }
}

/// The error envelope: `{"success": false, "error", "error_info", "data": null,
/// "additional_data": {"code", "errors"}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ErrorBody {
    /// Always `false`.
    pub success: bool,
    /// What went wrong.
    pub error: String,
    /// The details: the field problems, or what to do.
    pub error_info: String,
    /// Always null on errors.
    #[schemars(with = "()")]
    pub data: Option<serde_json::Value>,
    /// The machine-readable code and the field problems.
    pub additional_data: ErrorDetails,
}

/// `additional_data` of an error envelope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ErrorDetails {
    /// E.g. `INVALID_RECEIVE_MESSAGE_PAYLOAD`, `NOT_FOUND`.
    pub code: String,
    /// Every field problem, when the payload was invalid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldProblem>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejected(status: u16) -> ChannelsError {
        ChannelsError::Rejected {
            status,
            code: None,
            message: format!("upstream answered {status}: refused"),
            outbox_id: 7,
            retry_command: "pdchannels outbox retry 7".to_owned(),
        }
    }

    #[test]
    fn an_upstream_refusing_our_credentials_is_a_gateway_error_naming_its_status() {
        for status in [401, 403] {
            let error = rejected(status);
            assert_eq!(error.http_status(), 502, "{status}");
            assert_eq!(error.code(), "UPSTREAM_REJECTED");
            assert!(error.body().error.contains(&status.to_string()), "{status}");
        }
        assert_eq!(rejected(404).http_status(), 404, "the caller's own mistake");
        assert_eq!(rejected(0).http_status(), 502);
    }
}
