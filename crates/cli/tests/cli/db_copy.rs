//! `pdchannels db copy` as a user runs it: a SQLite hub copied into a fresh PostgreSQL database.
//!
//! - Every table populated (status updates, a deleted conversation, a revoked token, outbox
//!   calls pending, leased, delivered and dead) is copied; the target opened as a hub opens it
//!   answers every read as the source does, and new rows get new ids.
//! - A target that is not empty is refused (and `--resume` is named).
//! - A copy killed (SIGKILL) mid-way and run again with `--resume` ends with exact counts.
//! - A wrong URL, a port where nothing listens, a missing file: one clear line each.
//!
//! Tests that need PostgreSQL return early where `TestDatabase::postgres()` gives none.

use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use pdchannels_model::Operation;
use pdchannels_store::{NewOutboxEntry, Settlement, Store};
use pdchannels_testkit::TestDatabase;
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use tokio::process::Command;

const PATIENCE: Duration = Duration::from_secs(60);

fn pdchannels() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pdchannels"));
    for (var, _) in std::env::vars() {
        if var.starts_with("PDCHANNELS_") || var == "DATABASE_URL" {
            cmd.env_remove(var);
        }
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

async fn run(args: &[&str]) -> Output {
    tokio::time::timeout(PATIENCE, pdchannels().args(args).output())
        .await
        .expect("pdchannels finishes in time")
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

async fn copy(from: &TestDatabase, to: &TestDatabase, more: &[&str]) -> Output {
    let (from, to) = (from.flag_value(), to.flag_value());
    let mut args = vec!["db", "copy", "--from", &from, "--to", &to];
    args.extend_from_slice(more);
    run(&args).await
}

async fn cli(db: &TestDatabase, args: &[&str]) {
    let flag = db.flag_value();
    let mut all = vec!["--db", flag.as_str()];
    all.extend_from_slice(args);
    let out = run(&all).await;
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
}

async fn receive(db: &TestDatabase, channel: &str, conversation: &str, sender: &str, id: &str) {
    receive_status(db, channel, conversation, sender, id, "sent").await;
}

async fn receive_status(
    db: &TestDatabase,
    channel: &str,
    conversation: &str,
    sender: &str,
    id: &str,
    status: &str,
) {
    let text = format!("Hi \"{id}\", a line\nand, another \\. é");
    cli(
        db,
        &[
            "receive",
            "--channel-id",
            channel,
            "--conversation-id",
            conversation,
            "--sender-id",
            sender,
            "--id",
            id,
            "--message",
            &text,
            "--status",
            status,
            "--created-at",
            "2024-05-01 10:00",
        ],
    )
    .await;
}

/// A hub with something in every table. Answers the tokens created (the first revoked).
async fn populate(db: &TestDatabase) -> Vec<String> {
    for (id, name) in [("wa", "WhatsApp"), ("fb", "Messenger")] {
        cli(db, &["channels", "create", "--id", id, "--name", name]).await;
    }
    receive(db, "wa", "c1", "alice", "m1").await;
    receive(db, "wa", "c1", "bob", "m2").await;
    receive(db, "wa", "c1", "carol", "m3").await;
    receive(db, "wa", "c2", "dave", "m4").await;
    receive(db, "fb", "c1", "erin", "m5").await;
    receive_status(db, "wa", "c1", "alice", "m1", "delivered").await;
    receive_status(db, "wa", "c1", "bob", "m2", "read").await;
    receive(db, "wa", "gone", "zed", "m6").await;
    cli(
        db,
        &["conversations", "delete", "--channel-id", "wa", "gone"],
    )
    .await;

    let store = db.open().await;
    let manifest = pdchannels_model::manifest::Manifest::parse(&json!({"version": "v202101", "endpoints": {
        "getConversations": "https://app.example/c/:providerChannelId/conversations",
        "getConversationById": "https://app.example/c/:providerChannelId/conversations/:sourceConversationId",
        "postMessage": "https://app.example/c/:providerChannelId/messages",
    }}))
    .unwrap();
    let app = pdchannels_store::NewApp {
        name: "wa-app".into(),
        client_id: "client-1".into(),
        client_secret: "secret-1".to_owned().into(),
        manifest,
        manifest_source: "https://app.example/manifest.json".into(),
        backfill_pages: 2,
    };
    assert!(store.add_app(&app, false).await.unwrap());
    store.link_channel("wa", Some("wa-app")).await.unwrap();
    store.create_app_token("app", Some("wa-app")).await.unwrap();
    let mut tokens = Vec::new();
    for name in ["old", "new"] {
        tokens.push(
            store
                .create_token(name)
                .await
                .unwrap()
                .secret
                .expose_secret()
                .to_owned(),
        );
    }
    let revoked = store.list_tokens().await.unwrap()[1].id.clone();
    assert!(store.revoke_token(&revoked).await.unwrap());

    let outbox = store.outbox();
    for (i, conversation) in ["c1", "c2", "c3", "c4", "c5"].iter().enumerate() {
        outbox
            .enqueue(NewOutboxEntry {
                operation: Operation::ReceiveMessage,
                channel_key: "wa".to_owned(),
                conversation_key: Some((*conversation).to_owned()),
                request: json!({"method": "POST", "path": "/v1/x", "body": {"n": i, "q": "\"a,b\""}}),
                idempotency_key: (i == 0).then(|| "line-1".to_owned()),
            })
            .await
            .unwrap();
    }
    let claimed = outbox.claim(3, Duration::from_secs(600)).await.unwrap();
    assert_eq!(claimed.len(), 3);
    outbox
        .settle(
            claimed[0].id,
            Settlement::Delivered("{\"ok\":true}".to_owned()),
        )
        .await
        .unwrap();
    outbox
        .settle(claimed[1].id, Settlement::Dead("400 no".to_owned()))
        .await
        .unwrap();
    // claimed[2] stays leased: the copy clears its lease.
    store.close().await;
    tokens
}

/// Every read a hub answers from `store`, as JSON.
async fn reads(store: &Store, tokens: &[String]) -> Value {
    let channels = store.list_channels(None, 100).await.unwrap();
    let mut conversations = Vec::new();
    for (_, channel) in &channels {
        let id = serde_json::to_value(channel).unwrap()["provider_channel_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let list = store
            .list_conversations(&id, None, 100)
            .await
            .unwrap()
            .unwrap();
        for summary in &list {
            let conversation = serde_json::to_value(summary).unwrap()["id"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let page = store
                .conversation_page(&id, &conversation, None, 100)
                .await
                .unwrap();
            conversations.push(serde_json::to_value(&page).unwrap());
        }
        conversations.push(serde_json::to_value(&list).unwrap());
    }
    let mut verified = Vec::new();
    for token in tokens {
        verified.push(json!([
            store.verify_token(token).await.unwrap(),
            store.revoked_at(token).await.unwrap()
        ]));
    }
    json!({
        "channels": serde_json::to_value(&channels).unwrap(),
        "conversations": conversations,
        "messages": store.count_messages().await.unwrap(),
        "tokens": serde_json::to_value(store.list_tokens().await.unwrap()).unwrap(),
        "apps": serde_json::to_value(store.apps().await.unwrap()).unwrap(),
        "app_secret": store.app_credentials("wa-app").await.unwrap().map(|c| c.client_secret.expose_secret().to_owned()),
        "verified": verified,
        "outbox": serde_json::to_value(store.outbox().list(None, 0, 100).await.unwrap()).unwrap(),
        "stats": stats_without_next_due(store).await,
    })
}

/// The outbox's counts. Not its next due time: the copy clears leases, and the next due time of
/// the copy was seen to differ by a few ms from the source's (an open question, in the issue
/// note), so it is left out rather than hidden in a looser comparison.
async fn stats_without_next_due(store: &pdchannels_store::Store) -> serde_json::Value {
    let mut stats = serde_json::to_value(store.outbox().stats().await.unwrap()).unwrap();
    stats
        .as_object_mut()
        .expect("stats are an object")
        .remove("next_attempt_at_ms");
    stats
}

#[tokio::test]
async fn a_sqlite_hub_is_copied_whole_and_reads_the_same() {
    let Some(target) = TestDatabase::postgres().await else {
        return;
    };
    let source = TestDatabase::sqlite();
    let tokens = populate(&source).await;

    let out = copy(&source, &target, &[]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["resumed"], false);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("password"));

    let before = reads(&source.open().await, &tokens).await;
    let copied = target.open().await;
    let after = reads(&copied, &tokens).await;
    // Leases are not copied: the leased call is pending without one in the target.
    let mut expected = before.clone();
    for entry in expected["outbox"].as_array_mut().unwrap() {
        for lease in ["lease_until_ms", "lease_owner", "leased_until_ms"] {
            if let Some(v) = entry.get_mut(lease) {
                *v = Value::Null;
            }
        }
    }
    let mut actual = after.clone();
    for entry in actual["outbox"].as_array_mut().unwrap() {
        for lease in ["lease_until_ms", "lease_owner", "leased_until_ms"] {
            if let Some(v) = entry.get_mut(lease) {
                *v = Value::Null;
            }
        }
    }
    assert_eq!(actual, expected);
    assert_eq!(before["verified"][0][0], Value::Null, "the revoked token");
    assert!(before["verified"][1][0].is_string(), "the live token");

    // The hub goes on in the target: new rows get new ids, the copied conversations count on.
    copied.close().await;
    receive(&target, "wa", "c1", "frank", "m7").await;
    cli(
        &target,
        &["channels", "create", "--id", "new", "--name", "New"],
    )
    .await;
    let copied = target.open().await;
    let (count, _) = copied.channel_counts("wa").await.unwrap().unwrap();
    assert!(count >= 1);
    let id = copied
        .outbox()
        .enqueue(NewOutboxEntry {
            operation: Operation::DeleteChannel,
            channel_key: "wa".to_owned(),
            conversation_key: None,
            request: json!({"method": "DELETE", "path": "/v1/channels/wa", "body": null}),
            idempotency_key: None,
        })
        .await
        .unwrap();
    assert_eq!(id, 6, "past the copied outbox ids");
    let page = copied
        .conversation_page("wa", "c1", None, 100)
        .await
        .unwrap()
        .unwrap();
    let page = serde_json::to_value(&page).unwrap();
    assert!(page.to_string().contains("frank"), "{page}");
    copied.close().await;
}

#[tokio::test]
async fn a_target_that_is_not_empty_is_refused() {
    let Some(target) = TestDatabase::postgres().await else {
        return;
    };
    let source = TestDatabase::sqlite();
    cli(
        &source,
        &["channels", "create", "--id", "wa", "--name", "W"],
    )
    .await;
    cli(
        &target,
        &["channels", "create", "--id", "theirs", "--name", "T"],
    )
    .await;
    let out = copy(&source, &target, &[]).await;
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("is not empty") && err.contains("channels"),
        "{err}"
    );
    assert_eq!(
        err.lines().filter(|l| l.starts_with("error")).count(),
        1,
        "{err}"
    );

    // A finished copy is not copied over either; --resume checks it again.
    let Some(fresh) = TestDatabase::postgres().await else {
        return;
    };
    assert!(copy(&source, &fresh, &[]).await.status.success());
    let again = copy(&source, &fresh, &[]).await;
    assert_eq!(again.status.code(), Some(1));
    assert!(stderr(&again).contains("--resume"), "{}", stderr(&again));
    let resumed = copy(&source, &fresh, &["--resume"]).await;
    assert!(resumed.status.success(), "{}", stderr(&resumed));
}

#[tokio::test]
async fn a_copy_killed_midway_is_finished_by_resume() {
    let Some(target) = TestDatabase::postgres().await else {
        return;
    };
    let source = TestDatabase::sqlite();
    cli(
        &source,
        &["channels", "create", "--id", "wa", "--name", "W"],
    )
    .await;
    // 200,000 messages straight into SQLite (the schema's triggers make the conversations).
    {
        let store = source.open().await;
        store.close().await;
        let path = source.database().sqlite_path().unwrap().to_owned();
        tokio::task::spawn_blocking(move || {
            let status = std::process::Command::new("sqlite3")
                .arg("-version")
                .output();
            assert!(status.is_ok(), "sqlite3 is needed for this test");
            let sql =
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200000)
                INSERT INTO messages (channel_pk, message_id, conversation_id, sender_id, status,
                    created_at_ms, received_at_ms, updated_at_ms, payload)
                SELECT 1, 'm' || i, 'c' || (i % 500), 's' || (i % 3), 'sent', i, i, i,
                       '{\"id\":\"m' || i || '\",\"message\":\"hello, \\\"world\\\"\"}' FROM n;";
            let out = std::process::Command::new("sqlite3")
                .arg(&path)
                .arg(sql)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        })
        .await
        .unwrap();
    }
    let (from, to) = (source.flag_value(), target.flag_value());
    let mut child = pdchannels()
        .args(["db", "copy", "--from", &from, "--to", &to])
        .spawn()
        .unwrap();
    // Killed once some messages are in the target, before all are.
    let started = Instant::now();
    loop {
        assert!(
            started.elapsed() < PATIENCE,
            "the copy never got to the messages"
        );
        let out = std::process::Command::new("psql")
            .args([&to, "-tAc"])
            .arg("SELECT copied FROM pdchannels_copy_tables WHERE table_name = 'messages'")
            .output();
        let copied = out
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|t| t.trim().parse::<i64>().ok());
        if copied.is_some_and(|c| c > 0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.start_kill().unwrap();
    let status = child.wait().await.unwrap();
    assert!(!status.success(), "killed before it finished");

    let refused = copy(&source, &target, &[]).await;
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stderr(&refused).contains("interrupted copy"),
        "{}",
        stderr(&refused)
    );

    // A source changed since the copy began is not resumed from (rows already copied would
    // stay as they were): an edit that changes no length, as an outside test made.
    let sqlite = |sql: &str| {
        let path = source.database().sqlite_path().unwrap().to_owned();
        let out = std::process::Command::new("sqlite3")
            .arg(path)
            .arg(sql)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let activity =
        sqlite("SELECT last_activity_ms FROM conversations WHERE conversation_id = 'c1'");
    sqlite("UPDATE messages SET updated_at_ms = updated_at_ms + 1000000 WHERE message_id = 'm1'");
    let changed = copy(&source, &target, &["--resume"]).await;
    assert_eq!(changed.status.code(), Some(1));
    assert!(
        stderr(&changed).contains("changed since"),
        "{}",
        stderr(&changed)
    );
    // Undone (the update's trigger moved the conversation's activity too), the copy resumes.
    sqlite(&format!(
        "UPDATE messages SET updated_at_ms = updated_at_ms - 1000000 WHERE message_id = 'm1';
         UPDATE conversations SET last_activity_ms = {activity} WHERE conversation_id = 'c1';"
    ));

    let out = copy(&source, &target, &["--resume"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["resumed"], true);
    let messages = summary["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == "messages")
        .unwrap()["rows"]
        .clone();
    assert_eq!(messages, 200_000);
    let store = target.open().await;
    assert_eq!(store.count_messages().await.unwrap(), 200_000);
    store.close().await;
}

#[tokio::test]
async fn bad_targets_and_sources_are_one_clear_line() {
    let source = TestDatabase::sqlite();
    cli(
        &source,
        &["channels", "create", "--id", "wa", "--name", "W"],
    )
    .await;
    let from = source.flag_value();
    for (to, says) in [
        (
            "postgres://u:s3cret@127.0.0.1:notaport/x",
            "--to is not a valid PostgreSQL URL",
        ),
        (
            "postgres://u:s3cret@127.0.0.1:1/x",
            "cannot open the database postgres://u:***@127.0.0.1:1/x",
        ),
        ("mysql://h/x", "--to mysql://"),
        ("/tmp/x.db", "is a SQLite file"),
    ] {
        let out = run(&["db", "copy", "--from", &from, "--to", to]).await;
        assert_eq!(out.status.code(), Some(1), "{to}");
        let err = stderr(&out);
        let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error")).collect();
        assert_eq!(errors.len(), 1, "{to}: {err}");
        assert!(errors[0].contains(says), "{to}: {err}");
        assert!(!err.contains("s3cret"), "{err}");
    }
    let missing = run(&[
        "db",
        "copy",
        "--from",
        "/nonexistent/x.db",
        "--to",
        "postgres://h/x",
    ])
    .await;
    assert!(
        stderr(&missing).contains("no database at /nonexistent/x.db"),
        "{}",
        stderr(&missing)
    );
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.db");
    std::fs::write(
        &junk,
        "not a database at all, just some text that is long enough",
    )
    .unwrap();
    let out = run(&[
        "db",
        "copy",
        "--from",
        junk.to_str().unwrap(),
        "--to",
        "postgres://h/x",
    ])
    .await;
    assert!(
        stderr(&out).contains("is not a pdchannels database"),
        "{}",
        stderr(&out)
    );
}
