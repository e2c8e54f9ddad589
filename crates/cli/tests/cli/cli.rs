//! The `pdchannels` binary as a subprocess: MCP over real stdio, and the `receive` command.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use assert_cmd::cargo::CommandCargoExt;
use serde_json::{Value, json};
use tempfile::TempDir;

fn pdchannels(dir: &TempDir) -> Command {
    let mut cmd = Command::cargo_bin("pdchannels").unwrap();
    cmd.env("PDCHANNELS_DB", dir.path().join("data/channels.db"))
        .env_remove("PDCHANNELS_LOG");
    cmd
}

/// How long a test waits for one frame: far above a debug build's answer on a loaded machine,
/// so that only a missing answer fails, and fails instead of hanging.
const FRAME_DEADLINE: Duration = Duration::from_secs(30);

/// `pdchannels mcp` with newline-delimited JSON-RPC on its stdin and stdout.
struct McpProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    /// Lines of stdout, read by a thread so that each wait has a deadline.
    stdout: Receiver<String>,
    next_id: u64,
}

impl McpProcess {
    fn spawn(dir: &TempDir) -> Self {
        Self::spawn_with(dir, &[], &[])
    }

    /// `pdchannels mcp ARGS` with `envs` added to its environment.
    fn spawn_with(dir: &TempDir, args: &[&str], envs: &[(&str, &str)]) -> Self {
        let mut child = pdchannels(dir)
            .arg("mcp")
            .args(args)
            .env("PDCHANNELS_LOG", "debug")
            .envs(envs.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(pdchannels_testkit::subprocess_stderr())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let (lines, stdout) = std::sync::mpsc::channel();
        let reader = BufReader::new(child.stdout.take().unwrap());
        std::thread::spawn(move || {
            for line in reader.lines().map_while(Result::ok) {
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            stdin: Some(stdin),
            stdout,
            next_id: 1,
        }
    }

    fn send(&mut self, frame: &Value) {
        let stdin = self.stdin.as_mut().expect("stdin is open");
        writeln!(stdin, "{frame}").unwrap();
        stdin.flush().unwrap();
    }

    /// Sends a request and returns its response. Every line on stdout must be a JSON-RPC frame.
    fn request(&mut self, method: &str, params: &Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        loop {
            let line = match self.stdout.recv_timeout(FRAME_DEADLINE) {
                Ok(line) => line,
                Err(RecvTimeoutError::Timeout) => {
                    panic!("no answer to {method} within {FRAME_DEADLINE:?}")
                }
                Err(RecvTimeoutError::Disconnected) => panic!("server closed stdout"),
            };
            let frame: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("stdout carried a non-JSON line {line:?}: {e}"));
            assert_eq!(frame["jsonrpc"], "2.0", "not a JSON-RPC frame: {line}");
            if frame["id"] == json!(id) {
                return frame;
            }
        }
    }

    fn initialize(&mut self) -> Value {
        let reply = self.request(
            "initialize",
            &json!({"protocolVersion": "2025-11-25", "capabilities": {},
                   "clientInfo": {"name": "cli-test", "version": "0"}}),
        );
        self.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
        reply
    }

    fn call(&mut self, tool: &str, arguments: &Value) -> Value {
        let reply = self.request("tools/call", &json!({"name": tool, "arguments": arguments}));
        reply["result"].clone()
    }
}

impl Drop for McpProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn mcp_over_stdio_stores_messages_and_stdout_carries_only_frames() {
    let dir = tempfile::tempdir().unwrap();
    let mut mcp = McpProcess::spawn(&dir);
    let init = mcp.initialize();
    assert_eq!(init["result"]["serverInfo"]["name"], "pdchannels");
    assert_eq!(init["result"]["protocolVersion"], "2025-11-25");

    let tools = mcp.request("tools/list", &json!({}));
    // A local store gives the four write tools and the four agent read/reply tools.
    let mut names: Vec<&str> = tools["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|tool| tool["name"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "channels_create",
            "channels_delete",
            "channels_delete_conversation",
            "channels_get_conversation",
            "channels_list_conversations",
            "channels_list_templates",
            "channels_receive_message",
            "channels_send_message",
        ]
    );

    let created = mcp.call(
        "channels_create",
        &json!({"name": "WA", "provider_channel_id": "wa"}),
    );
    assert_eq!(created["isError"], false);
    let received = mcp.call(
        "channels_receive_message",
        &json!({"id": "m1", "channel_id": "wa", "sender_id": "s", "conversation_id": "c",
               "message": "hi", "status": "sent", "created_at": "2022-06-30 12:34"}),
    );
    assert_eq!(received["isError"], false);
    assert_eq!(
        received["structuredContent"]["data"]["created_at"],
        "2022-06-30T12:34:00.000Z"
    );
    let invalid = mcp.call("channels_receive_message", &json!({"id": 5}));
    assert_eq!(invalid["isError"], true);

    // Closing stdin ends the server cleanly, with everything acknowledged on disk.
    drop(mcp.stdin.take());
    let status = pdchannels_testkit::wait_within(&mut mcp.child, FRAME_DEADLINE, "pdchannels mcp");
    assert!(status.success(), "{status:?}");
    let out = pdchannels(&dir)
        .args([
            "receive",
            "--channel-id",
            "wa",
            "--conversation-id",
            "c",
            "--sender-id",
            "s",
        ])
        .args([
            "--id",
            "m1",
            "--message",
            "hi",
            "--created-at",
            "2022-06-30 12:34",
        ])
        .output()
        .unwrap();
    let body: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(body["data"]["status"], "sent");
    // "Unchanged", not "stored new": the message written over MCP was on disk before this call
    // (had MCP stored nothing, this receive would create it and still answer status sent).
    let summary = String::from_utf8_lossy(&out.stderr);
    assert!(
        summary.contains("already stored, unchanged: message `m1`"),
        "the message written over MCP is stored: {summary}"
    );
}

#[test]
fn unknown_methods_are_answered_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut mcp = McpProcess::spawn(&dir);
    let reply = mcp.request("server/discover", &json!({}));
    assert!(reply["error"]["code"].is_i64(), "{reply}");
}

#[test]
fn receive_from_flags_needs_an_existing_channel() {
    let dir = tempfile::tempdir().unwrap();
    let out = pdchannels(&dir)
        .args([
            "receive",
            "--channel-id",
            "wa",
            "--conversation-id",
            "c",
            "--sender-id",
            "s",
        ])
        .args(["--id", "m1", "--message", "hi"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let body: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(body["additional_data"]["code"], "NOT_FOUND");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Create it first"), "{stderr}");
}

#[test]
fn receive_from_json_reports_every_problem_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let create = pdchannels(&dir)
        .args(["channels", "create", "--id", "wa", "--name", "WhatsApp"])
        .output()
        .unwrap();
    assert!(create.status.success());

    let mut child = pdchannels(&dir)
        .args(["receive", "--json", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(br#"{"id":"m1","channel_id":"wa","status":"seen","conversationId":"c"}"#)
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let body: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        body["additional_data"]["code"],
        "INVALID_RECEIVE_MESSAGE_PAYLOAD"
    );
    let paths: Vec<_> = body["additional_data"]["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        [
            "conversationId",
            "sender_id",
            "conversation_id",
            "message",
            "status",
            "created_at"
        ]
    );
}

#[test]
fn receive_from_a_file_with_attachments_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let create = pdchannels(&dir)
        .args(["channels", "create", "--id", "wa", "--name", "WhatsApp"])
        .output()
        .unwrap();
    assert!(create.status.success(), "{create:?}");
    let file = dir.path().join("m.json");
    std::fs::write(
        &file,
        json!({"id": "m1", "channel_id": "wa", "sender_id": "s", "conversation_id": "c",
               "message": "", "status": "delivered", "created_at": "2024-01-01T00:00:00+01:00",
               "attachments": [{"id": "a", "type": "image/png", "url": "https://x.test/a.png"}]})
        .to_string(),
    )
    .unwrap();
    let out = pdchannels(&dir)
        .arg("receive")
        .arg("--json")
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let body: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(body["data"]["created_at"], "2023-12-31T23:00:00.000Z");
    assert_eq!(body["data"]["attachments"][0]["link_expires"], false);
}

#[test]
fn a_missing_payload_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = pdchannels(&dir)
        .args(["receive", "--json", "/no/such/file.json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot read the payload file /no/such/file.json"),
        "{stderr}"
    );
}

#[test]
fn help_explains_the_commands() {
    let dir = tempfile::tempdir().unwrap();
    let out = pdchannels(&dir).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in ["mcp", "receive", "channels", "deprecated", "--db"] {
        assert!(help.contains(needle), "--help mentions {needle}:\n{help}");
    }
}

/// A receive payload for channel `wa`.
fn receive_arguments(id: &str) -> Value {
    json!({"id": id, "channel_id": "wa", "sender_id": "s", "conversation_id": "c",
           "message": "hi", "status": "sent", "created_at": "2022-06-30 12:34"})
}

fn tool_text(result: &Value) -> String {
    result["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn mcp_through_the_relay_answers_queued_while_the_upstream_is_down() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens on port 1: every send fails to connect and is retried.
    let mut mcp = McpProcess::spawn_with(
        &dir,
        &[
            "--upstream",
            "http://127.0.0.1:1/v1",
            "--deliver-timeout",
            "1s",
        ],
        &[("PDCHANNELS_UPSTREAM_TOKEN", "upstream-token")],
    );
    mcp.initialize();
    let queued = mcp.call("channels_receive_message", &receive_arguments("m1"));
    assert_eq!(queued["isError"], false, "queued is not an error: {queued}");
    let outbox_id = &queued["structuredContent"]["additional_data"]["queued"]["outbox_id"];
    assert!(
        outbox_id.is_i64(),
        "the answer names the outbox id: {queued}"
    );
    let text = tool_text(&queued);
    assert!(
        text.starts_with("Queued for the upstream Channels API: message `m1`")
            && text.contains(&format!("safe in the outbox (id {outbox_id})")),
        "{text}"
    );
}

#[test]
fn mcp_through_the_relay_delivers_or_quotes_the_upstreams_rejection() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let hub_dir = tempfile::tempdir().unwrap();
    let (hub_url, token) = runtime.block_on(async {
        let (store, token) = upstream_store(&hub_dir).await;
        (pdchannels_testkit::spawn_hub(&store).await, token)
    });
    let dir = tempfile::tempdir().unwrap();
    let upstream = format!("{hub_url}/v1");
    let mut mcp = McpProcess::spawn_with(
        &dir,
        &["--upstream", &upstream, "--deliver-timeout", "20s"],
        &[("PDCHANNELS_UPSTREAM_TOKEN", &token)],
    );
    mcp.initialize();

    // The upstream hub has no channel `wa`: a 404 that retrying cannot fix.
    let rejected = mcp.call("channels_receive_message", &receive_arguments("m1"));
    assert_eq!(rejected["isError"], true, "{rejected}");
    assert_eq!(
        rejected["structuredContent"]["additional_data"]["code"],
        "UPSTREAM_REJECTED"
    );
    let text = tool_text(&rejected);
    assert!(
        text.contains("rejected it") && text.contains("Channel not found"),
        "the rejection quotes the upstream: {text}"
    );
    assert!(
        text.contains("`pdchannels --db ") && text.contains(" outbox retry "),
        "the suggested command names the test's database: {text}"
    );

    // Once the channel exists upstream, the call is delivered and answered with its data.
    let created = mcp.call(
        "channels_create",
        &json!({"name": "WA", "provider_channel_id": "wa"}),
    );
    assert_eq!(created["isError"], false, "{created}");
    let delivered = mcp.call("channels_receive_message", &receive_arguments("m2"));
    assert_eq!(delivered["isError"], false, "{delivered}");
    assert_eq!(delivered["structuredContent"]["data"]["id"], "m2");
    assert!(
        tool_text(&delivered).starts_with("Delivered to the upstream Channels API"),
        "{delivered}"
    );
}

/// A store for an upstream hub, with an API token for it.
async fn upstream_store(dir: &TempDir) -> (pdchannels_store::Store, String) {
    let store = pdchannels_store::Store::open(&dir.path().join("upstream.db"))
        .await
        .unwrap();
    let token = store.create_token("relay").await.unwrap();
    let secret = secrecy::ExposeSecret::expose_secret(&token.secret).to_owned();
    (store, secret)
}

/// Sends one HTTP/1.1 request (the connection closes after it) to `addr`; the status and the
/// whole response. Every read and write has a deadline.
fn http_exchange(addr: &str, request: &str) -> (u16, String) {
    use std::io::Read;
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    let deadline = Some(std::time::Duration::from_secs(10));
    stream.set_read_timeout(deadline).unwrap();
    stream.set_write_timeout(deadline).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"));
    (status, response)
}

#[test]
fn serve_never_logs_a_token_even_at_trace() {
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    let dir = tempfile::tempdir().unwrap();
    // Made beforehand, so the hub does not print a first token of its own.
    let created = pdchannels(&dir)
        .args(["token", "create", "--name", "logs"])
        .output()
        .unwrap();
    let stdout = String::from_utf8(created.stdout).unwrap();
    let token = stdout
        .split_whitespace()
        .find(|w| w.starts_with("pdc_"))
        .unwrap_or_else(|| panic!("a token on stdout: {stdout}"))
        .to_owned();
    let wrong = "pdc_SECRET_never_valid";

    let mut hub = pdchannels(&dir)
        .args(["--log", "trace", "serve", "--listen", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = hub.stderr.take().unwrap();
    let (lines_tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut log = String::new();
    let started = Instant::now();
    let addr = loop {
        let left = Duration::from_secs(30).saturating_sub(started.elapsed());
        let line = lines
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("the hub did not start:\n{log}"));
        log.push_str(&line);
        log.push('\n');
        if let Some(rest) = line.split("pdchannels hub on http://").nth(1) {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };

    let body = r#"{"name":"WhatsApp","provider_channel_id":"wa"}"#;
    let initialize = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"0"}}}"#;
    let exchanges = [
        (
            format!("GET /v1/channels?limit=5&api_token={token} HTTP/1.1\r\n"),
            String::new(),
            200,
        ),
        (
            "GET /v1/channels HTTP/1.1\r\n".to_owned(),
            format!("x-api-token: {token}\r\n"),
            200,
        ),
        (
            format!("POST /v1/channels?api_token={token} HTTP/1.1\r\n"),
            format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            ),
            200,
        ),
        (
            "POST /mcp HTTP/1.1\r\n".to_owned(),
            format!(
                "Authorization: Bearer {token}\r\nAccept: application/json, text/event-stream\r\n\
                 Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{initialize}",
                initialize.len()
            ),
            200,
        ),
        (
            format!("GET /v1/channels?api_token={wrong} HTTP/1.1\r\n"),
            String::new(),
            401,
        ),
        (
            "GET /v1/channels HTTP/1.1\r\n".to_owned(),
            format!("Authorization: Bearer {wrong}\r\n"),
            401,
        ),
        (
            format!("GET /no/such/route?api_token={token} HTTP/1.1\r\n"),
            String::new(),
            404,
        ),
    ];
    for (request_line, rest, expected) in &exchanges {
        let rest = if rest.contains("\r\n\r\n") {
            rest.clone()
        } else {
            format!("{rest}\r\n")
        };
        let request = format!("{request_line}Host: 127.0.0.1\r\nConnection: close\r\n{rest}");
        let (status, response) = http_exchange(&addr, &request);
        assert_eq!(status, *expected, "{request_line}: {response}");
    }

    // Every line the requests caused was written before its response; stderr ends at exit.
    hub.kill().unwrap();
    hub.wait().unwrap();
    while let Ok(line) = lines.recv_timeout(Duration::from_secs(10)) {
        log.push_str(&line);
        log.push('\n');
    }
    let log = without_ansi_colours(&log);
    assert!(
        log.contains(r#"route="/v1/channels"}: pdchannels_hub::request_log: answered status=200"#),
        "one line per request with its route and status:\n{log}"
    );
    for secret in [token.as_str(), wrong, "api_token="] {
        assert!(!log.contains(secret), "{secret} appears in the log:\n{log}");
    }
}

/// The text with its ANSI colour sequences (ESC [ ... m) removed.
fn without_ansi_colours(text: &str) -> String {
    let mut plain = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    plain
}

/// Regression (issue 8 item 7): a huge duration panicked in the hand-written parser
/// (`Duration::from_secs_f64` overflow; smaller huge values later overflowed an `Instant`).
/// Every duration flag refuses what is out of its range at parse time: exit 2, a message
/// naming the flag, the range and an example, and no panic.
#[test]
fn huge_or_malformed_duration_flags_exit_2_naming_the_flag_range_and_an_example() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&[&str], &str, &str); 6] = [
        (
            &["serve", "--deliver-timeout", "99999999999999999999s"],
            "--deliver-timeout",
            "from 0s to 10m, such as 10s",
        ),
        (
            &["serve", "--deliver-timeout", "18446744073709551615s"],
            "--deliver-timeout",
            "from 0s to 10m, such as 10s",
        ),
        (
            &["mcp", "--deliver-timeout", "11m"],
            "--deliver-timeout",
            "from 0s to 10m, such as 10s",
        ),
        (
            &["relay", "--deliver-timeout", "1e30s"],
            "--deliver-timeout",
            "from 0s to 10m, such as 10s",
        ),
        (
            &["auth", "login", "--wait", "9999999999h"],
            "--wait",
            "from 1s to 1h, such as 5m",
        ),
        (
            &["auth", "login", "--wait", "0s"],
            "--wait",
            "from 1s to 1h, such as 5m",
        ),
    ];
    for (args, flag, range) in cases {
        let output = assert_cmd::Command::cargo_bin("pdchannels")
            .unwrap()
            .env("PDCHANNELS_DB", dir.path().join("channels.db"))
            .env_remove("PDCHANNELS_LOG")
            .args(args)
            .timeout(std::time::Duration::from_secs(30))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(stderr.contains(flag), "{args:?}: {stderr}");
        assert!(stderr.contains(range), "{args:?}: {stderr}");
        assert!(stderr.contains(args[args.len() - 1]), "{args:?}: {stderr}");
    }
    // The environment variable is held to the same range.
    let output = assert_cmd::Command::cargo_bin("pdchannels")
        .unwrap()
        .env("PDCHANNELS_DB", dir.path().join("channels.db"))
        .env("PDCHANNELS_DELIVER_TIMEOUT", "99999999999999999999s")
        .arg("mcp")
        .timeout(std::time::Duration::from_secs(30))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("from 0s to 10m, such as 10s"), "{stderr}");
    assert!(
        !dir.path().join("channels.db").exists(),
        "nothing was created"
    );
}
