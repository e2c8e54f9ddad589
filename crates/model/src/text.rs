//! Validated text newtypes: provider ids, message bodies, names, MIME types, URLs.
//!
//! Each type's only constructor is `parse`, so holding one means the value passed every rule.

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::Serialize;

use crate::limits::Limits;

/// Rejects control characters (they break logs, terminals and most providers' UIs).
fn check_no_control(s: &str) -> Result<(), String> {
    match s.char_indices().find(|(_, c)| c.is_control()) {
        Some((at, c)) => Err(format!(
            "must not contain control characters (found U+{:04X} at byte {at})",
            u32::from(c)
        )),
        None => Ok(()),
    }
}

fn check_chars(s: &str, min: usize, max: usize) -> Result<(), String> {
    let chars = s.chars().count();
    if chars < min {
        return Err("must not be empty".to_owned());
    }
    if chars > max {
        return Err(format!(
            "is {chars} characters long; the limit is {max} characters"
        ));
    }
    Ok(())
}

macro_rules! provider_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Checks `value` against the id rules: 1 to `limits.max_id_chars` characters, no
            /// control characters.
            pub fn parse(value: &str, limits: &Limits) -> Result<Self, String> {
                check_chars(value, 1, limits.max_id_chars)?;
                check_no_control(value)?;
                Ok(Self(value.to_owned()))
            }

            /// The id as it was given.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl JsonSchema for $name {
            fn inline_schema() -> bool {
                true
            }
            fn schema_name() -> Cow<'static, str> {
                stringify!($name).into()
            }
            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                let limits = Limits::default();
                json_schema!({
                    "type": "string",
                    "minLength": 1,
                    "maxLength": limits.max_id_chars,
                    "description": concat!($what, " (an opaque string chosen by the provider; no control characters)"),
                })
            }
        }
    };
}

provider_id!(
    /// The provider's id of a channel: the `provider_channel_id` given when the channel was
    /// added, never the `id` the API generated for it.
    ChannelId,
    "The channel's provider_channel_id"
);
provider_id!(
    /// The provider's id of a message; receiving the same id again updates that message.
    MessageId,
    "The provider's message id; the same id again updates that message"
);
provider_id!(
    /// The provider's id of a conversation.
    ConversationId,
    "The provider's conversation id; a new one starts a conversation"
);
provider_id!(
    /// The provider's id of the sender of a message.
    SenderId,
    "The provider's id of the sender, who joins the conversation"
);
provider_id!(
    /// The provider's id of an attachment.
    AttachmentId,
    "The provider's attachment id"
);

/// A message body: any UTF-8 text up to the size limit (empty only with attachments; that rule
/// belongs to the message, not the body).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct MessageBody(String);

impl MessageBody {
    /// Checks the size limit.
    pub fn parse(value: &str, limits: &Limits) -> Result<Self, String> {
        if value.len() > limits.max_message_bytes {
            return Err(format!(
                "is {} bytes long; the limit is {} bytes",
                value.len(),
                limits.max_message_bytes
            ));
        }
        Ok(Self(value.to_owned()))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the body has no text at all.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl JsonSchema for MessageBody {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> Cow<'static, str> {
        "MessageBody".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "description": "The message text, up to 64 KiB of UTF-8. May be empty only when the message has attachments.",
        })
    }
}

/// A human-readable name: a channel's name or an attachment's file name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Name(String);

impl Name {
    /// 1 to `limits.max_name_chars` characters, no control characters.
    pub fn parse(value: &str, limits: &Limits) -> Result<Self, String> {
        check_chars(value, 1, limits.max_name_chars)?;
        check_no_control(value)?;
        Ok(Self(value.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl JsonSchema for Name {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> Cow<'static, str> {
        "Name".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "minLength": 1,
            "maxLength": Limits::default().max_name_chars,
        })
    }
}

/// A MIME type such as `image/png` (parameters like `; charset=utf-8` are allowed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct MimeType(String);

impl MimeType {
    /// `type/subtype` made of token characters, optionally followed by `;` parameters.
    pub fn parse(value: &str, limits: &Limits) -> Result<Self, String> {
        check_chars(value, 1, limits.max_id_chars)?;
        check_no_control(value)?;
        let essence = value.split(';').next().unwrap_or_default().trim();
        let is_token = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "!#$&^_.+-".contains(c))
        };
        match essence.split_once('/') {
            Some((kind, sub)) if is_token(kind) && is_token(sub) => Ok(Self(value.to_owned())),
            _ => Err(format!(
                "must be a MIME type such as `image/png`, got {value:?}"
            )),
        }
    }

    /// The MIME type as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl JsonSchema for MimeType {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> Cow<'static, str> {
        "MimeType".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "description": "MIME type of the file, e.g. image/png",
            "examples": ["image/png"],
        })
    }
}

/// An absolute `http` or `https` URL, kept exactly as given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct HttpUrl(String);

impl HttpUrl {
    /// Absolute, `http` or `https`, with a host, at most `limits.max_url_chars` characters.
    pub fn parse(value: &str, limits: &Limits) -> Result<Self, String> {
        let chars = value.chars().count();
        if chars > limits.max_url_chars {
            return Err(format!(
                "is {chars} characters long; the limit is {} characters",
                limits.max_url_chars
            ));
        }
        let url = url::Url::parse(value)
            .map_err(|e| format!("must be an absolute http(s) URL ({e}), got {value:?}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!(
                "must use http or https, got the scheme `{}`",
                url.scheme()
            ));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err("must name a host".to_owned());
        }
        Ok(Self(value.to_owned()))
    }

    /// The URL as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl JsonSchema for HttpUrl {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> Cow<'static, str> {
        "HttpUrl".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "format": "uri",
            "maxLength": Limits::default().max_url_chars,
            "description": "An absolute http or https URL",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits::default()
    }

    #[test]
    fn id_accepts_one_to_255_characters() {
        assert!(MessageId::parse("a", &limits()).is_ok());
        assert!(MessageId::parse(&"é".repeat(255), &limits()).is_ok());
    }

    #[test]
    fn id_rejects_empty_too_long_and_control_characters() {
        assert_eq!(
            MessageId::parse("", &limits()).unwrap_err(),
            "must not be empty"
        );
        assert_eq!(
            MessageId::parse(&"x".repeat(256), &limits()).unwrap_err(),
            "is 256 characters long; the limit is 255 characters"
        );
        assert_eq!(
            MessageId::parse("a\nb", &limits()).unwrap_err(),
            "must not contain control characters (found U+000A at byte 1)"
        );
    }

    #[test]
    fn id_limit_is_configurable() {
        let small = Limits {
            max_id_chars: 3,
            ..Limits::default()
        };
        assert!(ChannelId::parse("abc", &small).is_ok());
        assert!(ChannelId::parse("abcd", &small).is_err());
    }

    #[test]
    fn body_is_limited_in_bytes_not_characters() {
        let max = limits().max_message_bytes;
        assert!(MessageBody::parse(&"a".repeat(max), &limits()).is_ok());
        assert_eq!(
            MessageBody::parse(&"a".repeat(max + 1), &limits()).unwrap_err(),
            "is 65537 bytes long; the limit is 65536 bytes"
        );
        // 'é' is two bytes: half as many fit.
        assert!(MessageBody::parse(&"é".repeat(max / 2 + 1), &limits()).is_err());
        assert!(MessageBody::parse("line one\nline two\ttabbed", &limits()).is_ok());
    }

    #[test]
    fn name_rules() {
        assert!(Name::parse("My Channel", &limits()).is_ok());
        assert!(Name::parse("", &limits()).is_err());
        assert!(Name::parse(&"n".repeat(1024), &limits()).is_ok());
        assert!(Name::parse(&"n".repeat(1025), &limits()).is_err());
    }

    #[test]
    fn mime_types() {
        for ok in [
            "image/png",
            "application/vnd.ms-excel",
            "text/plain; charset=utf-8",
        ] {
            assert!(MimeType::parse(ok, &limits()).is_ok(), "{ok}");
        }
        for bad in ["png", "image/", "/png", "image png/x", ""] {
            assert!(MimeType::parse(bad, &limits()).is_err(), "{bad}");
        }
    }

    #[test]
    fn urls_must_be_absolute_http_or_https() {
        assert!(HttpUrl::parse("https://example.com/a.png", &limits()).is_ok());
        assert!(HttpUrl::parse("http://127.0.0.1:8080/x", &limits()).is_ok());
        assert!(
            HttpUrl::parse("ftp://example.com/a", &limits())
                .unwrap_err()
                .contains("`ftp`")
        );
        assert!(
            HttpUrl::parse("/relative/path", &limits())
                .unwrap_err()
                .contains("absolute")
        );
        assert!(HttpUrl::parse("javascript:alert(1)", &limits()).is_err());
    }

    #[test]
    fn url_length_boundary() {
        let base = "https://example.com/";
        let at_limit = format!("{base}{}", "a".repeat(2048 - base.len()));
        assert!(HttpUrl::parse(&at_limit, &limits()).is_ok());
        let over = format!("{at_limit}a");
        assert_eq!(
            HttpUrl::parse(&over, &limits()).unwrap_err(),
            "is 2049 characters long; the limit is 2048 characters"
        );
    }

    #[test]
    fn url_is_kept_as_given() {
        let url = HttpUrl::parse("https://EXAMPLE.com", &limits()).unwrap();
        assert_eq!(url.as_str(), "https://EXAMPLE.com");
    }
}
