//! Channels: `POST /channels`, `DELETE /channels/{id}` and
//! `DELETE /channels/{channel-id}/conversations/{conversation-id}`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::limits::Limits;
use crate::problems::Problems;
use crate::reader::{ObjectReader, ProblemSink, as_bool, as_str, text};
use crate::text::{ChannelId, ConversationId, HttpUrl, Name};
use crate::timestamp::Timestamp;

/// Which icons a channel gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ProviderType {
    /// Facebook Messenger.
    Facebook,
    /// WhatsApp.
    Whatsapp,
    /// Anything else (the default).
    #[default]
    Other,
}

impl ProviderType {
    /// Parses the wire form; the error names the accepted values.
    pub fn parse(value: &str) -> Result<Self, String> {
        match value {
            "facebook" => Ok(Self::Facebook),
            "whatsapp" => Ok(Self::Whatsapp),
            "other" => Ok(Self::Other),
            _ => Err(format!(
                "must be one of `facebook`, `whatsapp`, `other`; got {value:?}"
            )),
        }
    }

    /// The wire form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Facebook => "facebook",
            Self::Whatsapp => "whatsapp",
            Self::Other => "other",
        }
    }
}

/// A validated request to add (register) a channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(
    title = "AddChannel",
    example = serde_json::json!({"name": "WhatsApp: Sales", "provider_channel_id": "whatsapp-main", "provider_type": "whatsapp"})
)]
pub struct AddChannel {
    /// The channel's name, shown to users.
    pub name: Name,
    /// Your own id for the channel. Every later call (receive, delete) uses this id.
    pub provider_channel_id: ChannelId,
    /// An icon URL (48x48 px PNG or JPG recommended).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avatar_url: Option<HttpUrl>,
    /// Whether the channel supports message templates (WhatsApp only).
    #[serde(default)]
    pub template_support: bool,
    /// Which icons the channel gets: `facebook`, `whatsapp` or `other` (the default).
    #[serde(default)]
    pub provider_type: ProviderType,
}

const ADD_CHANNEL_FIELDS: &[&str] = &[
    "name",
    "provider_channel_id",
    "avatar_url",
    "template_support",
    "provider_type",
];

impl AddChannel {
    /// Validates an add-channel payload, reporting every problem at once.
    pub fn parse(value: &Value, limits: &Limits) -> Result<Self, Problems> {
        let mut sink = ProblemSink::default();
        let parsed = (|| {
            let r = ObjectReader::new(value, String::new(), ADD_CHANNEL_FIELDS, &mut sink)?;
            let name = r.required("name", &mut sink, text(Name::parse, limits));
            let provider_channel_id = r.required(
                "provider_channel_id",
                &mut sink,
                text(ChannelId::parse, limits),
            );
            let avatar_url = r.optional("avatar_url", &mut sink, text(HttpUrl::parse, limits));
            let template_support = r.optional("template_support", &mut sink, as_bool);
            let provider_type = r.optional("provider_type", &mut sink, |v| {
                as_str(v).and_then(ProviderType::parse)
            });
            Some(Self {
                name: name?,
                provider_channel_id: provider_channel_id?,
                avatar_url: avatar_url.ok()?,
                template_support: template_support.ok()?.unwrap_or(false),
                provider_type: provider_type.ok()?.unwrap_or_default(),
            })
        })();
        sink.finish(parsed)
    }
}

/// A registered channel, as the API answers `POST /channels`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct Channel {
    /// The id the API generated for the channel (used internally; calls take
    /// `provider_channel_id`).
    pub id: String,
    /// The channel's name.
    pub name: Name,
    /// The icon URL; `null` when there is none (always present, as Pipedrive answers it).
    #[schemars(required, schema_with = "nullable_url")]
    pub avatar_url: Option<HttpUrl>,
    /// The provider's id of the channel.
    pub provider_channel_id: ChannelId,
    /// When the channel was first added.
    pub created_at: Timestamp,
    /// Which icons the channel gets.
    pub provider_type: ProviderType,
    /// Whether the channel supports message templates.
    pub template_support: bool,
}

/// A validated request to delete a channel and everything under it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteChannel {
    /// The channel's `provider_channel_id`.
    pub id: ChannelId,
}

impl DeleteChannel {
    /// Validates a delete-channel payload.
    pub fn parse(value: &Value, limits: &Limits) -> Result<Self, Problems> {
        let mut sink = ProblemSink::default();
        let parsed = ObjectReader::new(value, String::new(), &["id"], &mut sink).and_then(|r| {
            let id = r.required("id", &mut sink, text(ChannelId::parse, limits));
            Some(Self { id: id? })
        });
        sink.finish(parsed)
    }
}

/// A validated request to delete one conversation of a channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteConversation {
    /// The channel's `provider_channel_id`.
    pub channel_id: ChannelId,
    /// The provider's conversation id.
    pub conversation_id: ConversationId,
}

impl DeleteConversation {
    /// Validates a delete-conversation payload.
    pub fn parse(value: &Value, limits: &Limits) -> Result<Self, Problems> {
        let mut sink = ProblemSink::default();
        let parsed = ObjectReader::new(
            value,
            String::new(),
            &["channel_id", "conversation_id"],
            &mut sink,
        )
        .and_then(|r| {
            let channel_id = r.required("channel_id", &mut sink, text(ChannelId::parse, limits));
            let conversation_id = r.required(
                "conversation_id",
                &mut sink,
                text(ConversationId::parse, limits),
            );
            Some(Self {
                channel_id: channel_id?,
                conversation_id: conversation_id?,
            })
        });
        sink.finish(parsed)
    }
}

/// An `HttpUrl` or `null`. Spelled out because schemars drops the `null` of an `Option` it is
/// told is required (the field is always present, but may be null).
fn nullable_url(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let mut schema = <HttpUrl as JsonSchema>::json_schema(generator);
    schema.insert("type".to_owned(), serde_json::json!(["string", "null"]));
    schema
}
