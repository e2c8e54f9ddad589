//! `pdchannels app add|list|show|remove`, `channels link|unlink` and `token create --app`,
//! through the binary: the secret never on a flag and never printed, every bad manifest field
//! named, unknown names refused clearly.

use std::io::Write;

use serde_json::{Value, json};
use tempfile::TempDir;

use crate::commands::{create_channel, json_lines, pdchannels, run, stderr, stdout};

fn manifest_file(dir: &TempDir, manifest: &Value) -> String {
    let path = dir.path().join("manifest.json");
    let mut file = std::fs::File::create(&path).unwrap();
    file.write_all(manifest.to_string().as_bytes()).unwrap();
    path.display().to_string()
}

fn good_manifest() -> Value {
    json!({"version": "v202101", "endpoints": {
        "getConversations": "http://127.0.0.1:3000/channels/:providerChannelId/conversations",
        "getConversationById": "http://127.0.0.1:3000/channels/:providerChannelId/conversations/:sourceConversationId",
        "postMessage": "http://127.0.0.1:3000/channels/:providerChannelId/messages",
        "deleteChannelById": "http://127.0.0.1:3000/channels/{providerChannelId}",
    }})
}

#[test]
fn an_app_is_added_listed_shown_without_its_secret_linked_and_removed() {
    let dir = TempDir::new().unwrap();
    let manifest = manifest_file(&dir, &good_manifest());
    let add = |extra: &[&str]| {
        let mut cmd = pdchannels(&dir);
        cmd.args([
            "app",
            "add",
            "whatsapp",
            "--manifest",
            &manifest,
            "--client-id",
            "57da5c3c",
        ])
        .args(extra)
        .env("PDCHANNELS_APP_CLIENT_SECRET", "TopSecret-123");
        run(&mut cmd)
    };
    let out = add(&[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("channels link CHANNEL whatsapp"),
        "{}",
        stderr(&out)
    );

    // The name is taken unless --replace.
    let again = add(&[]);
    assert_eq!(again.status.code(), Some(1));
    assert!(stderr(&again).contains("--replace"), "{}", stderr(&again));
    assert!(add(&["--replace"]).status.success());

    let listed = run(pdchannels(&dir).args(["app", "list"]));
    assert!(stdout(&listed).contains("whatsapp"), "{}", stdout(&listed));
    assert!(stdout(&listed).contains("57da5c3c"));
    let shown = run(pdchannels(&dir).args(["app", "show", "whatsapp"]));
    assert!(shown.status.success(), "{}", stderr(&shown));
    let app: Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(
        app["manifest"]["endpoints"]["deleteChannelById"],
        "http://127.0.0.1:3000/channels/{providerChannelId}"
    );
    assert_eq!(app["state"], "ok");
    for out in [&listed, &shown] {
        let all = format!("{}{}", stdout(out), stderr(out));
        assert!(!all.contains("TopSecret"), "the secret was printed: {all}");
    }

    create_channel(&dir, "wa-1");
    let linked = run(pdchannels(&dir).args(["channels", "link", "wa-1", "whatsapp"]));
    assert!(linked.status.success(), "{}", stderr(&linked));
    let listed = json_lines(&run(pdchannels(&dir).args(["app", "list", "--json"])));
    assert_eq!(listed[0]["channels"], json!(["wa-1"]));

    let token =
        run(pdchannels(&dir).args(["token", "create", "--name", "bot", "--app", "whatsapp"]));
    assert!(token.status.success(), "{}", stderr(&token));
    let tokens = json_lines(&run(pdchannels(&dir).args(["token", "list", "--json"])));
    assert!(
        tokens
            .iter()
            .any(|t| t["name"] == "bot" && t["app"] == "whatsapp"),
        "{tokens:?}"
    );

    let unlinked = run(pdchannels(&dir).args(["channels", "unlink", "wa-1"]));
    assert!(unlinked.status.success());
    assert!(
        stderr(&unlinked).contains("belonged to the app whatsapp"),
        "{}",
        stderr(&unlinked)
    );
    let removed = run(pdchannels(&dir).args(["app", "remove", "whatsapp"]));
    assert!(removed.status.success(), "{}", stderr(&removed));
    let gone = run(pdchannels(&dir).args(["app", "show", "whatsapp"]));
    assert_eq!(gone.status.code(), Some(1));
    assert!(
        stderr(&gone).contains("no app is called \"whatsapp\""),
        "{}",
        stderr(&gone)
    );
}

#[test]
fn bad_input_is_refused_clearly_and_changes_nothing() {
    let dir = TempDir::new().unwrap();
    // Every bad field named, each on its own line.
    let bad = manifest_file(
        &dir,
        &json!({"version": "v1", "endpoints": {
            "getConversations": "ftp://x/:providerChannelId",
            "postMesage": "http://x/:providerChannelId",
        }}),
    );
    let out = run(pdchannels(&dir)
        .args(["app", "add", "wa", "--manifest", &bad, "--client-id", "c"])
        .env("PDCHANNELS_APP_CLIENT_SECRET", "s"));
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    for field in [
        "`version`",
        "`endpoints.getConversations`",
        "`endpoints.getConversationById`",
        "`endpoints.postMessage`",
        "`endpoints.postMesage`: unknown field; did you mean `postMessage`?",
    ] {
        assert!(err.contains(field), "{field} missing in: {err}");
    }

    // No secret: says where it goes, and no flag takes it.
    let good = manifest_file(&dir, &good_manifest());
    let out = run(pdchannels(&dir)
        .args(["app", "add", "wa", "--manifest", &good, "--client-id", "c"])
        .env_remove("PDCHANNELS_APP_CLIENT_SECRET"));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("PDCHANNELS_APP_CLIENT_SECRET"),
        "{}",
        stderr(&out)
    );
    let out = run(pdchannels(&dir).args([
        "app",
        "add",
        "wa",
        "--manifest",
        &good,
        "--client-id",
        "c",
        "--client-secret",
        "x",
    ]));
    assert_eq!(out.status.code(), Some(2), "no --client-secret flag");

    // A secret from a file works.
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "from-a-file\n").unwrap();
    let out = run(pdchannels(&dir)
        .args([
            "app",
            "add",
            "wa",
            "--manifest",
            &good,
            "--client-id",
            "c",
            "--client-secret-file",
        ])
        .arg(&secret)
        .env_remove("PDCHANNELS_APP_CLIENT_SECRET"));
    assert!(out.status.success(), "{}", stderr(&out));

    // Unknown names.
    let out = run(pdchannels(&dir).args(["token", "create", "--app", "nope"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no app is called \"nope\""),
        "{}",
        stderr(&out)
    );
    let out = run(pdchannels(&dir).args(["channels", "link", "nope", "wa"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no channel has the id \"nope\""),
        "{}",
        stderr(&out)
    );
    let out = run(pdchannels(&dir).args([
        "app",
        "add",
        "bad name!",
        "--manifest",
        &good,
        "--client-id",
        "c",
    ]));
    assert_eq!(out.status.code(), Some(2));
    // Nothing was added by the refusals.
    let listed = json_lines(&run(pdchannels(&dir).args(["app", "list", "--json"])));
    assert_eq!(listed.len(), 1);
}

/// `pdchannels send`: a reply through the channel's app, as the hub's route sends it; a reply
/// the app did not take is kept and goes again only with --retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_puts_a_reply_through_the_apps_post_message_and_retries_only_on_request() {
    use pdchannels_testkit::{APP_CLIENT_ID, APP_CLIENT_SECRET, Misbehaviour, ProviderApp};
    let app = ProviderApp::start().await;
    let dir = TempDir::new().unwrap();
    let manifest = manifest_file(&dir, &app.manifest());
    let out = run(pdchannels(&dir)
        .args([
            "app",
            "add",
            "wa",
            "--manifest",
            &manifest,
            "--client-id",
            APP_CLIENT_ID,
        ])
        .env("PDCHANNELS_APP_CLIENT_SECRET", APP_CLIENT_SECRET));
    assert!(out.status.success(), "{}", stderr(&out));
    create_channel(&dir, "wa-1");
    assert!(
        run(pdchannels(&dir).args(["channels", "link", "wa-1", "wa"]))
            .status
            .success()
    );
    let received = run(pdchannels(&dir).args([
        "receive",
        "--channel-id",
        "wa-1",
        "--conversation-id",
        "c1",
        "--sender-id",
        "cust-1",
        "--id",
        "m1",
        "--message",
        "hi",
    ]));
    assert!(received.status.success(), "{}", stderr(&received));

    let send = |extra: &[&str]| {
        let mut cmd = pdchannels(&dir);
        cmd.args(["send", "--channel-id", "wa-1", "--conversation-id", "c1"])
            .args(extra);
        run(&mut cmd)
    };
    let sent = send(&["--message", "Hello from the CLI"]);
    assert!(sent.status.success(), "{}", stderr(&sent));
    let answer: Value = serde_json::from_slice(&sent.stdout).unwrap();
    assert_eq!(answer["data"]["id"], "msg-pd-1");
    let posted = &app.posted()[0];
    assert_eq!(posted.values("message"), ["Hello from the CLI"]);
    assert_eq!(
        posted.values("recipientIds[]"),
        ["cust-1"],
        "who wrote, before the app described them"
    );

    app.misbehave(Misbehaviour {
        fail_next: Some((500, "INTERNAL", 1)),
        ..Misbehaviour::default()
    });
    let failed = send(&["--message", "again"]);
    assert_eq!(failed.status.code(), Some(1));
    let err = stderr(&failed);
    let local_id = err
        .split("--retry ")
        .nth(1)
        .and_then(|rest| rest.split('`').next())
        .unwrap_or_else(|| panic!("no --retry in: {err}"))
        .to_owned();
    assert_eq!(app.posted().len(), 1, "the failed reply was not taken");
    let retried = send(&["--retry", &local_id]);
    assert!(retried.status.success(), "{}", stderr(&retried));
    assert_eq!(app.posted()[1].values("message"), ["again"]);

    let empty = send(&["--message", " "]);
    assert_eq!(empty.status.code(), Some(1));
    assert!(stderr(&empty).contains("--message"), "{}", stderr(&empty));
}

/// A password in the manifest's URL is never repeated (found by an outside test).
#[test]
fn a_password_in_the_manifest_url_is_never_shown() {
    let dir = TempDir::new().unwrap();
    let out = run(pdchannels(&dir)
        .args([
            "app",
            "add",
            "wa",
            "--manifest",
            "http://user:S3cretPw@127.0.0.1:1/manifest.json",
            "--client-id",
            "c",
        ])
        .env("PDCHANNELS_APP_CLIENT_SECRET", "s"));
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("cannot fetch the manifest from http://user:***@127.0.0.1:1/manifest.json"),
        "{err}"
    );
    assert!(!err.contains("S3cretPw"), "{err}");
    assert!(
        err.contains("Connection refused"),
        "the cause, not only 'error sending request': {err}"
    );
}

/// `channels delete` by a person tells the channel's app (deleteChannelById) and deletes the
/// channel here whatever the app answers, saying which it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_channel_tells_its_app_and_deletes_it_even_when_the_app_cannot() {
    use pdchannels_testkit::{APP_CLIENT_ID, APP_CLIENT_SECRET, Misbehaviour, ProviderApp};
    let app = ProviderApp::start().await;
    let dir = TempDir::new().unwrap();
    let manifest = manifest_file(&dir, &app.manifest());
    let out = run(pdchannels(&dir)
        .args([
            "app",
            "add",
            "wa",
            "--manifest",
            &manifest,
            "--client-id",
            APP_CLIENT_ID,
        ])
        .env("PDCHANNELS_APP_CLIENT_SECRET", APP_CLIENT_SECRET));
    assert!(out.status.success(), "{}", stderr(&out));
    for channel in ["wa-1", "wa/2"] {
        create_channel(&dir, channel);
        let linked = run(pdchannels(&dir).args(["channels", "link", channel, "wa"]));
        assert!(linked.status.success(), "{}", stderr(&linked));
    }

    let deleted = run(pdchannels(&dir).args(["channels", "delete", "wa-1"]));
    assert!(deleted.status.success(), "{}", stderr(&deleted));
    assert!(
        stderr(&deleted).contains("the app wa was told"),
        "{}",
        stderr(&deleted)
    );
    let told: Vec<_> = app
        .requests()
        .into_iter()
        .filter(|r| r.method == "DELETE")
        .collect();
    assert_eq!(told.len(), 1);
    assert_eq!(told[0].path, "/channels/wa-1");
    assert_eq!(
        told[0].authorization,
        Some(pdchannels_testkit::app_basic_auth())
    );

    // The example app's answer (Express's 404 page): deleted here all the same.
    app.misbehave(Misbehaviour {
        no_delete: true,
        ..Misbehaviour::default()
    });
    let deleted = run(pdchannels(&dir).args(["channels", "delete", "wa/2"]));
    assert!(deleted.status.success(), "{}", stderr(&deleted));
    assert!(
        stderr(&deleted).contains("does not support deleteChannelById"),
        "{}",
        stderr(&deleted)
    );
    let last = app.requests().pop().unwrap();
    assert_eq!(
        (last.method.as_str(), last.path.as_str()),
        ("DELETE", "/channels/wa%2F2")
    );
    let again = run(pdchannels(&dir).args(["channels", "delete", "wa/2"]));
    assert_eq!(
        again.status.code(),
        Some(1),
        "it is gone: {}",
        stderr(&again)
    );
}

/// `app calls` shows the newest calls up to `--limit` (200 by default) and says when there are
/// more, rather than cutting the list silently.
#[test]
fn app_calls_says_when_there_are_more_than_shown() {
    let dir = TempDir::new().unwrap();
    let manifest = manifest_file(&dir, &good_manifest());
    let out = run(pdchannels(&dir)
        .args([
            "app",
            "add",
            "wa",
            "--manifest",
            &manifest,
            "--client-id",
            "c",
        ])
        .env("PDCHANNELS_APP_CLIENT_SECRET", "s"));
    assert!(out.status.success(), "{}", stderr(&out));
    for channel in ["a", "b", "c"] {
        create_channel(&dir, channel);
        assert!(
            run(pdchannels(&dir).args(["channels", "link", channel, "wa"]))
                .status
                .success()
        );
    }
    let all = run(pdchannels(&dir).args(["app", "calls", "--json"]));
    assert!(all.status.success(), "{}", stderr(&all));
    assert_eq!(json_lines(&all).len(), 3);
    assert!(!stderr(&all).contains("more"), "{}", stderr(&all));
    let two = run(pdchannels(&dir).args(["app", "calls", "--json", "--limit", "2"]));
    assert_eq!(json_lines(&two).len(), 2);
    assert!(stderr(&two).contains("--limit N"), "{}", stderr(&two));
    let zero = run(pdchannels(&dir).args(["app", "calls", "--limit", "0"]));
    assert_eq!(zero.status.code(), Some(2), "{}", stderr(&zero));
}
