//! The relay survives a crash: a `pdchannels relay` killed with SIGKILL in the middle of a
//! backlog and started again delivers every message exactly as accepted (nothing lost, each
//! conversation in order), to a real hub subprocess over HTTP.
//!
//! 1. A hub (`pdchannels serve`) on 127.0.0.1:0 with channel `wa`.
//! 2. `pdchannels import` of an NDJSON file into a local outbox, with an upstream that refuses
//!    connections (127.0.0.1:1), so every call stays pending. The import would keep retrying
//!    (it only gives up when the next retry is over a minute away), so once it reports that
//!    everything is queued it is killed, and the few calls its worker tried are put back in line
//!    with `outbox retry` so that the relay below starts from a clean, all-due outbox.
//! 3. `pdchannels relay` to the hub through a proxy; once the hub holds some but not all
//!    messages, the proxy stops passing the hub's answers on, so that several sends are stored
//!    upstream but not yet recorded as delivered; then SIGKILL, and the relay again (straight to
//!    the hub) until the outbox is drained.
//! 4. The hub holds exactly the messages of the file, each conversation in created_at order,
//!    and every edit (a second receive of an id, right after the first in the same
//!    conversation) won: had the relay reordered a conversation, the older text would show.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use assert_cmd::cargo::CommandCargoExt;
use serde_json::{Value, json};
use tempfile::TempDir;

const CONVERSATIONS: usize = 30;
const PER_CONVERSATION: usize = 100;
const MESSAGES: usize = CONVERSATIONS * PER_CONVERSATION;
/// Every `EDIT_EVERY`-th message of a conversation is received twice, the second time edited.
const EDIT_EVERY: usize = 10;
const CALLS: usize = MESSAGES + MESSAGES / EDIT_EVERY;
/// How long the restarted relay may take to drain the outbox. A call in flight at the crash stays
/// leased to the dead relay for the lease (60 s) before it is claimed again, so this must be
/// longer than that.
const DRAIN_BOUND: Duration = Duration::from_secs(150);
/// How many hub answers to hold back before the crash (fewer if the relay sends fewer at once).
const IN_FLIGHT_AT_CRASH: usize = 8;

/// `pdchannels` with none of the caller's environment that would change what it does.
pub(crate) fn pdchannels() -> Command {
    let mut cmd = Command::cargo_bin("pdchannels").unwrap();
    for var in [
        "PDCHANNELS_DB",
        "PDCHANNELS_LOG",
        "PDCHANNELS_LOG_FORMAT",
        "PDCHANNELS_UPSTREAM",
        "PDCHANNELS_UPSTREAM_TOKEN",
        "PDCHANNELS_DELIVER_TIMEOUT",
        "PDCHANNELS_LISTEN",
        "PDCHANNELS_RATE_LIMIT",
        "PDCHANNELS_DAILY_BUDGET",
        "PDCHANNELS_UPSTREAM_OAUTH",
        "PDCHANNELS_OAUTH_FILE",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// A child process that is killed (SIGKILL) if the test ends without stopping it.
pub(crate) struct Process {
    child: Option<Child>,
    log: PathBuf,
}

impl Process {
    pub(crate) fn spawn(mut cmd: Command, log: PathBuf) -> Self {
        let stderr = File::create(&log).unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap();
        Self {
            child: Some(child),
            log,
        }
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub(crate) fn assert_running(&mut self, what: &str) {
        let child = self.child.as_mut().expect("running");
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "{what} exited early ({status}); its stderr:\n{}",
                self.log()
            );
        }
    }

    /// SIGKILL, as a crash would.
    pub(crate) fn crash(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// SIGTERM, then wait (bounded) for a clean exit.
    pub(crate) fn stop(&mut self, what: &str) {
        let mut child = self.child.take().expect("running");
        let sent = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success(), "kill -TERM {} failed", child.id());
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(
                    status.success(),
                    "{what} exited with {status} after SIGTERM; its stderr:\n{}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
                return;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{what} did not stop within 15 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One HTTP/1.1 exchange over a fresh connection. Answers the status and the body as JSON
/// (or as a JSON string when it is not JSON).
pub(crate) fn http(
    addr: &str,
    method: &str,
    path: &str,
    token: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let body = body.map(Value::to_string).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nx-api-token: {token}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP response has a header section");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut payload = raw[split + 4..].to_vec();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {head:?}"));
    if head.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    }) {
        payload = dechunk(&payload);
    }
    let text = String::from_utf8_lossy(&payload).to_string();
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, value)
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = data.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size_text = String::from_utf8_lossy(&data[..eol]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[eol + 2..eol + 2 + size]);
        data = &data[eol + 2 + size + 2..];
    }
}

/// A TCP proxy in front of the hub that can stop passing the hub's answers on: requests still
/// reach the hub and are stored, but the relay never hears back, so they are in flight when it
/// is killed (sent, stored upstream, not yet recorded as delivered).
struct Proxy {
    addr: String,
    hold: Arc<AtomicBool>,
    /// Hub answers swallowed while holding.
    held: Arc<AtomicUsize>,
}

impl Proxy {
    fn start(upstream: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let hold = Arc::new(AtomicBool::new(false));
        let held = Arc::new(AtomicUsize::new(0));
        let upstream = upstream.to_owned();
        let (hold2, held2) = (hold.clone(), held.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                let (hold, held) = (hold2.clone(), held2.clone());
                let (mut from_client, mut to_server) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut from_client, &mut to_server);
                    let _ = to_server.shutdown(Shutdown::Write);
                });
                let (mut from_server, mut to_client) = (server, client);
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16 * 1024];
                    loop {
                        let n = match from_server.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        if hold.load(Ordering::SeqCst) {
                            let answers = buf[..n].windows(9).filter(|w| w == b"HTTP/1.1 ").count();
                            held.fetch_add(answers, Ordering::SeqCst);
                        } else if to_client.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = to_client.shutdown(Shutdown::Both);
                });
            }
        });
        Self { addr, hold, held }
    }
}

struct Hub {
    process: Process,
    addr: String,
    token: String,
}

impl Hub {
    fn start(dir: &Path) -> Self {
        let mut cmd = pdchannels();
        cmd.arg("--db")
            .arg(dir.join("hub.db"))
            .args(["serve", "--listen", "127.0.0.1:0"]);
        let mut process = Process::spawn(cmd, dir.join("hub.log"));
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            process.assert_running("the hub");
            let log = process.log();
            if let Some(at) = log.find("pdchannels hub on http://") {
                let rest = &log[at + "pdchannels hub on http://".len()..];
                let addr: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
                    .collect();
                let token = find_token(&log).expect("a fresh hub prints its first token");
                return Self {
                    process,
                    addr,
                    token,
                };
            }
            assert!(
                Instant::now() < deadline,
                "the hub did not start; stderr:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn get(&self, path: &str) -> Value {
        let (status, body) = http(&self.addr, "GET", path, &self.token, None);
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    /// Messages the hub holds in channel `wa`, summed over its conversations.
    fn stored(&self) -> usize {
        let mut total = 0;
        let mut cursor = String::new();
        loop {
            let page = self.get(&format!("/v1/channels/wa/conversations?limit=500{cursor}"));
            for conversation in page["data"].as_array().expect("a list") {
                total += usize::try_from(conversation["message_count"].as_u64().unwrap()).unwrap();
            }
            match page["additional_data"]["next_cursor"].as_str() {
                Some(next) if !next.is_empty() => cursor = format!("&cursor={next}"),
                _ => return total,
            }
        }
    }

    /// Every message of a conversation, in the order the hub gives them (oldest first).
    fn conversation(&self, conversation: &str) -> Vec<Value> {
        let mut messages = Vec::new();
        let mut cursor = String::new();
        loop {
            let page = self.get(&format!(
                "/v1/channels/wa/conversations/{conversation}?limit=500{cursor}"
            ));
            messages.extend(
                page["data"]["messages"]
                    .as_array()
                    .expect("messages")
                    .iter()
                    .cloned(),
            );
            match page["additional_data"]["next_cursor"].as_str() {
                Some(next) if !next.is_empty() => cursor = format!("&cursor={next}"),
                _ => return messages,
            }
        }
    }

    /// The hub's counter of receive requests answered `status`.
    fn receives_answered(&self, status: u16) -> u64 {
        let metrics = self.get("/metrics");
        let text = metrics.as_str().expect("metrics are text");
        text.lines()
            .filter(|l| {
                l.starts_with("pdchannels_http_requests_total{")
                    && l.contains("route=\"/v1/channels/messages/receive\"")
                    && l.contains(&format!("status=\"{status}\""))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    }
}

pub(crate) fn find_token(text: &str) -> Option<String> {
    let at = text.find("pdc_")?;
    let token: String = text[at..].chars().take(4 + 48).collect();
    (token.len() == 52 && token[4..].chars().all(|c| c.is_ascii_hexdigit())).then_some(token)
}

fn message_id(conversation: usize, k: usize) -> String {
    format!("m-c{conversation:02}-{k:03}")
}

fn created_at(k: usize) -> String {
    format!("2024-05-01T10:{:02}:{:02}.000Z", k / 60, k % 60)
}

fn text(conversation: usize, k: usize, edited: bool) -> String {
    let edit = if edited { " (edited)" } else { "" };
    format!("message {k} of conversation {conversation}{edit}")
}

/// The NDJSON file: conversations interleaved line by line, each conversation's messages in
/// created_at order, every tenth one followed (in its conversation) by an edit of itself.
fn write_messages(path: &Path) {
    let mut out = std::io::BufWriter::new(File::create(path).unwrap());
    let mut lines = 0;
    for k in 0..PER_CONVERSATION {
        for c in 0..CONVERSATIONS {
            let edits: &[bool] = if k % EDIT_EVERY == 0 {
                &[false, true]
            } else {
                &[false]
            };
            for &edited in edits {
                let line = json!({
                    "id": message_id(c, k),
                    "channel_id": "wa",
                    "sender_id": format!("customer-{c}"),
                    "conversation_id": format!("c{c:02}"),
                    "message": text(c, k, edited),
                    "status": "sent",
                    "created_at": created_at(k),
                });
                writeln!(out, "{line}").unwrap();
                lines += 1;
            }
        }
    }
    out.flush().unwrap();
    assert_eq!(lines, CALLS);
}

/// `outbox stats` of `db`: state → count.
fn outbox_stats(db: &OsStr) -> HashMap<String, i64> {
    let output = pdchannels()
        .arg("--db")
        .arg(db)
        .args(["outbox", "stats", "--json"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "outbox stats failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stats: Value = serde_json::from_slice(&output.stdout).unwrap();
    ["pending", "delivered", "dead"]
        .into_iter()
        .map(|state| (state.to_owned(), stats[state].as_i64().unwrap()))
        .collect()
}

/// Fills `db`'s outbox with every line of `file`, nothing sent, everything due now.
fn queue_everything(dir: &Path, db: &OsStr, file: &Path) {
    let mut cmd = pdchannels();
    cmd.arg("--db").arg(db).arg("import").arg(file).args([
        "--upstream",
        "http://127.0.0.1:1/v1",
        "--upstream-token",
        "unused",
    ]);
    let mut import = Process::spawn(cmd, dir.join("import.log"));
    // Every line is durable in the outbox before the import starts delivering and says so.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !import.log().contains("delivering") {
        import.assert_running("the import");
        assert!(
            Instant::now() < deadline,
            "the import did not queue the file within 60 s; stderr:\n{}",
            import.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The upstream refuses connections, so the import would retry for minutes; it has no more
    // to do than that.
    import.crash();

    let stats = outbox_stats(db);
    assert_eq!(stats["pending"], CALLS as i64, "{stats:?}");
    assert_eq!(stats["delivered"], 0, "{stats:?}");
    assert_eq!(stats["dead"], 0, "{stats:?}");

    // Its worker tried the first call of some conversations: they wait out a backoff now, or,
    // when the kill landed between a claim and its settle, are still leased to the dead import
    // (the relay started next takes those at once).
    let list = pdchannels()
        .arg("--db")
        .arg(db)
        .args([
            "outbox", "list", "--state", "pending", "--limit", "100000", "--json",
        ])
        .output()
        .unwrap();
    assert!(list.status.success());
    let tried = String::from_utf8_lossy(&list.stdout)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|call| call["attempts"] != 0)
        .count();
    assert!(
        tried <= CONVERSATIONS,
        "only heads of conversations are ever tried: {tried}"
    );
    // Due now, so that the relay starts from an all-due outbox.
    let retried = pdchannels()
        .arg("--db")
        .arg(db)
        .args(["outbox", "retry", "--all", "--state", "pending"])
        .output()
        .unwrap();
    assert!(
        retried.status.success(),
        "outbox retry --all: {}",
        String::from_utf8_lossy(&retried.stderr)
    );
}

fn start_relay(dir: &Path, db: &OsStr, upstream: &str, token: &str, log: &str) -> Process {
    let mut cmd = pdchannels();
    cmd.arg("--db")
        .arg(db)
        .arg("relay")
        .args(["--upstream", &format!("http://{upstream}/v1")])
        .args(["--upstream-token", token]);
    Process::spawn(cmd, dir.join(log))
}

#[test]
fn a_relay_killed_mid_backlog_delivers_everything_in_order_after_a_restart() {
    let dir = TempDir::new().unwrap();
    let local = dir.path().join("local.db");
    crash_and_drain(&dir, local.as_os_str(), Drain::Restart);
}

/// The same on a PostgreSQL outbox shared by two relays: one is killed mid-send, the other,
/// running all along, takes back its calls once its heartbeat stops and drains the outbox.
#[test]
fn two_relays_on_one_postgres_outbox_deliver_everything_once_in_order_with_one_killed() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let Some(db) = runtime.block_on(pdchannels_testkit::TestDatabase::postgres()) else {
        return;
    };
    let dir = TempDir::new().unwrap();
    crash_and_drain(&dir, OsStr::new(&db.flag_value()), Drain::OtherRelay);
}

/// Who drains the outbox after the crash.
#[derive(Clone, Copy, PartialEq)]
enum Drain {
    /// The relay, started again.
    Restart,
    /// A second relay on the same outbox, running since before the crash.
    OtherRelay,
}

fn crash_and_drain(dir: &TempDir, local: &OsStr, drain: Drain) {
    let file = dir.path().join("messages.ndjson");

    let mut hub = Hub::start(dir.path());
    let (status, body) = http(
        &hub.addr,
        "POST",
        "/v1/channels",
        &hub.token,
        Some(&json!({"name": "wa", "provider_channel_id": "wa"})),
    );
    assert_eq!(status, 200, "creating the channel: {body}");

    write_messages(&file);
    queue_everything(dir.path(), local, &file);

    // Relay (through the proxy) until the hub holds some but not all; then hold the hub's
    // answers until several sends are in flight, and crash it.
    let proxy = Proxy::start(&hub.addr);
    let started = Instant::now();
    let mut relay = start_relay(dir.path(), local, &proxy.addr, &hub.token, "relay-1.log");
    loop {
        relay.assert_running("the first relay");
        let stored = hub.stored();
        if stored >= MESSAGES / 3 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the relay delivered only {stored} of {MESSAGES} in 60 s; its stderr:\n{}",
            relay.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    proxy.hold.store(true, Ordering::SeqCst);
    let holding = Instant::now();
    while proxy.held.load(Ordering::SeqCst) < IN_FLIGHT_AT_CRASH
        && holding.elapsed() < Duration::from_secs(5)
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    // The second relay starts once the first has sends in flight, and before it is killed: it
    // shares the outbox with it and takes back its calls. (Started with the first, going
    // straight to the hub, it could deliver everything before the first had a send in flight.)
    let other = (drain == Drain::OtherRelay)
        .then(|| start_relay(dir.path(), local, &hub.addr, &hub.token, "relay-other.log"));
    relay.crash();
    let held = proxy.held.load(Ordering::SeqCst);
    let at_crash = hub.stored();
    eprintln!(
        "SIGKILL after {:.1} s with {held} answers held back: the hub held {at_crash} of \
         {MESSAGES} messages",
        started.elapsed().as_secs_f64()
    );
    assert!(held >= 1, "no send was in flight at the crash");
    assert!(
        at_crash < MESSAGES,
        "the relay finished before it could be killed; deliver more messages"
    );

    // Again (or the other relay on), until everything is delivered.
    let restarted = Instant::now();
    let mut relay = match other {
        Some(other) => other,
        None => start_relay(dir.path(), local, &hub.addr, &hub.token, "relay-2.log"),
    };
    loop {
        relay.assert_running("the restarted relay");
        if hub.stored() == MESSAGES {
            let stats = outbox_stats(local);
            if stats["pending"] == 0 {
                assert_eq!(stats["dead"], 0, "{stats:?}");
                assert_eq!(stats["delivered"], CALLS as i64, "{stats:?}");
                break;
            }
        }
        assert!(
            restarted.elapsed() < DRAIN_BOUND,
            "the restarted relay did not drain the outbox within {DRAIN_BOUND:?}: hub {} of \
             {MESSAGES}, outbox {:?}; its stderr:\n{}",
            hub.stored(),
            outbox_stats(local),
            relay.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "drained {:.1} s after the restart",
        restarted.elapsed().as_secs_f64()
    );
    relay.stop("the restarted relay");

    // Exactly the file's messages, each conversation in order, every edit the last word.
    assert_eq!(hub.stored(), MESSAGES);
    for c in 0..CONVERSATIONS {
        let messages = hub.conversation(&format!("c{c:02}"));
        let ids: Vec<&str> = messages.iter().map(|m| m["id"].as_str().unwrap()).collect();
        let expected: Vec<String> = (0..PER_CONVERSATION).map(|k| message_id(c, k)).collect();
        assert_eq!(ids, expected, "conversation c{c:02}");
        for (k, m) in messages.iter().enumerate() {
            assert_eq!(m["created_at"], created_at(k), "{m}");
            assert_eq!(
                m["message"],
                text(c, k, k % EDIT_EVERY == 0),
                "conversation c{c:02} message {k}: an edit was delivered before the message \
                 it edits"
            );
        }
    }

    // The calls whose answers were held back were stored by the hub but not recorded by the
    // relay: sent again after the restart (receive is an upsert, so that is harmless). Nothing
    // else may have been sent twice; the relay keeps at most 64 in flight.
    let sent = hub.receives_answered(200);
    eprintln!("the hub answered {sent} receives for {CALLS} calls ({held} held back)");
    assert!(
        (CALLS as u64 + held as u64..=CALLS as u64 + 64).contains(&sent),
        "{sent} receives answered 200 for {CALLS} calls, {held} of them held back at the crash"
    );
    assert_eq!(hub.receives_answered(429), 0);

    hub.process.stop("the hub");
}
