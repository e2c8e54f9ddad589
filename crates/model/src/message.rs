//! `POST /channels/messages/receive`: an incoming message for a conversation.

use schemars::JsonSchema;
use serde::Serialize;
use serde_json::Value;

use crate::limits::Limits;
use crate::problems::Problems;
use crate::reader::{ObjectReader, ProblemSink, as_bool, as_str, kind, text};
use crate::status::MessageStatus;
use crate::text::{
    AttachmentId, ChannelId, ConversationId, HttpUrl, MessageBody, MessageId, MimeType, Name,
    SenderId,
};
use crate::timestamp::Timestamp;

/// A validated incoming message. Serializes to the contract's wire form (with timestamps
/// normalised to RFC 3339 UTC and `attachments` always present), which is also what the API
/// answers with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(
    title = "ReceiveMessage",
    example = example_receive_message()
)]
pub struct ReceiveMessage {
    /// The message id chosen by the provider. Sending the same id again updates that message
    /// (a new status, an edited text) instead of adding another.
    pub id: MessageId,
    /// The channel's `provider_channel_id` (the id given to `channels_create`), not the `id`
    /// the API generated for the channel.
    pub channel_id: ChannelId,
    /// The provider's id of whoever sent the message; they join the conversation.
    pub sender_id: SenderId,
    /// The provider's conversation id. The first message of a new id starts that conversation.
    pub conversation_id: ConversationId,
    /// The message text (up to 64 KiB). May be empty only if there are attachments.
    pub message: MessageBody,
    /// Delivery status. It only moves forward: sent < delivered < read; failed may follow sent
    /// or delivered. An older status is accepted and ignored.
    pub status: MessageStatus,
    /// When the provider created the message: RFC 3339 such as `2022-03-01T07:58:35.449Z` (any
    /// offset is converted to UTC) or `YYYY-MM-DD HH:MM[:SS]` taken as UTC.
    pub created_at: Timestamp,
    /// Time after which the message can no longer be replied to (e.g. WhatsApp's 24 h window),
    /// in the same forms as `created_at`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_by: Option<Timestamp>,
    /// A URL that opens the conversation on the provider's side.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation_link: Option<HttpUrl>,
    /// Files attached to the message (at most 100).
    #[serde(default)]
    #[schemars(length(max = 100))]
    pub attachments: Vec<Attachment>,
}

/// A file attached to a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Attachment {
    /// The provider's attachment id.
    pub id: AttachmentId,
    /// MIME type, e.g. `image/png`.
    #[serde(rename = "type")]
    pub mime_type: MimeType,
    /// Where the file can be fetched (http or https).
    pub url: HttpUrl,
    /// The file name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<Name>,
    /// Size in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "size_schema")]
    pub size: Option<u64>,
    /// A preview image URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview_url: Option<HttpUrl>,
    /// Whether `url` expires (the receiver then refreshes it from the provider).
    #[serde(default)]
    pub link_expires: bool,
}

const MESSAGE_FIELDS: &[&str] = &[
    "id",
    "channel_id",
    "sender_id",
    "conversation_id",
    "message",
    "status",
    "created_at",
    "reply_by",
    "conversation_link",
    "attachments",
];

const ATTACHMENT_FIELDS: &[&str] = &[
    "id",
    "type",
    "url",
    "name",
    "size",
    "preview_url",
    "link_expires",
];

impl ReceiveMessage {
    /// Validates a receive payload, reporting every problem at once.
    pub fn parse(value: &Value, limits: &Limits) -> Result<Self, Problems> {
        let mut sink = ProblemSink::default();
        let message = Self::read(value, limits, &mut sink);
        sink.finish(message)
    }

    fn read(value: &Value, limits: &Limits, sink: &mut ProblemSink) -> Option<Self> {
        let r = ObjectReader::new(value, String::new(), MESSAGE_FIELDS, sink)?;
        let id = r.required("id", sink, text(MessageId::parse, limits));
        let channel_id = r.required("channel_id", sink, text(ChannelId::parse, limits));
        let sender_id = r.required("sender_id", sink, text(SenderId::parse, limits));
        let conversation_id =
            r.required("conversation_id", sink, text(ConversationId::parse, limits));
        let message = r.required("message", sink, text(MessageBody::parse, limits));
        let status = r.required("status", sink, |v| as_str(v).and_then(MessageStatus::parse));
        let created_at = r.required("created_at", sink, |v| as_str(v).and_then(Timestamp::parse));
        let reply_by = r.optional("reply_by", sink, |v| as_str(v).and_then(Timestamp::parse));
        let conversation_link = r.optional("conversation_link", sink, text(HttpUrl::parse, limits));
        let attachments = read_attachments(&r, limits, sink);

        if let (Some(body), Ok(attachments)) = (&message, &attachments)
            && body.is_empty()
            && attachments.is_empty()
        {
            sink.push(
                r.path_of("message"),
                "must not be empty unless the message has attachments",
            );
            return None;
        }

        Some(Self {
            id: id?,
            channel_id: channel_id?,
            sender_id: sender_id?,
            conversation_id: conversation_id?,
            message: message?,
            status: status?,
            created_at: created_at?,
            reply_by: reply_by.ok()?,
            conversation_link: conversation_link.ok()?,
            attachments: attachments.ok()?,
        })
    }
}

fn read_attachments(
    r: &ObjectReader<'_>,
    limits: &Limits,
    sink: &mut ProblemSink,
) -> Result<Vec<Attachment>, ()> {
    let path = r.path_of("attachments");
    let Some(value) = r.raw("attachments") else {
        return Ok(Vec::new());
    };
    let Some(items) = value.as_array() else {
        sink.push(path, format!("must be an array, got {}", kind(value)));
        return Err(());
    };
    if items.len() > limits.max_attachments {
        sink.push(
            path,
            format!(
                "has {} attachments; the limit is {}",
                items.len(),
                limits.max_attachments
            ),
        );
        return Err(());
    }
    let mut attachments = Vec::with_capacity(items.len());
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        match read_attachment(item, format!("{path}[{i}]"), limits, sink) {
            Some(a) => attachments.push(a),
            None => ok = false,
        }
    }
    if ok { Ok(attachments) } else { Err(()) }
}

fn read_attachment(
    value: &Value,
    path: String,
    limits: &Limits,
    sink: &mut ProblemSink,
) -> Option<Attachment> {
    let r = ObjectReader::new(value, path, ATTACHMENT_FIELDS, sink)?;
    let id = r.required("id", sink, text(AttachmentId::parse, limits));
    let mime_type = r.required("type", sink, text(MimeType::parse, limits));
    let url = r.required("url", sink, text(HttpUrl::parse, limits));
    let name = r.optional("name", sink, text(Name::parse, limits));
    let size = r.optional("size", sink, |v| {
        v.as_u64().ok_or_else(|| match v.as_f64() {
            Some(n) if n < 0.0 => format!("must not be negative, got {n}"),
            Some(n) => format!("must be a whole number of bytes, got {n}"),
            None => format!("must be a number of bytes, got {}", kind(v)),
        })
    });
    let preview_url = r.optional("preview_url", sink, text(HttpUrl::parse, limits));
    let link_expires = r.optional("link_expires", sink, as_bool);
    Some(Attachment {
        id: id?,
        mime_type: mime_type?,
        url: url?,
        name: name.ok()?,
        size: size.ok()?,
        preview_url: preview_url.ok()?,
        link_expires: link_expires.ok()?.unwrap_or(false),
    })
}

/// A plain non-negative integer: JSON Schema has no `uint64` format, and validators warn on it.
fn size_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"type": ["integer", "null"], "minimum": 0})
}

fn example_receive_message() -> Value {
    serde_json::json!({
        "id": "msg-wa-1714557630000",
        "channel_id": "whatsapp-main",
        "sender_id": "sender-wa-15551234567",
        "conversation_id": "conversation-15551234567",
        "message": "Hi! Is the blue model still in stock?",
        "status": "sent",
        "created_at": "2024-05-01T10:20:30.000Z",
        "attachments": []
    })
}
