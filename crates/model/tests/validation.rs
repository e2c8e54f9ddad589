//! Every validation rule of the four payloads, through the public `parse` functions.

use pdchannels_model::{
    AddChannel, ChannelsError, DeleteChannel, DeleteConversation, Limits, MessageStatus, Operation,
    ProviderType, ReceiveMessage,
};
use serde_json::{Value, json};

fn valid() -> Value {
    json!({
        "id": "m-1",
        "channel_id": "chan-1",
        "sender_id": "s-1",
        "conversation_id": "conv-1",
        "message": "Hello",
        "status": "sent",
        "created_at": "2022-03-01T07:58:35.449Z",
    })
}

fn with(mut base: Value, key: &str, value: Value) -> Value {
    base[key] = value;
    base
}

fn without(mut base: Value, key: &str) -> Value {
    base.as_object_mut().unwrap().remove(key);
    base
}

/// The problems of an invalid payload, as `(path, reason)` pairs.
fn problems(payload: &Value) -> Vec<(String, String)> {
    ReceiveMessage::parse(payload, &Limits::default())
        .expect_err("payload should be invalid")
        .as_slice()
        .iter()
        .map(|p| (p.path.clone(), p.reason.clone()))
        .collect()
}

fn paths(payload: &Value) -> Vec<String> {
    problems(payload).into_iter().map(|(p, _)| p).collect()
}

#[test]
fn a_minimal_message_is_valid_and_gets_an_empty_attachment_list() {
    let m = ReceiveMessage::parse(&valid(), &Limits::default()).unwrap();
    assert_eq!(m.id.as_str(), "m-1");
    assert_eq!(m.status, MessageStatus::Sent);
    assert!(m.attachments.is_empty());
    let wire = serde_json::to_value(&m).unwrap();
    assert_eq!(wire["attachments"], json!([]));
    assert!(wire.get("reply_by").is_none());
}

#[test]
fn the_contract_example_round_trips_unchanged() {
    let example = json!({
        "id": "e283f878-7ef9-4294-8e5c-04a7d003fd92",
        "channel_id": "a8aa4db0-91bb-4e90-b9c0-0c6291307e2f",
        "sender_id": "5d4bd467-d847-4088-ae43-0c7614233bab",
        "conversation_id": "063ffa46-831c-4027-a04c-b65e17f077b7",
        "message": "This is a message",
        "status": "sent",
        "created_at": "2022-03-01T07:58:35.449Z",
        "reply_by": "2022-03-01T07:58:35.449Z",
        "conversation_link": "http://my-server.com/conversations/063ffa46-831c-4027-a04c-b65e17f077b7",
        "attachments": [{
            "id": "b0369d1d-6b6a-4293-88b9-e2924782d47e",
            "type": "image/png",
            "name": "Image Name",
            "size": 600,
            "url": "http://my-server.com/images/b0369d1d.png",
            "preview_url": "http://my-server.com/images/b0369d1d.preview.png",
            "link_expires": false
        }]
    });
    let m = ReceiveMessage::parse(&example, &Limits::default()).unwrap();
    assert_eq!(serde_json::to_value(&m).unwrap(), example);
}

#[test]
fn every_missing_required_field_is_reported_at_once() {
    let reported = problems(&json!({}));
    let expected = [
        "id",
        "channel_id",
        "sender_id",
        "conversation_id",
        "message",
        "status",
        "created_at",
    ];
    assert_eq!(reported.len(), expected.len());
    for ((path, reason), want) in reported.iter().zip(expected) {
        assert_eq!(path, want);
        assert_eq!(reason, "required field is missing");
    }
}

#[test]
fn null_counts_as_missing_for_required_fields() {
    assert_eq!(
        paths(&with(valid(), "sender_id", Value::Null)),
        ["sender_id"]
    );
}

#[test]
fn null_is_accepted_for_optional_fields() {
    let payload = with(
        with(valid(), "reply_by", Value::Null),
        "conversation_link",
        Value::Null,
    );
    let m = ReceiveMessage::parse(
        &with(payload, "attachments", Value::Null),
        &Limits::default(),
    )
    .unwrap();
    assert_eq!(m.reply_by, None);
    assert_eq!(m.conversation_link, None);
}

#[test]
fn wrong_types_name_what_was_given() {
    let reported = problems(&with(valid(), "id", json!(42)));
    assert_eq!(
        reported,
        [("id".into(), "must be a string, got a number".into())]
    );
    let reported = problems(&with(valid(), "attachments", json!({})));
    assert_eq!(
        reported,
        [(
            "attachments".into(),
            "must be an array, got an object".into()
        )]
    );
}

#[test]
fn unknown_fields_are_named_with_a_suggestion() {
    let payload = with(
        without(valid(), "conversation_id"),
        "conversationId",
        json!("c"),
    );
    let reported = problems(&payload);
    assert!(reported.contains(&(
        "conversationId".into(),
        "unknown field; did you mean `conversation_id`?".into()
    )));
    assert!(reported.contains(&("conversation_id".into(), "required field is missing".into())));
}

#[test]
fn the_payload_must_be_an_object() {
    assert_eq!(
        problems(&json!([1, 2])),
        [(
            String::new(),
            "the payload must be a JSON object, got an array".into()
        )]
    );
}

#[test]
fn status_must_be_one_of_the_four() {
    for status in ["sent", "delivered", "read", "failed"] {
        assert!(
            ReceiveMessage::parse(&with(valid(), "status", json!(status)), &Limits::default())
                .is_ok()
        );
    }
    assert_eq!(
        problems(&with(valid(), "status", json!("seen"))),
        [(
            "status".into(),
            "must be one of `sent`, `delivered`, `read`, `failed`; got \"seen\"".into()
        )]
    );
}

#[test]
fn both_timestamp_forms_are_accepted_and_normalised() {
    let cases = [
        ("2022-06-30 12:34", "2022-06-30T12:34:00.000Z"),
        ("2022-06-30 12:34:56", "2022-06-30T12:34:56.000Z"),
        ("2022-06-30T12:34:56+03:00", "2022-06-30T09:34:56.000Z"),
        ("2022-06-30T12:34:56.7Z", "2022-06-30T12:34:56.700Z"),
    ];
    for (given, stored) in cases {
        let m = ReceiveMessage::parse(
            &with(valid(), "created_at", json!(given)),
            &Limits::default(),
        )
        .unwrap();
        assert_eq!(m.created_at.to_string(), stored, "{given}");
        let m = ReceiveMessage::parse(&with(valid(), "reply_by", json!(given)), &Limits::default())
            .unwrap();
        assert_eq!(m.reply_by.unwrap().to_string(), stored, "{given}");
    }
    assert_eq!(
        paths(&with(valid(), "created_at", json!("tomorrow"))),
        ["created_at"]
    );
    assert_eq!(
        paths(&with(valid(), "reply_by", json!("2022-13-01T00:00:00Z"))),
        ["reply_by"]
    );
}

/// Regression (issue 8 item 4): a local time past year 9999 in UTC panicked instead of being a
/// field problem.
#[test]
fn a_timestamp_past_year_9999_in_utc_is_a_field_problem() {
    for field in ["created_at", "reply_by"] {
        let got = problems(&with(valid(), field, json!("9999-12-31T23:59:59-01:00")));
        assert_eq!(
            got,
            [(
                field.to_owned(),
                "must be from 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999Z once converted to \
                 UTC (years 0001 to 9999); got \"9999-12-31T23:59:59-01:00\""
                    .to_owned()
            )]
        );
    }
}

#[test]
fn empty_message_needs_attachments() {
    assert_eq!(
        problems(&with(valid(), "message", json!(""))),
        [(
            "message".into(),
            "must not be empty unless the message has attachments".into()
        )]
    );
    let with_file = with(
        with(valid(), "message", json!("")),
        "attachments",
        json!([{"id": "a", "type": "image/png", "url": "https://x.test/a.png"}]),
    );
    assert!(ReceiveMessage::parse(&with_file, &Limits::default()).is_ok());
}

#[test]
fn message_size_boundary() {
    let limit = Limits::default().max_message_bytes;
    let at = with(valid(), "message", json!("m".repeat(limit)));
    assert!(ReceiveMessage::parse(&at, &Limits::default()).is_ok());
    let over = with(valid(), "message", json!("m".repeat(limit + 1)));
    assert_eq!(paths(&over), ["message"]);
}

#[test]
fn id_boundaries_apply_to_every_id_field() {
    for field in ["id", "channel_id", "sender_id", "conversation_id"] {
        let at = with(valid(), field, json!("i".repeat(255)));
        assert!(
            ReceiveMessage::parse(&at, &Limits::default()).is_ok(),
            "{field}"
        );
        let over = with(valid(), field, json!("i".repeat(256)));
        assert_eq!(paths(&over), [field]);
        let empty = with(valid(), field, json!(""));
        assert_eq!(paths(&empty), [field]);
        let control = with(valid(), field, json!("a\u{0}b"));
        assert_eq!(paths(&control), [field]);
    }
}

fn attachment(i: usize) -> Value {
    json!({"id": format!("a{i}"), "type": "image/png", "url": format!("https://files.test/{i}.png")})
}

#[test]
fn attachment_count_boundary() {
    let limit = Limits::default().max_attachments;
    let at = with(
        valid(),
        "attachments",
        Value::Array((0..limit).map(attachment).collect()),
    );
    assert_eq!(
        ReceiveMessage::parse(&at, &Limits::default())
            .unwrap()
            .attachments
            .len(),
        limit
    );
    let over = with(
        valid(),
        "attachments",
        Value::Array((0..=limit).map(attachment).collect()),
    );
    assert_eq!(
        problems(&over),
        [(
            "attachments".into(),
            "has 101 attachments; the limit is 100".into()
        )]
    );
}

#[test]
fn attachment_problems_carry_their_index_in_the_path() {
    let payload = with(
        valid(),
        "attachments",
        json!([
            attachment(0),
            {"id": "a1", "type": "png", "url": "ftp://x/y", "size": -1, "colour": "red"},
            {"type": "image/png", "url": "https://x.test/a", "size": 1.5, "link_expires": "yes"},
            "not an object"
        ]),
    );
    assert_eq!(
        paths(&payload),
        [
            "attachments[1].colour",
            "attachments[1].type",
            "attachments[1].url",
            "attachments[1].size",
            "attachments[2].id",
            "attachments[2].size",
            "attachments[2].link_expires",
            "attachments[3]",
        ]
    );
}

#[test]
fn attachment_optional_fields_are_checked() {
    let full = json!({
        "id": "a", "type": "application/pdf", "url": "https://x.test/a.pdf", "name": "quote.pdf",
        "size": 0, "preview_url": "https://x.test/a.png", "link_expires": true
    });
    let m = ReceiveMessage::parse(
        &with(valid(), "attachments", json!([full])),
        &Limits::default(),
    )
    .unwrap();
    assert_eq!(serde_json::to_value(&m.attachments[0]).unwrap(), full);
    let bad_preview =
        json!({"id": "a", "type": "image/png", "url": "https://x.test/a", "preview_url": "nope"});
    assert_eq!(
        paths(&with(valid(), "attachments", json!([bad_preview]))),
        ["attachments[0].preview_url"]
    );
}

#[test]
fn conversation_link_must_be_http() {
    assert_eq!(
        paths(&with(valid(), "conversation_link", json!("mailto:a@b.c"))),
        ["conversation_link"]
    );
}

#[test]
fn many_problems_are_reported_together_in_field_order() {
    let payload = json!({
        "id": "",
        "channel_id": 7,
        "sender_id": "s",
        "conversation_id": "c",
        "message": "hi",
        "status": "unknown",
        "created_at": "yesterday",
        "extra": true
    });
    assert_eq!(
        paths(&payload),
        ["extra", "id", "channel_id", "status", "created_at"]
    );
}

#[test]
fn invalid_receive_payloads_map_to_the_contract_code() {
    let problems = ReceiveMessage::parse(&json!({}), &Limits::default()).unwrap_err();
    let err = ChannelsError::Invalid {
        operation: Operation::ReceiveMessage,
        problems,
    };
    assert_eq!(err.http_status(), 400);
    let body = serde_json::to_value(err.body()).unwrap();
    assert_eq!(body["success"], json!(false));
    assert_eq!(
        body["additional_data"]["code"],
        json!("INVALID_RECEIVE_MESSAGE_PAYLOAD")
    );
    assert_eq!(
        body["additional_data"]["errors"].as_array().unwrap().len(),
        7
    );
    insta::assert_json_snapshot!("invalid_receive_envelope", body);
}

#[test]
fn add_channel_defaults_and_rules() {
    let c = AddChannel::parse(
        &json!({"name": "Sales", "provider_channel_id": "wa-1"}),
        &Limits::default(),
    )
    .unwrap();
    assert_eq!(c.provider_type, ProviderType::Other);
    assert!(!c.template_support);

    let bad = AddChannel::parse(
        &json!({"name": "", "provider_channel_id": "wa-1", "provider_type": "telegram",
                "avatar_url": "file:///x.png", "template_support": "yes", "providerChannelId": "x"}),
        &Limits::default(),
    )
    .unwrap_err();
    let paths: Vec<_> = bad.as_slice().iter().map(|p| p.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "providerChannelId",
            "name",
            "avatar_url",
            "template_support",
            "provider_type"
        ]
    );
    let err = ChannelsError::Invalid {
        operation: Operation::AddChannel,
        problems: bad,
    };
    assert_eq!(err.code(), "INVALID_BODY");
}

#[test]
fn delete_payloads() {
    assert!(DeleteChannel::parse(&json!({"id": "wa-1"}), &Limits::default()).is_ok());
    assert_eq!(
        DeleteChannel::parse(&json!({}), &Limits::default())
            .unwrap_err()
            .to_string(),
        "`id`: required field is missing"
    );
    let err =
        DeleteConversation::parse(&json!({"channel_id": "wa-1"}), &Limits::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "`conversation_id`: required field is missing"
    );
}
