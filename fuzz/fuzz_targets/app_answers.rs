//! What provider apps send: a manifest (`app add`), and their answers (any status, any body),
//! read as the hub reads them. Never a panic; a filled URL always parses; templates and senders
//! come out within the limits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pdchannels_model::Limits;
use pdchannels_model::manifest::{Endpoint, Manifest};

fuzz_target!(|input: (&str, u16, &str)| {
    let (text, status, id) = input;
    if let Ok(manifest) = Manifest::parse_str(text) {
        for endpoint in Endpoint::ALL {
            let values = [
                ("providerChannelId", id),
                ("sourceConversationId", id),
                ("sourceMessageId", id),
                ("senderId", id),
            ];
            if let Some(Ok(url)) = manifest.url(endpoint, &values) {
                assert!(url.scheme() == "http" || url.scheme() == "https");
            }
        }
    }
    let _ = pdchannels_apps::call::meaning(status, text, None);
    if let Ok(value) = serde_json::from_str::<serde_json::Value>(text) {
        let _ = pdchannels_apps::conversation::read_conversation(&value, "wa", None, &Limits::default());
        let templates = pdchannels_apps::templates::read_templates(&value);
        assert!(templates.len() <= 500);
        for t in &templates {
            assert!(!t.id.is_empty() && t.id.chars().count() <= 255);
            assert!(!t.id.chars().any(char::is_control));
        }
        let sender = pdchannels_apps::sender::read_sender(&value, "s", &Limits::default());
        if let Some(url) = sender.avatar_url {
            assert!(url.starts_with("http://") || url.starts_with("https://"), "{url}");
        }
    }
});
