//! The `pdchannels` binary as a subprocess: MCP over real stdio, and the `receive` command.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use assert_cmd::cargo::CommandCargoExt;
use serde_json::{Value, json};
use tempfile::TempDir;

fn pdchannels(dir: &TempDir) -> Command {
    let mut cmd = Command::cargo_bin("pdchannels").unwrap();
    cmd.env("PDCHANNELS_DB", dir.path().join("data/channels.db"))
        .env_remove("PDCHANNELS_LOG");
    cmd
}

/// `pdchannels mcp` with newline-delimited JSON-RPC on its stdin and stdout.
struct McpProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    next_id: u64,
}

impl McpProcess {
    fn spawn(dir: &TempDir) -> Self {
        let mut child = pdchannels(dir)
            .arg("mcp")
            .env("PDCHANNELS_LOG", "debug")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
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
            let mut line = String::new();
            assert!(
                self.stdout.read_line(&mut line).unwrap() > 0,
                "server closed stdout"
            );
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
    assert_eq!(tools["result"]["tools"].as_array().unwrap().len(), 4);

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
    let status = mcp.child.wait().unwrap();
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
    assert_eq!(
        body["data"]["status"], "sent",
        "the message written over MCP is stored"
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
    pdchannels(&dir)
        .args(["channels", "create", "--id", "wa", "--name", "WhatsApp"])
        .output()
        .unwrap();
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
