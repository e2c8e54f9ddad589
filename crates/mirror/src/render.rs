//! A conversation-day's messages as the HTML of its note (research §6.3): a header naming the
//! conversation and the day, one list item per message (sender, time in the company's time zone,
//! text, attachments as links), and a footer with the visible marker the mirror searches for
//! after an unknown outcome.
//!
//! Pure: the same messages give the same bytes, so a flush whose HTML hashes as before is skipped
//! (which is why the footer carries no "rendered at" time).
//!
//! Only the tag subset of research §1.8 is used (`p`, `b`, `i`, `ul`, `li`, `br`, `a href`,
//! `small`), every text is escaped, and nothing relies on comments or attributes surviving
//! Pipedrive's sanitiser: the marker is visible text.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;

use crate::marker::{Marker, SegmentKey};

/// Where a note rolls over into a continuation (research §1.7: Pipedrive's limit is about
/// 100,000 characters; 60,000 bytes stays under it and under third-party 65,000 guards, with
/// room for what the sanitiser may add).
pub const DEFAULT_MAX_NOTE_BYTES: usize = 60_000;

/// How the mirror renders.
#[derive(Debug, Clone)]
pub struct RenderOptions {
    /// The company's time zone: it sets the day a message belongs to and the times shown.
    pub time_zone: Tz,
    /// A note's HTML stays at or under this many bytes (UTF-8); the rest continues in the next.
    pub max_note_bytes: usize,
}

impl RenderOptions {
    /// Options for `time_zone` with the default size limit.
    pub fn new(time_zone: Tz) -> Self {
        Self {
            time_zone,
            max_note_bytes: DEFAULT_MAX_NOTE_BYTES,
        }
    }
}

/// The conversation a note belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationInfo {
    /// The hub's channel id.
    pub channel_id: String,
    /// The channel's name, as people know it ("WhatsApp: Sales").
    pub channel_name: String,
    /// The provider ("whatsapp"), shown capitalised in the header.
    pub provider: String,
    /// The conversation id.
    pub conversation_id: String,
    /// The customer's name, if known.
    pub participant_name: Option<String>,
    /// The customer's id on the channel (a phone number on WhatsApp).
    pub participant_id: String,
}

/// Who sent a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sender {
    /// Shown in bold.
    pub name: String,
    /// A message of the company (shown with "(you)").
    pub is_company: bool,
}

/// An attachment, linked (never embedded: Pipedrive strips `img`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// Its file name, if any.
    pub name: Option<String>,
    /// Where it is; for an expiring provider URL, the hub's proxy URL.
    pub url: String,
    /// Its MIME type.
    pub mime_type: String,
    /// Its size in bytes, if known.
    pub size: Option<u64>,
}

/// One message as the mirror renders it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Its id in the conversation (the order's tie-breaker).
    pub id: String,
    /// Who sent it.
    pub sender: Sender,
    /// When it was sent.
    pub created_at: DateTime<Utc>,
    /// Its text (plain text: escaped here).
    pub text: String,
    /// Its attachments.
    pub attachments: Vec<Attachment>,
    /// It was edited after being sent.
    pub edited: bool,
    /// It was deleted: shown as such, without its text.
    pub deleted: bool,
}

/// One note's HTML and what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedNote {
    /// The segment it is.
    pub key: SegmentKey,
    /// Its marker (in the footer).
    pub marker: Marker,
    /// The HTML to send as `content`.
    pub html: String,
    /// The ids of the messages in it, in order.
    pub message_ids: Vec<String>,
}

/// The local day `at` falls on in `time_zone`.
pub fn local_day(at: DateTime<Utc>, time_zone: Tz) -> NaiveDate {
    at.with_timezone(&time_zone).date_naive()
}

/// Groups messages by their local day, each day's in note order.
pub fn by_day(messages: &[Message], time_zone: Tz) -> BTreeMap<NaiveDate, Vec<Message>> {
    let mut days: BTreeMap<NaiveDate, Vec<Message>> = BTreeMap::new();
    for message in messages {
        days.entry(local_day(message.created_at, time_zone))
            .or_default()
            .push(message.clone());
    }
    for day in days.values_mut() {
        sort(day);
    }
    days
}

/// Note order: by time sent, then by id (two messages of the same millisecond keep one order).
pub fn sort(messages: &mut [Message]) {
    messages.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
}

/// Escapes text for HTML content and attribute values (`& < > " '`).
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// Escaped text with its line breaks as `<br>` (a bare newline's fate in a note is undocumented).
fn escape_lines(text: &str) -> String {
    escape(text.trim_end())
        .replace("\r\n", "\n")
        .replace('\n', "<br>")
}

fn capitalised(word: &str) -> String {
    match word {
        "whatsapp" => "WhatsApp".to_owned(),
        _ => {
            let mut chars = word.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_uppercase().chain(chars).collect()
            })
        }
    }
}

fn size_text(bytes: u64) -> String {
    match bytes {
        0..1024 => format!("{bytes} B"),
        1024..1_048_576 => format!("{} KB", bytes.div_ceil(1024)),
        _ => format!("{:.1} MB", bytes as f64 / 1_048_576.0),
    }
}

fn attachment_html(attachment: &Attachment) -> String {
    let name = escape(attachment.name.as_deref().unwrap_or("attachment"));
    let mut details = escape(&attachment.mime_type);
    if let Some(size) = attachment.size {
        let _ = write!(details, ", {}", size_text(size));
    }
    let url = attachment.url.trim();
    let lower = url.to_ascii_lowercase();
    // Only web links become links: a `javascript:` or `data:` URL stays inert text.
    if lower.starts_with("https://") || lower.starts_with("http://") {
        format!("📎 <a href=\"{}\">{name}</a> ({details})", escape(url))
    } else {
        format!("📎 {name} ({details}; {})", escape(url))
    }
}

/// A message's list item. One item alone may not exceed `budget` bytes: its text is cut (on a
/// character boundary) and says how much was left out.
fn item_html(message: &Message, time_zone: Tz, budget: usize) -> String {
    let time = message.created_at.with_timezone(&time_zone).format("%H:%M");
    let you = if message.sender.is_company {
        " (you)"
    } else {
        ""
    };
    let head = format!("<li><b>{}{you}</b> {time} — ", escape(&message.sender.name));
    let mut body = if message.deleted {
        "<i>message deleted</i>".to_owned()
    } else {
        let mut parts = Vec::new();
        if !message.text.trim().is_empty() {
            parts.push(escape_lines(&message.text));
        }
        parts.extend(message.attachments.iter().map(attachment_html));
        let mut body = parts.join("<br>");
        if message.edited {
            body.push_str(" <i>(edited)</i>");
        }
        body
    };
    let tail = "</li>\n";
    if head.len() + body.len() + tail.len() > budget {
        // The attachments' links are kept whole: only the text is cut.
        let links: Vec<String> = if message.deleted {
            Vec::new()
        } else {
            message.attachments.iter().map(attachment_html).collect()
        };
        let links = links.join("<br>");
        let room = budget.saturating_sub(head.len() + tail.len() + 64 + links.len());
        // Cut the text, not the markup: from the escaped plain text, never mid-entity.
        let text = escape(&message.text);
        let mut cut = room.min(text.len());
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        if let Some(amp) = text[..cut]
            .rfind('&')
            .filter(|&at| !text[at..cut].contains(';'))
        {
            cut = amp;
        }
        body = format!(
            "{} <i>(cut: {} more bytes)</i>",
            &text[..cut],
            text.len() - cut
        );
        if !links.is_empty() {
            body.push_str("<br>");
            body.push_str(&links);
        }
    }
    format!("{head}{body}{tail}")
}

fn header_html(conversation: &ConversationInfo, day: NaiveDate, seq: u32) -> String {
    let who = match &conversation.participant_name {
        Some(name) => format!(
            "{} ({})",
            escape(name),
            escape(&conversation.participant_id)
        ),
        None => escape(&conversation.participant_id),
    };
    let continued = if seq > 0 { " (continued)" } else { "" };
    format!(
        "<p><b>{} · {who}</b> · {day}{continued} · channel &quot;{}&quot;</p>\n<ul>\n",
        escape(&capitalised(&conversation.provider)),
        escape(&conversation.channel_name),
    )
}

fn footer_html(
    conversation: &ConversationInfo,
    marker: &Marker,
    count: usize,
    last: Option<DateTime<Utc>>,
    time_zone: Tz,
) -> String {
    let plural = if count == 1 { "" } else { "s" };
    let last = last.map_or_else(String::new, |at| {
        format!(" · last {} UTC", at.format("%Y-%m-%d %H:%M"))
    });
    format!(
        "</ul>\n<p><small>pdchannels · seg {marker} · {count} message{plural}{last} · times in {} · conversation {}</small></p>",
        escape(time_zone.name()),
        escape(&conversation.conversation_id),
    )
}

/// The footer's size at most, for planning (a count up to 10^6 messages).
fn footer_bound(conversation: &ConversationInfo, time_zone: Tz) -> usize {
    let marker = Marker::from_hex("000000000000");
    footer_html(
        conversation,
        &marker,
        999_999,
        Some(DateTime::<Utc>::MIN_UTC),
        time_zone,
    )
    .len()
        + 16
}

/// Renders one day of a conversation as notes, starting at segment `first_seq`: as many messages
/// per note as fit under the size limit, in note order, the rest in continuation notes. Messages
/// of other days are left out. An empty day gives no note.
pub fn render_day(
    conversation: &ConversationInfo,
    day: NaiveDate,
    first_seq: u32,
    messages: &[Message],
    options: &RenderOptions,
) -> Vec<RenderedNote> {
    let mut messages: Vec<&Message> = messages
        .iter()
        .filter(|m| local_day(m.created_at, options.time_zone) == day)
        .collect();
    messages.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    let footer = footer_bound(conversation, options.time_zone);
    let mut notes = Vec::new();
    let mut seq = first_seq;
    let mut rest = messages.as_slice();
    while !rest.is_empty() {
        let header = header_html(conversation, day, seq);
        let budget = options.max_note_bytes.saturating_sub(header.len() + footer);
        let mut items = String::new();
        let mut taken = 0;
        for message in rest {
            let item = item_html(message, options.time_zone, budget);
            // A note takes at least one message, so a day always advances.
            if taken > 0 && items.len() + item.len() > budget {
                break;
            }
            items.push_str(&item);
            taken += 1;
        }
        let (these, later) = rest.split_at(taken);
        let key = SegmentKey::new(
            &conversation.channel_id,
            &conversation.conversation_id,
            day,
            seq,
        );
        let marker = key.marker();
        let footer = footer_html(
            conversation,
            &marker,
            these.len(),
            these.last().map(|m| m.created_at),
            options.time_zone,
        );
        notes.push(RenderedNote {
            key,
            marker,
            html: format!("{header}{items}{footer}"),
            message_ids: these.iter().map(|m| m.id.clone()).collect(),
        });
        rest = later;
        seq += 1;
    }
    notes
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn conversation() -> ConversationInfo {
        ConversationInfo {
            channel_id: "wa-sales".to_owned(),
            channel_name: "Sales \"BR\" <main>".to_owned(),
            provider: "whatsapp".to_owned(),
            conversation_id: "554499999999@s.whatsapp.net".to_owned(),
            participant_name: Some("Ana & Silva".to_owned()),
            participant_id: "+55 44 99999-9999".to_owned(),
        }
    }

    fn at(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 23, h, m, 0).unwrap()
    }

    fn message(id: &str, created_at: DateTime<Utc>, text: &str, company: bool) -> Message {
        Message {
            id: id.to_owned(),
            sender: Sender {
                name: if company { "Jonas" } else { "Ana Silva" }.to_owned(),
                is_company: company,
            },
            created_at,
            text: text.to_owned(),
            attachments: Vec::new(),
            edited: false,
            deleted: false,
        }
    }

    fn day() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, 23).unwrap()
    }

    fn lisbon() -> RenderOptions {
        RenderOptions::new(chrono_tz::Europe::Lisbon)
    }

    #[test]
    fn every_text_is_escaped() {
        let messages = [message(
            "m1",
            at(9, 14),
            "<script>alert('x')</script> & \"quotes\"\nsecond line",
            false,
        )];
        let notes = render_day(&conversation(), day(), 0, &messages, &lisbon());
        insta::assert_snapshot!(notes[0].html);
    }

    #[test]
    fn messages_are_in_time_then_id_order() {
        let messages = [
            message("m3", at(9, 20), "third", false),
            message("m2b", at(9, 16), "same minute, later id", true),
            message("m1", at(9, 14), "first", false),
            message("m2a", at(9, 16), "same minute, earlier id", false),
        ];
        let notes = render_day(&conversation(), day(), 0, &messages, &lisbon());
        assert_eq!(notes[0].message_ids, ["m1", "m2a", "m2b", "m3"]);
        insta::assert_snapshot!(notes[0].html);
    }

    #[test]
    fn attachments_are_links_and_odd_urls_stay_text() {
        let mut with_files = message("m1", at(10, 0), "the invoice", false);
        with_files.attachments = vec![
            Attachment {
                name: Some("invoice <2026>.pdf".to_owned()),
                url: "https://hub.example/att/123?sig=a&b=\"c\"".to_owned(),
                mime_type: "application/pdf".to_owned(),
                size: Some(84 * 1024),
            },
            Attachment {
                name: None,
                url: "javascript:alert(1)".to_owned(),
                mime_type: "image/png".to_owned(),
                size: None,
            },
        ];
        let mut edited = message("m2", at(10, 1), "fixed typo", true);
        edited.edited = true;
        let mut deleted = message("m3", at(10, 2), "secret", false);
        deleted.deleted = true;
        let notes = render_day(
            &conversation(),
            day(),
            0,
            &[with_files, edited, deleted],
            &lisbon(),
        );
        insta::assert_snapshot!(notes[0].html);
    }

    #[test]
    fn the_day_and_times_are_the_companys() {
        // 23:30 UTC on the 22nd is 08:30 on the 23rd in Tokyo; 15:30 UTC on the 23rd is already
        // the 24th there.
        let tokyo = RenderOptions::new(chrono_tz::Asia::Tokyo);
        let messages = [
            message(
                "late-utc",
                Utc.with_ymd_and_hms(2026, 11, 22, 23, 30, 0).unwrap(),
                "good morning",
                false,
            ),
            message("mid", at(3, 0), "noon in Tokyo", true),
            message("next-day", at(15, 30), "after midnight in Tokyo", false),
        ];
        let days = by_day(&messages, tokyo.time_zone);
        let counts: Vec<(String, usize)> =
            days.iter().map(|(d, m)| (d.to_string(), m.len())).collect();
        assert_eq!(
            counts,
            [("2026-11-23".to_owned(), 2), ("2026-11-24".to_owned(), 1)]
        );
        let notes = render_day(&conversation(), day(), 0, &messages, &tokyo);
        assert_eq!(notes[0].message_ids, ["late-utc", "mid"]);
        insta::assert_snapshot!(notes[0].html);
    }

    #[test]
    fn a_full_note_continues_in_the_next_with_its_own_marker() {
        let options = RenderOptions {
            max_note_bytes: 1_000,
            ..lisbon()
        };
        let messages: Vec<Message> = (0..12)
            .map(|i| {
                message(
                    &format!("m{i:02}"),
                    at(9, i),
                    &"word ".repeat(20),
                    i % 2 == 1,
                )
            })
            .collect();
        let notes = render_day(&conversation(), day(), 0, &messages, &options);
        assert!(notes.len() > 1);
        for note in &notes {
            assert!(note.html.len() <= 1_000, "{} bytes", note.html.len());
            assert!(note.html.contains(&format!("seg {}", note.marker)));
        }
        let all: Vec<String> = notes.iter().flat_map(|n| n.message_ids.clone()).collect();
        let expected: Vec<String> = messages.iter().map(|m| m.id.clone()).collect();
        assert_eq!(all, expected, "every message once, in order");
        let seqs: Vec<u32> = notes.iter().map(|n| n.key.seq).collect();
        assert_eq!(
            seqs,
            (0..u32::try_from(notes.len()).unwrap()).collect::<Vec<_>>()
        );
        insta::assert_snapshot!(
            notes
                .iter()
                .map(|n| n.html.as_str())
                .collect::<Vec<_>>()
                .join("\n\n=== next note ===\n\n")
        );
    }

    #[test]
    fn one_message_larger_than_a_note_is_cut() {
        let options = RenderOptions {
            max_note_bytes: 800,
            ..lisbon()
        };
        let huge = "a&b ".repeat(500);
        let notes = render_day(
            &conversation(),
            day(),
            0,
            &[message("big", at(9, 0), &huge, false)],
            &options,
        );
        assert_eq!(notes.len(), 1);
        assert!(notes[0].html.len() <= 800, "{}", notes[0].html.len());
        assert!(notes[0].html.contains("(cut: "));
        let kept = &notes[0].html[..notes[0].html.find(" <i>(cut").unwrap()];
        let last_amp = kept.rfind('&').unwrap();
        assert!(kept[last_amp..].contains(';'), "never cut inside an entity");
    }

    #[test]
    fn the_same_messages_render_the_same_bytes() {
        let messages = [message("m1", at(9, 0), "hi", false)];
        let a = render_day(&conversation(), day(), 0, &messages, &lisbon());
        let b = render_day(&conversation(), day(), 0, &messages, &lisbon());
        assert_eq!(a, b);
        assert!(render_day(&conversation(), day(), 0, &[], &lisbon()).is_empty());
    }
}
