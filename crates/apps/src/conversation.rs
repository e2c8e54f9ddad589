//! An app's conversation object (getConversations, getConversationById), read leniently: what
//! the contract requires is taken where present and defaulted where not (`link` `""`, `status`
//! `open`, `seen` false), unknown fields are ignored, and each message goes through the same
//! validation as a receive; a message that fails it is skipped, with the reason kept.

use pdchannels_model::{ConversationId, HttpUrl, Limits, ReceiveMessage, SenderId};
use pdchannels_store::{ConversationDetails, ParticipantDetails};
use serde_json::{Map, Value};

/// The fields of a message that a receive takes; an app's extra fields are left out.
const MESSAGE_FIELDS: [&str; 8] = [
    "id",
    "sender_id",
    "message",
    "status",
    "created_at",
    "reply_by",
    "conversation_link",
    "attachments",
];

/// A conversation as an app described it.
#[derive(Debug, Clone, PartialEq)]
pub struct AppConversation {
    /// Its details and participants.
    pub details: ConversationDetails,
    /// Its messages, validated as receives.
    pub messages: Vec<ReceiveMessage>,
    /// The messages left out, and why.
    pub skipped: Vec<String>,
}

/// The most participants taken from one conversation.
const MAX_PARTICIPANTS: usize = 100;

/// The longest `next_messages_cursor` kept (it is sent back verbatim).
const MAX_CURSOR_CHARS: usize = 1_024;

/// Reads one conversation object of `channel_id`'s app. `asked`: the conversation a
/// getConversationById asked about, taken as the answer's id whatever the app put there. What
/// the app sends is held to the hub's own limits, as a receive is: an id or URL over them (or
/// with control characters) is left out, a name is cut, at most 100 participants are kept.
pub fn read_conversation(
    value: &Value,
    channel_id: &str,
    asked: Option<&str>,
    limits: &Limits,
) -> Result<AppConversation, String> {
    let object = value.as_object().ok_or_else(|| {
        format!(
            "a conversation must be an object, got {}",
            pdchannels_model::json_kind(value)
        )
    })?;
    let id = match asked {
        Some(asked) => asked.to_owned(),
        None => {
            let id = id_of(object.get("id")).ok_or("a conversation has no `id`")?;
            ConversationId::parse(&id, limits)
                .map_err(|why| format!("a conversation's `id` {why}"))?;
            id
        }
    };
    let link = object
        .get("link")
        .and_then(Value::as_str)
        .and_then(|l| HttpUrl::parse(l, limits).ok())
        .map(|l| l.as_str().to_owned());
    let cursor = object
        .get("next_messages_cursor")
        .and_then(Value::as_str)
        .filter(|c| {
            !c.is_empty()
                && c.chars().count() <= MAX_CURSOR_CHARS
                && !c.chars().any(char::is_control)
        })
        .map(str::to_owned);
    let state = match object.get("status").and_then(Value::as_str) {
        Some("closed") => "closed",
        _ => "open",
    };
    let participants = object
        .get("participants")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|p| participant(p, limits))
                .take(MAX_PARTICIPANTS)
                .collect()
        })
        .unwrap_or_default();
    let mut messages = Vec::new();
    let mut skipped = Vec::new();
    for (i, raw) in object
        .get("messages")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        match message(raw, channel_id, &id, limits) {
            Ok(m) => messages.push(m),
            Err(why) => skipped.push(format!("messages[{i}]: {why}")),
        }
    }
    Ok(AppConversation {
        details: ConversationDetails {
            channel_id: channel_id.to_owned(),
            conversation_id: id,
            link,
            state: Some(state.to_owned()),
            seen: Some(object.get("seen").and_then(Value::as_bool).unwrap_or(false)),
            next_messages_cursor: cursor,
            participants,
        },
        messages,
        skipped,
    })
}

/// An id given as a string (or, carelessly, a number).
fn id_of(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A participant as an app described it, read leniently; `None` without a valid id.
pub(crate) fn participant(value: &Value, limits: &Limits) -> Option<ParticipantDetails> {
    let object = value.as_object()?;
    let text = |key: &str| {
        object
            .get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    let id = id_of(object.get("id"))?;
    SenderId::parse(&id, limits).ok()?;
    // A name is cut to the hub's limit, control characters (terminal escapes) dropped.
    let name = text("name").map(|n| {
        n.chars()
            .filter(|c| !c.is_control())
            .take(limits.max_name_chars)
            .collect::<String>()
    });
    Some(ParticipantDetails {
        id,
        name: name.filter(|n| !n.trim().is_empty()),
        role: text("role")
            .filter(|r| *r == "end_user" || *r == "source_user")
            .map(str::to_owned),
        avatar_url: text("avatar_url")
            .and_then(|u| HttpUrl::parse(u, limits).ok())
            .map(|u| u.as_str().to_owned()),
        fetch_avatar: object
            .get("fetch_avatar")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        avatar_expires: object
            .get("avatar_expires")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    })
}

fn message(
    value: &Value,
    channel_id: &str,
    conversation_id: &str,
    limits: &Limits,
) -> Result<ReceiveMessage, String> {
    let object = value.as_object().ok_or_else(|| {
        format!(
            "must be an object, got {}",
            pdchannels_model::json_kind(value)
        )
    })?;
    let mut payload: Map<String, Value> = object
        .iter()
        .filter(|(k, _)| MESSAGE_FIELDS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    payload.insert("channel_id".into(), Value::String(channel_id.to_owned()));
    payload.insert(
        "conversation_id".into(),
        Value::String(conversation_id.to_owned()),
    );
    ReceiveMessage::parse(&Value::Object(payload), limits).map_err(|problems| problems.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_playgrounds_conversation_is_read_with_defaults() {
        let c = read_conversation(
            &json!({
                "id": "conversation-4915551234", "link": "https://example.com/ch/c", "status": "open",
                "seen": false, "next_messages_cursor": null, "messages": [],
                "participants": [
                    {"id": "sender-pd-1", "name": "Agent", "role": "source_user", "avatar_url": "https://gravatar.com/a", "fetch_avatar": true, "avatar_expires": false},
                    {"id": "sender-wa-4915551234", "name": "Customer", "role": "end_user"},
                    {"name": "no id: left out"},
                ],
                "additional_data": {"after": "c-next"},
            }),
            "wa",
            None,
            &Limits::default(),
        )
        .unwrap();
        assert_eq!(c.details.conversation_id, "conversation-4915551234");
        assert_eq!(c.details.next_messages_cursor, None);
        assert_eq!(c.details.state.as_deref(), Some("open"));
        assert_eq!(c.details.participants.len(), 2);
        assert_eq!(
            c.details.participants[0].role.as_deref(),
            Some("source_user")
        );
        assert!(c.details.participants[0].fetch_avatar);
        assert!(c.messages.is_empty());
    }

    #[test]
    fn messages_are_validated_as_receives_and_bad_ones_skipped_with_the_reason() {
        let c = read_conversation(
            &json!({"id": "c1", "messages": [
                {"id": "m1", "status": "sent", "created_at": "2022-03-29T06:38:06.913Z", "message": "hi", "sender_id": "s1", "extra": 1},
                {"id": "m2", "status": "bogus", "created_at": "2022-03-29T06:38:06.913Z", "message": "x", "sender_id": "s1"},
                "not an object",
            ]}),
            "wa",
            None,
            &Limits::default(),
        )
        .unwrap();
        assert_eq!(c.messages.len(), 1);
        assert_eq!(c.messages[0].conversation_id.as_str(), "c1");
        assert_eq!(c.messages[0].channel_id.as_str(), "wa");
        assert_eq!(c.skipped.len(), 2);
        assert!(
            c.skipped[0].starts_with("messages[1]: `status`"),
            "{:?}",
            c.skipped
        );
        // Defaults where the app said nothing.
        assert_eq!(c.details.link, None);
        assert_eq!(c.details.seen, Some(false));
    }

    #[test]
    fn a_conversation_without_an_id_is_refused() {
        assert!(read_conversation(&json!({"link": ""}), "wa", None, &Limits::default()).is_err());
        assert!(read_conversation(&json!([]), "wa", None, &Limits::default()).is_err());
        assert_eq!(
            read_conversation(&json!({"id": 42}), "wa", None, &Limits::default())
                .unwrap()
                .details
                .conversation_id,
            "42"
        );
    }
}
