//! The inbox's read state, filters and search over HTTP: unread per person, marked read by
//! opening, "mark unread"; awaiting reply; close, reopen and delete; search by a word of a
//! message, a prefix, or a participant's name.

use pdchannels_testkit::{ProviderApp, TestHub};
use reqwest::header::{COOKIE, LOCATION};
use serde_json::json;

use crate::inbox::{browser, csrf_of, log_in, page};
use crate::provider_apps::{add_channel, conversation, eventually, hub_with_app};

async fn receive(hub: &TestHub, channel: &str, conversation: &str, id: &str, text: &str) {
    let answer = hub
        .receive(
            &json!({"id": id, "channel_id": channel, "conversation_id": conversation,
                         "sender_id": format!("cust-{conversation}"), "message": text,
                         "status": "sent", "created_at": "2024-01-01T10:00:00Z"}),
        )
        .await;
    assert_eq!(answer.status(), 200);
}

async fn post(hub: &TestHub, cookie: &str, path: &str, form: &[(&str, &str)]) -> (u16, String) {
    let answer = browser()
        .post(hub.url(path))
        .header(COOKIE, cookie)
        .form(form)
        .send()
        .await
        .unwrap();
    let status = answer.status().as_u16();
    let location = answer
        .headers()
        .get(LOCATION)
        .map(|l| l.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, location)
}

/// The rows of a list page: `(conversation href, unread, awaiting, closed)`.
fn rows(html: &str) -> Vec<(String, bool, bool, bool)> {
    html.split("<li class=\"row")
        .skip(1)
        .map(|row| {
            let row = row.split("</li>").next().unwrap();
            let href = row
                .split("href=\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
                .unwrap()
                .to_owned();
            (
                href,
                row.contains("class=\"badge\""),
                row.contains("class=\"awaiting\""),
                row.contains("class=\"closed\""),
            )
        })
        .collect()
}

fn title(html: &str) -> &str {
    html.split("<title>")
        .nth(1)
        .and_then(|t| t.split("</title>").next())
        .unwrap()
}

#[tokio::test]
async fn opening_reads_a_conversation_for_that_person_only_and_a_new_message_makes_it_unread() {
    let hub = TestHub::start().await;
    hub.add_channel("wa").await;
    receive(&hub, "wa", "c1", "m1", "hello").await;
    receive(&hub, "wa", "c2", "m2", "hi there").await;
    let ada = log_in(&hub, &hub.token).await;
    let other_token = hub.store.create_token("bob").await.unwrap();
    let bob = log_in(
        &hub,
        secrecy::ExposeSecret::expose_secret(&other_token.secret),
    )
    .await;

    let (_, list) = page(&hub, &ada, "/inbox").await;
    assert_eq!(title(&list), "(2) Inbox · pdchannels");
    assert_eq!(
        rows(&list),
        [
            ("/inbox/wa/c2".into(), true, true, false),
            ("/inbox/wa/c1".into(), true, true, false)
        ]
    );

    let (status, thread) = page(&hub, &ada, "/inbox/wa/c1").await;
    assert_eq!(status, 200);
    assert_eq!(title(&thread), "(1) cust-c1 · pdchannels");
    let (_, list) = page(&hub, &ada, "/inbox").await;
    assert_eq!(rows(&list)[1], ("/inbox/wa/c1".into(), false, true, false));
    let (_, unread_only) = page(&hub, &ada, "/inbox?unread=1").await;
    assert_eq!(rows(&unread_only).len(), 1, "{unread_only}");
    let (_, bobs) = page(&hub, &bob, "/inbox").await;
    assert_eq!(
        title(&bobs),
        "(2) Inbox · pdchannels",
        "read state is per person"
    );

    // A tab refreshing itself in the background does not read for the person.
    let background = browser()
        .get(hub.url("/inbox/wa/c2"))
        .header(COOKIE, &ada)
        .header("x-inbox-background", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(background.status(), 200);
    let (_, list) = page(&hub, &ada, "/inbox").await;
    assert!(rows(&list)[0].1, "c2 is still unread");

    receive(&hub, "wa", "c1", "m3", "one more thing").await;
    let (_, list) = page(&hub, &ada, "/inbox").await;
    assert_eq!(rows(&list)[0], ("/inbox/wa/c1".into(), true, true, false));

    // Mark unread: back to the list (with its filters), unread until opened again.
    let (_, thread) = page(&hub, &ada, "/inbox/wa/c1?status=all").await;
    let csrf = csrf_of(&thread);
    assert!(
        thread.contains("name=\"back\" value=\"status=all\""),
        "{thread}"
    );
    let (status, to) = post(
        &hub,
        &ada,
        "/inbox/wa/c1/unread",
        &[("csrf", &csrf), ("back", "status=all")],
    )
    .await;
    assert_eq!((status, to.as_str()), (303, "/inbox?status=all"));
    let (_, list) = page(&hub, &ada, "/inbox").await;
    assert!(rows(&list)[0].1, "marked unread");
    let (status, _) = post(&hub, &ada, "/inbox/wa/c1/unread", &[("csrf", "forged")]).await;
    assert_eq!(status, 403);
    let (status, _) = post(&hub, &ada, "/inbox/wa/nope/unread", &[("csrf", &csrf)]).await;
    assert_eq!(status, 404);
    // A `back` that tries to leave the inbox stays in it.
    let (_, to) = post(
        &hub,
        &ada,
        "/inbox/wa/c1/unread",
        &[
            ("csrf", &csrf),
            ("back", "x=1\r\nLocation: https://evil.example"),
        ],
    )
    .await;
    assert_eq!(to, "/inbox");
}

#[tokio::test]
async fn closing_moves_a_conversation_out_of_the_open_list_and_delete_asks_first() {
    let hub = TestHub::start().await;
    hub.add_channel("wa").await;
    receive(&hub, "wa", "c1", "m1", "hello").await;
    receive(&hub, "wa", "c2", "m2", "bye").await;
    let cookie = log_in(&hub, &hub.token).await;
    let (_, thread) = page(&hub, &cookie, "/inbox/wa/c1").await;
    let csrf = csrf_of(&thread);

    let (status, to) = post(&hub, &cookie, "/inbox/wa/c1/close", &[("csrf", &csrf)]).await;
    assert_eq!((status, to.as_str()), (303, "/inbox"));
    let (_, open) = page(&hub, &cookie, "/inbox").await;
    assert_eq!(rows(&open).len(), 1, "{open}");
    let (_, closed) = page(&hub, &cookie, "/inbox?status=closed").await;
    assert_eq!(rows(&closed)[0].0, "/inbox/wa/c1?status=closed");
    assert!(rows(&closed)[0].3, "shown as closed");
    let (_, all) = page(&hub, &cookie, "/inbox?status=all").await;
    assert_eq!(rows(&all).len(), 2);
    let (_, thread) = page(&hub, &cookie, "/inbox/wa/c1").await;
    assert!(thread.contains("/inbox/wa/c1/reopen"), "{thread}");
    let (status, to) = post(&hub, &cookie, "/inbox/wa/c1/reopen", &[("csrf", &csrf)]).await;
    assert_eq!((status, to.as_str()), (303, "/inbox/wa/c1"));
    let (_, open) = page(&hub, &cookie, "/inbox").await;
    assert_eq!(rows(&open).len(), 2);

    // Delete: a page that asks, then the POST.
    let (status, confirm) = page(&hub, &cookie, "/inbox/wa/c2/delete").await;
    assert_eq!(status, 200);
    assert!(confirm.contains("cannot be undone"), "{confirm}");
    assert_eq!(
        hub.store.count_messages().await.unwrap(),
        2,
        "asking deletes nothing"
    );
    let (status, _) = post(&hub, &cookie, "/inbox/wa/c2/delete", &[("csrf", "forged")]).await;
    assert_eq!(status, 403);
    let (status, to) = post(&hub, &cookie, "/inbox/wa/c2/delete", &[("csrf", &csrf)]).await;
    assert_eq!((status, to.as_str()), (303, "/inbox"));
    assert_eq!(hub.store.count_messages().await.unwrap(), 1);
    let (status, _) = page(&hub, &cookie, "/inbox/wa/c2").await;
    assert_eq!(status, 404);
    let (status, _) = post(&hub, &cookie, "/inbox/wa/c2/delete", &[("csrf", &csrf)]).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn search_finds_a_conversation_by_a_word_a_prefix_or_a_name_and_never_errs() {
    let hub = TestHub::start().await;
    hub.add_channel("wa").await;
    receive(
        &hub,
        "wa",
        "c1",
        "m1",
        "Is the blue bicycle still in stock?",
    )
    .await;
    receive(&hub, "wa", "c2", "m2", "Where is my order #1234?").await;
    receive(&hub, "wa", "c3", "m3", "Café crème, s'il vous plaît").await;
    let cookie = log_in(&hub, &hub.token).await;
    let found = |q: &'static str| {
        let hub = &hub;
        let cookie = &cookie;
        async move {
            let path = format!(
                "/inbox?q={}",
                url::form_urlencoded::byte_serialize(q.as_bytes()).collect::<String>()
            );
            let (status, html) = page(hub, cookie, &path).await;
            assert_eq!(status, 200, "{q}: {html}");
            rows(&html)
                .into_iter()
                .map(|r| r.0.split('?').next().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(found("bicycle").await, ["/inbox/wa/c1"]);
    assert_eq!(found("BLUE stock").await, ["/inbox/wa/c1"], "every word");
    assert_eq!(
        found("bicy").await,
        ["/inbox/wa/c1"],
        "the last word as a prefix"
    );
    assert_eq!(found("order 1234").await, ["/inbox/wa/c2"]);
    assert_eq!(found("café").await, ["/inbox/wa/c3"]);
    assert_eq!(
        found("cust-c2").await,
        ["/inbox/wa/c2"],
        "a participant's id"
    );
    assert!(found("nothing-like-this").await.is_empty());
    for odd in [
        "\"",
        "*",
        "NEAR(",
        "a OR b",
        "%",
        "_",
        "' OR 1=1 --",
        "!!!",
        "(((",
        "-",
    ] {
        let (status, _) = page(
            &hub,
            &cookie,
            &format!(
                "/inbox?q={}",
                url::form_urlencoded::byte_serialize(odd.as_bytes()).collect::<String>()
            ),
        )
        .await;
        assert_eq!(status, 200, "{odd:?}");
    }
    let (_, html) = page(&hub, &cookie, "/inbox?q=blue").await;
    assert!(html.contains("value=\"blue\""), "the box keeps the search");
    assert!(html.contains("href=\"/inbox/wa/c1?q=blue\""), "{html}");
    // An edit (a receive again with the message's id) changes what is found.
    receive(&hub, "wa", "c1", "m1", "Now it is a scooter").await;
    assert_eq!(found("scooter").await, ["/inbox/wa/c1"]);
    assert!(
        found("bicycle").await.is_empty(),
        "the old text is not found"
    );
    // A deleted conversation is not found.
    assert_eq!(
        hub.delete("/v1/channels/wa/conversations/c2")
            .await
            .status(),
        200
    );
    assert!(found("order").await.is_empty());
}

#[tokio::test]
async fn awaiting_reply_ends_when_we_answer_and_the_filter_shows_only_those_waiting() {
    let app = ProviderApp::start().await;
    app.add_conversation("wa-1", conversation("c1", "cust-1", 1));
    app.add_conversation("wa-1", conversation("c2", "cust-2", 1));
    let (hub, app_token) = hub_with_app(&app, 1).await;
    add_channel(&hub, &app_token, "wa-1").await;
    eventually("synced", || async {
        hub.store.count_messages().await.unwrap() == 2
    })
    .await;
    let cookie = log_in(&hub, &hub.token).await;
    let (_, list) = page(&hub, &cookie, "/inbox?awaiting=1").await;
    assert_eq!(rows(&list).len(), 2, "{list}");
    let (_, thread) = page(&hub, &cookie, "/inbox/wa-1/c1").await;
    let csrf = csrf_of(&thread);
    let (status, _) = post(
        &hub,
        &cookie,
        "/inbox/wa-1/c1/reply",
        &[("csrf", &csrf), ("message", "On it")],
    )
    .await;
    assert_eq!(status, 303);
    let (_, list) = page(&hub, &cookie, "/inbox?awaiting=1").await;
    assert_eq!(
        rows(&list).into_iter().map(|r| r.0).collect::<Vec<_>>(),
        ["/inbox/wa-1/c2?awaiting=1"]
    );
    let (_, all) = page(&hub, &cookie, "/inbox").await;
    let c1 = rows(&all)
        .into_iter()
        .find(|r| r.0 == "/inbox/wa-1/c1")
        .unwrap();
    assert_eq!(
        c1,
        ("/inbox/wa-1/c1".into(), false, false, false),
        "answered and read"
    );
}
