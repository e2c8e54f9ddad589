//! The inbox's forms and live stream as an outside tester attacked them: `back` on the older
//! and reply forms (never a way elsewhere, never huge), refusals, an app that hangs, the reply's
//! size limits, and odd or foreign `Last-Event-ID`s.

use std::time::Duration;

use pdchannels_testkit::{ProviderApp, TestHub};
use reqwest::header::{CONTENT_TYPE, COOKIE, LOCATION, ORIGIN};
use serde_json::json;

use crate::inbox::{browser, csrf_of, hub_synced_with, log_in, page};
use crate::provider_apps::conversation;

/// A hub whose channel `wa-1` belongs to an app holding older messages of `c1` (an empty page),
/// and a logged-in session: the app, the hub, the cookie and the form token.
async fn app_hub() -> (ProviderApp, TestHub, String, String) {
    let app = ProviderApp::start().await;
    let mut c1 = conversation("c1", "cust-1", 1);
    c1["next_messages_cursor"] = json!("p2");
    app.add_conversation("wa-1", c1);
    app.add_older_page("wa-1", "c1", "p2", json!([]), None);
    let hub = hub_synced_with(&app).await;
    let cookie = log_in(&hub, &hub.token).await;
    let (_, thread) = page(&hub, &cookie, "/inbox/wa-1/c1").await;
    let csrf = csrf_of(&thread);
    (app, hub, cookie, csrf)
}

/// `POST /inbox/wa-1/c1/older` with the session `cookie` and `form`.
async fn post_older(hub: &TestHub, cookie: &str, form: &[(&str, &str)]) -> reqwest::Response {
    browser()
        .post(hub.url("/inbox/wa-1/c1/older"))
        .header(COOKIE, cookie)
        .form(form)
        .send()
        .await
        .unwrap()
}

/// `back` can never take the 303 elsewhere: whatever it holds, the Location is the thread's
/// own path with a query, no line break, and of a sane size.
#[tokio::test]
async fn back_never_redirects_elsewhere() {
    let (_app, hub, cookie, csrf) = app_hub().await;
    let backs = [
        "//evil.example/x".to_owned(),
        "https://evil.example/".to_owned(),
        "javascript:alert(1)".to_owned(),
        "status=all\r\nSet-Cookie: x=y".to_owned(),
        "status=all%0d%0aSet-Cookie:%20x=y".to_owned(),
        "@evil.example".to_owned(),
        "\\\\evil.example".to_owned(),
        "a=%2F%2Fevil".to_owned(),
    ];
    for back in backs {
        let answer = post_older(
            &hub,
            &cookie,
            &[("csrf", csrf.as_str()), ("back", back.as_str())],
        )
        .await;
        let status = answer.status().as_u16();
        let location = answer
            .headers()
            .get(LOCATION)
            .map(|l| l.to_str().unwrap().to_owned());
        eprintln!("back={back:?} -> {status} {location:?}");
        assert_eq!(status, 303, "{back:?}");
        let location = location.unwrap();
        assert!(
            location.starts_with("/inbox/wa-1/c1"),
            "{back:?} -> {location}"
        );
        assert!(!location.contains(['\r', '\n']), "{location}");
        assert!(!location.starts_with("//"), "{location}");
    }
}

/// A huge `back` (within the 256 KiB form limit) is not the inbox's own: dropped, not echoed
/// into the `Location` header.
#[tokio::test]
async fn a_huge_back_is_dropped_not_echoed() {
    let (_app, hub, cookie, csrf) = app_hub().await;
    let back = format!("q={}", "a".repeat(200_000));
    let answer = post_older(
        &hub,
        &cookie,
        &[("csrf", csrf.as_str()), ("back", back.as_str())],
    )
    .await;
    let status = answer.status().as_u16();
    let len = answer
        .headers()
        .get(LOCATION)
        .map_or(0, reqwest::header::HeaderValue::len);
    eprintln!("huge back -> {status}, Location {len} bytes");
    assert_eq!(status, 303);
    assert!(len < 1024, "Location header of {len} bytes");
}

/// Refusals: a bad csrf, another Origin, no session.
#[tokio::test]
async fn older_is_refused_without_the_form_token_origin_or_session() {
    let (app, hub, cookie, csrf) = app_hub().await;
    let bad = post_older(&hub, &cookie, &[("csrf", "nope"), ("back", "")]).await;
    assert_eq!(bad.status(), 403);
    let missing = post_older(&hub, &cookie, &[("back", "")]).await;
    assert_eq!(missing.status(), 403);
    let other = browser()
        .post(hub.url("/inbox/wa-1/c1/older"))
        .header(COOKIE, &cookie)
        .header(ORIGIN, "https://evil.example")
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 403);
    let anonymous = browser()
        .post(hub.url("/inbox/wa-1/c1/older"))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 303);
    assert_eq!(anonymous.headers()[LOCATION], "/inbox/login");
    // No app was asked by any of them.
    let asked = app
        .requests()
        .iter()
        .filter(|r| r.query.as_deref().unwrap_or("").contains("after=p2"))
        .count();
    assert_eq!(asked, 0);
}

/// Unknown conversations and channels: not a 303 to a thread that does not exist, and never
/// a call to the app.
#[tokio::test]
async fn older_of_unknown_conversations_asks_no_app() {
    let (_app, hub, cookie, csrf) = app_hub().await;
    for path in [
        "/inbox/wa-1/nope/older",
        "/inbox/nope/c1/older",
        "/inbox/wa-1/c1%2F..%2F..%2Fx/older",
        "/inbox/wa-1/%00/older",
    ] {
        let answer = browser()
            .post(hub.url(path))
            .header(COOKIE, &cookie)
            .form(&[("csrf", csrf.as_str()), ("back", "")])
            .send()
            .await
            .unwrap();
        let status = answer.status().as_u16();
        let location = answer
            .headers()
            .get(LOCATION)
            .map(|l| l.to_str().unwrap().to_owned());
        eprintln!("{path} -> {status} {location:?}");
        assert!(status == 404 || status == 303, "{path}: {status}");
    }
}

/// An app that hangs: the older button answers within the app call's timeout, not never.
#[tokio::test]
async fn older_with_a_hanging_app_answers_within_the_call_timeout() {
    let (app, hub, cookie, csrf) = app_hub().await;
    app.misbehave(pdchannels_testkit::Misbehaviour {
        delay: Duration::from_secs(120),
        ..pdchannels_testkit::Misbehaviour::default()
    });
    let started = std::time::Instant::now();
    let answer = tokio::time::timeout(
        Duration::from_secs(60),
        browser()
            .post(hub.url("/inbox/wa-1/c1/older"))
            .header(COOKIE, &cookie)
            .form(&[("csrf", csrf.as_str()), ("back", "")])
            .send(),
    )
    .await
    .expect("the older button never answered in 60 s")
    .unwrap();
    eprintln!(
        "hanging app -> {} after {:?}",
        answer.status(),
        started.elapsed()
    );
    assert_eq!(answer.status(), 502);
}

/// The reply route: not a form, a chunked body over the limit, just under the limit.
#[tokio::test]
async fn reply_bodies_that_are_not_forms_or_too_large_send_nothing() {
    let (app, hub, cookie, csrf) = app_hub().await;
    // JSON, not a form: refused, nothing sent.
    let json_reply = browser()
        .post(hub.url("/inbox/wa-1/c1/reply"))
        .header(COOKIE, &cookie)
        .header(CONTENT_TYPE, "application/json")
        .body(format!("{{\"csrf\":\"{csrf}\",\"message\":\"hi\"}}"))
        .send()
        .await
        .unwrap();
    eprintln!("json reply -> {}", json_reply.status());
    assert_eq!(json_reply.status(), 415);
    // JSON from another site: refused without a page.
    let json_evil = browser()
        .post(hub.url("/inbox/wa-1/c1/reply"))
        .header(COOKIE, &cookie)
        .header(ORIGIN, "https://evil.example")
        .header(CONTENT_TYPE, "text/plain")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(json_evil.status(), 403);

    // Chunked, no length, over 640 KiB (raw HTTP/1.1).
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let address = hub.address.trim_start_matches("http://").to_owned();
        let mut socket = tokio::net::TcpStream::connect(&address).await.unwrap();
        let head = format!(
            "POST /inbox/wa-1/c1/reply HTTP/1.1\r\nHost: {address}\r\nCookie: {cookie}\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        );
        socket.write_all(head.as_bytes()).await.unwrap();
        let first = format!("csrf={csrf}&message=");
        socket
            .write_all(format!("{:x}\r\n{first}\r\n", first.len()).as_bytes())
            .await
            .unwrap();
        let chunk = vec![b'x'; 40 * 1024];
        for _ in 0..20 {
            if socket
                .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                .await
                .is_err()
            {
                break;
            }
            if socket.write_all(&chunk).await.is_err() {
                break;
            }
            let _ = socket.write_all(b"\r\n").await;
        }
        let _ = socket.write_all(b"0\r\n\r\n").await;
        let mut answer = Vec::new();
        let _ =
            tokio::time::timeout(Duration::from_secs(10), socket.read_to_end(&mut answer)).await;
        let answer = String::from_utf8_lossy(&answer);
        eprintln!("chunked 800 KiB -> {:?}", answer.lines().next());
        assert!(
            answer.starts_with("HTTP/1.1 413"),
            "{:?}",
            answer.lines().next()
        );
        assert!(answer.contains("far over 64 KiB"));
    }

    // Just under 640 KiB: read, refused as too long (400), the text kept.
    let overhead = format!("csrf={csrf}&back=&message=").len();
    let body = format!(
        "csrf={csrf}&back=&message={}",
        "y".repeat(640 * 1024 - overhead)
    );
    let under = browser()
        .post(hub.url("/inbox/wa-1/c1/reply"))
        .header(COOKIE, &cookie)
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    eprintln!("640 KiB exactly -> {}", under.status());
    assert_eq!(under.status(), 400);
    // One byte over.
    let body = format!(
        "csrf={csrf}&back=&message={}",
        "y".repeat(640 * 1024 - overhead + 1)
    );
    let over = browser()
        .post(hub.url("/inbox/wa-1/c1/reply"))
        .header(COOKIE, &cookie)
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    eprintln!("640 KiB + 1 -> {}", over.status());
    assert_eq!(over.status(), 413);
    assert!(app.posted().is_empty(), "nothing was sent");
}

/// The biggest reply a browser's box can send: 65,536 astral characters (UTF-16 counts each
/// as 2, so 32,768 of them), or 65,536 three-byte characters, with a long `back` filter.
#[tokio::test]
async fn the_largest_reply_the_box_takes_is_read_and_refused_with_its_text() {
    let (_app, hub, cookie, csrf) = app_hub().await;
    let text = "€".repeat(65_536);
    let back = format!("q={}", "é".repeat(4_000));
    let answer = browser()
        .post(hub.url("/inbox/wa-1/c1/reply"))
        .header(COOKIE, &cookie)
        .form(&[
            ("csrf", csrf.as_str()),
            ("back", back.as_str()),
            ("message", text.as_str()),
        ])
        .send()
        .await
        .unwrap();
    eprintln!("max box -> {}", answer.status());
    assert_eq!(
        answer.status(),
        400,
        "read, and refused as over 64 KiB with the text kept"
    );
}

/// Live: odd `Last-Event-ID`s never break the stream.
#[tokio::test]
async fn odd_last_event_ids_never_break_the_stream() {
    let hub = TestHub::start().await;
    hub.add_channel("wa").await;
    let cookie = log_in(&hub, &hub.token).await;
    let far_future = (pdchannels_model::Timestamp::now().unix_millis() + 3_600_000).to_string();
    for id in [
        "-5",
        "0",
        "9223372036854775807",
        "9223372036854775808",
        "99999999999999999999999",
        " 12 ",
        "1e3",
        "",
        far_future.as_str(),
    ] {
        let answer = browser()
            .get(hub.url("/inbox/events"))
            .header(COOKIE, &cookie)
            .header("last-event-id", id)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200, "{id:?}");
        let mut answer = answer;
        let first = tokio::time::timeout(Duration::from_secs(3), answer.chunk())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        eprintln!("id {id:?} -> {:?}", String::from_utf8_lossy(&first));
    }
}

/// A tab whose last id is further ahead of this hub's clock than the 2 s slack (its clock
/// stepped back, or another hub's runs ahead) is told to reload: a close made while it was away
/// is not lost.
#[tokio::test]
async fn an_id_ahead_of_the_hubs_clock_gets_a_resync() {
    let hub = TestHub::start().await;
    hub.add_channel("wa").await;
    let cookie = log_in(&hub, &hub.token).await;
    let answer = hub
        .receive(
            &json!({"id": "m1", "channel_id": "wa", "conversation_id": "c1",
                          "sender_id": "cust", "message": "hello", "status": "sent",
                          "created_at": "2024-01-01T10:00:00Z"}),
        )
        .await;
    assert_eq!(answer.status(), 200);
    // Open the feed, let c1's activity age past the clock slack.
    let mut first = browser()
        .get(hub.url("/inbox/events"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    let _ = first.chunk().await;
    drop(first);
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    // The tab's id: 30 s ahead of the hub.
    let id = pdchannels_model::Timestamp::now().unix_millis() + 30_000;
    assert!(
        hub.store
            .set_conversation_closed("wa", "c1", true)
            .await
            .unwrap()
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    let mut back = browser()
        .get(hub.url("/inbox/events"))
        .header(COOKIE, &cookie)
        .header("last-event-id", id.to_string())
        .send()
        .await
        .unwrap();
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while let Ok(Ok(Some(chunk))) = tokio::time::timeout_at(deadline, back.chunk()).await {
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    eprintln!("future id -> {seen:?}");
    assert!(
        seen.contains("event: resync"),
        "the close of c1 was neither replayed nor a resync asked: {seen:?}"
    );
}

/// A restarted hub on the same database: an id from the first hub gives `resync`.
#[tokio::test]
async fn an_id_from_before_a_restart_gets_a_resync() {
    let hub = TestHub::start().await;
    hub.add_channel("wa").await;
    let cookie = log_in(&hub, &hub.token).await;
    let mut stream = browser()
        .get(hub.url("/inbox/events"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    let _ = stream.chunk().await;
    let answer = hub
        .receive(
            &json!({"id": "m1", "channel_id": "wa", "conversation_id": "c1",
                          "sender_id": "cust", "message": "hello", "status": "sent",
                          "created_at": "2024-01-01T10:00:00Z"}),
        )
        .await;
    assert_eq!(answer.status(), 200);
    let mut seen = String::new();
    while !seen.contains("event: change") {
        seen.push_str(&String::from_utf8_lossy(
            &tokio::time::timeout(Duration::from_secs(5), stream.chunk())
                .await
                .unwrap()
                .unwrap()
                .unwrap(),
        ));
    }
    let last = seen
        .lines()
        .find_map(|l| l.strip_prefix("id: "))
        .unwrap()
        .to_owned();
    drop(stream);
    // A second hub on the same store (as after a restart), whose feed starts now.
    let second = TestHub::builder().store(hub.store.clone()).start().await;
    hub.shutdown.cancel();
    assert!(
        second
            .store
            .set_conversation_closed("wa", "c1", true)
            .await
            .unwrap()
    );
    let mut back = browser()
        .get(second.url("/inbox/events"))
        .header(COOKIE, &cookie)
        .header("last-event-id", &last)
        .send()
        .await
        .unwrap();
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while let Ok(Ok(Some(chunk))) = tokio::time::timeout_at(deadline, back.chunk()).await {
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    eprintln!("restarted -> {seen:?}");
    assert!(seen.contains("event: resync"), "{seen:?}");
}
