//! The notes mirror as its users run it: `serve --mirror` against the Pipedrive fixture (a
//! received message becomes a note on the customer's person and deal; the read API shows the
//! link; `mirror status` and `/metrics` count it; the token never reaches the log), `mirror`
//! alone on a hub's database, and `mirror link`, `pending`, `unlink` and the refusals.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::cargo::CommandCargoExt;
use pdchannels_testkit::pipedrive_api::{API_TOKEN, PipedriveApi};
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::commands::{json_lines, pdchannels, run, stderr, stdout, stdout_json};
use crate::serve::Serve;

const CUSTOMER: &str = "5511999990001@s.whatsapp.net";

fn message(id: &str, text: &str) -> Value {
    json!({"id": id, "channel_id": "wa", "conversation_id": "c1", "sender_id": CUSTOMER,
           "message": text, "status": "sent", "created_at": "2026-11-23T12:14:00Z"})
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < until, "{what} did not happen in 30 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn serve_mirror_writes_a_received_conversation_as_one_note_and_shows_the_link() {
    let api = PipedriveApi::start().await;
    let ana = api.add_person("Ana Souza", &["+55 11 99999-0001"], &[]);
    let deal = api.add_deal(ana, "Ana's order", "open");
    let hub = Serve::start_with(
        &[
            "--mirror",
            "--pipedrive-url",
            &api.url,
            "--time-zone",
            "America/Sao_Paulo",
            "--mirror-quiet",
            "0s",
            "--mirror-max-wait",
            "0s",
        ],
        &[
            ("PDCHANNELS_PIPEDRIVE_TOKEN", API_TOKEN),
            ("PDCHANNELS_LOG", "debug"),
        ],
    );
    assert!(
        hub.log().contains("mirroring conversations into Pipedrive"),
        "{}",
        hub.log()
    );
    let (status, _) = hub
        .post(
            "/v1/channels",
            &json!({"name": "WhatsApp", "provider_channel_id": "wa"}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = hub
        .post(
            "/v1/channels/messages/receive",
            &message("m1", "Oi, <b>tudo bem</b>?"),
        )
        .await;
    assert_eq!(status, 200);
    wait_for("the note", || api.notes_created() == 1).await;
    let note = &api.notes()[0];
    assert_eq!((note.person_id, note.deal_id), (Some(ana), Some(deal)));
    assert!(
        note.content.contains("Oi, &lt;b&gt;tudo bem&lt;/b&gt;?"),
        "{}",
        note.content
    );
    assert!(
        note.content.contains("09:14"),
        "São Paulo time: {}",
        note.content
    );

    let link: Value = reqwest::Client::new()
        .get(hub.url("/v1/channels/wa/conversations/c1/mirror"))
        .header("x-api-token", &hub.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(link["data"]["state"], "linked", "{link}");
    assert_eq!(link["data"]["person_id"], ana);
    assert_eq!(link["data"]["deal_id"], deal);

    // The call is counted once its answer is settled, a moment after the fixture made the note.
    let until = Instant::now() + Duration::from_secs(30);
    let metrics = loop {
        let metrics = hub.metrics().await;
        if metrics.contains("pdchannels_mirror_tokens_total{call=\"note_add\"} 10") {
            break metrics;
        }
        assert!(Instant::now() < until, "{metrics}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        metrics.contains("pdchannels_mirror_notes_total{write=\"created\"} 1"),
        "{metrics}"
    );

    let db = hub.dir.path().join("hub.db");
    let status = run(Command::cargo_bin("pdchannels")
        .unwrap()
        .arg("--db")
        .arg(&db)
        .args(["mirror", "status", "--json"]));
    assert!(status.status.success(), "{}", stderr(&status));
    let status = stdout_json(&status);
    assert_eq!(status["linked"], 1, "{status}");
    assert_eq!(status["notes_live"], 1);
    assert_eq!(status["tokens_today"], 20 + 10 + 10, "search, deals, POST");

    hub.signal("TERM");
    wait_for("the hub to stop", || {
        hub.log().contains("pdchannels hub stopped")
    })
    .await;
    assert!(
        !hub.log().contains(API_TOKEN),
        "the Pipedrive token is in the log"
    );
}

#[tokio::test]
async fn mirror_alone_writes_what_another_process_stored_and_stops_on_sigterm() {
    let api = PipedriveApi::start().await;
    api.add_person("Ana Souza", &["+55 11 99999-0001"], &[]);
    let dir = TempDir::new().unwrap();
    let created = run(pdchannels(&dir).args(["channels", "create", "--id", "wa", "--name", "WA"]));
    assert!(created.status.success(), "{}", stderr(&created));
    let received = run(pdchannels(&dir).args([
        "receive",
        "--channel-id",
        "wa",
        "--conversation-id",
        "c1",
        "--sender-id",
        CUSTOMER,
        "--id",
        "m1",
        "--message",
        "Olá",
    ]));
    assert!(received.status.success(), "{}", stderr(&received));

    // A database's first mirror must be told the company's time zone (it is recorded for good).
    let no_zone = run(pdchannels(&dir)
        .args(["mirror", "--pipedrive-url", &api.url])
        .env("PDCHANNELS_PIPEDRIVE_TOKEN", API_TOKEN)
        .env_remove("PDCHANNELS_TIME_ZONE"));
    assert_eq!(no_zone.status.code(), Some(1));
    assert!(
        stderr(&no_zone).contains("needs the company's time zone"),
        "{}",
        stderr(&no_zone)
    );
    let mut mirror = pdchannels(&dir)
        .args([
            "mirror",
            "--pipedrive-url",
            &api.url,
            "--time-zone",
            "America/Sao_Paulo",
            "--mirror-quiet",
            "0s",
            "--mirror-max-wait",
            "0s",
        ])
        .env("PDCHANNELS_PIPEDRIVE_TOKEN", API_TOKEN)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("the note", || api.notes_created() == 1).await;
    let killed = Command::new("kill")
        .args(["-TERM", &mirror.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = pdchannels_testkit::wait_within(&mut mirror, Duration::from_secs(30), "mirror");
    assert!(status.success(), "{status}");
    assert!(api.notes()[0].content.contains("Olá"));
}

#[test]
fn link_pending_and_unlink_say_what_they_did_and_refuse_what_is_not_there() {
    let dir = TempDir::new().unwrap();
    run(pdchannels(&dir).args(["channels", "create", "--id", "wa", "--name", "WA"]));
    let received = run(pdchannels(&dir).args([
        "receive",
        "--channel-id",
        "wa",
        "--conversation-id",
        "c1",
        "--sender-id",
        "s1",
        "--id",
        "m1",
        "--message",
        "hi",
    ]));
    assert!(received.status.success(), "{}", stderr(&received));

    let empty = run(pdchannels(&dir).args(["mirror", "pending", "--json"]));
    assert!(empty.status.success());
    assert!(stdout(&empty).is_empty());

    let missing = run(pdchannels(&dir).args(["mirror", "link", "wa", "nope", "--person", "4"]));
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        stderr(&missing).contains("no conversation \"nope\""),
        "{}",
        stderr(&missing)
    );

    let lead = "adf21080-0e10-11eb-879b-05d71fb426ec";
    let both = run(pdchannels(&dir).args([
        "mirror", "link", "wa", "c1", "--person", "4", "--deal", "5", "--lead", lead,
    ]));
    assert_eq!(both.status.code(), Some(2), "{}", stderr(&both));
    let not_a_lead = run(pdchannels(&dir).args([
        "mirror", "link", "wa", "c1", "--person", "4", "--lead", "xyz",
    ]));
    assert_eq!(not_a_lead.status.code(), Some(2));
    assert!(
        stderr(&not_a_lead).contains("a lead's id is a UUID"),
        "{}",
        stderr(&not_a_lead)
    );

    let linked =
        run(pdchannels(&dir).args(["mirror", "link", "wa", "c1", "--person", "4", "--deal", "5"]));
    assert!(linked.status.success(), "{}", stderr(&linked));
    assert!(
        stderr(&linked).contains("linked wa/c1 to person 4 and deal 5;"),
        "{}",
        stderr(&linked)
    );
    let status = stdout_json(&run(pdchannels(&dir).args(["mirror", "status", "--json"])));
    assert_eq!(status["linked"], 1, "{status}");
    assert_eq!(
        status["waiting_to_write"], 0,
        "nothing read yet: no mirror ran"
    );

    let unlinked = run(pdchannels(&dir).args(["mirror", "unlink", "wa", "c1"]));
    assert!(unlinked.status.success(), "{}", stderr(&unlinked));
    let again = run(pdchannels(&dir).args(["mirror", "unlink", "wa", "c1"]));
    assert_eq!(again.status.code(), Some(1));
    assert!(json_lines(&run(pdchannels(&dir).args(["mirror", "pending", "--json"]))).is_empty());
}

#[test]
fn the_mirror_refuses_to_start_without_credentials_an_address_or_a_real_time_zone() {
    let dir = TempDir::new().unwrap();
    let no_token = run(pdchannels(&dir)
        .env_remove("PDCHANNELS_PIPEDRIVE_TOKEN")
        .args(["mirror", "--pipedrive-url", "http://127.0.0.1:9"]));
    assert_eq!(no_token.status.code(), Some(1));
    assert!(
        stderr(&no_token).contains("PDCHANNELS_PIPEDRIVE_TOKEN"),
        "{}",
        stderr(&no_token)
    );

    let no_url = run(pdchannels(&dir)
        .env("PDCHANNELS_PIPEDRIVE_TOKEN", "secret-token-value")
        .env_remove("PDCHANNELS_PIPEDRIVE_URL")
        .args(["mirror"]));
    assert_eq!(no_url.status.code(), Some(1));
    assert!(
        stderr(&no_url).contains("--pipedrive-url"),
        "{}",
        stderr(&no_url)
    );
    assert!(!stderr(&no_url).contains("secret-token-value"));

    let zone = run(pdchannels(&dir).args(["mirror", "--time-zone", "Europe/Londn"]));
    assert_eq!(zone.status.code(), Some(2));
    assert!(
        stderr(&zone).contains("not an IANA time zone"),
        "{}",
        stderr(&zone)
    );

    let serve = run(pdchannels(&dir)
        .env_remove("PDCHANNELS_PIPEDRIVE_TOKEN")
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--mirror",
            "--pipedrive-url",
            "http://127.0.0.1:9",
        ]));
    assert_eq!(serve.status.code(), Some(1));
    assert!(
        stderr(&serve).contains("needs Pipedrive credentials"),
        "{}",
        stderr(&serve)
    );
}

/// Channel `wa`, and a message from a customer whose number is a Pipedrive person's.
async fn a_customer_writes(hub: &Serve) {
    let (status, _) = hub
        .post(
            "/v1/channels",
            &json!({"name": "WhatsApp", "provider_channel_id": "wa"}),
        )
        .await;
    assert_eq!(status, 200);
    hub.post("/v1/channels/messages/receive", &message("m1", "Oi"))
        .await;
}

/// `pdchannels mirror status` on the hub's database.
fn mirror_status_of(hub: &Serve) -> Output {
    run(Command::cargo_bin("pdchannels")
        .unwrap()
        .arg("--db")
        .arg(hub.dir.path().join("hub.db"))
        .args(["mirror", "status"]))
}

#[tokio::test]
async fn a_mirror_stopped_for_the_day_says_so_in_mirror_status() {
    let api = PipedriveApi::start().await;
    api.add_person("Ana Souza", &["+55 11 99999-0001"], &[]);
    // Room for the person search only: then the company is below its floor.
    api.set_daily_token_limit(20);
    let hub = Serve::start_with(
        &[
            "--mirror",
            "--pipedrive-url",
            &api.url,
            "--time-zone",
            "UTC",
            "--mirror-quiet",
            "0s",
            "--mirror-max-wait",
            "0s",
        ],
        &[("PDCHANNELS_PIPEDRIVE_TOKEN", API_TOKEN)],
    );
    let status = || mirror_status_of(&hub);
    a_customer_writes(&hub).await;
    wait_for("the stop in mirror status", || {
        stdout(&status()).contains("STOPPED for today: ")
    })
    .await;
    assert_eq!(api.notes_created(), 0);
    assert!(hub.log().contains("stopped for the day"), "{}", hub.log());
}

#[tokio::test]
async fn a_mirror_whose_credentials_are_refused_says_what_to_fix_in_mirror_status() {
    let api = PipedriveApi::start().await;
    api.add_person("Ana Souza", &["+55 11 99999-0001"], &[]);
    let hub = Serve::start_with(
        &[
            "--mirror",
            "--pipedrive-url",
            &api.url,
            "--time-zone",
            "UTC",
        ],
        &[("PDCHANNELS_PIPEDRIVE_TOKEN", "not-the-token")],
    );
    let status = || mirror_status_of(&hub);
    a_customer_writes(&hub).await;
    wait_for("the trouble in mirror status", || {
        stdout(&status()).contains("CANNOT WRITE: Pipedrive refuses the credentials (HTTP 401)")
    })
    .await;
    assert!(stdout(&status()).contains("PDCHANNELS_PIPEDRIVE_TOKEN"));
    assert!(
        hub.log()
            .contains("the notes mirror cannot write: Pipedrive refuses the credentials"),
        "{}",
        hub.log()
    );
    assert!(
        !hub.log().contains("not-the-token"),
        "the token is never logged"
    );
}
