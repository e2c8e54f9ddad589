//! Property tests of the manifest's URL templates: whatever an id holds, it fills exactly one
//! path segment and decodes back to itself; whatever a manifest holds, parsing never panics.

use pdchannels_model::manifest::{Endpoint, Manifest};
use proptest::prelude::*;
use serde_json::json;

fn manifest() -> Manifest {
    Manifest::parse(&json!({"version": "v202101", "endpoints": {
        "getConversations": "https://a.example/c/:providerChannelId/conversations",
        "getConversationById": "https://a.example/c/{providerChannelId}/conversations/:sourceConversationId?messages_limit=30",
        "postMessage": "https://a.example/c/:providerChannelId/messages",
    }}))
    .unwrap()
}

proptest! {
    #[test]
    // `.` and `..` are refused (see `dot_ids_are_refused_not_sent_elsewhere`); every other id fits.
    fn any_id_fills_one_segment_and_decodes_back(
        channel in "\\PC{1,40}".prop_filter("a dot id is refused", |id| id != "." && id != ".."),
        conversation in "\\PC{1,40}".prop_filter("a dot id is refused", |id| id != "." && id != ".."),
    ) {
        let url = manifest()
            .url(Endpoint::GetConversationById, &[("providerChannelId", &channel), ("sourceConversationId", &conversation)])
            .unwrap()
            .unwrap();
        let segments: Vec<String> = url
            .path_segments()
            .unwrap()
            .map(percent_decode)
            .collect();
        prop_assert_eq!(segments, vec!["c".to_owned(), channel, "conversations".to_owned(), conversation]);
        prop_assert_eq!(url.host_str(), Some("a.example"));
        prop_assert_eq!(url.query(), Some("messages_limit=30"));
    }

    #[test]
    fn parsing_any_manifest_never_panics(version in any::<Option<String>>(), urls in proptest::collection::vec(("[a-zA-Z]{0,20}", "\\PC{0,80}"), 0..8)) {
        let endpoints: serde_json::Map<String, serde_json::Value> =
            urls.into_iter().map(|(k, v)| (k, json!(v))).collect();
        let _ = Manifest::parse(&json!({"version": version, "endpoints": endpoints}));
    }

    #[test]
    fn templates_made_of_placeholders_and_text_never_panic(parts in proptest::collection::vec(prop_oneof![
        Just(":providerChannelId".to_owned()), Just("{providerChannelId}".to_owned()),
        Just(":sourceConversationId".to_owned()), Just("{".to_owned()), Just("}".to_owned()),
        Just(":".to_owned()), "\\PC{0,6}",
    ], 0..10)) {
        let template = format!("https://a.example/{}", parts.concat());
        let _ = Manifest::parse(&json!({"version": "v202101", "endpoints": {
            "getConversations": template.clone(), "getConversationById": template.clone(), "postMessage": template,
        }}));
    }
}

fn percent_decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            out.push(u8::from_str_radix(&segment[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

/// `.` and `..` are path steps to every URL parser, even escaped: such an id is refused rather
/// than sent to another URL (an outside test saw `/channels/..` become `/conversations`).
#[test]
fn dot_ids_are_refused_not_sent_elsewhere() {
    for id in [".", ".."] {
        let url = manifest()
            .url(Endpoint::GetConversations, &[("providerChannelId", id)])
            .unwrap();
        assert!(url.unwrap_err().contains("cannot be put in a URL path"));
    }
    let url = manifest()
        .url(Endpoint::GetConversations, &[("providerChannelId", "...")])
        .unwrap()
        .unwrap();
    assert_eq!(url.path(), "/c/.../conversations");
}
