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
