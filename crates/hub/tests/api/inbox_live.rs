//! The inbox's live stream (`GET /inbox/events`): a receive reaches an open stream as a
//! `change` naming its conversation; a stream that reconnects with `Last-Event-ID` is told what
//! it missed, or to reload after a long absence; streams need a session and end on shutdown.

use std::time::Duration;

use pdchannels_testkit::TestHub;
use reqwest::header::COOKIE;
use serde_json::json;

use crate::inbox::{browser, log_in};

/// An open event stream, read as text.
struct Stream {
    response: reqwest::Response,
    seen: String,
}

impl Stream {
    async fn open(hub: &TestHub, cookie: &str, last_event_id: Option<&str>) -> Self {
        let mut request = browser()
            .get(hub.url("/inbox/events"))
            .header(COOKIE, cookie);
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        Self {
            response,
            seen: String::new(),
        }
    }

    /// Reads until the stream holds `text` (within 5 s); answers everything read so far.
    async fn until(&mut self, text: &str) -> &str {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !self.seen.contains(text) {
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk())
                .await
                .unwrap_or_else(|_| panic!("never came: {text:?}; the stream said {:?}", self.seen))
                .unwrap();
            match chunk {
                Some(bytes) => self.seen.push_str(&String::from_utf8_lossy(&bytes)),
                None => panic!("the stream ended before {text:?}: {:?}", self.seen),
            }
        }
        &self.seen
    }

    /// The id of the last event read.
    fn last_id(&self) -> String {
        self.seen
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("id: ").or_else(|| l.strip_prefix("id:")))
            .expect("an event with an id")
            .trim()
            .to_owned()
    }

    /// Whether the stream ends within 5 s.
    async fn ends(mut self) -> bool {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            match tokio::time::timeout_at(deadline, self.response.chunk()).await {
                Err(_) => return false,
                Ok(Ok(None) | Err(_)) => return true,
                Ok(Ok(Some(_))) => {}
            }
        }
    }
}

async fn receive(hub: &TestHub, conversation: &str, id: &str) {
    let answer = hub
        .receive(
            &json!({"id": id, "channel_id": "wa", "conversation_id": conversation,
                         "sender_id": "cust", "message": "hello", "status": "sent",
                         "created_at": "2024-01-01T10:00:00Z"}),
        )
        .await;
    assert_eq!(answer.status(), 200);
}

#[tokio::test]
async fn a_receive_reaches_an_open_stream_and_a_reconnect_hears_what_it_missed() {
    let hub = TestHub::start().await;
    hub.add_channel("wa").await;
    let cookie = log_in(&hub, &hub.token).await;

    let anonymous = browser()
        .get(hub.url("/inbox/events"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 303, "a stream needs a session");

    let mut stream = Stream::open(&hub, &cookie, None).await;
    stream.until(": live").await;
    receive(&hub, "c1", "m1").await;
    let said = stream.until("[\"wa\",\"c1\"]").await.to_owned();
    assert!(said.contains("event: change"), "{said}");
    assert!(said.contains("\"new_messages\":1"), "{said}");
    let last = stream.last_id();
    drop(stream);

    // Away: two conversations change. The reconnect names them at once.
    tokio::time::sleep(Duration::from_millis(5)).await;
    receive(&hub, "c2", "m2").await;
    receive(&hub, "c3", "m3").await;
    let mut back = Stream::open(&hub, &cookie, Some(&last)).await;
    let said = back.until("[\"wa\",\"c3\"]").await.to_owned();
    assert!(said.contains("[\"wa\",\"c2\"]"), "{said}");
    assert!(said.contains("event: change"), "{said}");
    let replayed = back.last_id();
    assert!(
        replayed.parse::<i64>().unwrap() > last.parse::<i64>().unwrap(),
        "ids go on increasing: {last} then {replayed}"
    );
    drop(back);

    // Away for longer than the stream can replay: reload.
    let mut stale = Stream::open(&hub, &cookie, Some("1000")).await;
    stale.until("event: resync").await;
    drop(stale);

    // A reconnect that missed nothing is told nothing, then hears what comes.
    let now = pdchannels_model::Timestamp::now().unix_millis() + 5_000;
    let mut quiet = Stream::open(&hub, &cookie, Some(&now.to_string())).await;
    receive(&hub, "c4", "m4").await;
    let said = quiet.until("[\"wa\",\"c4\"]").await.to_owned();
    assert_eq!(said.matches("event: change").count(), 1, "{said}");
    // A garbage id is no id.
    let mut odd = Stream::open(&hub, &cookie, Some("not-a-number")).await;
    odd.until(": live").await;
}

/// Changes that bring no new message (a close, a delete, a read mark in another tab) made while
/// a tab was away are replayed too; a hub that was not running since the tab's last event
/// cannot say what it missed, so it says to reload.
#[tokio::test]
async fn a_reconnect_hears_closes_deletes_and_read_marks_it_missed() {
    let hub = TestHub::start().await;
    hub.add_channel("wa").await;
    let cookie = log_in(&hub, &hub.token).await;
    for (conversation, id) in [("c1", "m1"), ("c2", "m2"), ("c3", "m3")] {
        receive(&hub, conversation, id).await;
    }
    let before_the_feed = pdchannels_model::Timestamp::now().unix_millis() - 1_000;
    // Past the replay's clock slack: c1 to c3 have no activity a replay could find them by.
    tokio::time::sleep(Duration::from_millis(2_100)).await;

    let mut stream = Stream::open(&hub, &cookie, None).await;
    stream.until(": live").await;
    receive(&hub, "c4", "m4").await;
    stream.until("[\"wa\",\"c4\"]").await;
    let last = stream.last_id();
    drop(stream);

    // Away: one conversation closed, one deleted, one marked unread; none has a new message.
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert!(
        hub.store
            .set_conversation_closed("wa", "c1", true)
            .await
            .unwrap()
    );
    assert_eq!(
        hub.delete("/v1/channels/wa/conversations/c2")
            .await
            .status(),
        200
    );
    let token_id = hub.store.list_tokens().await.unwrap()[0].id.clone();
    assert!(
        hub.store
            .mark_inbox_unread(&token_id, "wa", "c3")
            .await
            .unwrap()
    );
    // The feed sends its batches at most every 250 ms: let the last one go.
    tokio::time::sleep(Duration::from_millis(400)).await;

    let mut back = Stream::open(&hub, &cookie, Some(&last)).await;
    let said = back.until("\"new_messages\":0}").await.to_owned();
    assert!(said.contains("event: change"), "{said}");
    for conversation in ["c1", "c2", "c3"] {
        assert!(
            said.contains(&format!("[\"wa\",\"{conversation}\"]")),
            "{conversation}: {said}"
        );
    }
    drop(back);

    // An id from before this hub's feed ran: what happened then is not known here.
    let mut restarted = Stream::open(&hub, &cookie, Some(&before_the_feed.to_string())).await;
    restarted.until("event: resync").await;
}

#[tokio::test]
async fn a_burst_of_receives_reaches_a_stream_in_a_few_batches() {
    let hub = TestHub::start().await;
    hub.add_channel("wa").await;
    let cookie = log_in(&hub, &hub.token).await;
    let mut stream = Stream::open(&hub, &cookie, None).await;
    stream.until(": live").await;
    let mut sends = Vec::new();
    for i in 0..200 {
        let hub = &hub;
        sends.push(async move { receive(hub, &format!("c{}", i % 20), &format!("m{i}")).await });
    }
    futures_util::future::join_all(sends).await;
    // After a pause longer than a batch's gap, in a batch of its own: named, whatever the
    // burst's batches could name (20 conversations each, then `more`).
    tokio::time::sleep(Duration::from_millis(600)).await;
    receive(&hub, "last", "m-last").await;
    let said = stream.until("[\"wa\",\"last\"]").await.to_owned();
    let batches = said.matches("event: change").count();
    assert!(
        (1..=40).contains(&batches),
        "201 receives came in {batches} batches: {said}"
    );
}

#[tokio::test]
async fn every_stream_ends_when_the_hub_shuts_down() {
    let hub = TestHub::start().await;
    let cookie = log_in(&hub, &hub.token).await;
    let mut streams = Vec::new();
    for _ in 0..3 {
        let mut stream = Stream::open(&hub, &cookie, None).await;
        stream.until(": live").await;
        streams.push(stream);
    }
    hub.shutdown.cancel();
    for stream in streams {
        assert!(stream.ends().await, "a stream outlived the shutdown");
    }
    tokio::time::timeout(Duration::from_secs(5), hub.server)
        .await
        .expect("the hub stopped: no stream held it")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn a_login_streams_at_most_16_tabs_and_a_stream_ends_soon_after_logout() {
    let hub = TestHub::start().await;
    let cookie = log_in(&hub, &hub.token).await;
    let mut streams = Vec::new();
    for _ in 0..16 {
        let mut stream = Stream::open(&hub, &cookie, None).await;
        stream.until(": live").await;
        streams.push(stream);
    }
    let refused = browser()
        .get(hub.url("/inbox/events"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 429);
    assert!(refused.text().await.unwrap().contains("16 live inbox tabs"));
    // The API is not starved by them.
    assert_eq!(hub.get("/v1/channels").await.status(), 200);
    let last = streams.pop().unwrap();
    drop(streams);
    // Places come back when streams end.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut again = Stream::open(&hub, &cookie, None).await;
    again.until(": live").await;
    drop(again);

    // Logging out ends the stream within the session check (10 s), not at its 5 minutes.
    let page = browser()
        .get(hub.url("/inbox"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = crate::inbox::csrf_of(&page);
    let out = browser()
        .post(hub.url("/inbox/logout"))
        .header(COOKIE, &cookie)
        .form(&[("csrf", csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 303);
    let started = std::time::Instant::now();
    let mut last = last;
    let ended = loop {
        match tokio::time::timeout(Duration::from_secs(15), last.response.chunk()).await {
            Err(_) => break false,
            Ok(Ok(None) | Err(_)) => break true,
            Ok(Ok(Some(_))) => {}
        }
    };
    assert!(ended, "the stream outlived its session");
    assert!(started.elapsed() < Duration::from_secs(15));
}

#[tokio::test]
async fn slow_logins_cannot_hold_the_hubs_connections() {
    use tokio::io::AsyncWriteExt;
    let hub = TestHub::start_with(|c| c.connections.max_connections = 40).await;
    // 30 logins that never finish their body: 16 are read (and time out), the rest are refused
    // at once; the API keeps answering.
    let authority = hub.address.trim_start_matches("http://").to_owned();
    let mut held = Vec::new();
    for _ in 0..30 {
        let mut socket = tokio::net::TcpStream::connect(&authority).await.unwrap();
        socket
            .write_all(
                format!(
                    "POST /inbox/login HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\ntoken=ab"
                )
                .as_bytes(),
            )
            .await
            .unwrap();
        held.push(socket);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..5 {
        assert_eq!(hub.get("/v1/channels").await.status(), 200);
    }
    // Within the 5 s a login body has, every held one is answered and let go.
    let mut answered = 0;
    for mut socket in held {
        let mut buffer = vec![0u8; 4096];
        let read = tokio::time::timeout(
            Duration::from_secs(8),
            tokio::io::AsyncReadExt::read(&mut socket, &mut buffer),
        )
        .await;
        if let Ok(Ok(n)) = read
            && n > 0
        {
            let head = String::from_utf8_lossy(&buffer[..n]).to_string();
            assert!(
                head.starts_with("HTTP/1.1 408") || head.starts_with("HTTP/1.1 503"),
                "{head}"
            );
            answered += 1;
        }
    }
    assert_eq!(answered, 30, "every slow login got an answer");
}
