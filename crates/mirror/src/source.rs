//! What the hub's store holds, read the way the renderer takes it: a conversation's header
//! (channel, customer) and one local day of its messages.

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use pdchannels_store::{MirrorMessage, ParticipantDetails, Store, StoreError};
use serde_json::Value;

use crate::render::{Attachment, ConversationInfo, Message, Sender};

/// A conversation's participants, and which of them is the customer.
#[derive(Debug, Clone)]
pub struct People {
    participants: Vec<ParticipantDetails>,
    channel_id: String,
    /// The name the channel's own messages are shown with.
    channel_name: Option<String>,
}

impl People {
    /// Reads a conversation's participants.
    pub async fn read(
        store: &Store,
        channel_id: &str,
        conversation_id: &str,
    ) -> Result<Self, StoreError> {
        Ok(Self {
            participants: store
                .participant_details(channel_id, conversation_id)
                .await?,
            channel_id: channel_id.to_owned(),
            channel_name: None,
        })
    }

    /// Shows the channel's own messages (sender: the channel id) under `name`.
    #[must_use]
    pub fn with_channel_name(mut self, name: &str) -> Self {
        self.channel_name = Some(name.to_owned());
        self
    }

    /// The customer: the participant the app called `end_user`, else the first one that is
    /// neither the company's side (`source_user`) nor the channel itself.
    pub fn customer(&self) -> Option<&ParticipantDetails> {
        self.participants
            .iter()
            .find(|p| p.role.as_deref() == Some("end_user"))
            .or_else(|| {
                self.participants
                    .iter()
                    .find(|p| p.role.as_deref() != Some("source_user") && p.id != self.channel_id)
            })
    }

    /// Who sent a message with `sender_id`: its name if the app gave one, and whether it is the
    /// company's side (the same rule as the inbox's: a `source_user`, or the channel itself).
    fn sender(&self, sender_id: &str) -> Sender {
        let known = self.participants.iter().find(|p| p.id == sender_id);
        let channel = (sender_id == self.channel_id)
            .then(|| self.channel_name.clone())
            .flatten();
        Sender {
            name: known
                .and_then(|p| p.name.clone())
                .filter(|n| !n.trim().is_empty())
                .or(channel)
                .unwrap_or_else(|| sender_id.to_owned()),
            is_company: sender_id == self.channel_id
                || known.is_some_and(|p| p.role.as_deref() == Some("source_user")),
        }
    }
}

/// The header of a conversation's notes.
pub fn conversation_info(
    channel_id: &str,
    channel_name: &str,
    provider: &str,
    conversation_id: &str,
    people: &People,
) -> ConversationInfo {
    let customer = people.customer();
    ConversationInfo {
        channel_id: channel_id.to_owned(),
        channel_name: channel_name.to_owned(),
        provider: provider.to_owned(),
        conversation_id: conversation_id.to_owned(),
        participant_name: customer.and_then(|p| p.name.clone()),
        participant_id: customer.map_or_else(|| conversation_id.to_owned(), |p| p.id.clone()),
    }
}

/// The UTC milliseconds `[from, until)` of local `day` in `time_zone`. A day whose midnight a
/// daylight-saving change skips starts at its first moment that exists; a day the zone skipped
/// altogether (Samoa's 2011-12-30) is empty, and the day before it ends where the next one
/// starts.
pub fn day_bounds(day: NaiveDate, time_zone: Tz) -> (i64, i64) {
    (
        day_start(day, time_zone),
        day_start(day.succ_opt().unwrap_or(day), time_zone),
    )
}

/// When local `day` starts in UTC ms: its first existing quarter hour, else (a skipped day) when
/// the next day starts.
fn day_start(day: NaiveDate, time_zone: Tz) -> i64 {
    let mut date = day;
    // A zone skips at most one whole day.
    for _ in 0..3 {
        let midnight = date.and_hms_opt(0, 0, 0).unwrap_or_default();
        for quarter in 0..96 {
            let local = midnight + chrono::Duration::minutes(quarter * 15);
            if local.date() != date {
                break;
            }
            if let Some(t) = time_zone.from_local_datetime(&local).earliest() {
                return t.with_timezone(&Utc).timestamp_millis();
            }
        }
        match date.succ_opt() {
            Some(next) => date = next,
            None => break,
        }
    }
    day.and_hms_opt(0, 0, 0)
        .unwrap_or_default()
        .and_utc()
        .timestamp_millis()
}

/// The stored messages as the renderer takes them (those without a readable time are left out:
/// the store never holds one, the check only keeps a bad row from stopping a note).
pub fn messages(stored: &[MirrorMessage], people: &People) -> Vec<Message> {
    stored
        .iter()
        .filter_map(|m| {
            let payload = &m.payload;
            let text = |key: &str| payload[key].as_str().unwrap_or_default().to_owned();
            Some(Message {
                id: text("id"),
                sender: people.sender(payload["sender_id"].as_str().unwrap_or_default()),
                created_at: DateTime::<Utc>::from_timestamp_millis(m.created_at_ms)?,
                text: text("message"),
                attachments: payload["attachments"]
                    .as_array()
                    .map(|list| list.iter().filter_map(attachment).collect())
                    .unwrap_or_default(),
                edited: false,
                deleted: false,
            })
        })
        .collect()
}

fn attachment(value: &Value) -> Option<Attachment> {
    Some(Attachment {
        name: value["name"].as_str().map(str::to_owned),
        url: value["url"].as_str()?.to_owned(),
        mime_type: value["type"]
            .as_str()
            .unwrap_or("application/octet-stream")
            .to_owned(),
        size: value["size"].as_u64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_local_day_is_its_zone_midnight_to_the_next_even_across_a_skipped_midnight() {
        let day = NaiveDate::from_ymd_opt(2026, 11, 23).unwrap();
        let (from, until) = day_bounds(day, chrono_tz::America::Sao_Paulo);
        assert_eq!(from, 1_795_402_800_000, "03:00 UTC");
        assert_eq!(until - from, 86_400_000);
        // Chile moved its clocks at midnight on 2024-09-08: that day has no 00:00.
        let skipped = NaiveDate::from_ymd_opt(2024, 9, 8).unwrap();
        let (from, until) = day_bounds(skipped, chrono_tz::America::Santiago);
        assert_eq!(until - from, 23 * 3_600_000);
    }
}
