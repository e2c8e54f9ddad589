//! What the inbox's templates show, made from the store's rows: names and initials, times as
//! people read them, status ticks, file cards. Every string here is escaped by the templates.

use pdchannels_model::Timestamp;
use pdchannels_store::{InboxRow, ParticipantDetails};
use serde_json::Value;

/// The longest preview of a message in the list.
const PREVIEW_CHARS: usize = 120;

/// One conversation in the list.
pub struct Row {
    pub href: String,
    pub open: bool,
    pub initials: String,
    pub customer: String,
    pub channel_name: String,
    pub time_iso: String,
    pub time_exact: String,
    pub time_ago: String,
    pub preview: String,
    pub closed: bool,
    pub unread: bool,
    pub awaiting_reply: bool,
}

/// One message in the thread.
pub struct Message {
    pub direction: &'static str,
    pub sender: String,
    pub text: String,
    pub attachments: Vec<File>,
    pub time_iso: String,
    pub time_exact: String,
    pub time_short: String,
    pub status: String,
    pub ticks: &'static str,
    /// Why the provider could not deliver it (a `failed` message's `error`, if it said).
    pub failure: Option<String>,
}

/// A file of a message.
pub struct File {
    pub url: String,
    pub name: String,
    pub kind: String,
    /// Shown as a thumbnail (an `image/…` type and an https link), else as a file card.
    pub image: bool,
    /// "1.2 MB", if the provider said.
    pub size: String,
}

/// The longest query string a form may carry back (bytes, as sent).
const MAX_CARRIED_QUERY_BYTES: usize = 4096;

/// A query string a form carried back (the list's filters, the thread's page), encoded again:
/// only a query string ever comes out, never a way to another page or site.
pub fn clean_query(query: &str) -> String {
    // A list's filters and positions take a few hundred bytes (a search is cut at 200
    // characters); more is not the inbox's own, and would make a huge `Location` header.
    if query.len() > MAX_CARRIED_QUERY_BYTES || query.contains(['\r', '\n', '#']) {
        return String::new();
    }
    url::form_urlencoded::parse(query.as_bytes())
        .fold(
            url::form_urlencoded::Serializer::new(String::new()),
            |mut s, (k, v)| {
                s.append_pair(&k, &v);
                s
            },
        )
        .finish()
}

/// `/inbox/{channel}/{conversation}`, each id one encoded path segment.
pub fn thread_href(channel_id: &str, conversation_id: &str) -> String {
    format!(
        "/inbox/{}/{}",
        segment(channel_id),
        segment(conversation_id)
    )
}

/// An `http(s)` link (the scheme in any case: `HTTPS://` is one too), never `javascript:` or
/// `data:`.
pub fn is_web_link(url: &str) -> bool {
    has_scheme(url, "https://") || has_scheme(url, "http://")
}

fn has_scheme(url: &str, scheme: &str) -> bool {
    url.get(..scheme.len())
        .is_some_and(|s| s.eq_ignore_ascii_case(scheme))
}

/// A text as one path segment or query value.
pub fn segment(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// A row of the list; its link keeps the list's filters (`filter`, a query string).
pub fn row(row: &InboxRow, open: Option<(&str, &str)>, filter: &str, now_ms: i64) -> Row {
    let customer = row
        .customer
        .clone()
        .unwrap_or_else(|| row.conversation_id.clone());
    let preview = row.last_message.as_ref().map(preview).unwrap_or_default();
    let href = thread_href(&row.channel_id, &row.conversation_id);
    // When its last message was written (as the provider dated it), not when the hub stored
    // it: a conversation synced today from last year reads "2025-03-29", not "just now".
    let at = row
        .last_message
        .as_ref()
        .and_then(|m| m["created_at"].as_str())
        .and_then(|t| Timestamp::parse(t).ok())
        .map_or(row.last_activity_ms, Timestamp::unix_millis);
    Row {
        href: if filter.is_empty() {
            href
        } else {
            format!("{href}?{filter}")
        },
        open: open == Some((row.channel_id.as_str(), row.conversation_id.as_str())),
        initials: initials(&customer),
        customer,
        channel_name: row.channel_name.clone(),
        time_iso: iso(at),
        time_exact: exact(at),
        time_ago: ago(at, now_ms),
        preview,
        closed: row.state.as_deref() == Some("closed"),
        unread: row.unread,
        awaiting_reply: row.awaiting_reply,
    }
}

/// The latest `reply_by` the provider set on a conversation's messages (ms since the epoch).
pub fn reply_by(messages: &[Value]) -> Option<i64> {
    messages
        .iter()
        .filter_map(|m| m["reply_by"].as_str())
        .filter_map(|t| Timestamp::parse(t).ok())
        .map(Timestamp::unix_millis)
        .max()
}

/// How long until `ms`: "3 h 20 min", "12 min", "less than a minute".
pub fn left(ms: i64, now_ms: i64) -> String {
    let minutes = (ms - now_ms).max(0) / 60_000;
    match minutes {
        0 => "Less than a minute".to_owned(),
        1..60 => format!("{minutes} min"),
        60..1_440 if minutes % 60 == 0 => format!("{} h", minutes / 60),
        60..1_440 => format!("{} h {} min", minutes / 60, minutes % 60),
        _ => format!("{} d {} h", minutes / 1_440, minutes % 1_440 / 60),
    }
}

/// A message's text on one line, cut; `📎 name` for a message of files only.
fn preview(message: &Value) -> String {
    let text = message["message"].as_str().unwrap_or_default();
    let line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.is_empty() {
        let files = message["attachments"].as_array().map_or(0, Vec::len);
        return if files > 0 {
            format!("{files} file{}", if files == 1 { "" } else { "s" })
        } else {
            String::new()
        };
    }
    let mut cut: String = line.chars().take(PREVIEW_CHARS).collect();
    if line.chars().count() > PREVIEW_CHARS {
        cut.push('…');
    }
    cut
}

pub fn message(message: &Value, people: &[ParticipantDetails], now_ms: i64) -> Message {
    let sender_id = message["sender_id"].as_str().unwrap_or_default();
    let sender = people.iter().find(|p| p.id == sender_id);
    let ours = sender.is_some_and(|p| p.role.as_deref() == Some("source_user"));
    let status = message["status"].as_str().unwrap_or("sent").to_owned();
    let ms = message["created_at"]
        .as_str()
        .and_then(|t| Timestamp::parse(t).ok())
        .map_or(0, Timestamp::unix_millis);
    Message {
        direction: if ours { "outgoing" } else { "incoming" },
        sender: sender
            .and_then(|p| p.name.clone())
            .unwrap_or_else(|| sender_id.to_owned()),
        text: message["message"].as_str().unwrap_or_default().to_owned(),
        attachments: message["attachments"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| {
                // Only a web link is a link (never `javascript:` or `data:`).
                let url = a["url"]
                    .as_str()
                    .filter(|u| is_web_link(u))
                    .unwrap_or_default()
                    .to_owned();
                let kind = a["type"].as_str().unwrap_or_default().to_owned();
                File {
                    image: kind.starts_with("image/") && has_scheme(&url, "https://"),
                    name: a["name"]
                        .as_str()
                        .or_else(|| a["id"].as_str())
                        .unwrap_or("file")
                        .to_owned(),
                    size: a["size"].as_u64().map(size).unwrap_or_default(),
                    url,
                    kind,
                }
            })
            .collect(),
        time_iso: iso(ms),
        time_exact: exact(ms),
        time_short: ago(ms, now_ms),
        ticks: ticks(&status),
        failure: (status == "failed")
            .then(|| {
                message["error"]
                    .as_str()
                    .or_else(|| message["additional_data"]["error"].as_str())
                    .map(str::to_owned)
            })
            .flatten(),
        status,
    }
}

/// A file's size as people read it.
fn size(bytes: u64) -> String {
    #[allow(clippy::cast_precision_loss)] // a size shown to one decimal
    let b = bytes as f64;
    match bytes {
        0..1_000 => format!("{bytes} B"),
        1_000..1_000_000 => format!("{:.0} KB", b / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1} MB", b / 1e6),
        _ => format!("{:.1} GB", b / 1e9),
    }
}

/// ✓ sent, ✓✓ delivered, ✓✓ read (styled apart), ✕ failed.
fn ticks(status: &str) -> &'static str {
    match status {
        "delivered" => "✓✓",
        "read" => "✓✓ read",
        "failed" => "✕ failed",
        _ => "✓",
    }
}

/// Up to two letters of a name, for its avatar.
pub fn initials(name: &str) -> String {
    let words: Vec<&str> = name.split_whitespace().collect();
    let letters: String = match words.as_slice() {
        [] => String::new(),
        [one] => one
            .chars()
            .filter(|c| c.is_alphanumeric())
            .take(2)
            .collect(),
        [first, .., last] => first.chars().take(1).chain(last.chars().take(1)).collect(),
    };
    let letters = letters.to_uppercase();
    if letters.is_empty() {
        "?".to_owned()
    } else {
        letters
    }
}

pub fn iso(ms: i64) -> String {
    Timestamp::from_unix_millis(ms).map_or_else(String::new, |t| t.to_string())
}

pub fn exact(ms: i64) -> String {
    iso(ms)
        .replace('T', " ")
        .replace(".000Z", " UTC")
        .replace('Z', " UTC")
}

/// "just now", "5 min", "3 h", "2 d", or the date.
pub fn ago(ms: i64, now_ms: i64) -> String {
    let seconds = (now_ms - ms).max(0) / 1000;
    match seconds {
        0..60 => "just now".to_owned(),
        60..3_600 => format!("{} min", seconds / 60),
        3_600..86_400 => format!("{} h", seconds / 3_600),
        86_400..604_800 => format!("{} d", seconds / 86_400),
        _ => iso(ms).get(..10).unwrap_or_default().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_initials_and_times_read_as_people_say_them() {
        assert_eq!(initials("Ada Lovelace"), "AL");
        assert_eq!(initials("ada b. lovelace"), "AL");
        assert_eq!(initials("+4915551234"), "49");
        assert_eq!(initials("  "), "?");
        let now = 1_700_000_000_000;
        assert_eq!(ago(now - 5_000, now), "just now");
        assert_eq!(ago(now - 5 * 60_000, now), "5 min");
        assert_eq!(ago(now - 3 * 3_600_000, now), "3 h");
        assert_eq!(ago(now - 2 * 86_400_000, now), "2 d");
        assert_eq!(ago(now - 30 * 86_400_000, now), "2023-10-15");
        assert_eq!(
            ago(now + 10_000, now),
            "just now",
            "a clock ahead is not negative"
        );
    }

    #[test]
    fn time_left_reads_as_people_say_it() {
        let now = 1_700_000_000_000;
        assert_eq!(left(now + 30_000, now), "Less than a minute");
        assert_eq!(left(now + 12 * 60_000, now), "12 min");
        assert_eq!(left(now + 120 * 60_000, now), "2 h");
        assert_eq!(left(now + 200 * 60_000, now), "3 h 20 min");
        assert_eq!(left(now + 3 * 86_400_000 + 3_600_000, now), "3 d 1 h");
        assert_eq!(left(now - 5_000, now), "Less than a minute");
    }

    #[test]
    fn the_latest_reply_by_counts() {
        let messages = [
            serde_json::json!({"reply_by": "2024-05-01T10:00:00.000Z"}),
            serde_json::json!({"reply_by": "2024-05-02T10:00:00.000Z"}),
            serde_json::json!({"reply_by": "not a time"}),
            serde_json::json!({}),
        ];
        assert_eq!(
            reply_by(&messages).map(iso).as_deref(),
            Some("2024-05-02T10:00:00.000Z")
        );
        assert_eq!(reply_by(&[]), None);
    }

    #[test]
    fn only_web_links_are_links_whatever_the_case_of_their_scheme() {
        assert!(is_web_link("HTTPS://example.com/x"));
        assert!(is_web_link("http://example.com"));
        assert!(!is_web_link("javascript:alert(1)"));
        assert!(!is_web_link("data:text/html,x"));
        assert!(!is_web_link("htt"));
        assert!(!is_web_link("ftp://x"));
    }

    #[test]
    fn a_path_segment_keeps_slashes_and_spaces_inside() {
        assert_eq!(segment("a/b c"), "a%2Fb%20c");
        assert_eq!(thread_href("wa", "+49 1"), "/inbox/wa/%2B49%201");
    }
}
