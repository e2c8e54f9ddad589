//! The web inbox over HTTP: logging in (a token or a one-time link) to a session cookie,
//! logging out, the list and the thread with every text escaped, a reply through the channel's
//! app, and the refusals that keep other sites out (CSRF token, Origin).

use pdchannels_testkit::{ProviderApp, TestHub};
use reqwest::header::{COOKIE, LOCATION, ORIGIN, SET_COOKIE};
use serde_json::json;

use crate::provider_apps::{add_channel, conversation, eventually, hub_with_app};

/// A client that does not follow redirects, so each 303 can be checked.
pub(crate) fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Logs in with `token`; answers the session cookie (`name=value`).
pub(crate) async fn log_in(hub: &TestHub, token: &str) -> String {
    let answer = browser()
        .post(hub.url("/inbox/login"))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 303);
    assert_eq!(answer.headers()[LOCATION], "/inbox");
    let set = answer.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/inbox"] {
        assert!(set.contains(attribute), "{set}");
    }
    assert!(
        !set.contains(token),
        "the token never goes to the browser: {set}"
    );
    set.split(';').next().unwrap().to_owned()
}

pub(crate) async fn page(hub: &TestHub, cookie: &str, path: &str) -> (u16, String) {
    let answer = browser()
        .get(hub.url(path))
        .header(COOKIE, cookie)
        .send()
        .await
        .unwrap();
    let status = answer.status().as_u16();
    (status, answer.text().await.unwrap())
}

/// A hub whose channel `wa-1` belongs to `app` and is synced (its one message stored).
pub(crate) async fn hub_synced_with(app: &ProviderApp) -> TestHub {
    let (hub, app_token) = hub_with_app(app, 1).await;
    add_channel(&hub, &app_token, "wa-1").await;
    eventually("synced", || async {
        hub.store.count_messages().await.unwrap() == 1
    })
    .await;
    hub
}

/// The form token a page carries.
pub(crate) fn csrf_of(html: &str) -> String {
    html.split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a form token on the page")
        .to_owned()
}

#[tokio::test]
async fn the_inbox_asks_for_a_login_and_a_token_or_a_one_time_link_opens_a_session() {
    let hub = TestHub::start().await;
    let anonymous = browser().get(hub.url("/inbox")).send().await.unwrap();
    assert_eq!(anonymous.status(), 303);
    assert_eq!(anonymous.headers()[LOCATION], "/inbox/login");

    let wrong = browser()
        .post(hub.url("/inbox/login"))
        .form(&[("token", "pdc_wrong")])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    assert!(
        wrong
            .text()
            .await
            .unwrap()
            .contains("not an active API token")
    );

    let cookie = log_in(&hub, &hub.token).await;
    let answer = browser()
        .get(hub.url("/inbox"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let csp = answer.headers()["content-security-policy"]
        .to_str()
        .unwrap();
    assert!(
        csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    // No referrer leaves for another site; the inbox's own forms keep their Origin (under
    // `no-referrer` a browser posts `Origin: null`).
    assert_eq!(answer.headers()["referrer-policy"], "same-origin");
    let html = answer.text().await.unwrap();
    assert!(html.contains("No conversations yet"), "{html}");

    // Logging out needs the page's form token, and ends the session.
    let forged = browser()
        .post(hub.url("/inbox/logout"))
        .header(COOKIE, &cookie)
        .form(&[("csrf", "forged")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    let out = browser()
        .post(hub.url("/inbox/logout"))
        .header(COOKIE, &cookie)
        .form(&[("csrf", csrf_of(&html))])
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 303);
    assert_eq!(out.headers()[LOCATION], "/inbox/login");
    let (status, _) = page(&hub, &cookie, "/inbox").await;
    assert_eq!(status, 303, "the session ended");

    // A one-time link: it works once.
    let token_id = hub.store.verify_token(&hub.token).await.unwrap().unwrap();
    let link = hub
        .store
        .create_login_link(&token_id)
        .await
        .unwrap()
        .unwrap();
    let path = format!(
        "/inbox/login/{}",
        secrecy::ExposeSecret::expose_secret(&link)
    );
    let first = browser().get(hub.url(&path)).send().await.unwrap();
    assert_eq!(first.status(), 303);
    let cookie = first.headers()[SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    assert_eq!(page(&hub, &cookie, "/inbox").await.0, 200);
    let again = browser().get(hub.url(&path)).send().await.unwrap();
    assert_eq!(again.status(), 401);
}

#[tokio::test]
async fn conversations_show_escaped_and_a_reply_goes_out_through_the_channels_app() {
    let app = ProviderApp::start().await;
    let mut c1 = conversation("c1", "cust-1", 1);
    c1["messages"][0]["message"] = json!("<img src=x onerror=alert(1)> hello");
    app.add_conversation("wa-1", c1);
    let hub = hub_synced_with(&app).await;
    hub.add_channel("plain").await;
    hub.receive(&json!({"id": "p1", "channel_id": "plain", "conversation_id": "v/1", "sender_id": "s",
                        "message": "no app here", "status": "sent", "created_at": "2024-01-01 10:00"}))
        .await;

    let cookie = log_in(&hub, &hub.token).await;
    let (status, list) = page(&hub, &cookie, "/inbox").await;
    assert_eq!(status, 200);
    assert!(list.contains("Customer cust-1"), "{list}");
    assert!(
        list.contains("&#60;img src=x onerror=alert(1)&#62; hello"),
        "{list}"
    );
    assert!(!list.contains("<img src=x"), "never as HTML: {list}");
    let (status, thread) = page(&hub, &cookie, "/inbox/wa-1/c1").await;
    assert_eq!(status, 200);
    assert!(!thread.contains("<img src=x"), "{thread}");
    assert!(thread.contains("class=\"composer\""), "{thread}");
    let csrf = csrf_of(&thread);

    let reply = |form: Vec<(&'static str, String)>, origin: Option<&'static str>| {
        let mut request = browser()
            .post(hub.url("/inbox/wa-1/c1/reply"))
            .header(COOKIE, &cookie)
            .form(&form);
        if let Some(origin) = origin {
            request = request.header(ORIGIN, origin);
        }
        request.send()
    };
    let forged = reply(vec![("message", "forged".into())], None)
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    let cross_site = reply(
        vec![("csrf", csrf.clone()), ("message", "cross".into())],
        Some("https://evil.example"),
    )
    .await
    .unwrap();
    assert_eq!(cross_site.status(), 403);
    assert!(app.posted().is_empty(), "nothing went out");

    let sent = reply(
        vec![("csrf", csrf.clone()), ("message", "Thanks, on it".into())],
        None,
    )
    .await
    .unwrap();
    assert_eq!(sent.status(), 303);
    assert_eq!(sent.headers()[LOCATION], "/inbox/wa-1/c1");
    assert_eq!(app.posted()[0].values("message"), ["Thanks, on it"]);
    let (_, thread) = page(&hub, &cookie, "/inbox/wa-1/c1").await;
    assert!(thread.contains("Thanks, on it"), "{thread}");
    assert!(thread.contains("message outgoing"), "{thread}");

    let empty = reply(vec![("csrf", csrf.clone()), ("message", "  ".into())], None)
        .await
        .unwrap();
    assert_eq!(empty.status(), 400);
    assert!(empty.text().await.unwrap().contains("the reply is empty"));

    // A channel of no app: no composer, and why.
    let (status, plain) = page(&hub, &cookie, "/inbox/plain/v%2F1").await;
    assert_eq!(status, 200, "{plain}");
    assert!(plain.contains("belongs to no provider app"), "{plain}");
    assert!(!plain.contains("class=\"composer\""), "{plain}");
    for path in ["/inbox/plain/nope", "/inbox/plain/v%001"] {
        let (status, _) = page(&hub, &cookie, path).await;
        assert_eq!(status, 404, "{path}");
    }
    let (status, _) = page(&hub, &cookie, "/inbox?channel=pl%00ain").await;
    assert_eq!(status, 200);
    let (status, filtered) = page(&hub, &cookie, "/inbox?channel=plain").await;
    assert_eq!(status, 200);
    assert!(
        filtered.contains("no app here") && !filtered.contains("Customer cust-1"),
        "{filtered}"
    );
}

#[tokio::test]
async fn a_reply_the_app_refuses_goes_back_to_the_thread_where_it_shows_failed_with_retry() {
    let app = ProviderApp::start().await;
    app.add_conversation("wa-1", conversation("c1", "cust-1", 1));
    let hub = hub_synced_with(&app).await;
    let cookie = log_in(&hub, &hub.token).await;
    let (_, thread) = page(&hub, &cookie, "/inbox/wa-1/c1").await;
    let csrf = csrf_of(&thread);
    app.misbehave(pdchannels_testkit::Misbehaviour {
        fail_next: Some((503, "UNAVAILABLE", 1)),
        ..pdchannels_testkit::Misbehaviour::default()
    });
    let post = |form: Vec<(&'static str, String)>| {
        browser()
            .post(hub.url("/inbox/wa-1/c1/reply"))
            .header(COOKIE, &cookie)
            .form(&form)
            .send()
    };
    let failed = post(vec![
        ("csrf", csrf.clone()),
        ("message", "Are you there?".into()),
    ])
    .await
    .unwrap();
    // Back to the thread (a reload of the page cannot post the reply a second time).
    assert_eq!(failed.status(), 303);
    assert_eq!(failed.headers()[LOCATION], "/inbox/wa-1/c1");
    let (_, thread) = page(&hub, &cookie, "/inbox/wa-1/c1").await;
    assert!(thread.contains("Not sent"), "{thread}");
    assert_eq!(thread.matches("Are you there?").count(), 1, "{thread}");
    let local_id = thread
        .split("name=\"retry\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("a Retry button")
        .to_owned();
    let retried = post(vec![("csrf", csrf.clone()), ("retry", local_id)])
        .await
        .unwrap();
    assert_eq!(retried.status(), 303);
    let (_, thread) = page(&hub, &cookie, "/inbox/wa-1/c1").await;
    assert!(!thread.contains("Not sent"), "{thread}");
    assert_eq!(
        app.posted()
            .iter()
            .filter(|p| p.values("message") == ["Are you there?"])
            .count(),
        1,
        "sent once, by the Retry"
    );

    // A form whose origin the browser hid (`Origin: null`) is refused, saying so.
    let hidden = browser()
        .post(hub.url("/inbox/wa-1/c1/reply"))
        .header(COOKIE, &cookie)
        .header(ORIGIN, "null")
        .form(&[("csrf", csrf.as_str()), ("message", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(hidden.status(), 403);
    assert!(hidden.text().await.unwrap().contains("Origin: null"));
}

/// The oldest stored messages of a channel whose app holds older ones: the thread offers to ask
/// the app, and the button stores them and comes back to the same page, which now shows them.
/// An app that fails shows why, stores nothing, and the button stays.
#[tokio::test]
async fn older_messages_than_the_hub_stores_are_asked_of_the_app_from_the_thread() {
    let app = ProviderApp::start().await;
    let mut c1 = conversation("c1", "cust-1", 1);
    c1["next_messages_cursor"] = json!("p2");
    app.add_conversation("wa-1", c1);
    let april = json!([{"id": "old-1", "status": "read", "sender_id": "cust-1",
                        "created_at": "2020-04-01T10:00:00.000Z", "message": "from april"}]);
    app.add_older_page("wa-1", "c1", "p2", april, None);
    let hub = hub_synced_with(&app).await;
    let cookie = log_in(&hub, &hub.token).await;
    let (_, thread) = page(&hub, &cookie, "/inbox/wa-1/c1?status=all").await;
    assert!(thread.contains("Older messages from the app"), "{thread}");
    assert!(!thread.contains("from april"));
    let csrf = csrf_of(&thread);
    let ask = |csrf: String| {
        browser()
            .post(hub.url("/inbox/wa-1/c1/older"))
            .header(COOKIE, &cookie)
            .form(&[("csrf", csrf), ("back", "status=all".to_owned())])
            .send()
    };
    assert_eq!(ask("forged".into()).await.unwrap().status(), 403);

    app.misbehave(pdchannels_testkit::Misbehaviour {
        fail_next: Some((503, "UNAVAILABLE", 1)),
        ..pdchannels_testkit::Misbehaviour::default()
    });
    let failed = ask(csrf.clone()).await.unwrap();
    assert_eq!(failed.status(), 502);
    let html = failed.text().await.unwrap();
    assert!(html.contains("could not give older messages"), "{html}");
    assert!(html.contains("Older messages from the app"), "{html}");
    assert_eq!(hub.store.count_messages().await.unwrap(), 1);

    let asked = ask(csrf).await.unwrap();
    assert_eq!(asked.status(), 303);
    assert_eq!(asked.headers()[LOCATION], "/inbox/wa-1/c1?status=all");
    let (_, thread) = page(&hub, &cookie, "/inbox/wa-1/c1?status=all").await;
    assert!(thread.contains("from april"), "{thread}");
    assert!(
        !thread.contains("Older messages from the app"),
        "the app holds no older ones now: {thread}"
    );
}

/// Another page on the same host may set a cookie of the inbox's name with a narrower `Path`,
/// which the browser sends first: the person's own session still counts, and logging out ends
/// that one.
#[tokio::test]
async fn a_planted_cookie_of_the_same_name_does_not_hide_the_session() {
    let hub = TestHub::start().await;
    let cookie = log_in(&hub, &hub.token).await;
    let both = format!("pdchannels_inbox=planted-by-another-page; {cookie}");
    let (status, list) = page(&hub, &both, "/inbox").await;
    assert_eq!(status, 200, "{list}");
    let logout = browser()
        .post(hub.url("/inbox/logout"))
        .header(COOKIE, &both)
        .form(&[("csrf", csrf_of(&list))])
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), 303);
    let (status, _) = page(&hub, &cookie, "/inbox").await;
    assert_eq!(status, 303, "the session the cookies named is over");
}

/// A reply the hub refuses comes back with the list as it was filtered and the text in the
/// box, however long the text the box took; a form too large to read says so and sends
/// nothing.
#[tokio::test]
async fn a_refused_reply_keeps_the_filters_and_the_text_and_a_huge_one_says_why() {
    let app = ProviderApp::start().await;
    app.add_conversation("wa-1", conversation("c1", "cust-1", 1));
    let hub = hub_synced_with(&app).await;
    let cookie = log_in(&hub, &hub.token).await;
    let (_, thread) = page(&hub, &cookie, "/inbox/wa-1/c1?channel=wa-1&status=all").await;
    let csrf = csrf_of(&thread);
    assert!(
        thread.contains("name=\"back\" value=\"channel=wa-1&#38;status=all\""),
        "the composer carries the filters: {thread}"
    );
    let post = |message: String| {
        browser()
            .post(hub.url("/inbox/wa-1/c1/reply"))
            .header(COOKIE, &cookie)
            .form(&[
                ("csrf", csrf.clone()),
                ("back", "channel=wa-1&status=all".to_owned()),
                ("message", message),
            ])
            .send()
    };

    // 50,000 accented letters: 100,000 bytes, over the 64 KiB a message may be, and 300,000
    // bytes once form-encoded (more than the inbox's other forms take).
    let long = "é".repeat(50_000);
    let refused = post(long.clone()).await.unwrap();
    assert_eq!(refused.status(), 400);
    let html = refused.text().await.unwrap();
    assert!(html.contains("the limit is 64 KiB"), "{html}");
    assert!(html.contains(&long), "the text stays in the box");
    assert!(
        html.contains("<option value=\"all\" selected>"),
        "the list as it was filtered"
    );
    assert!(
        html.contains("data-address=\"/inbox/wa-1/c1?channel=wa-1&#38;status=all\""),
        "the page's own address, for the script to settle on"
    );

    // Over what any reply box can send: the thread again, saying why, nothing sent.
    let huge = browser()
        .post(hub.url("/inbox/wa-1/c1/reply"))
        .header(COOKIE, &cookie)
        .header(
            reqwest::header::REFERER,
            hub.url("/inbox/wa-1/c1?channel=wa-1&status=all"),
        )
        .form(&[("csrf", csrf.clone()), ("message", "x".repeat(700 * 1024))])
        .send()
        .await
        .unwrap();
    assert_eq!(huge.status(), 413);
    let html = huge.text().await.unwrap();
    assert!(html.contains("far over 64 KiB"), "{html}");
    assert!(
        html.contains("<option value=\"all\" selected>"),
        "the filters of the page it was sent from"
    );
    assert!(
        html.contains("class=\"composer\""),
        "the thread, with its reply box"
    );

    // An ordinary reply goes back to the thread with the filters.
    let sent = post("Thanks!".to_owned()).await.unwrap();
    assert_eq!(sent.status(), 303);
    assert_eq!(
        sent.headers()[LOCATION],
        "/inbox/wa-1/c1?channel=wa-1&status=all"
    );
    eventually("sent", || async { app.posted().len() == 1 }).await;
    assert_eq!(app.posted()[0].values("message"), ["Thanks!"]);
}
