//! The size limits every request is checked against.
//!
//! The Channels API never documented limits (contract §1.7), so these are ours. Each one has a
//! clear error naming the field, the limit and the value's size, and every one can be changed.

/// Limits on incoming payloads. [`Limits::default`] holds the documented defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Longest id (message, channel, conversation, sender, attachment), in characters.
    pub max_id_chars: usize,
    /// Largest message body, in bytes of UTF-8.
    pub max_message_bytes: usize,
    /// Most attachments on one message.
    pub max_attachments: usize,
    /// Longest URL, in characters.
    pub max_url_chars: usize,
    /// Longest free-text name (channel name, attachment file name), in characters.
    pub max_name_chars: usize,
    /// Largest request body a server accepts, in bytes.
    pub max_body_bytes: usize,
}

impl Limits {
    /// No size limits, only the rules about content (no control characters, http(s) URLs).
    /// For reading back values that passed the configured limits when they were stored.
    pub fn stored() -> Self {
        Self {
            max_id_chars: usize::MAX,
            max_message_bytes: usize::MAX,
            max_attachments: usize::MAX,
            max_url_chars: usize::MAX,
            max_name_chars: usize::MAX,
            max_body_bytes: usize::MAX,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_id_chars: 255,
            max_message_bytes: 64 * 1024,
            max_attachments: 100,
            max_url_chars: 2048,
            max_name_chars: 1024,
            max_body_bytes: 1024 * 1024,
        }
    }
}
