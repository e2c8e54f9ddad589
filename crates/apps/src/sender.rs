//! getSenderById: who a participant is, asked of the channel's app when the app said to
//! (`fetch_avatar` with no avatar: once; `avatar_expires`: at most daily), read leniently.

use pdchannels_model::Limits;
use pdchannels_store::{ParticipantDetails, SenderDetails};
use serde_json::{Value, json};

use crate::conversation::participant;

/// How long an expiring avatar is kept before the app is asked again.
pub const AVATAR_REFRESH_MS: i64 = 24 * 60 * 60 * 1000;

/// Whether the app asked to be asked about `p` (the contract's `fetch_avatar` and
/// `avatar_expires`); `Some(expires)` if so.
pub fn wanted(p: &ParticipantDetails) -> Option<bool> {
    if p.avatar_expires {
        Some(true)
    } else if p.fetch_avatar && p.avatar_url.is_none() {
        Some(false)
    } else {
        None
    }
}

/// Whether a sender last asked about at `fetched_at_ms` needs asking again at `now_ms`.
pub fn due(fetched_at_ms: Option<i64>, expires: bool, now_ms: i64) -> bool {
    match fetched_at_ms {
        None => true,
        Some(at) => expires && now_ms - at >= AVATAR_REFRESH_MS,
    }
}

/// What an answer (`data.{id,name,avatar_url}` or the bare object) says about `sender_id`: a
/// name and an avatar, each only if valid (an answer without an id is taken as the one asked).
pub fn read_sender(answer: &Value, sender_id: &str, limits: &Limits) -> SenderDetails {
    let mut object = answer.as_object().cloned().unwrap_or_default();
    object.insert("id".to_owned(), json!(sender_id));
    participant(&Value::Object(object), limits)
        .map(|p| SenderDetails {
            name: p.name,
            avatar_url: p.avatar_url,
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sender_is_asked_once_unless_its_avatar_expires() {
        let now = 10 * AVATAR_REFRESH_MS;
        assert!(due(None, false, now));
        assert!(!due(Some(now - 5 * AVATAR_REFRESH_MS), false, now));
        assert!(!due(Some(now - 1000), true, now));
        assert!(due(Some(now - AVATAR_REFRESH_MS), true, now));
    }

    #[test]
    fn only_participants_the_app_flagged_are_asked_about() {
        let mut p = ParticipantDetails {
            id: "s".into(),
            ..ParticipantDetails::default()
        };
        assert_eq!(wanted(&p), None);
        p.fetch_avatar = true;
        assert_eq!(wanted(&p), Some(false));
        p.avatar_url = Some("https://x.example/a.png".into());
        assert_eq!(wanted(&p), None, "it has an avatar already");
        p.avatar_expires = true;
        assert_eq!(wanted(&p), Some(true));
    }

    #[test]
    fn the_answer_is_read_leniently() {
        let limits = Limits::default();
        let s = read_sender(
            &json!({"id": "other", "name": "Ann\u{1b}[31m", "avatar_url": "https://x.example/a.png"}),
            "s",
            &limits,
        );
        assert_eq!(s.name.as_deref(), Some("Ann[31m"));
        assert_eq!(s.avatar_url.as_deref(), Some("https://x.example/a.png"));
        let s = read_sender(&json!({"avatar_url": "javascript:alert(1)"}), "s", &limits);
        assert_eq!(s, SenderDetails::default());
        assert_eq!(
            read_sender(&json!([1]), "s", &limits),
            SenderDetails::default()
        );
    }
}
