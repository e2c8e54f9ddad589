//! The reads the hub makes of provider apps beyond the sync, end to end over real HTTP with the
//! fixture app: getSenderById for the participants an app flagged, getMessageById for links that
//! expire, getTemplates behind `GET /v1/channels/{id}/templates`.

use serde_json::{Value, json};

use pdchannels_testkit::{Misbehaviour, ProviderApp, TestHub};

use crate::provider_apps::{add_channel, body_of, conversation, eventually, hub_with_app};

/// Only the participants the app flagged (`fetch_avatar` without an avatar) are asked about,
/// each once for the channel, and a 404 keeps what is stored.
#[tokio::test]
async fn flagged_participants_are_asked_about_once_and_an_unknown_one_keeps_its_name() {
    let app = ProviderApp::start().await;
    let mut c1 = conversation("c1", "cust-1", 1);
    c1["participants"] = json!([
        {"id": "agent-1", "name": "Agent", "role": "source_user", "fetch_avatar": true,
         "avatar_url": "https://avatars.example/agent.png"},
        {"id": "cust-1", "role": "end_user", "fetch_avatar": true},
        {"id": "unknown-7", "name": "Kept", "role": "end_user", "fetch_avatar": true},
    ]);
    let mut c2 = conversation("c2", "cust-1", 1);
    c2["participants"] = json!([{"id": "cust-1", "role": "end_user", "fetch_avatar": true}]);
    app.add_conversation("wa-1", c1);
    app.add_conversation("wa-1", c2);
    let (hub, token) = hub_with_app(&app, 1).await;
    add_channel(&hub, &token, "wa-1").await;

    eventually("the customer's name and avatar arrive", || async {
        let people = hub.store.participant_details("wa-1", "c2").await.unwrap();
        people
            .first()
            .is_some_and(|p| p.name.as_deref() == Some("Sender cust-1"))
    })
    .await;
    eventually("every sender call is settled", || async {
        let calls = hub.store.app_calls(None, 50).await.unwrap();
        calls
            .iter()
            .filter(|c| c.endpoint == "getSenderById")
            .count()
            == 2
            && calls.iter().all(|c| c.state == "done")
    })
    .await;
    let people = hub.store.participant_details("wa-1", "c1").await.unwrap();
    let find = |id: &str| people.iter().find(|p| p.id == id).unwrap().clone();
    assert_eq!(
        find("cust-1").avatar_url.as_deref(),
        Some("https://avatars.example/cust-1.png")
    );
    assert_eq!(find("unknown-7").name.as_deref(), Some("Kept"));
    assert_eq!(
        find("agent-1").avatar_url.as_deref(),
        Some("https://avatars.example/agent.png")
    );
    let mut asked: Vec<String> = app
        .requests()
        .into_iter()
        .filter(|r| r.path.contains("/senders/"))
        .map(|r| r.path)
        .collect();
    asked.sort();
    assert_eq!(
        asked,
        [
            "/channels/wa-1/senders/cust-1",
            "/channels/wa-1/senders/unknown-7"
        ],
        "once each, though cust-1 is in two conversations; agent-1 has an avatar"
    );
}

fn with_file(id: &str, link_expires: bool) -> Value {
    json!({"id": id, "status": "sent", "created_at": "2022-03-29T06:38:06.913Z", "message": "see file",
           "sender_id": "cust-1", "attachments": [{"id": format!("{id}-a"), "type": "image/png",
           "url": format!("https://files.example/{id}.png"), "name": "photo.png",
           "link_expires": link_expires}]})
}

async fn read_message(hub: &TestHub, path: &str) -> (u16, Value) {
    let answer = hub
        .client
        .get(hub.url(path))
        .bearer_auth(&hub.token)
        .send()
        .await
        .unwrap();
    (answer.status().as_u16(), body_of(answer).await)
}

/// A link that expires is renewed by getMessageById when the message is read, at most once in
/// 5 minutes; an app that cannot renew it leaves the stored one shown with a warning.
#[tokio::test]
async fn an_expiring_link_is_renewed_when_its_message_is_read() {
    let app = ProviderApp::start().await;
    let mut c1 = conversation("c1", "cust-1", 0);
    c1["messages"] = json!([
        with_file("f1", true),
        with_file("f2", false),
        with_file("f3", true)
    ]);
    app.add_conversation("wa-1", c1);
    let (hub, token) = hub_with_app(&app, 1).await;
    add_channel(&hub, &token, "wa-1").await;
    eventually("synced", || async {
        hub.store.count_messages().await.unwrap() == 3
    })
    .await;

    let (status, body) = read_message(&hub, "/v1/channels/wa-1/conversations/c1/messages/f1").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["data"]["attachments"][0]["url"],
        "https://files.example/f1.png?v=1"
    );
    assert_eq!(body["data"]["attachments"][0]["link_expires"], true);
    assert!(body.get("additional_data").is_none(), "{body}");
    // Stored: read again, the renewed link without asking again.
    let (_, again) = read_message(&hub, "/v1/channels/wa-1/conversations/c1/messages/f1").await;
    assert_eq!(again["data"], body["data"]);
    let stored = hub.store.message("wa-1", "f1").await.unwrap().unwrap();
    assert_eq!(
        stored.message["attachments"][0]["url"],
        "https://files.example/f1.png?v=1"
    );
    // A link that does not expire is never asked about.
    let (status, _) = read_message(&hub, "/v1/channels/wa-1/conversations/c1/messages/f2").await;
    assert_eq!(status, 200);
    let asked: Vec<String> = app
        .requests()
        .into_iter()
        .filter(|r| r.path.contains("/messages/"))
        .map(|r| r.path)
        .collect();
    assert_eq!(asked, ["/channels/wa-1/messages/f1"]);

    app.misbehave(Misbehaviour {
        fail_next: Some((500, "INTERNAL", 1)),
        ..Misbehaviour::default()
    });
    let (status, body) = read_message(&hub, "/v1/channels/wa-1/conversations/c1/messages/f3").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["data"]["attachments"][0]["url"],
        "https://files.example/f3.png"
    );
    let warning = body["additional_data"]["warning"].as_str().unwrap();
    assert!(warning.contains("could not renew"), "{warning}");

    for path in [
        "/v1/channels/wa-1/conversations/c1/messages/nope",
        "/v1/channels/wa-1/conversations/other/messages/f1",
        "/v1/channels/nope/conversations/c1/messages/f1",
    ] {
        let (status, body) = read_message(&hub, path).await;
        assert_eq!(status, 404, "{path}: {body}");
    }
}

/// `GET /v1/channels/{id}/templates`: the app's templates for a channel with
/// `template_support`, and a clear answer for each way there are none.
#[tokio::test]
async fn templates_come_from_the_channels_app_and_each_refusal_says_why() {
    let app = ProviderApp::start().await;
    let (hub, token) = hub_with_app(&app, 1).await;
    for (id, templates, by) in [
        ("tpl", true, token.as_str()),
        ("plain", false, token.as_str()),
        ("lonely", true, hub.token.as_str()),
    ] {
        let answer = hub
            .client
            .post(hub.url("/v1/channels"))
            .bearer_auth(by)
            .json(&json!({"name": id, "provider_channel_id": id, "template_support": templates}))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
    }
    let (status, body) = read_message(&hub, "/v1/channels/tpl/templates").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["data"][0],
        json!({"id": "tpl-1", "name": "Welcome", "content": "Hello! How can we help?", "language": "en"})
    );
    let _ = read_message(&hub, "/v1/channels/tpl/templates").await;
    assert_eq!(
        app.requests()
            .iter()
            .filter(|r| r.path == "/channels/tpl/templates")
            .count(),
        1,
        "kept"
    );

    let (status, body) = read_message(&hub, "/v1/channels/plain/templates").await;
    assert_eq!(
        (status, body["additional_data"]["code"].as_str()),
        (409, Some("NO_TEMPLATES")),
        "{body}"
    );
    assert!(
        body["error"].as_str().unwrap().contains("template_support"),
        "{body}"
    );
    let (status, body) = read_message(&hub, "/v1/channels/lonely/templates").await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("channels link lonely"),
        "{body}"
    );
    let (status, _) = read_message(&hub, "/v1/channels/nope/templates").await;
    assert_eq!(status, 404);
}
