//! Segments and their markers. A segment is one note: one conversation's messages of one local
//! day, `seq` 0 and its continuations 1, 2, ... (research §6.2). Its marker, the first 12 hex
//! digits of the SHA-256 of its key, is written into the note as visible text (`seg <marker>`):
//! after an unknown outcome the mirror lists the person's notes and looks for it before it POSTs
//! again, so a lost answer never makes a second note.

use std::fmt;

use chrono::NaiveDate;
use sha2::{Digest, Sha256};

/// One note's identity: channel, conversation, local day, sequence.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SegmentKey {
    /// The hub's channel id.
    pub channel_id: String,
    /// The conversation id.
    pub conversation_id: String,
    /// The local day (company time zone).
    pub day: NaiveDate,
    /// 0 for the day's first note, then its continuations.
    pub seq: u32,
}

/// `%` and `/` percent-encoded: ids are opaque and may hold `/`, which would otherwise make two
/// different (channel, conversation) pairs one key (`a/b` + `c` and `a` + `b/c`).
fn encode(id: &str) -> String {
    id.replace('%', "%25").replace('/', "%2F")
}

impl SegmentKey {
    /// The key of segment `seq` of `conversation_id` in `channel_id` on `day`.
    pub fn new(channel_id: &str, conversation_id: &str, day: NaiveDate, seq: u32) -> Self {
        Self {
            channel_id: channel_id.to_owned(),
            conversation_id: conversation_id.to_owned(),
            day,
            seq,
        }
    }

    /// Its marker.
    pub fn marker(&self) -> Marker {
        let digest = Sha256::digest(self.to_string().as_bytes());
        Marker(hex::encode(&digest[..6]))
    }

    /// The next segment of the same day (a rollover, or a person's edit sealed this one).
    #[must_use]
    pub fn next(&self) -> Self {
        Self {
            seq: self.seq + 1,
            ..self.clone()
        }
    }
}

impl fmt::Display for SegmentKey {
    /// `channel/conversation/YYYY-MM-DD/seq`, the ids percent-encoded: the form stored and hashed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}/{}/{}",
            encode(&self.channel_id),
            encode(&self.conversation_id),
            self.day.format("%Y-%m-%d"),
            self.seq
        )
    }
}

/// 12 lowercase hex digits identifying a segment's note.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Marker(String);

impl Marker {
    /// A marker read back (from the store). Not checked: a wrong one only finds nothing.
    pub fn from_hex(hex: &str) -> Self {
        Self(hex.to_owned())
    }

    /// The 12 hex digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The visible text that marks a note as this segment's.
    pub fn needle(&self) -> String {
        format!("seg {}", self.0)
    }

    /// Whether a note's content (as Pipedrive returns it, sanitised) carries this marker.
    pub fn is_in(&self, content: &str) -> bool {
        content.contains(&self.needle())
    }
}

impl fmt::Display for Marker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, 23).unwrap()
    }

    #[test]
    fn a_key_is_stable_and_its_marker_twelve_hex_digits() {
        let key = SegmentKey::new("wa", "447700900123@s.whatsapp.net", day(), 0);
        assert_eq!(
            key.to_string(),
            "wa/447700900123@s.whatsapp.net/2026-11-23/0"
        );
        let marker = key.marker();
        assert_eq!(marker.as_str().len(), 12);
        assert!(marker.as_str().chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(marker, key.clone().marker());
        assert_ne!(marker, key.next().marker());
    }

    #[test]
    fn slashes_in_ids_do_not_merge_keys() {
        let a = SegmentKey::new("a/b", "c", day(), 0);
        let b = SegmentKey::new("a", "b/c", day(), 0);
        assert_ne!(a.to_string(), b.to_string());
        assert_ne!(a.marker(), b.marker());
    }

    #[test]
    fn the_marker_is_found_in_sanitised_content() {
        let marker = SegmentKey::new("wa", "c1", day(), 2).marker();
        let html = format!("<p><small>pdchannels · seg {marker} · 3 messages</small></p>");
        assert!(marker.is_in(&html));
        assert!(!SegmentKey::new("wa", "c1", day(), 3).marker().is_in(&html));
    }
}
