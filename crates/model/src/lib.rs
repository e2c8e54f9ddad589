//! Wire and domain types of Pipedrive's Channels API contract, as pdchannels keeps it alive.
//!
//! # Layout
//!
//! - [`message`]: `ReceiveMessage` and `Attachment`, the payload of `POST /channels/messages/receive`.
//! - [`channel`]: adding and deleting channels and conversations.
//! - [`text`], [`timestamp`], [`status`]: validated newtypes; each has `parse` as its only
//!   constructor.
//! - [`problems`]: every validation problem of a payload, with its JSON path.
//! - [`error`]: `ChannelsError` and the Pipedrive-style error envelope.
//! - [`response`]: the success envelopes.
//! - [`channels`]: the `Channels` trait that the MCP tools, HTTP routes and CLI adapt.
//! - [`limits`]: the size limits, configurable.
//! - [`manifest`]: a provider app's messaging manifest, the URLs the hub calls back.
//!
//! No I/O happens here.
//!
//! ```
//! use pdchannels_model::{Limits, ReceiveMessage};
//!
//! let payload = serde_json::json!({
//!     "id": "m1", "channel_id": "c1", "sender_id": "s1", "conversation_id": "t1",
//!     "message": "hello", "status": "sent", "created_at": "2022-06-30 12:34",
//! });
//! let message = ReceiveMessage::parse(&payload, &Limits::default()).unwrap();
//! assert_eq!(message.created_at.to_string(), "2022-06-30T12:34:00.000Z");
//! ```

#![warn(missing_docs)]

pub mod channel;
pub mod channels;
pub mod error;
pub mod limits;
pub mod manifest;
pub mod message;
pub mod problems;
mod reader;
pub mod response;
pub mod status;
pub mod text;
pub mod timestamp;

pub use channel::{AddChannel, Channel, DeleteChannel, DeleteConversation, ProviderType};
pub use channels::{Channels, ReceiveOutcome, Received};
pub use error::{ChannelsError, ErrorBody, ErrorDetails, Operation};
pub use limits::Limits;
pub use message::{Attachment, ReceiveMessage};
pub use problems::{FieldProblem, Problems};
/// What a JSON value is ("an array", "a string"...), for error messages in any face.
pub use reader::kind as json_kind;
pub use response::{ApiResponse, Queued, QueuedResponse, Success};
pub use status::MessageStatus;
pub use text::{
    AttachmentId, ChannelId, ConversationId, HttpUrl, MessageBody, MessageId, MimeType, Name,
    SenderId,
};
pub use timestamp::Timestamp;
