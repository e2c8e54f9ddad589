//! Opaque page cursors (the read API's and the agents' tools): the fields of the last row of a page, joined with NUL
//! and hex-encoded, so a cursor is URL-safe and says nothing a client should rely on.

/// The cursor for a page that ends at the row with these fields.
pub fn encode_cursor(fields: &[&str]) -> String {
    hex::encode(fields.join("\0"))
}

/// The `fields` fields of a cursor given out by [`encode_cursor`]; `None` for anything else
/// (not hex, not UTF-8, another number of fields). Public for the fuzz target
/// (`fuzz/fuzz_targets/cursor.rs`).
pub fn decode_cursor(text: &str, fields: usize) -> Option<Vec<String>> {
    let bytes = hex::decode(text).ok()?;
    let decoded = String::from_utf8(bytes).ok()?;
    let parts: Vec<String> = decoded.split('\0').map(str::to_owned).collect();
    (parts.len() == fields).then_some(parts)
}

/// A place in a conversation's messages: `(created_at_ms, row)` of a message.
pub type MessagePosition = (i64, i64);

/// A place in a channel's conversations by activity: `(last_activity_ms, conversation_id)`.
pub type ActivityPosition = (i64, String);

/// The cursor of a message position.
pub fn encode_message_position((ms, row): MessagePosition) -> String {
    encode_cursor(&[&ms.to_string(), &row.to_string()])
}

/// The message position a cursor from [`encode_message_position`] holds.
pub fn decode_message_position(text: &str) -> Option<MessagePosition> {
    let fields = decode_cursor(text, 2)?;
    Some((fields[0].parse().ok()?, fields[1].parse().ok()?))
}

/// The cursor of an activity position.
pub fn encode_activity_position(last_activity_ms: i64, conversation_id: &str) -> String {
    encode_cursor(&[&last_activity_ms.to_string(), conversation_id])
}

/// The activity position a cursor from [`encode_activity_position`] holds.
pub fn decode_activity_position(text: &str) -> Option<ActivityPosition> {
    let mut fields = decode_cursor(text, 2)?;
    let conversation_id = fields.pop()?;
    Some((fields[0].parse().ok()?, conversation_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_decodes_to_the_fields_it_was_made_of() {
        let cursor = encode_cursor(&["1714557600000", "conv-1"]);
        assert_eq!(
            decode_cursor(&cursor, 2),
            Some(vec!["1714557600000".to_owned(), "conv-1".to_owned()])
        );
    }

    #[test]
    fn positions_round_trip_and_other_cursors_are_refused() {
        let at = encode_message_position((1_714_557_600_000, 42));
        assert_eq!(decode_message_position(&at), Some((1_714_557_600_000, 42)));
        let by = encode_activity_position(-5, "a\u{1}b");
        assert_eq!(
            decode_activity_position(&by),
            Some((-5, "a\u{1}b".to_owned()))
        );
        assert_eq!(decode_message_position(&by), None, "not a row number");
        assert_eq!(decode_activity_position(&encode_cursor(&["x", "c"])), None);
    }

    #[test]
    fn anything_else_is_refused() {
        let two = encode_cursor(&["1", "2"]);
        for (text, fields) in [
            (two.as_str(), 1),
            (two.as_str(), 3),
            ("zz", 1),
            ("abc", 1),
            ("ff", 1),
            ("é", 1),
        ] {
            assert_eq!(decode_cursor(text, fields), None, "{text:?} as {fields}");
        }
    }
}
