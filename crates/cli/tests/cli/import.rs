//! `pdchannels import FILE` as a user runs it, a subprocess on real SQLite files:
//!
//! - Bad lines are rejected one by one, each named by its line number, field path and reason,
//!   in line order though lines are stored concurrently; blank lines are skipped; the good
//!   lines are stored; the summary counts both; exit code 1.
//! - An import killed (SIGKILL) partway and run again over the whole file ends with every
//!   message stored exactly once, and its summary counts what the first run stored as
//!   `unchanged`.
//! - With `--upstream` (a hub in this process), the same: the outbox keeps one call per line
//!   however often the file is imported, and the hub receives each call exactly once.
//! - Lines the upstream rejects for good are reported by line number with its reason (exit 1),
//!   and importing the file again after the fix sends them again.
//! - A line that is not UTF-8 is one rejected line; the lines after it are imported.
//!
//! The interruptions are deterministic: the first run reads the file from a pipe (`import -`)
//! that the test fills only halfway, so the import is certainly still running (waiting for the
//! rest) when it is killed, with part of the file stored and part never read.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use pdchannels_store::Store;
use serde_json::json;
use tempfile::TempDir;
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, Command};

/// How long anything the tests wait for may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(30);

/// A local database in a temporary directory, and `pdchannels` pointed at it.
struct Local {
    dir: TempDir,
}

impl Local {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn db(&self) -> PathBuf {
        self.dir.path().join("local.db")
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `pdchannels --db local.db`, with none of the caller's PDCHANNELS_* settings.
    fn pdchannels(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pdchannels"));
        for (var, _) in std::env::vars() {
            if var.starts_with("PDCHANNELS_") {
                cmd.env_remove(var);
            }
        }
        cmd.arg("--db")
            .arg(self.db())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd
    }

    /// Runs `pdchannels ARGS` to the end: its exit status and stderr.
    async fn run(&self, cmd: &mut Command) -> (ExitStatus, String) {
        let output = tokio::time::timeout(PATIENCE, cmd.output())
            .await
            .expect("pdchannels finishes in time")
            .unwrap();
        (output.status, String::from_utf8(output.stderr).unwrap())
    }

    async fn create_channel(&self) {
        let (status, stderr) = self
            .run(
                self.pdchannels()
                    .args(["channels", "create", "--id", "wa", "--name", "WA"]),
            )
            .await;
        assert!(status.success(), "channels create: {stderr}");
    }

    /// `pdchannels import FILE` (with `extra` arguments and `envs`) to the end.
    async fn import(
        &self,
        file: &Path,
        extra: &[&str],
        envs: &[(&str, &str)],
    ) -> (ExitStatus, String) {
        self.run(
            self.pdchannels()
                .arg("import")
                .arg(file)
                .args(extra)
                .envs(envs.iter().copied()),
        )
        .await
    }

    /// Starts `pdchannels import -` (with `extra` arguments and `envs`) reading from a pipe the
    /// test writes to; its stderr goes to `first-run.log`.
    fn start_import_from_stdin(&self, extra: &[&str], envs: &[(&str, &str)]) -> Child {
        let log = std::fs::File::create(self.path("first-run.log")).unwrap();
        self.pdchannels()
            .args(["import", "-"])
            .args(extra)
            .envs(envs.iter().copied())
            .stdin(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap()
    }

    fn first_run_log(&self) -> String {
        std::fs::read_to_string(self.path("first-run.log")).unwrap_or_default()
    }
}

/// One receive payload: message `i` of the file, in one of `conversations` conversations.
fn payload(i: usize, conversations: usize) -> serde_json::Value {
    let c = i % conversations;
    json!({
        "id": format!("m{i:06}"),
        "channel_id": "wa",
        "sender_id": format!("customer-{c}"),
        "conversation_id": format!("c{c:03}"),
        "message": format!("message {i}"),
        "status": "sent",
        "created_at": format!("2024-05-01T10:{:02}:{:02}Z", (i / 60) % 60, i % 60),
    })
}

/// `count` good lines over `conversations` conversations, as NDJSON.
fn ndjson(count: usize, conversations: usize) -> Vec<String> {
    (0..count)
        .map(|i| format!("{}\n", payload(i, conversations)))
        .collect()
}

fn write_file(path: &Path, lines: &[String]) {
    std::fs::write(path, lines.concat()).unwrap();
}

/// The numbers of the summary line `N lines: X stored locally (C created, U updated, K
/// unchanged), R rejected locally` (or `X queued for the upstream` in place of the stored).
#[derive(Debug, Default, PartialEq, Eq)]
struct Summary {
    lines: u64,
    created: u64,
    updated: u64,
    unchanged: u64,
    queued: u64,
    rejected: u64,
}

fn summary(stderr: &str) -> Summary {
    let line = stderr
        .lines()
        .find(|l| l.contains(" lines: ") && l.contains(" rejected locally"))
        .unwrap_or_else(|| panic!("no summary line in stderr:\n{stderr}"));
    // Each count is the number (with thousands separators) before its words.
    let count = |words: &str| -> u64 {
        let Some(at) = line.find(&format!(" {words}")) else {
            return 0;
        };
        let digits: String = line[..at]
            .chars()
            .rev()
            .take_while(|c| c.is_ascii_digit() || *c == ',')
            .filter(char::is_ascii_digit)
            .collect();
        digits
            .chars()
            .rev()
            .collect::<String>()
            .parse()
            .unwrap_or_else(|_| panic!("no count before {words:?}: {line}"))
    };
    Summary {
        lines: count("lines:"),
        created: count("created"),
        updated: count("updated"),
        unchanged: count("unchanged"),
        queued: count("queued for the upstream"),
        rejected: count("rejected locally"),
    }
}

/// Polls `check` until it holds, while `child` (an import waiting for more input) must keep
/// running.
async fn wait_until<F, Fut>(child: &mut Child, local: &Local, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + PATIENCE;
    while !check().await {
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "the import exited ({status}) before {what}; its stderr:\n{}",
                local.first_run_log()
            );
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within {PATIENCE:?}; the import's stderr:\n{}",
            local.first_run_log()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// SIGKILL, as a crash would; the import must still have been running (waiting for input).
async fn crash(child: &mut Child, local: &Local) {
    assert!(
        child.try_wait().unwrap().is_none(),
        "the import ended before it was killed; its stderr:\n{}",
        local.first_run_log()
    );
    child.kill().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_lines_are_reported_by_number_and_field_while_good_lines_are_stored() {
    let local = Local::new();
    local.create_channel().await;
    let good = |i| payload(i, 2).to_string();
    let mut missing_sender = payload(100, 2);
    missing_sender["id"] = json!("no-sender");
    missing_sender.as_object_mut().unwrap().remove("sender_id");
    let mut unknown_status = payload(101, 2);
    unknown_status["id"] = json!("bad-status");
    unknown_status["status"] = json!("unknown");
    let lines = [
        good(1),                            // 1
        "{\"id\": \"m9\", oops".to_owned(), // 2: not JSON
        good(2),                            // 3
        missing_sender.to_string(),         // 4
        String::new(),                      // 5: blank, skipped
        good(3),                            // 6
        unknown_status.to_string(),         // 7
        good(4),                            // 8
        good(5),                            // 9
    ];
    let file = local.path("mixed.ndjson");
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();

    let (status, stderr) = local.import(&file, &[], &[]).await;

    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("line 2: not valid JSON"), "{stderr}");
    assert!(
        stderr.contains("line 4: `sender_id`: required field is missing"),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "line 7: `status`: must be one of `sent`, `delivered`, `read`, `failed`; \
             got \"unknown\""
        ),
        "{stderr}"
    );
    let reported: Vec<&str> = stderr.lines().filter(|l| l.starts_with("line ")).collect();
    assert_eq!(
        reported.len(),
        3,
        "only the bad lines are reported: {reported:?}"
    );
    assert!(
        stderr.contains(
            "8 lines: 5 stored locally (5 created, 0 updated, 0 unchanged), 3 rejected locally"
        ),
        "{stderr}"
    );

    let store = Store::open(&local.db()).await.unwrap();
    assert_eq!(store.count_messages().await.unwrap(), 5);
    for i in 1..=5 {
        let stored = store
            .message("wa", &format!("m{i:06}"))
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("good line m{i:06} is stored"));
        assert_eq!(stored.message["message"], format!("message {i}"));
    }
    for rejected in ["no-sender", "bad-status"] {
        assert!(store.message("wa", rejected).await.unwrap().is_none());
    }
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_killed_partway_and_run_again_stores_every_message_exactly_once() {
    const LINES: usize = 50_000;
    let local = Local::new();
    local.create_channel().await;
    let lines = ndjson(LINES, 16);
    let file = local.path("messages.ndjson");
    write_file(&file, &lines);
    let store = Store::open(&local.db()).await.unwrap();

    // The first run gets half the file and is killed once it has stored a good part of it.
    // Writing the half returns only when the import has taken in nearly all of it (the pipe's
    // buffer and its queue of lines are small), so the kill typically lands while the last
    // groups are being committed; the other half was never written.
    let mut first = local.start_import_from_stdin(&[], &[]);
    let mut stdin = first.stdin.take().unwrap();
    stdin
        .write_all(lines[..LINES / 2].concat().as_bytes())
        .await
        .unwrap();
    stdin.flush().await.unwrap();
    wait_until(
        &mut first,
        &local,
        "a fifth of the file is stored",
        || async { store.count_messages().await.unwrap() >= (LINES / 5) as i64 },
    )
    .await;
    crash(&mut first, &local).await;
    drop(stdin);
    let stored_by_first = u64::try_from(store.count_messages().await.unwrap()).unwrap();
    eprintln!("killed the first run with {stored_by_first} of {LINES} messages stored");
    assert!(
        (LINES as u64 / 5..=LINES as u64 / 2).contains(&stored_by_first),
        "{stored_by_first}"
    );

    let started = Instant::now();
    let (status, stderr) = local.import(&file, &[], &[]).await;
    eprintln!(
        "the second run took {:.1} s",
        started.elapsed().as_secs_f64()
    );

    assert!(status.success(), "{stderr}");
    assert_eq!(
        summary(&stderr),
        Summary {
            lines: LINES as u64,
            created: LINES as u64 - stored_by_first,
            updated: 0,
            unchanged: stored_by_first,
            queued: 0,
            rejected: 0,
        },
        "{stderr}"
    );
    assert_eq!(store.count_messages().await.unwrap(), LINES as i64);
    for i in [0, LINES / 2 - 1, LINES / 2, LINES - 1] {
        let stored = store
            .message("wa", &format!("m{i:06}"))
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("m{i:06} is stored"));
        assert_eq!(stored.message["message"], format!("message {i}"));
    }
    store.close().await;
}

/// A hub in this process, with channel `wa`, an API token, and its own store.
struct Hub {
    /// The proxy in front of the hub, which counts what reaches it.
    url: String,
    token: String,
    store: Store,
    proxy: pdchannels_testkit::FaultProxy,
    _hub: pdchannels_testkit::TestHub,
}

impl Hub {
    async fn start() -> Self {
        let hub = pdchannels_testkit::TestHub::start().await;
        hub.add_channel("wa").await;
        let proxy = pdchannels_testkit::FaultProxy::spawn(&hub.address).await;
        Self {
            url: proxy.address.clone(),
            token: hub.token.clone(),
            store: hub.store.clone(),
            proxy,
            _hub: hub,
        }
    }

    /// Receive calls that reached the hub, counted by the proxy in front of it (not by the
    /// hub's metrics: the recorder is process-wide, shared with the other tests' hubs).
    async fn receives_accepted(&self) -> u64 {
        self.proxy
            .seen()
            .iter()
            .filter(|seen| {
                seen.method == "POST" && seen.path.ends_with("/channels/messages/receive")
            })
            .count() as u64
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_import_killed_partway_and_run_again_sends_each_call_once() {
    const LINES: usize = 1_000;
    let hub = Hub::start().await;
    let upstream = format!("{}/v1", hub.url);
    let upstream_args = ["--upstream", upstream.as_str()];
    let token_env = &[("PDCHANNELS_UPSTREAM_TOKEN", hub.token.as_str())];
    let local = Local::new();
    let lines = ndjson(LINES, 50);
    let file = local.path("messages.ndjson");
    write_file(&file, &lines);
    let store = Store::open(&local.db()).await.unwrap();

    // The first run gets half the file; it queues what it reads and would deliver only at the
    // end of its input, so it is killed with half the file in the outbox and nothing sent.
    let mut first = local.start_import_from_stdin(&upstream_args, token_env);
    let mut stdin = first.stdin.take().unwrap();
    stdin
        .write_all(lines[..LINES / 2].concat().as_bytes())
        .await
        .unwrap();
    stdin.flush().await.unwrap();
    wait_until(&mut first, &local, "half the file is queued", || async {
        store.outbox().stats().await.unwrap().pending == (LINES / 2) as i64
    })
    .await;
    crash(&mut first, &local).await;
    drop(stdin);
    assert_eq!(hub.store.count_messages().await.unwrap(), 0);

    let (status, stderr) = local.import(&file, &upstream_args, token_env).await;

    assert!(status.success(), "{stderr}");
    let got = summary(&stderr);
    assert_eq!((got.queued, got.rejected), (LINES as u64, 0));
    assert!(
        stderr.contains("upstream: 1,000 delivered, 0 still queued, 0 rejected upstream"),
        "{stderr}"
    );
    assert_eq!(hub.store.count_messages().await.unwrap(), LINES as i64);
    for i in [0, LINES / 2 - 1, LINES / 2, LINES - 1] {
        let stored = hub
            .store
            .message("wa", &format!("m{i:06}"))
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("m{i:06} reached the hub"));
        assert_eq!(stored.message["message"], format!("message {i}"));
    }
    let outbox = store.outbox().stats().await.unwrap();
    assert_eq!(
        (outbox.delivered, outbox.pending, outbox.dead),
        (LINES as i64, 0, 0),
        "one outbox call per line: {outbox:?}"
    );
    assert_eq!(hub.receives_accepted().await, LINES as u64);
    assert_eq!(
        store.count_messages().await.unwrap(),
        0,
        "with an upstream nothing is stored locally"
    );

    // Once more, after everything was delivered: still one call per line, none sent again.
    let (status, stderr) = local.import(&file, &upstream_args, token_env).await;
    assert!(status.success(), "{stderr}");
    assert!(
        stderr.contains(
            "delivering 0 queued calls to the upstream (1,000 delivered by an earlier run)"
        ),
        "{stderr}"
    );
    let outbox = store.outbox().stats().await.unwrap();
    assert_eq!(
        (outbox.delivered, outbox.pending, outbox.dead),
        (LINES as i64, 0, 0)
    );
    assert_eq!(hub.receives_accepted().await, LINES as u64);
    assert_eq!(hub.store.count_messages().await.unwrap(), LINES as i64);
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_the_upstream_rejects_are_reported_and_sent_again_after_a_fix() {
    let hub = Hub::start().await;
    // Through /api/v1: the other upstream test counts the hub metrics' /v1 receives, and the
    // metrics recorder is shared by every hub of this test binary.
    let upstream = format!("{}/api/v1", hub.url);
    let upstream_args = ["--upstream", upstream.as_str()];
    let token_env = &[("PDCHANNELS_UPSTREAM_TOKEN", hub.token.as_str())];
    let local = Local::new();
    let mut lines = ndjson(3, 1);
    for i in 3..5 {
        let mut other = payload(i, 1);
        other["channel_id"] = json!("sms"); // not on the hub yet
        lines.push(format!("{other}\n"));
    }
    let file = local.path("messages.ndjson");
    write_file(&file, &lines);

    let (status, stderr) = local.import(&file, &upstream_args, token_env).await;

    assert!(!status.success(), "{stderr}");
    for line in [4, 5] {
        let report = stderr
            .lines()
            .find(|l| l.starts_with(&format!("line {line} (outbox call ")))
            .unwrap_or_else(|| panic!("line {line} is reported: {stderr}"));
        assert!(report.contains("rejected upstream: "), "{report}");
        assert!(report.contains("Channel not found"), "{report}");
        assert!(report.contains("outbox retry"), "{report}");
        assert!(!report.contains(".."), "one sentence ends once: {report}");
    }
    assert!(stderr.contains("importing the same file again"), "{stderr}");
    assert!(
        stderr.contains("upstream: 3 delivered, 0 still queued, 2 rejected upstream"),
        "{stderr}"
    );
    assert_eq!(hub.store.count_messages().await.unwrap(), 3);

    // The fix: the channel exists. Importing again sends the two rejected lines, and only them.
    pdchannels_testkit::create_channel(&hub.url, &hub.token, "sms").await;
    let (status, stderr) = local.import(&file, &upstream_args, token_env).await;
    assert!(status.success(), "{stderr}");
    assert!(
        stderr
            .contains("delivering 2 queued calls to the upstream (3 delivered by an earlier run)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("upstream: 5 delivered, 0 still queued, 0 rejected upstream"),
        "{stderr}"
    );
    assert_eq!(hub.store.count_messages().await.unwrap(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_that_is_not_utf8_is_one_rejected_line() {
    let local = Local::new();
    local.create_channel().await;
    let lines = ndjson(4, 1);
    let mut bytes = Vec::new();
    bytes.extend_from_slice(lines[0].as_bytes());
    bytes.extend_from_slice(b"{\"id\": \"\xff\xfe\"}\n");
    for line in &lines[1..] {
        bytes.extend_from_slice(line.as_bytes());
    }
    let file = local.path("messages.ndjson");
    std::fs::write(&file, bytes).unwrap();

    let (status, stderr) = local.import(&file, &[], &[]).await;

    assert!(!status.success());
    assert!(
        stderr.contains("line 2: not valid UTF-8 (at byte 8)"),
        "{stderr}"
    );
    let got = summary(&stderr);
    assert_eq!((got.created, got.rejected), (4, 1), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_of_another_import_with_the_bytes_of_an_earlier_one_is_sent_again() {
    let hub = Hub::start().await;
    // Through /api/v1, not counted by the other upstream test's /v1 metrics.
    let upstream = format!("{}/api/v1", hub.url);
    let upstream_args = ["--upstream", upstream.as_str()];
    let token_env = &[("PDCHANNELS_UPSTREAM_TOKEN", hub.token.as_str())];
    let local = Local::new();
    let line = |text: &str| {
        let mut m = payload(1, 1);
        m["message"] = json!(text);
        format!("{m}\n")
    };
    // An edit A -> B -> A, each in its own import; the third file's line 2 has the very bytes of
    // the first file's line 1, but it is a new call, so the upstream must end with A.
    let imports = [
        vec![line("A")],
        vec![line("B")],
        vec![format!("{}\n", payload(0, 1)), line("A")],
    ];
    for (n, lines) in imports.iter().enumerate() {
        let file = local.path(&format!("edit-{n}.ndjson"));
        write_file(&file, lines);
        let (status, stderr) = local.import(&file, &upstream_args, token_env).await;
        assert!(status.success(), "{stderr}");
    }
    let stored = hub.store.message("wa", "m000001").await.unwrap().unwrap();
    assert_eq!(stored.message["message"], "A");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn problems_are_reported_in_line_order_though_lines_are_stored_concurrently() {
    let local = Local::new();
    local.create_channel().await;
    // Lines the store refuses (an unknown channel: known only once the line is stored,
    // concurrently with hundreds of others) among lines refused as they are read (not JSON).
    let lines: Vec<String> = (0..2_000)
        .map(|i| match i % 100 {
            0 => {
                let mut unknown = payload(i, 4);
                unknown["channel_id"] = json!("sms");
                format!("{unknown}\n")
            }
            1 => "{not json\n".to_owned(),
            _ => format!("{}\n", payload(i, 4)),
        })
        .collect();
    let file = local.path("mixed.ndjson");
    write_file(&file, &lines);

    let (status, stderr) = local.import(&file, &[], &[]).await;

    assert_eq!(status.code(), Some(1), "{stderr}");
    let reported: Vec<usize> = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("line ")?.split(':').next()?.parse().ok())
        .collect();
    let expected: Vec<usize> = (0..2_000).filter(|i| i % 100 < 2).map(|i| i + 1).collect();
    assert_eq!(reported, expected, "{stderr}");
    assert!(
        stderr.contains("line 1: Channel not found."),
        "the store's reason: {stderr}"
    );
    assert_eq!(
        summary(&stderr),
        Summary {
            lines: 2_000,
            created: 1_960,
            rejected: 40,
            ..Summary::default()
        },
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "2,000 lines: 1,960 stored locally (1,960 created, 0 updated, 0 unchanged), \
             40 rejected locally"
        ),
        "{stderr}"
    );
}
