//! `pdchannels serve` as a subprocess: 2,000 MCP sessions asked for, never closed, with
//! `--max-mcp-sessions 100`. The hub opens 100, refuses the rest, and its resident memory
//! stays bounded (each open session holds about 165 KB; 2,000 would take over 300 MB).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::RecvTimeoutError;
use std::time::Duration;

use assert_cmd::cargo::CommandCargoExt;
use serde_json::json;

const DEADLINE: Duration = Duration::from_secs(10);

struct Hub(Child);

impl Drop for Hub {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn resident_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn sessions_past_the_cap_are_refused_and_memory_stays_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hub.db");
    let token = Command::cargo_bin("pdchannels")
        .unwrap()
        .env("PDCHANNELS_DB", &db)
        .args(["token", "create", "--name", "memory"])
        .output()
        .unwrap();
    assert!(token.status.success());
    let token = String::from_utf8(token.stdout).unwrap().trim().to_owned();

    let mut child = Command::cargo_bin("pdchannels")
        .unwrap()
        .env("PDCHANNELS_DB", &db)
        .env_remove("PDCHANNELS_LOG")
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--max-mcp-sessions",
            "100",
        ])
        .args(["--max-mcp-sessions-per-token", "10000"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let pid = child.id();
    let _hub = Hub(child);
    let (send, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            let _ = send.send(line);
        }
    });
    let base = loop {
        let line = match lines.recv_timeout(DEADLINE) {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => panic!("the hub did not start within {DEADLINE:?}"),
            Err(RecvTimeoutError::Disconnected) => panic!("the hub exited"),
        };
        if let Some(rest) = line.strip_prefix("pdchannels hub on ") {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };

    let client = reqwest::Client::builder()
        .timeout(DEADLINE)
        .build()
        .unwrap();
    let initialize = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "memory", "version": "0"}}});
    let open = |client: &reqwest::Client| {
        client
            .post(format!("{base}/mcp"))
            .bearer_auth(&token)
            .header("accept", "application/json, text/event-stream")
            .json(&initialize)
            .send()
    };
    // Warm up (allocator arenas, the store) before the baseline.
    assert_eq!(open(&client).await.unwrap().status(), 200);
    let before_kb = resident_kb(pid);
    let mut opened = 1;
    for _ in 0..2000 {
        let response = open(&client).await.unwrap();
        match response.status().as_u16() {
            200 => opened += 1,
            503 => {}
            other => panic!("unexpected status {other}"),
        }
        response.bytes().await.unwrap();
    }
    let grown_kb = resident_kb(pid).saturating_sub(before_kb);
    assert_eq!(opened, 100, "never more sessions than --max-mcp-sessions");
    // 100 sessions of ~165 KB plus slack; 2,000 open sessions would be ~330 MB.
    assert!(
        grown_kb < 64 * 1024,
        "resident memory grew by {grown_kb} kB for at most 100 sessions"
    );
}
