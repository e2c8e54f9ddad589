//! `pdchannels serve` as a subprocess: signals with a request in flight, metrics values (a
//! process of its own, so no other test shares its recorder), `--allowed-host`, and a relaying
//! hub (its start-up line, its read API, its shutdown with a send in flight).

use std::fs::File;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use assert_cmd::cargo::CommandCargoExt;
use pdchannels_testkit::{HeldRequest, sample, wait_within};
use serde_json::{Value, json};
use tempfile::TempDir;

/// How long the hub may take to start, answer or stop: far above a debug build's on a loaded
/// machine, and above the hub's own drain bound (10 s).
const DEADLINE: Duration = Duration::from_secs(30);

/// A running `pdchannels serve` on a free port; killed if the test ends without stopping it.
pub(crate) struct Serve {
    child: Child,
    pub(crate) dir: TempDir,
    addr: String,
    pub(crate) token: String,
    client: reqwest::Client,
}

impl Serve {
    fn start(extra: &[&str]) -> Self {
        Self::start_with(extra, &[])
    }

    /// `serve EXTRA` with `envs` added to its environment.
    pub(crate) fn start_with(extra: &[&str], envs: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("serve.log");
        let mut cmd = Command::cargo_bin("pdchannels").unwrap();
        for var in [
            "PDCHANNELS_LOG",
            "PDCHANNELS_LOG_FORMAT",
            "PDCHANNELS_UPSTREAM",
        ] {
            cmd.env_remove(var);
        }
        let mut child = cmd
            .arg("--db")
            .arg(dir.path().join("hub.db"))
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(extra)
            .envs(envs.iter().copied())
            .envs(pdchannels_testkit::subprocess_log_env())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let until = Instant::now() + DEADLINE;
        let (addr, token) = loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if let (Some(addr), Some(token)) = (banner_address(&text), first_token(&text)) {
                break (addr, token);
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!("the hub exited ({status}): {text}");
            }
            assert!(Instant::now() < until, "the hub did not start: {text}");
            std::thread::sleep(Duration::from_millis(20));
        };
        let client = reqwest::Client::builder()
            .timeout(DEADLINE)
            .build()
            .unwrap();
        Self {
            child,
            dir,
            addr,
            token,
            client,
        }
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("serve.log")).unwrap_or_default()
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub(crate) async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let response = self
            .client
            .post(self.url(path))
            .header("x-api-token", &self.token)
            .json(body)
            .send()
            .await
            .expect("the hub answers");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub(crate) async fn metrics(&self) -> String {
        self.client
            .get(self.url("/metrics"))
            .header("x-api-token", &self.token)
            .send()
            .await
            .expect("the hub answers")
            .text()
            .await
            .unwrap()
    }

    pub(crate) fn signal(&self, signal: &str) {
        let sent = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success(), "kill -{signal} failed");
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `host:port` from "pdchannels hub on http://HOST:PORT ...".
fn banner_address(log: &str) -> Option<String> {
    let rest = &log[log.find("pdchannels hub on http://")? + "pdchannels hub on http://".len()..];
    Some(
        rest.chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
            .collect(),
    )
}

/// The token the first `serve` prints once (an indented line of its own).
fn first_token(log: &str) -> Option<String> {
    log.lines()
        .map(str::trim)
        .find(|l| l.starts_with("pdc_"))
        .map(str::to_owned)
}

fn message(id: &str) -> Value {
    json!({"id": id, "channel_id": "wa", "sender_id": "s", "conversation_id": "c1",
           "message": "hi", "status": "sent", "created_at": "2024-05-01 10:00"})
}

/// Whether message `id` of channel `wa` is in the database at `db` (read by the binary itself:
/// receiving the same payload again answers "unchanged" only if it was stored).
fn stored(db: &Path, id: &str) -> bool {
    use std::io::{Read, Write};
    let mut child = Command::cargo_bin("pdchannels")
        .unwrap()
        .arg("--db")
        .arg(db)
        .args(["receive", "--json", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(message(id).to_string().as_bytes())
        .unwrap();
    wait_within(&mut child, DEADLINE, "pdchannels receive");
    let mut summary = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut summary)
        .unwrap();
    summary.contains("already stored, unchanged")
}

/// `signal` while a receive is in flight: the hub answers it 200, stores it, and exits 0.
async fn a_request_in_flight_survives(signal: &str) {
    let mut hub = Serve::start(&[]);
    let (status, _) = hub
        .post(
            "/v1/channels",
            &json!({"name": "WA", "provider_channel_id": "wa"}),
        )
        .await;
    assert_eq!(status, 200);
    let held = HeldRequest::start(
        &hub.addr,
        "/v1/channels/messages/receive",
        &hub.token,
        &message("in-flight"),
    )
    .await;
    hub.signal(signal);
    // Shutdown has begun once the hub stops accepting connections.
    let until = Instant::now() + DEADLINE;
    while tokio::net::TcpStream::connect(&hub.addr).await.is_ok() {
        assert!(
            Instant::now() < until,
            "still accepting after SIG{signal}: {}",
            hub.log()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (status, body) = held.finish().await;
    assert_eq!(status, 200, "answered after SIG{signal}: {body}");
    assert_eq!(body["data"]["id"], "in-flight");
    let exit = wait_within(&mut hub.child, DEADLINE, "the hub after the signal");
    assert!(exit.success(), "{exit}: {}", hub.log());
    assert!(
        hub.log().contains("pdchannels hub stopped"),
        "{}",
        hub.log()
    );
    assert!(
        stored(&hub.dir.path().join("hub.db"), "in-flight"),
        "the message answered during shutdown is on disk"
    );
}

#[tokio::test]
async fn sigterm_lets_a_request_in_flight_finish_and_keeps_it() {
    a_request_in_flight_survives("TERM").await;
}

#[tokio::test]
async fn sigint_lets_a_request_in_flight_finish_and_keeps_it() {
    a_request_in_flight_survives("INT").await;
}

#[tokio::test]
async fn metrics_change_by_exactly_what_was_done() {
    let hub = Serve::start(&[]);
    let (status, _) = hub
        .post(
            "/v1/channels",
            &json!({"name": "WA", "provider_channel_id": "wa"}),
        )
        .await;
    assert_eq!(status, 200);
    let before = hub.metrics().await;
    let receive = "/v1/channels/messages/receive";
    for id in ["m1", "m2", "m3"] {
        assert_eq!(hub.post(receive, &message(id)).await.0, 200);
    }
    assert_eq!(hub.post(receive, &message("m1")).await.0, 200, "unchanged");
    let mut read = message("m2");
    read["status"] = json!("read");
    assert_eq!(hub.post(receive, &read).await.0, 200, "updated");
    let mut unknown = message("m4");
    unknown["channel_id"] = json!("nope");
    assert_eq!(hub.post(receive, &unknown).await.0, 404);
    let after = hub.metrics().await;

    let delta = |name: &str, labels: &[(&str, &str)]| {
        sample(&after, name, labels) - sample(&before, name, labels)
    };
    let route = ("route", receive);
    let requests = "pdchannels_http_requests_total";
    assert_eq!(delta(requests, &[route, ("status", "200")]), 5.0, "{after}");
    assert_eq!(delta(requests, &[route, ("status", "404")]), 1.0, "{after}");
    let stored = "pdchannels_messages_stored_total";
    assert_eq!(delta(stored, &[("outcome", "created")]), 3.0, "{after}");
    assert_eq!(delta(stored, &[("outcome", "unchanged")]), 1.0, "{after}");
    assert_eq!(delta(stored, &[("outcome", "updated")]), 1.0, "{after}");
    assert_eq!(
        delta("pdchannels_receive_duration_seconds_count", &[]),
        6.0,
        "every receive is timed: {after}"
    );
    // The first /metrics read is counted by the time of the second.
    assert_eq!(
        delta(requests, &[("route", "/metrics"), ("status", "200")]),
        1.0,
        "{after}"
    );
}

#[tokio::test]
async fn allowed_host_lets_mcp_answer_under_that_name() {
    let hub = Serve::start(&[
        "--allowed-host",
        "hub.example.com",
        "--allowed-host",
        "other.example.com",
    ]);
    let initialize = |host: &'static str| {
        hub.client
            .post(hub.url("/mcp"))
            .header("host", host)
            .header("x-api-token", &hub.token)
            .header("accept", "application/json, text/event-stream")
            .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                           "clientInfo": {"name": "serve-test", "version": "0"}}}))
            .send()
    };
    for host in ["hub.example.com", "other.example.com"] {
        assert_eq!(initialize(host).await.unwrap().status(), 200, "{host}");
    }
    assert_eq!(
        initialize("attacker.example.net").await.unwrap().status(),
        403
    );
}

/// An upstream that answers every request `delay` late: it counts the request in `arrived`,
/// waits, then forwards it to `hub` and answers what the hub answered.
async fn slow_upstream(hub: String, delay: Duration, arrived: Arc<AtomicUsize>) -> String {
    use axum::body::Bytes;
    use axum::http::{HeaderMap, Method, StatusCode, Uri};

    let client = reqwest::Client::new();
    let forward = move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
        let (client, hub, arrived) = (client.clone(), hub.clone(), arrived.clone());
        async move {
            arrived.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(delay).await;
            let mut request = client.request(method, format!("{hub}{uri}")).body(body);
            for name in ["x-api-token", "content-type"] {
                if let Some(value) = headers.get(name) {
                    request = request.header(name, value.as_bytes());
                }
            }
            let response = request.send().await.expect("the upstream hub answers");
            let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
            let body = response.bytes().await.unwrap_or_default();
            (status, [("content-type", "application/json")], body)
        }
    };
    let app = axum::Router::new().fallback(forward);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    address
}

/// Issue 9: `serve` closed the store before stopping the relay, so a send in flight at shutdown
/// could not record its answer and stayed pending (to be sent again). The relay must settle
/// first: after the restart the outbox shows the call delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relaying_hub_stopped_mid_send_settles_that_send_before_closing_the_store() {
    let upstream_dir = tempfile::tempdir().unwrap();
    let upstream_store = pdchannels_store::Store::open(&upstream_dir.path().join("up.db"))
        .await
        .unwrap();
    let token = upstream_store.create_token("relay").await.unwrap();
    let token = secrecy::ExposeSecret::expose_secret(&token.secret).to_owned();
    let hub_url = pdchannels_testkit::spawn_hub(&upstream_store).await;
    pdchannels_testkit::create_channel(&hub_url, &token, "wa").await;
    let arrived = Arc::new(AtomicUsize::new(0));
    let slow = slow_upstream(hub_url, Duration::from_secs(3), arrived.clone()).await;

    let mut hub = Serve::start_with(
        &[
            "--upstream",
            &format!("{slow}/v1"),
            "--deliver-timeout",
            "0s",
        ],
        &[("PDCHANNELS_UPSTREAM_TOKEN", &token)],
    );
    let (status, body) = hub
        .post("/v1/channels/messages/receive", &message("in-flight"))
        .await;
    assert_eq!(status, 202, "queued at once (--deliver-timeout 0s): {body}");
    let until = Instant::now() + DEADLINE;
    while arrived.load(Ordering::SeqCst) == 0 {
        assert!(
            Instant::now() < until,
            "the relay never sent: {}",
            hub.log()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The send is in flight (the upstream holds it for 3 s): stop the hub now.
    hub.signal("TERM");
    let exit = loop {
        if let Some(exit) = hub.child.try_wait().unwrap() {
            break exit;
        }
        assert!(
            Instant::now() < until,
            "the hub did not stop: {}",
            hub.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(exit.success(), "{exit}: {}", hub.log());
    assert!(
        !hub.log().to_lowercase().contains("closed"),
        "no write hit a closed store: {}",
        hub.log()
    );

    let listed = Command::cargo_bin("pdchannels")
        .unwrap()
        .arg("--db")
        .arg(hub.dir.path().join("hub.db"))
        .args(["outbox", "list", "--json"])
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    // `--json`: one call per line; its state as a JSON string.
    let states: Vec<String> = listed
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap()["state"].to_string())
        .collect();
    assert_eq!(states, ["\"delivered\""], "{listed}");
    assert!(
        upstream_store
            .message("wa", "in-flight")
            .await
            .unwrap()
            .is_some(),
        "the upstream has the message"
    );
}

/// A relaying hub names its upstream when it starts, and its read API says the data lives
/// there instead of answering empty pages that look like lost data.
#[tokio::test]
async fn a_relaying_hub_names_its_upstream_and_its_reads_point_there() {
    let upstream = "http://127.0.0.1:9/v1";
    let hub = Serve::start_with(
        &["--upstream", upstream],
        &[("PDCHANNELS_UPSTREAM_TOKEN", "upstream-token")],
    );
    assert!(
        hub.log().contains(&format!("relaying to {upstream}")),
        "{}",
        hub.log()
    );
    assert!(!hub.log().contains("upstream-token"), "{}", hub.log());
    for path in [
        "/v1/channels",
        "/v1/channels/wa/conversations",
        "/api/v1/channels/wa/conversations/c1",
    ] {
        let response = hub
            .client
            .get(hub.url(path))
            .header("x-api-token", &hub.token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 409, "{path}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["additional_data"]["code"], "RELAYING_HUB", "{body}");
        assert!(
            body["error"].as_str().unwrap().contains(upstream),
            "{path}: {body}"
        );
    }
}
