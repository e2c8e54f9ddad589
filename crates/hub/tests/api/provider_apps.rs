//! The hub calling provider apps back, end to end over real HTTP: a channel created with an app's
//! token is synced (getConversations), a receive in a conversation nobody described yet brings
//! its participants (getConversationById), and the apps' refusals change what the hub does.
//! The app is `pdchannels_testkit::ProviderApp`, which keeps to the documented contract and
//! misbehaves on request as Pipedrive's own example app does.

use std::time::{Duration, Instant};

use pdchannels_model::Channels;
use pdchannels_model::manifest::Manifest;
use pdchannels_store::{NewApp, Store};
use pdchannels_testkit::{APP_CLIENT_ID, APP_CLIENT_SECRET, Misbehaviour, ProviderApp, TestHub};
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use crate::helpers::{body, message};

/// The fixture app as the hub knows it: its manifest and credentials, `pages` of backfill.
pub(crate) fn fixture_app(app: &ProviderApp, name: &str, pages: u32) -> NewApp {
    NewApp {
        name: name.into(),
        client_id: APP_CLIENT_ID.into(),
        client_secret: APP_CLIENT_SECRET.to_owned().into(),
        manifest: Manifest::parse(&app.manifest()).unwrap(),
        manifest_source: "fixture".into(),
        backfill_pages: pages,
    }
}

/// A hub with the fixture app added (backfill `pages`) and a token of that app.
pub(crate) async fn hub_with_app(app: &ProviderApp, pages: u32) -> (TestHub, String) {
    let hub = TestHub::start().await;
    let new = fixture_app(app, "wa", pages);
    assert!(hub.store.add_app(&new, false).await.unwrap());
    let token = hub.store.create_app_token("wa", Some("wa")).await.unwrap();
    (hub, token.secret.expose_secret().to_owned())
}

pub(crate) async fn add_channel(hub: &TestHub, token: &str, id: &str) {
    let answer = hub
        .client
        .post(hub.url("/v1/channels"))
        .bearer_auth(token)
        .json(&json!({"name": "WhatsApp", "provider_channel_id": id}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
}

pub(crate) fn conversation(id: &str, customer: &str, messages: usize) -> Value {
    json!({
        "id": id, "link": format!("https://wa.example/{id}"), "status": "open", "seen": false,
        "next_messages_cursor": null,
        "participants": [
            {"id": "agent-1", "name": "Agent Smith", "role": "source_user"},
            {"id": customer, "name": format!("Customer {customer}"), "role": "end_user",
             "avatar_url": "https://avatars.example/c.png"},
        ],
        "messages": (0..messages).map(|i| json!({
            "id": format!("{id}-m{i}"), "status": "sent", "created_at": "2022-03-29T06:38:06.913Z",
            "message": format!("hello {i}"), "sender_id": customer,
        })).collect::<Vec<_>>(),
    })
}

/// Waits (up to 10 s) until `check` holds.
pub(crate) async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let until = Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(Instant::now() < until, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub(crate) async fn count(store: &Store) -> i64 {
    store.count_messages().await.unwrap()
}

#[tokio::test]
async fn a_channel_created_with_an_apps_token_is_synced_from_the_app() {
    let app = ProviderApp::start().await;
    app.add_conversation("wa-1", conversation("c1", "cust-1", 3));
    app.add_conversation("wa-1", conversation("c2", "cust-2", 2));
    app.add_conversation("other", conversation("x", "cust-x", 1));
    let (hub, token) = hub_with_app(&app, 1).await;
    add_channel(&hub, &token, "wa-1").await;

    eventually("the app's 5 messages are stored", || async {
        count(&hub.store).await == 5
    })
    .await;
    let people = hub.store.participant_details("wa-1", "c1").await.unwrap();
    let customer = people
        .iter()
        .find(|p| p.id == "cust-1")
        .expect("the customer is a participant");
    assert_eq!(customer.name.as_deref(), Some("Customer cust-1"));
    assert_eq!(customer.role.as_deref(), Some("end_user"));
    assert_eq!(
        customer.avatar_url.as_deref(),
        Some("https://avatars.example/c.png")
    );
    assert!(
        people
            .iter()
            .any(|p| p.id == "agent-1" && p.role.as_deref() == Some("source_user"))
    );

    let sync = &app.requests()[0];
    assert_eq!(sync.method, "GET");
    assert_eq!(sync.path, "/channels/wa-1/conversations");
    assert_eq!(
        sync.query.as_deref(),
        Some("conversations_limit=30&messages_limit=30")
    );
    assert_eq!(
        sync.authorization,
        Some(pdchannels_testkit::app_basic_auth())
    );
    // Settled once its answer is applied (a moment after the messages are stored).
    eventually("the sync is recorded done", || async {
        let calls = hub.store.app_calls(None, 10).await.unwrap();
        calls
            .iter()
            .any(|c| c.endpoint == "getConversations" && c.state == "done")
    })
    .await;
}

#[tokio::test]
async fn a_cursor_that_never_ends_stops_at_a_repeat_and_pages_follow_a_real_one() {
    let app = ProviderApp::start().await;
    for i in 0..70 {
        app.add_conversation("wa-1", conversation(&format!("c{i}"), "cust", 1));
    }
    // Three pages allowed: 30 + 30 + 10 conversations, one message each.
    let (hub, token) = hub_with_app(&app, 3).await;
    add_channel(&hub, &token, "wa-1").await;
    eventually("70 conversations synced", || async {
        count(&hub.store).await == 70
    })
    .await;
    let pages: Vec<Option<String>> = app
        .requests()
        .iter()
        .filter(|r| r.path == "/channels/wa-1/conversations")
        .map(|r| r.query.clone())
        .collect();
    assert_eq!(pages.len(), 3, "{pages:?}");
    assert!(
        pages[1].as_deref().unwrap().ends_with("after=30"),
        "{pages:?}"
    );

    // The example app's `after: "c-next"` on every page: read twice at most, not forever.
    let app = ProviderApp::start().await;
    app.add_conversation("wa-2", conversation("c1", "cust", 1));
    app.misbehave(Misbehaviour {
        endless_cursor: true,
        ..Misbehaviour::default()
    });
    let (hub, token) = hub_with_app(&app, 50).await;
    add_channel(&hub, &token, "wa-2").await;
    eventually("the sync is done", || async {
        hub.store
            .app_calls(Some("done"), 10)
            .await
            .unwrap()
            .iter()
            .any(|c| c.endpoint == "getConversations")
    })
    .await;
    let syncs = app
        .requests()
        .iter()
        .filter(|r| r.path == "/channels/wa-2/conversations")
        .count();
    assert_eq!(syncs, 2, "the first page, then the cursor once: it repeats");
}

#[tokio::test]
async fn a_receive_in_a_new_conversation_brings_its_participants_once_without_waiting() {
    let app = ProviderApp::start().await;
    let (hub, token) = hub_with_app(&app, 1).await;
    add_channel(&hub, &token, "wa-1").await;
    // The channel's first sync finds nothing; the conversation exists at the app only after.
    eventually("the first sync is done", || async {
        hub.store.app_calls(Some("done"), 10).await.unwrap().len() == 1
    })
    .await;
    app.add_conversation("wa-1", conversation("a/b c", "cust-9", 0));
    let mut receives = Vec::new();
    for i in 0..5 {
        let mut m = message(&format!("m{i}"), "a/b c", "sent");
        m["channel_id"] = json!("wa-1");
        m["sender_id"] = json!("cust-9");
        receives.push(m);
    }
    for m in &receives {
        let answer = hub
            .client
            .post(hub.url("/v1/channels/messages/receive"))
            .bearer_auth(&token)
            .json(m)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200, "{}", body(answer).await);
    }
    eventually("the customer's name arrives", || async {
        hub.store
            .participant_details("wa-1", "a/b c")
            .await
            .unwrap()
            .iter()
            .any(|p| p.name.as_deref() == Some("Customer cust-9"))
    })
    .await;
    let asked: Vec<String> = app
        .requests()
        .iter()
        .filter(|r| r.path.contains("/conversations/"))
        .map(|r| r.path.clone())
        .collect();
    // The id is one encoded path segment, and asked about once for the five receives.
    assert_eq!(asked, ["/channels/wa-1/conversations/a%2Fb%20c"]);
}

#[tokio::test]
async fn refusals_pause_the_app_stop_it_or_end_the_call_and_say_why() {
    // 401: the app refuses our credentials; nothing more is called until they are replaced.
    let app = ProviderApp::start().await;
    app.add_conversation("wa-1", conversation("c1", "cust", 1));
    app.misbehave(Misbehaviour {
        fail_next: Some((401, "UNAUTHORIZED", 1)),
        ..Misbehaviour::default()
    });
    let (hub, token) = hub_with_app(&app, 1).await;
    add_channel(&hub, &token, "wa-1").await;
    eventually("the app is marked", || async {
        hub.store
            .app("wa")
            .await
            .unwrap()
            .unwrap()
            .credentials_invalid_at_ms
            .is_some()
    })
    .await;
    let info = hub.store.app("wa").await.unwrap().unwrap();
    assert!(info.last_error.unwrap().contains("401 UNAUTHORIZED"));
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        app.requests().len(),
        1,
        "no call while the credentials are refused"
    );
    assert_eq!(count(&hub.store).await, 0);
    // New credentials: the waiting call goes on by itself.
    let replacement = fixture_app(&app, "wa", 1);
    assert!(hub.store.add_app(&replacement, true).await.unwrap());
    eventually("synced after the credentials were replaced", || async {
        count(&hub.store).await == 1
    })
    .await;

    // 429 with retry_by: the app is paused until then; the call waits, not dead.
    let app = ProviderApp::start().await;
    app.add_conversation("wa-1", conversation("c1", "cust", 1));
    app.misbehave(Misbehaviour {
        fail_next: Some((429, "RATE_LIMIT_EXCEEDED", 1)),
        retry_by: Some("2999-01-01T00:00:00Z".into()),
        ..Misbehaviour::default()
    });
    let (hub, token) = hub_with_app(&app, 1).await;
    add_channel(&hub, &token, "wa-1").await;
    eventually("the app is paused", || async {
        hub.store
            .app("wa")
            .await
            .unwrap()
            .unwrap()
            .paused_until_ms
            .is_some()
    })
    .await;
    // The app is paused before the call is settled: wait for the call's record too.
    eventually("the call waits with the app's 429", || async {
        let calls = hub.store.app_calls(None, 10).await.unwrap();
        calls[0].state == "pending" && calls[0].last_status == Some(429)
    })
    .await;

    // 500 as an HTML page: tried again later, the page's words kept for whoever debugs.
    let app = ProviderApp::start().await;
    app.misbehave(Misbehaviour {
        fail_next: Some((500, "INTERNAL", 1)),
        html_errors: true,
        ..Misbehaviour::default()
    });
    let (hub, token) = hub_with_app(&app, 1).await;
    add_channel(&hub, &token, "wa-1").await;
    eventually("the failure is recorded", || async {
        hub.store
            .app_calls(None, 10)
            .await
            .unwrap()
            .iter()
            .any(|c| c.last_status == Some(500))
    })
    .await;
    let call = &hub.store.app_calls(None, 10).await.unwrap()[0];
    assert_eq!(call.state, "pending", "retried later");
    assert!(
        call.last_error.as_deref().unwrap().contains("told to fail"),
        "{call:?}"
    );
    assert!(
        call.last_answer
            .as_deref()
            .unwrap()
            .contains("<pre>told to fail</pre>")
    );
    assert!(
        call.next_attempt_at_ms > call.updated_at_ms,
        "with a backoff"
    );
}

/// A synced conversation with an agent (`source_user`) and two customers (`end_user`).
async fn synced_conversation(app: &ProviderApp, hub: &TestHub, token: &str) {
    let mut c = conversation("c1", "cust-1", 1);
    c["participants"]
        .as_array_mut()
        .unwrap()
        .push(json!({"id": "cust-2", "name": "Second", "role": "end_user"}));
    app.add_conversation("wa-1", c);
    add_channel(hub, token, "wa-1").await;
    eventually("synced", || async { count(&hub.store).await == 1 }).await;
}

async fn send(hub: &TestHub, conversation: &str, body: Value) -> (u16, Value) {
    let answer = hub
        .client
        .post(hub.url(&format!(
            "/v1/channels/wa-1/conversations/{conversation}/messages"
        )))
        .bearer_auth(&hub.token)
        .json(&body)
        .send()
        .await
        .unwrap();
    (answer.status().as_u16(), body_of(answer).await)
}

pub(crate) async fn body_of(answer: reqwest::Response) -> Value {
    body(answer).await
}

#[tokio::test]
async fn a_reply_goes_out_through_post_message_and_takes_the_apps_id() {
    let app = ProviderApp::start().await;
    let (hub, token) = hub_with_app(&app, 1).await;
    synced_conversation(&app, &hub, &token).await;

    let (status, sent) = send(&hub, "c1", json!({"message": "Hello from the hub"})).await;
    assert_eq!(status, 200, "{sent}");
    assert_eq!(sent["data"]["id"], "msg-pd-1");
    assert_eq!(sent["data"]["status"], "sent");
    let posted = &app.posted()[0];
    assert_eq!(posted.values("message"), ["Hello from the hub"]);
    assert_eq!(
        posted.values("senderId"),
        ["agent-1"],
        "the source_user sends"
    );
    assert_eq!(posted.values("conversationId"), ["c1"]);
    assert_eq!(
        posted.values("recipientIds[]"),
        ["cust-1", "cust-2"],
        "one part per end_user"
    );
    assert_eq!(
        posted.idempotency_key.as_deref(),
        sent["data"]["local_id"].as_str()
    );

    // The reply is a message of the conversation; the app's later receive moves its status.
    let stored = hub
        .store
        .message("wa-1", "msg-pd-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.message["status"], "sent");
    assert_eq!(stored.message["sender_id"], "agent-1");
    let mut read = message("msg-pd-1", "c1", "read");
    read["channel_id"] = json!("wa-1");
    read["sender_id"] = json!("agent-1");
    hub.receive(&read).await;
    let stored = hub
        .store
        .message("wa-1", "msg-pd-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.message["status"], "read");
}

#[tokio::test]
async fn a_receive_of_the_new_id_before_post_message_answers_makes_no_duplicate() {
    let app = ProviderApp::start().await;
    let (hub, token) = hub_with_app(&app, 1).await;
    synced_conversation(&app, &hub, &token).await;
    app.report_before_answering(&hub.address, &token);
    let (status, sent) = send(&hub, "c1", json!({"message": "race"})).await;
    assert_eq!(status, 200, "{sent}");
    assert_eq!(
        count(&hub.store).await,
        2,
        "the synced message and the reply, once"
    );
    let stored = hub
        .store
        .message("wa-1", "msg-pd-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        stored.message["status"], "delivered",
        "the app's report stands"
    );
}

#[tokio::test]
async fn a_reply_the_app_does_not_take_is_kept_failed_and_sent_again_only_on_request() {
    let app = ProviderApp::start().await;
    let (hub, token) = hub_with_app(&app, 1).await;
    synced_conversation(&app, &hub, &token).await;
    app.misbehave(Misbehaviour {
        fail_next: Some((500, "INTERNAL", 1)),
        html_errors: true,
        ..Misbehaviour::default()
    });
    let (status, failed) = send(&hub, "c1", json!({"message": "try me"})).await;
    assert_eq!(status, 502, "{failed}");
    let text = failed["error"].as_str().unwrap().to_owned();
    let local_id = text
        .split_whitespace()
        .nth(7)
        .unwrap()
        .trim_end_matches(':')
        .to_owned();
    assert!(local_id.starts_with("out_"), "{text}");
    assert!(
        failed["error_info"].as_str().unwrap().contains("retry"),
        "{failed}"
    );
    let state = hub.store.outgoing(&local_id).await.unwrap().unwrap();
    assert_eq!(state.state, "failed");
    assert!(state.failure.unwrap().contains("500"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(app.posted().is_empty(), "not sent again on its own");

    let (status, sent) = send(&hub, "c1", json!({"retry": local_id})).await;
    assert_eq!(status, 200, "{sent}");
    assert_eq!(app.posted()[0].values("message"), ["try me"]);
    assert_eq!(
        app.posted()[0].idempotency_key.as_deref(),
        Some(local_id.as_str()),
        "the same key again"
    );
    let (status, again) = send(&hub, "c1", json!({"retry": local_id})).await;
    assert_eq!(status, 400, "a sent reply is not sent twice: {again}");
    assert_eq!(app.posted().len(), 1);
}

#[tokio::test]
async fn replies_that_cannot_go_are_refused_clearly_and_store_nothing() {
    let app = ProviderApp::start().await;
    let (hub, token) = hub_with_app(&app, 1).await;
    synced_conversation(&app, &hub, &token).await;

    let (status, empty) = send(&hub, "c1", json!({"message": "  "})).await;
    assert_eq!(status, 400);
    assert_eq!(
        empty["additional_data"]["errors"][0]["path"], "message",
        "{empty}"
    );
    let (status, typo) = send(&hub, "c1", json!({"mesage": "x"})).await;
    assert_eq!(status, 400);
    assert_eq!(typo["additional_data"]["errors"][0]["path"], "mesage");
    let (status, unknown) = send(&hub, "nope", json!({"message": "x"})).await;
    assert_eq!(status, 404, "{unknown}");

    // A channel of no app: says why and how to link one.
    hub.add_channel("plain").await;
    let mut m = message("p1", "pc", "sent");
    m["channel_id"] = json!("plain");
    hub.receive(&m).await;
    let answer = hub
        .client
        .post(hub.url("/v1/channels/plain/conversations/pc/messages"))
        .bearer_auth(&hub.token)
        .json(&json!({"message": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 409);
    let why = body(answer).await;
    assert!(
        why["error"]
            .as_str()
            .unwrap()
            .contains("channels link plain"),
        "{why}"
    );

    // After reply_by: free text refused, pointing to templates; a template goes.
    let mut late = message("late", "c1", "sent");
    late["channel_id"] = json!("wa-1");
    late["sender_id"] = json!("cust-1");
    late["created_at"] = json!("2030-01-01 10:00");
    late["reply_by"] = json!("2020-01-02 10:00");
    hub.receive(&late).await;
    let (status, closed) = send(&hub, "c1", json!({"message": "too late"})).await;
    assert_eq!(status, 409, "{closed}");
    assert!(
        closed["error"].as_str().unwrap().contains("template"),
        "{closed}"
    );
    assert!(app.posted().is_empty(), "nothing went to the app");
    let (status, templated) = send(
        &hub,
        "c1",
        json!({"message": "Hi {{1}}", "template_id": "t1"}),
    )
    .await;
    assert_eq!(status, 200, "{templated}");
}

/// Found by an outside test: an app answering getConversationById with another conversation's
/// id planted that conversation and left the asked one undescribed, asked again on every tick.
#[tokio::test]
async fn an_answer_about_another_id_describes_the_conversation_asked_about_once() {
    let app = ProviderApp::start().await;
    app.add_conversation("wa-1", conversation("someone-else", "cust-7", 0));
    let (hub, token) = hub_with_app(&app, 1).await;
    add_channel(&hub, &token, "wa-1").await;
    eventually("synced", || async {
        hub.store.app_calls(Some("done"), 10).await.unwrap().len() == 1
    })
    .await;
    hub.store
        .delete_conversation(
            pdchannels_model::DeleteConversation::parse(
                &json!({"channel_id": "wa-1", "conversation_id": "someone-else"}),
                &pdchannels_model::Limits::default(),
            )
            .unwrap(),
        )
        .await
        .unwrap();
    app.misbehave(Misbehaviour {
        wrong_id: true,
        ..Misbehaviour::default()
    });
    let mut m = message("m1", "asked", "sent");
    m["channel_id"] = json!("wa-1");
    m["sender_id"] = json!("cust-7");
    hub.receive(&m).await;
    eventually("the asked conversation is described", || async {
        hub.store
            .participant_details("wa-1", "asked")
            .await
            .unwrap()
            .iter()
            .any(|p| p.name.as_deref() == Some("Customer cust-7"))
    })
    .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let asked = app
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/asked"))
        .count();
    assert_eq!(asked, 1, "asked once, not on every tick");
    let planted = hub
        .store
        .conversation("wa-1", "someone-else")
        .await
        .unwrap();
    assert!(
        planted.is_none(),
        "no conversation planted under the app's other id"
    );
}

/// Found by an outside test: one slow app held every app's calls (the worker waited for a batch
/// of 4 to finish). Each call is its own task now, at most 4 per app.
#[tokio::test]
async fn a_slow_app_does_not_hold_another_apps_calls() {
    let slow = ProviderApp::start().await;
    slow.misbehave(Misbehaviour {
        delay: Duration::from_secs(20),
        ..Misbehaviour::default()
    });
    let (hub, slow_token) = hub_with_app(&slow, 1).await;
    for i in 0..6 {
        add_channel(&hub, &slow_token, &format!("slow-{i}")).await;
    }
    let fast = ProviderApp::start().await;
    fast.add_conversation("fast-1", conversation("c1", "cust", 2));
    let new = fixture_app(&fast, "fast", 1);
    assert!(hub.store.add_app(&new, false).await.unwrap());
    let fast_token = hub
        .store
        .create_app_token("fast", Some("fast"))
        .await
        .unwrap();
    // Once the slow app's calls are in flight.
    eventually("the slow app is being called", || async {
        slow.requests().len() >= 4
    })
    .await;
    let started = Instant::now();
    add_channel(&hub, fast_token.secret.expose_secret(), "fast-1").await;
    eventually("the fast app's channel is synced", || async {
        count(&hub.store).await == 2
    })
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        slow.requests().len() <= 4,
        "at most 4 calls in flight to one app"
    );
}
