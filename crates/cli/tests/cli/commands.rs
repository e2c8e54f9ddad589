//! The `pdchannels` binary's commands that change or inspect data, through the binary:
//! `channels delete`, `conversations delete`, `outbox list|show|retry|drop|stats`, `token list`,
//! `--log-format json`, and the deprecation error a Pipedrive host's 410 gets.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use assert_cmd::cargo::CommandCargoExt;
use serde_json::Value;
use tempfile::TempDir;

/// How long one command may take: far above a debug build's on a loaded machine.
const COMMAND_DEADLINE: Duration = Duration::from_secs(60);

/// `pdchannels --db DIR/channels.db`, none of the caller's environment that changes what it does.
pub(crate) fn pdchannels(dir: &TempDir) -> Command {
    let mut cmd = Command::cargo_bin("pdchannels").unwrap();
    for var in [
        "PDCHANNELS_LOG",
        "PDCHANNELS_LOG_FORMAT",
        "PDCHANNELS_UPSTREAM",
        "PDCHANNELS_UPSTREAM_TOKEN",
        "PDCHANNELS_UPSTREAM_OAUTH",
        "PDCHANNELS_DELIVER_TIMEOUT",
        "HTTP_PROXY",
        "http_proxy",
        "ALL_PROXY",
        "all_proxy",
        "NO_PROXY",
        "no_proxy",
    ] {
        cmd.env_remove(var);
    }
    cmd.arg("--db").arg(dir.path().join("channels.db"));
    cmd
}

/// Runs `cmd` to the end within the deadline; answers its output.
pub(crate) fn run(cmd: &mut Command) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read both pipes on threads so a chatty child cannot block on a full pipe.
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut v = Vec::new();
        stdout.read_to_end(&mut v).map(|_| v)
    });
    let err = std::thread::spawn(move || {
        let mut v = Vec::new();
        stderr.read_to_end(&mut v).map(|_| v)
    });
    let status = pdchannels_testkit::wait_within(&mut child, COMMAND_DEADLINE, "pdchannels");
    Output {
        status,
        stdout: out.join().unwrap().unwrap(),
        stderr: err.join().unwrap().unwrap(),
    }
}

pub(crate) fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub(crate) fn stdout_json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {out:?}"))
}

pub(crate) fn create_channel(dir: &TempDir, id: &str) {
    let out = run(pdchannels(dir).args(["channels", "create", "--id", id, "--name", id]));
    assert!(out.status.success(), "{}", stderr(&out));
}

/// `receive` of message `id` in `conversation` of channel `wa`; answers the output.
fn receive(dir: &TempDir, id: &str, conversation: &str) -> Output {
    run(pdchannels(dir).args([
        "receive",
        "--channel-id",
        "wa",
        "--conversation-id",
        conversation,
        "--sender-id",
        "s",
        "--id",
        id,
        "--message",
        "hi",
        "--created-at",
        "2024-05-01 10:00",
    ]))
}

#[test]
fn conversations_delete_removes_that_conversation_only() {
    let dir = tempfile::tempdir().unwrap();
    create_channel(&dir, "wa");
    for (id, conversation) in [("m1", "c1"), ("m2", "c2")] {
        let out = receive(&dir, id, conversation);
        assert!(stderr(&out).contains("stored new message"), "{out:?}");
    }
    let out = run(pdchannels(&dir).args(["conversations", "delete", "--channel-id", "wa", "c1"]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout_json(&out), serde_json::json!({"success": true}));

    // m1 went with c1: receiving it again stores it anew. m2 in c2 is still there.
    assert!(stderr(&receive(&dir, "m1", "c1")).contains("stored new message `m1`"));
    assert!(stderr(&receive(&dir, "m2", "c2")).contains("already stored, unchanged: message `m2`"));

    // Deleting it again: not found, exit 1, saying so.
    let again = run(pdchannels(&dir).args(["conversations", "delete", "--channel-id", "wa", "c9"]));
    assert_eq!(again.status.code(), Some(1));
    assert_eq!(stdout_json(&again)["additional_data"]["code"], "NOT_FOUND");
}

#[test]
fn channels_delete_removes_the_channel_and_everything_in_it() {
    let dir = tempfile::tempdir().unwrap();
    create_channel(&dir, "wa");
    create_channel(&dir, "other");
    assert!(receive(&dir, "m1", "c1").status.success());
    let out = run(pdchannels(&dir).args(["channels", "delete", "wa"]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("deleted channel `wa`"),
        "{}",
        stderr(&out)
    );

    // The channel is gone: a receive for it is refused until it is created again.
    let refused = receive(&dir, "m1", "c1");
    assert_eq!(refused.status.code(), Some(1));
    assert_eq!(
        stdout_json(&refused)["additional_data"]["code"],
        "NOT_FOUND"
    );
    // Its messages went with it: after re-creating it, m1 is new.
    create_channel(&dir, "wa");
    assert!(stderr(&receive(&dir, "m1", "c1")).contains("stored new message `m1`"));

    let missing = run(pdchannels(&dir).args(["channels", "delete", "nope"]));
    assert_eq!(missing.status.code(), Some(1));
    assert_eq!(
        stdout_json(&missing)["additional_data"]["code"],
        "NOT_FOUND"
    );
}

#[test]
fn outbox_show_tells_a_queued_call_and_drop_removes_it() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens on port 1: the call cannot be delivered and stays queued.
    let queued = run(pdchannels(&dir)
        .env("PDCHANNELS_UPSTREAM_TOKEN", "upstream-token")
        .args([
            "receive",
            "--upstream",
            "http://127.0.0.1:1/v1",
            "--deliver-timeout",
            "500ms",
        ])
        .args([
            "--channel-id",
            "wa",
            "--conversation-id",
            "c1",
            "--sender-id",
            "s",
        ])
        .args(["--id", "m1", "--message", "hi"]));
    assert!(
        queued.status.success(),
        "queued is not a failure: {queued:?}"
    );
    // "queued in the outbox (id N; reason)": the summary names the outbox id.
    let summary = stderr(&queued);
    let at = summary
        .find("queued in the outbox (id ")
        .unwrap_or_else(|| panic!("the summary says queued: {summary}"));
    let id: String = summary[at + "queued in the outbox (id ".len()..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();

    let show = run(pdchannels(&dir).args(["outbox", "show", &id]));
    assert!(show.status.success(), "{}", stderr(&show));
    let entry = stdout_json(&show);
    assert_eq!(entry["id"].to_string(), id);
    assert_eq!(entry["state"], "pending");
    assert_eq!(entry["operation"], "receive_message");
    assert_eq!(entry["channel_key"], "wa");
    assert_eq!(entry["conversation_key"], "c1");
    assert!(entry["attempts"].as_i64().unwrap() >= 1, "{entry}");
    // The stored request is JSON, not JSON in a string.
    assert_eq!(entry["request"]["method"], "POST", "{entry}");
    assert_eq!(entry["request"]["body"]["id"], "m1", "{entry}");
    assert!(
        entry["created_at"].as_str().is_some_and(is_rfc3339_utc),
        "{entry}"
    );
    assert!(
        entry["last_error"].as_str().is_some_and(|e| !e.is_empty()),
        "why it is not delivered: {entry}"
    );

    let dropped = run(pdchannels(&dir).args(["outbox", "drop", &id]));
    assert!(dropped.status.success(), "{}", stderr(&dropped));
    assert!(stderr(&dropped).contains(&format!("dropped call {id}")));
    let gone = run(pdchannels(&dir).args(["outbox", "show", &id]));
    assert_eq!(gone.status.code(), Some(1));
    assert!(
        stderr(&gone).contains(&format!("no outbox call has id {id}")),
        "{gone:?}"
    );
    let stats = run(pdchannels(&dir).args(["outbox", "stats", "--json"]));
    assert_eq!(stdout_json(&stats)["pending"], 0, "{stats:?}");
    let again = run(pdchannels(&dir).args(["outbox", "drop", &id]));
    assert_eq!(
        again.status.code(),
        Some(1),
        "dropping twice says there is nothing"
    );
}

/// An HTTP proxy that answers every request `410 Gone` with an HTML page, as a removed
/// Pipedrive route does, and reports each request line it got. (Pipedrive's own servers cannot
/// be reached from the tests; the proxy stands in for the host `acme.pipedrive.com`.)
fn gone_proxy() -> (String, std::sync::mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (seen, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(COMMAND_DEADLINE));
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            let mut length = 0;
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
                    break;
                }
                if let Some((name, value)) = header.split_once(':')
                    && name.eq_ignore_ascii_case("content-length")
                {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let _ = seen.send(request_line.trim().to_owned());
            let page = "<html><body>Gone</body></html>";
            let _ = write!(
                stream,
                "HTTP/1.1 410 Gone\r\ncontent-type: text/html\r\ncontent-length: {}\r\n\
                 connection: close\r\n\r\n{page}",
                page.len()
            );
        }
    });
    (url, lines)
}

#[test]
fn a_pipedrive_host_answering_410_gets_the_deprecation_explained() {
    let dir = tempfile::tempdir().unwrap();
    let (proxy, seen) = gone_proxy();
    let out = run(pdchannels(&dir)
        .env("HTTP_PROXY", &proxy)
        .env("PDCHANNELS_UPSTREAM_TOKEN", "upstream-token")
        .args([
            "receive",
            "--upstream",
            "http://acme.pipedrive.com/api/v1",
            "--deliver-timeout",
            "20s",
        ])
        .args([
            "--channel-id",
            "wa",
            "--conversation-id",
            "c1",
            "--sender-id",
            "s",
        ])
        .args(["--id", "m1", "--message", "hi"]));
    let request = seen
        .recv_timeout(Duration::from_secs(1))
        .expect("the call went to the (proxied) Pipedrive host");
    assert!(
        request.contains("acme.pipedrive.com/api/v1/channels/messages/receive"),
        "{request}"
    );
    assert_eq!(out.status.code(), Some(1), "not stored: {out:?}");
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    assert!(
        said.contains("410") && said.contains("deprecated the Channels API on 2026-02-01"),
        "the deprecation is explained: {said}"
    );
    let body = stdout_json(&out);
    assert_eq!(body["success"], false);
    assert_eq!(body["additional_data"]["code"], "UPSTREAM_REJECTED");
}

#[test]
fn log_format_json_writes_one_json_object_per_log_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(pdchannels(&dir).args([
        "--log",
        "debug",
        "--log-format",
        "json",
        "channels",
        "create",
        "--id",
        "wa",
        "--name",
        "WA",
    ]));
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stderr(&out);
    let logs: Vec<Value> = text
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(!logs.is_empty(), "debug logging logged something: {text}");
    for log in &logs {
        assert!(
            log["level"].is_string() && log["timestamp"].is_string(),
            "{log}"
        );
        assert!(log["fields"].is_object(), "{log}");
    }
    // Every other stderr line is the command's own summary, not a text-format log line.
    for line in text.lines().filter(|l| !l.starts_with('{')) {
        assert!(
            !line.contains(" DEBUG ") && !line.contains(" INFO ") && !line.contains(" WARN "),
            "a log line in text format: {line}"
        );
    }
}

/// `2026-11-28T21:00:00.000Z`: RFC 3339 in UTC with milliseconds, the project's one form.
fn is_rfc3339_utc(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() == 24
        && text.ends_with('Z')
        && b[10] == b'T'
        && [4, 7].iter().all(|&i| b[i] == b'-')
        && [13, 16].iter().all(|&i| b[i] == b':')
        && b[19] == b'.'
}

pub(crate) fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// stdout as JSON lines, one object each (`--json` of a list).
pub(crate) fn json_lines(out: &Output) -> Vec<Value> {
    stdout(out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect()
}

/// `receive` of message `id` in `conversation` of channel `wa`, relayed to `upstream`, waiting
/// `wait` for its answer; `proxy`, if any, is every request's HTTP proxy.
fn relayed_receive(
    dir: &TempDir,
    upstream: &str,
    proxy: Option<&str>,
    wait: &str,
    id: &str,
    conversation: &str,
) -> Output {
    let mut cmd = pdchannels(dir);
    if let Some(proxy) = proxy {
        cmd.env("HTTP_PROXY", proxy);
    }
    run(cmd
        .env("PDCHANNELS_UPSTREAM_TOKEN", "upstream-token")
        .args(["receive", "--upstream", upstream, "--deliver-timeout", wait])
        .args(["--channel-id", "wa", "--conversation-id", conversation])
        .args(["--sender-id", "s", "--id", id, "--message", "hi"])
        .args(["--created-at", "2024-05-01 10:00"]))
}

/// A call the upstream rejects for good: a Pipedrive host (behind `proxy`) answering 410.
fn dead_call(dir: &TempDir, proxy: &str, id: &str, conversation: &str) {
    let out = relayed_receive(
        dir,
        "http://acme.pipedrive.com/api/v1",
        Some(proxy),
        "20s",
        id,
        conversation,
    );
    assert_eq!(out.status.code(), Some(1), "rejected: {out:?}");
}

/// A call waiting out its backoff: nothing listens on port 1.
fn waiting_call(dir: &TempDir, id: &str, conversation: &str) {
    let out = relayed_receive(dir, "http://127.0.0.1:1/v1", None, "0s", id, conversation);
    assert!(out.status.success(), "queued: {out:?}");
}

/// The cells of column `title` of a table, one per row under the header.
fn column<'a>(table: &'a str, title: &str) -> Vec<&'a str> {
    let mut lines = table.lines();
    let header = lines.next().expect("a header row");
    let start = header
        .find(title)
        .unwrap_or_else(|| panic!("no column {title} in {header:?}"));
    lines
        // A number keeps to the right of its column: skip its padding first. (An empty cell
        // would show the next column's: the tests read no empty cells.)
        .map(|l| {
            l.get(start..)
                .unwrap_or("")
                .trim_start()
                .split("  ")
                .next()
                .unwrap()
        })
        .collect()
}

#[test]
fn outbox_list_prints_an_aligned_table_or_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let (proxy, _seen) = gone_proxy();
    dead_call(&dir, &proxy, "m1", "c1");
    waiting_call(&dir, "m2", "c2");
    waiting_call(&dir, "m3", "c2");

    let out = run(pdchannels(&dir).args(["outbox", "list"]));
    assert!(out.status.success(), "{out:?}");
    let table = stdout(&out);
    let header = table.lines().next().unwrap();
    assert!(
        header.starts_with(
            "ID  STATE    OPERATION        CHANNEL  CONVERSATION  TRIES  CREATED (UTC)"
        ),
        "{table}"
    );
    assert_eq!(table.lines().count(), 4, "a header and 3 rows: {table}");
    assert_eq!(
        column(&table, "STATE"),
        ["dead", "pending", "pending"],
        "{table}"
    );
    assert_eq!(
        column(&table, "CONVERSATION"),
        ["c1", "c2", "c2"],
        "{table}"
    );
    for created in column(&table, "CREATED (UTC)") {
        // `2026-11-28 21:00:03`: a date, not milliseconds.
        assert!(
            created.len() == 19 && created.as_bytes()[10] == b' ',
            "{table}"
        );
    }
    let why = column(&table, "WHY");
    assert!(
        why[0].starts_with("failed for good:") && why[0].contains("410"),
        "{table}"
    );
    assert!(
        why[1].contains("the last send failed: cannot reach"),
        "{table}"
    );
    assert_eq!(why[2], "waits for call 2, accepted before it", "{table}");
    assert!(
        out.stderr.is_empty(),
        "all of it fits: no hint {}",
        stderr(&out)
    );

    let json = run(pdchannels(&dir).args(["outbox", "list", "--json", "--limit", "2"]));
    let calls = json_lines(&json);
    assert_eq!(calls.len(), 2, "{}", stdout(&json));
    assert_eq!(calls[0]["state"], "dead");
    assert_eq!(calls[0]["request"]["body"]["id"], "m1");
    assert_eq!(calls[1]["held_behind"], Value::Null);
    assert!(
        stderr(&json).contains("showing the oldest 2 calls; there are more"),
        "the hint goes to stderr: {json:?}"
    );
    let pending = json_lines(&run(
        pdchannels(&dir).args(["outbox", "list", "--json", "--state", "pending"])
    ));
    assert_eq!(pending.len(), 2);
    assert_eq!(pending[1]["held_behind"], pending[0]["id"]);

    let none = run(pdchannels(&dir).args(["outbox", "list", "--state", "delivered"]));
    assert!(none.status.success() && none.stdout.is_empty(), "{none:?}");
    assert!(
        stderr(&none).contains("the outbox has no delivered calls"),
        "{none:?}"
    );

    let stats = run(pdchannels(&dir).args(["outbox", "stats"]));
    let table = stdout(&stats);
    assert!(
        table.starts_with("STATE      CALLS  OLDEST (UTC)"),
        "{table}"
    );
    assert_eq!(column(&table, "CALLS"), ["2", "0", "1"], "{table}");
    let stats = stdout_json(&run(pdchannels(&dir).args(["outbox", "stats", "--json"])));
    assert_eq!(
        (stats["pending"].as_i64(), stats["dead"].as_i64()),
        (Some(2), Some(1))
    );
    assert!(
        stats["oldest_pending_at"]
            .as_str()
            .is_some_and(is_rfc3339_utc),
        "{stats}"
    );
}

#[test]
fn outbox_show_prints_the_call_as_json_with_dates() {
    let dir = tempfile::tempdir().unwrap();
    let (proxy, _seen) = gone_proxy();
    dead_call(&dir, &proxy, "m1", "c1");
    let out = run(pdchannels(&dir).args(["outbox", "show", "1"]));
    assert!(out.status.success(), "{out:?}");
    let call = stdout_json(&out);
    for time in ["created_at", "updated_at", "next_attempt_at"] {
        assert!(
            call[time].as_str().is_some_and(is_rfc3339_utc),
            "{time}: {call}"
        );
    }
    assert!(
        stderr(&out).starts_with("call 1 is dead: failed for good:"),
        "{out:?}"
    );
    let db = dir.path().join("channels.db");
    let last_error = call["last_error"].as_str().unwrap().to_owned();
    assert!(
        last_error.ends_with(&format!(
            "`pdchannels --db {} outbox retry 1`",
            db.display()
        )),
        "the command to paste names the database: {last_error}"
    );
    insta::assert_json_snapshot!("outbox_show_dead", call, {
        ".last_error" => insta::dynamic_redaction(|value, _| {
            // The database's path is a temporary directory's.
            let text = value.as_str().unwrap_or_default();
            text.split(" `pdchannels --db ").next().unwrap_or_default().to_owned() + " [command]"
        }),
        ".created_at" => "[time]",
        ".updated_at" => "[time]",
        ".next_attempt_at" => "[time]",
    });
}

#[test]
fn outbox_retry_all_puts_every_dead_or_waiting_call_back_in_line() {
    let dir = tempfile::tempdir().unwrap();
    let (proxy, _seen) = gone_proxy();
    dead_call(&dir, &proxy, "m1", "c1");
    dead_call(&dir, &proxy, "m2", "c2");
    waiting_call(&dir, "m3", "c3");
    let counts = |dir: &TempDir| {
        let stats = stdout_json(&run(pdchannels(dir).args(["outbox", "stats", "--json"])));
        (
            stats["pending"].as_i64().unwrap(),
            stats["dead"].as_i64().unwrap(),
        )
    };
    assert_eq!(counts(&dir), (1, 2));

    let out = run(pdchannels(&dir).args(["outbox", "retry", "--all", "--state", "dead"]));
    assert!(out.status.success(), "{out:?}");
    assert!(
        stderr(&out).contains("put 2 dead calls back in line"),
        "{out:?}"
    );
    assert_eq!(counts(&dir), (3, 0));
    let due: Vec<Value> = json_lines(&run(pdchannels(&dir).args(["outbox", "list", "--json"])));
    assert!(
        due[..2].iter().all(|c| c["last_error"].is_string()),
        "the reason is kept: {due:?}"
    );

    // The two put back are due now, their clock afresh; only the third waits out a backoff,
    // and `--all` puts it back too.
    let out = run(pdchannels(&dir).args(["outbox", "retry", "--all"]));
    assert!(
        stderr(&out).contains("put 1 dead or waiting call back in line"),
        "{out:?}"
    );
    let again = run(pdchannels(&dir).args(["outbox", "retry", "--all", "--state", "dead"]));
    assert!(again.status.success());
    assert!(
        stderr(&again).contains("no dead calls to put back in line"),
        "{again:?}"
    );

    // Mistakes on the command line: exit 2, naming what is wrong.
    for (args, says) in [
        (
            &["outbox", "retry", "1", "--all"][..],
            "cannot be used with",
        ),
        (&["outbox", "retry"][..], "<ID|--all>"),
        (
            &["outbox", "retry", "--all", "--state", "delivered"][..],
            "possible values: dead, pending",
        ),
        (&["outbox", "retry", "1", "--state", "dead"][..], "--all"),
    ] {
        let out = run(pdchannels(&dir).args(args));
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
    }
}

#[test]
fn token_list_prints_a_table_or_json_lines_and_never_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let missing = run(pdchannels(&dir).args(["token", "list"]));
    assert!(
        !missing.status.success() && stderr(&missing).contains("no database at"),
        "a mistyped --db is not answered from a new, empty database: {missing:?}"
    );
    assert!(!dir.path().join("channels.db").exists(), "nothing created");
    // An existing database without tokens.
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let store = pdchannels_store::Store::open(&dir.path().join("channels.db"))
            .await
            .unwrap();
        store.close().await;
    });
    let empty = run(pdchannels(&dir).args(["token", "list"]));
    assert!(
        empty.status.success() && empty.stdout.is_empty(),
        "{empty:?}"
    );
    assert!(
        stderr(&empty).contains("pdchannels token create"),
        "{empty:?}"
    );

    let mut secrets = Vec::new();
    for name in ["ci bot", "laptop"] {
        let out = run(pdchannels(&dir).args(["token", "create", "--name", name]));
        secrets.push(stdout(&out).trim().to_owned());
    }
    let tokens = json_lines(&run(pdchannels(&dir).args(["token", "list", "--json"])));
    let first = tokens[0]["id"].as_str().unwrap().to_owned();
    assert!(
        run(pdchannels(&dir).args(["token", "revoke", &first]))
            .status
            .success()
    );

    let table = stdout(&run(pdchannels(&dir).args(["token", "list"])));
    assert!(
        table.starts_with("ID            NAME    CREATED (UTC)        STATE"),
        "{table}"
    );
    assert_eq!(column(&table, "NAME"), ["ci bot", "laptop"], "{table}");
    let states = column(&table, "STATE");
    assert!(
        states[0].starts_with("revoked 2") && states[0].ends_with(" UTC"),
        "{table}"
    );
    assert_eq!(states[1], "active", "{table}");

    let listed = run(pdchannels(&dir).args(["token", "list", "--json"]));
    let tokens = json_lines(&listed);
    assert_eq!(tokens.len(), 2);
    assert!(
        tokens[0]["revoked_at"].as_str().is_some_and(is_rfc3339_utc),
        "{tokens:?}"
    );
    assert_eq!(tokens[1]["revoked_at"], Value::Null);
    assert!(tokens[1]["created_at"].as_str().is_some_and(is_rfc3339_utc));
    let said = format!("{table}{}", stdout(&listed));
    for secret in &secrets {
        assert!(!secret.is_empty() && !said.contains(secret.as_str()));
    }
}

/// With the upstream down, a call accepted into the outbox is a success for every command, as
/// over HTTP and MCP: exit 0, `success: true` and `additional_data.queued` on stdout.
#[test]
fn queued_commands_succeed_and_say_where_the_call_waits() {
    let dir = tempfile::tempdir().unwrap();
    let nowhere = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let upstream = format!("http://{}/v1", nowhere.local_addr().unwrap());
    drop(nowhere);
    let relayed = |args: &[&str]| {
        let mut cmd = pdchannels(&dir);
        cmd.args(args)
            .args(["--upstream", &upstream, "--deliver-timeout", "300ms"])
            .env("PDCHANNELS_UPSTREAM_TOKEN", "upstream-token");
        run(&mut cmd)
    };
    let commands: [&[&str]; 4] = [
        &["channels", "create", "--id", "wa", "--name", "WA"],
        &[
            "receive",
            "--channel-id",
            "wa",
            "--conversation-id",
            "c1",
            "--sender-id",
            "s",
            "--id",
            "m1",
            "--message",
            "hi",
        ],
        &["conversations", "delete", "--channel-id", "wa", "c1"],
        &["channels", "delete", "wa"],
    ];
    for args in commands {
        let out = relayed(args);
        assert!(out.status.success(), "{args:?}: {out:?}");
        let body = stdout_json(&out);
        assert_eq!(body["success"], true, "{args:?}: {body}");
        assert!(
            body["additional_data"]["queued"]["outbox_id"].is_i64(),
            "{args:?}: {body}"
        );
        assert!(stderr(&out).contains("queued"), "{args:?}: {out:?}");
    }
}

/// `pdchannels token list | head -0`: a reader that went away ends the command quietly (it
/// panicked on the broken pipe, found by an outside test with `app calls | head`).
#[test]
fn a_reader_that_goes_away_ends_the_output_quietly() {
    let dir = TempDir::new().unwrap();
    for name in ["a", "b", "c"] {
        run(pdchannels(&dir).args(["token", "create", "--name", name]));
    }
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = pdchannels(&dir)
        .args(["token", "list", "--json"])
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
}
