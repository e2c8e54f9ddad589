//! `pdchannels mcp` as a subprocess fed faulty lines: each one is answered (or, for a
//! notification, passed over) and the next valid request is still served. Every read has a
//! deadline, so a missing answer fails the test instead of hanging it.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use assert_cmd::cargo::CommandCargoExt;
use serde_json::{Value, json};
use tempfile::TempDir;

const DEADLINE: Duration = Duration::from_secs(10);

struct Mcp {
    child: Child,
    stdin: Option<ChildStdin>,
    /// Lines from stdout, read by a thread so each wait can have a deadline.
    lines: Receiver<String>,
    _dir: TempDir,
}

impl Mcp {
    fn spawn() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::cargo_bin("pdchannels")
            .unwrap()
            .env("PDCHANNELS_DB", dir.path().join("channels.db"))
            .env("PDCHANNELS_LOG", "warn")
            .arg("mcp")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let (send, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines() {
                let Ok(line) = line else { break };
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        let mut mcp = Self {
            stdin: child.stdin.take(),
            child,
            lines,
            _dir: dir,
        };
        mcp.write_line(
            json!({"jsonrpc": "2.0", "id": "init", "method": "initialize", "params": {
                "protocolVersion": "2025-11-25", "capabilities": {},
                "clientInfo": {"name": "stdio-faults", "version": "0"}}})
            .to_string()
            .as_bytes(),
        );
        assert_eq!(mcp.next_frame()["id"], "init");
        mcp.write_line(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
        mcp
    }

    fn write_line(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().unwrap();
        stdin.write_all(bytes).unwrap();
        stdin.write_all(b"\n").unwrap();
        stdin.flush().unwrap();
    }

    /// The next frame on stdout; every line there must be one JSON-RPC frame.
    fn next_frame(&mut self) -> Value {
        let line = match self.lines.recv_timeout(DEADLINE) {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => panic!("no answer within {DEADLINE:?}"),
            Err(RecvTimeoutError::Disconnected) => panic!("the server closed stdout"),
        };
        let frame: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("stdout carried a non-JSON line {line:?}: {e}"));
        assert_eq!(frame["jsonrpc"], "2.0", "not a JSON-RPC frame: {line}");
        frame
    }

    /// Sends `ping` with `id` and expects its answer as the very next frame: the server still
    /// serves, and nothing else was written before it.
    fn assert_serves(&mut self, id: u64) {
        self.write_line(
            json!({"jsonrpc": "2.0", "id": id, "method": "ping"})
                .to_string()
                .as_bytes(),
        );
        let frame = self.next_frame();
        assert_eq!(frame["id"], id, "{frame}");
        assert_eq!(frame["result"], json!({}), "{frame}");
    }
}

impl Drop for Mcp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn each_faulty_line_is_answered_and_the_server_keeps_serving() {
    let mut mcp = Mcp::spawn();
    let deep = format!(
        r#"{{"jsonrpc":"2.0","id":105,"method":"ping","params":{{"a":{}{}}}}}"#,
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    let cases: Vec<(&str, Vec<u8>, i64, Value)> = vec![
        ("not JSON", b"this is not json".to_vec(), -32700, Value::Null),
        (
            "not UTF-8",
            b"{\"jsonrpc\":\"2.0\",\"id\":101,\"method\":\"ping\",\"params\":{\"a\":\"\xff\xfe\"}}"
                .to_vec(),
            -32700,
            json!(101),
        ),
        (
            "a lone surrogate",
            br#"{"jsonrpc":"2.0","id":102,"method":"ping","params":{"a":"\ud800"}}"#.to_vec(),
            -32700,
            json!(102),
        ),
        (
            "a number out of range",
            br#"{"jsonrpc":"2.0","id":"n-103","method":"ping","params":{"a":1e400}}"#.to_vec(),
            -32700,
            json!("n-103"),
        ),
        (
            "cut short",
            br#"{"jsonrpc":"2.0","id":104,"method":"pi"#.to_vec(),
            -32700,
            json!(104),
        ),
        ("deep nesting", deep.into_bytes(), -32700, json!(105)),
        (
            "a batch",
            br#"[{"jsonrpc":"2.0","id":106,"method":"ping"}]"#.to_vec(),
            -32600,
            Value::Null,
        ),
        (
            "no jsonrpc member",
            br#"{"id":107,"method":"ping"}"#.to_vec(),
            -32600,
            json!(107),
        ),
        (
            "arguments as an array",
            br#"{"jsonrpc":"2.0","id":108,"method":"tools/call","params":{"name":"channels_create","arguments":[1]}}"#.to_vec(),
            -32602,
            json!(108),
        ),
        (
            "arguments as a string",
            br#"{"jsonrpc":"2.0","id":109,"method":"tools/call","params":{"name":"channels_create","arguments":"x"}}"#.to_vec(),
            -32602,
            json!(109),
        ),
        (
            "no tool name",
            br#"{"jsonrpc":"2.0","id":110,"method":"tools/call","params":{"arguments":{}}}"#
                .to_vec(),
            -32602,
            json!(110),
        ),
    ];
    for (n, (what, line, code, id)) in cases.into_iter().enumerate() {
        mcp.write_line(&line);
        let frame = mcp.next_frame();
        assert_eq!(frame["error"]["code"], code, "{what}: {frame}");
        assert_eq!(frame["id"], id, "{what}: {frame}");
        let message = frame["error"]["message"].as_str().unwrap();
        assert!(message.len() > 20, "{what}: say what is wrong: {message}");
        mcp.assert_serves(1000 + n as u64);
    }
}

#[test]
fn invalid_params_name_the_offending_member() {
    let mut mcp = Mcp::spawn();
    mcp.write_line(
        br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"channels_create","arguments":[1]}}"#,
    );
    let frame = mcp.next_frame();
    assert_eq!(
        frame["error"]["data"]["path"], "params.arguments",
        "{frame}"
    );
    let message = frame["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("`params.arguments` must be an object"),
        "{message}"
    );
}

#[test]
fn faulty_notifications_and_blank_lines_get_no_answer() {
    let mut mcp = Mcp::spawn();
    mcp.write_line(br#"{"jsonrpc":"1.0","method":"notifications/initialized"}"#);
    mcp.write_line(b"");
    mcp.write_line(b"   \r");
    // The next frame is the ping's: nothing was written for the three lines before it.
    mcp.assert_serves(1);
}

#[test]
fn an_oversized_line_is_refused_with_its_id_and_memory_stays_bounded() {
    let mut mcp = Mcp::spawn();
    let mut line = br#"{"jsonrpc":"2.0","id":77,"method":"tools/call","params":{"name":"channels_create","arguments":{"name":""#.to_vec();
    line.extend(std::iter::repeat_n(b'a', 3 * 1024 * 1024));
    line.extend_from_slice(br#"","provider_channel_id":"big"}}}"#);
    mcp.write_line(&line);
    let frame = mcp.next_frame();
    assert_eq!(frame["id"], 77, "{frame}");
    assert_eq!(frame["error"]["code"], -32600, "{frame}");
    assert!(
        frame["error"]["message"]
            .as_str()
            .unwrap()
            .contains("1048576 bytes"),
        "{frame}"
    );
    mcp.assert_serves(2);
}

#[test]
fn a_last_line_without_newline_is_still_answered() {
    let mut mcp = Mcp::spawn();
    let stdin = mcp.stdin.as_mut().unwrap();
    stdin
        .write_all(br#"{"jsonrpc":"2.0","id":5,"method":"ping"}"#)
        .unwrap();
    drop(mcp.stdin.take());
    let frame = mcp.next_frame();
    assert_eq!(frame["id"], 5, "{frame}");
    // The end of input ends the server: stdout closes, then the process exits cleanly.
    assert_eq!(
        mcp.lines.recv_timeout(DEADLINE),
        Err(RecvTimeoutError::Disconnected),
        "the server did not end at EOF"
    );
    let status = mcp.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}
