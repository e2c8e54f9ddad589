//! The database's files and health, and the secrets the commands take, through the real binary:
//!
//! - A new database, its `-wal` and `-shm` files are owner-only (0600) whatever the umask, and
//!   the directory created for it is 0700; an existing database others may read is left as it
//!   is, with one warning giving the `chmod` to run.
//! - The upstream token from `--upstream-token-file` works; as a flag it works with a warning
//!   that names the alternatives (as does `--client-secret`); from the environment, no warning.
//! - On a real small filesystem (a tmpfs mounted for the test; these tests run as root, for whom
//!   file modes do not stop writes, so only a read-only or full filesystem really refuses them):
//!   a full disk turns `/healthz` to 503 with the reason, logs one ERROR line however many writes
//!   fail, and `/healthz` is "ok" again once space is freed; a database that cannot be written
//!   is refused at start with one line naming the file, the cause and the fix.
//!
//! Where `mount` is refused (not root, no CAP_SYS_ADMIN), the filesystem tests say so and pass.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use serde_json::json;
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

/// How long anything a test waits for may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(30);

/// `pdchannels --db DB`, with none of the caller's PDCHANNELS_* settings, run through `sh` with
/// umask 022 so that owner-only modes cannot come from a strict umask.
fn pdchannels(db: &Path) -> Command {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("umask 022 && exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_pdchannels"));
    for (var, _) in std::env::vars() {
        if var.starts_with("PDCHANNELS_") {
            cmd.env_remove(var);
        }
    }
    cmd.arg("--db")
        .arg(db)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Runs a command to its end: exit status, stdout, stderr.
async fn run(cmd: &mut Command) -> (ExitStatus, String, String) {
    let output = tokio::time::timeout(PATIENCE, cmd.output())
        .await
        .expect("pdchannels finishes in time")
        .unwrap();
    (
        output.status,
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// `pdchannels token create` on `db`: the new API token (and the database, if it is new).
async fn create_token(db: &Path) -> String {
    let (status, stdout, stderr) = run(pdchannels(db).args(["token", "create"])).await;
    assert!(status.success(), "token create: {stderr}");
    stdout.trim().to_owned()
}

/// `pdchannels serve` on a free port, its stderr read line by line as it comes.
struct Hub {
    child: Child,
    url: String,
    lines: mpsc::UnboundedReceiver<String>,
    /// Every stderr line read so far.
    log: Vec<String>,
}

impl Hub {
    async fn start(db: &Path) -> Self {
        let mut child = pdchannels(db)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .spawn()
            .unwrap();
        let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
        let (sender, lines) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok(Some(line)) = stderr.next_line().await {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let mut hub = Self {
            child,
            url: String::new(),
            lines,
            log: Vec::new(),
        };
        let started = hub.wait_for_line("pdchannels hub on http://").await;
        let address = started
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .expect("the start line names the address");
        hub.url = format!("http://{address}");
        hub
    }

    /// Waits for the first stderr line (from now) containing `text`.
    async fn wait_for_line(&mut self, text: &str) -> String {
        let wait = async {
            while let Some(line) = self.lines.recv().await {
                self.log.push(line.clone());
                if line.contains(text) {
                    return line;
                }
            }
            panic!("stderr ended without {text:?}:\n{}", self.log.join("\n"));
        };
        tokio::time::timeout(PATIENCE, wait)
            .await
            .unwrap_or_else(|_| panic!("no line with {text:?} in time:\n{}", self.log.join("\n")))
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(PATIENCE)
        .build()
        .unwrap()
}

async fn add_channel(hub: &Hub, token: &str, id: &str) -> reqwest::StatusCode {
    client()
        .post(format!("{}/v1/channels", hub.url))
        .header("x-api-token", token)
        .json(&json!({"name": id, "provider_channel_id": id}))
        .send()
        .await
        .expect("the hub answers")
        .status()
}

async fn healthz(hub: &Hub) -> (reqwest::StatusCode, String) {
    let response = client()
        .get(format!("{}/healthz", hub.url))
        .send()
        .await
        .expect("the hub answers /healthz");
    (response.status(), response.text().await.unwrap())
}

#[tokio::test]
async fn a_new_database_and_its_wal_and_shm_are_owner_only_in_an_owner_only_directory() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("data/new/channels.db");
    let token = create_token(&db).await;
    let mut hub = Hub::start(&db).await;
    // While the hub runs, SQLite keeps the -wal and -shm files; a write makes sure of the WAL.
    assert_eq!(add_channel(&hub, &token, "wa").await, 200);
    for file in [
        db.clone(),
        with_suffix(&db, "-wal"),
        with_suffix(&db, "-shm"),
    ] {
        assert_eq!(mode(&file), 0o600, "{}", file.display());
    }
    assert_eq!(mode(&dir.path().join("data/new")), 0o700);
    assert_eq!(mode(&dir.path().join("data")), 0o700);
    hub.child.kill().await.unwrap();
    assert!(
        !hub.log.iter().any(|l| l.contains("chmod")),
        "no warning for our own files: {:?}",
        hub.log
    );
}

#[tokio::test]
async fn a_database_others_may_read_is_left_alone_with_one_warning_saying_the_chmod() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shared channels.db");
    create_token(&db).await;
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();

    let (status, _, stderr) = run(pdchannels(&db).args(["token", "list"])).await;
    assert!(status.success(), "{stderr}");
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.contains("chmod")).collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    let quoted = format!("chmod 600 '{}'", db.display());
    assert!(warnings[0].contains(&quoted), "{stderr}");
    assert!(warnings[0].contains("0644"), "{stderr}");
    assert_eq!(
        mode(&db),
        0o644,
        "the mode is not changed behind the operator's back"
    );
}

/// A hub in this process to relay to, with its token.
async fn upstream_hub() -> (String, String, TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = pdchannels_store::Store::open(&dir.path().join("upstream.db"))
        .await
        .unwrap();
    let token = store.create_token("relay").await.unwrap();
    let url = pdchannels_testkit::spawn_hub(&store).await;
    use secrecy::ExposeSecret;
    (url, token.secret.expose_secret().to_owned(), dir)
}

const FLAG_WARNING: &str = "on the command line, where every user of this machine can read it";

#[tokio::test]
async fn the_upstream_token_comes_from_a_file_or_the_environment_and_a_flag_earns_a_warning() {
    let (url, token, _upstream) = upstream_hub().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("local.db");
    let upstream = format!("{url}/v1");
    let create = |id: &str| {
        let mut cmd = pdchannels(&db);
        cmd.args(["channels", "create", "--id", id, "--name", id])
            .args(["--upstream", &upstream]);
        cmd
    };

    let file = dir.path().join("token");
    std::fs::write(&file, format!("{token}\n")).unwrap();
    let (status, _, stderr) =
        run(create("from-file").arg("--upstream-token-file").arg(&file)).await;
    assert!(status.success(), "{stderr}");
    assert!(!stderr.contains(FLAG_WARNING), "{stderr}");

    let (status, _, stderr) =
        run(create("from-env").env("PDCHANNELS_UPSTREAM_TOKEN", &token)).await;
    assert!(status.success(), "{stderr}");
    assert!(!stderr.contains(FLAG_WARNING), "{stderr}");

    let (status, _, stderr) = run(create("from-flag").args(["--upstream-token", &token])).await;
    assert!(status.success(), "{stderr}");
    let warning = stderr
        .lines()
        .find(|l| l.contains(FLAG_WARNING))
        .unwrap_or_else(|| panic!("no warning: {stderr}"));
    assert!(warning.contains("--upstream-token"), "{warning}");
    assert!(warning.contains("PDCHANNELS_UPSTREAM_TOKEN"), "{warning}");
    assert!(warning.contains("--upstream-token-file"), "{warning}");
    assert!(
        !stderr.contains(&token),
        "the warning never shows the token"
    );

    // The upstream got all three, so each token reached it.
    let listed: serde_json::Value = client()
        .get(format!("{url}/v1/channels"))
        .header("x-api-token", &token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["provider_channel_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["from-file", "from-env", "from-flag"]);

    // A wrong file is a clear error, and nothing is queued for the upstream.
    let (status, _, stderr) = run(create("never")
        .arg("--upstream-token-file")
        .arg(dir.path().join("missing")))
    .await;
    assert!(!status.success());
    assert!(stderr.contains("--upstream-token-file"), "{stderr}");
    assert!(stderr.contains("missing"), "{stderr}");
}

#[tokio::test]
async fn a_client_secret_flag_earns_the_same_warning() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("secret");
    std::fs::write(&file, "secret-from-file\n").unwrap();
    // Given twice, so the login stops at once after the warning.
    let (status, _, stderr) = run(pdchannels(&dir.path().join("db"))
        .args(["auth", "login", "--client-id", "app"])
        .args(["--client-secret", "secret-from-flag"])
        .arg("--client-secret-file")
        .arg(&file)
        .arg("--oauth-file")
        .arg(dir.path().join("oauth.json")))
    .await;
    assert!(!status.success());
    let warning = stderr
        .lines()
        .find(|l| l.contains(FLAG_WARNING))
        .unwrap_or_else(|| panic!("no warning: {stderr}"));
    assert!(warning.contains("PDCHANNELS_CLIENT_SECRET"), "{warning}");
    assert!(warning.contains("--client-secret-file"), "{warning}");
    assert!(stderr.contains("given twice"), "{stderr}");
    assert!(!stderr.contains("secret-from"), "{stderr}");
}

/// A tmpfs of a few MiB mounted for one test, unmounted when dropped.
struct SmallFilesystem {
    dir: TempDir,
}

impl SmallFilesystem {
    /// `None`, after saying why, where this process may not mount.
    async fn mount(test: &str) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs"])
            .arg(dir.path())
            .output()
            .await;
        match output {
            Ok(output) if output.status.success() => Some(Self { dir }),
            Ok(output) => {
                eprintln!(
                    "SKIPPED {test}: cannot mount a small tmpfs here (needs root): {}",
                    String::from_utf8_lossy(&output.stderr).trim()
                );
                None
            }
            Err(e) => {
                eprintln!("SKIPPED {test}: cannot run mount: {e}");
                None
            }
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    async fn remount_read_only(&self) {
        let status = Command::new("mount")
            .args(["-o", "remount,ro"])
            .arg(self.path())
            .status()
            .await
            .unwrap();
        assert!(status.success(), "remounting read-only");
    }

    /// Fills the filesystem until a write fails for lack of space.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let filler = self.path().join("filler");
        let mut file = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 4096];
        loop {
            if let Err(e) = file.write_all(&chunk) {
                assert_eq!(e.raw_os_error(), Some(28), "ENOSPC, not {e}");
                break;
            }
        }
        filler
    }
}

impl Drop for SmallFilesystem {
    fn drop(&mut self) {
        // Lazy: a killed hub may still be closing its files.
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

#[tokio::test]
async fn a_full_disk_fails_health_logs_one_error_line_and_health_recovers_once_space_is_freed() {
    let Some(fs) = SmallFilesystem::mount("full disk").await else {
        return;
    };
    let db = fs.path().join("channels.db");
    let token = create_token(&db).await;
    let mut hub = Hub::start(&db).await;
    assert_eq!(
        healthz(&hub).await,
        (reqwest::StatusCode::OK, "ok\n".to_owned())
    );

    let filler = fs.fill();
    for i in 0..20 {
        assert_eq!(
            add_channel(&hub, &token, &format!("ch-{i}")).await,
            503,
            "write {i} on a full disk"
        );
    }
    let (status, reason) = healthz(&hub).await;
    assert_eq!(status, 503, "{reason}");
    assert!(reason.contains("the store cannot write"), "{reason}");
    assert!(reason.contains("full"), "{reason}");
    assert!(reason.contains("free space"), "{reason}");

    std::fs::remove_file(filler).unwrap();
    // Health probes at most once a second (anyone may call /healthz), so it turns ok within
    // about a second, with no other write to show it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let answer = healthz(&hub).await;
        if answer == (reqwest::StatusCode::OK, "ok\n".to_owned()) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "healthy again without waiting for another write: {answer:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // The writer logs in order: this line follows every failure's.
    let recovered = hub.wait_for_line("works again").await;
    // 20 writes and the probe of the first /healthz: the first logged, 20 counted.
    assert!(recovered.contains("20 more failures"), "{recovered}");
    let errors: Vec<&String> = hub.log.iter().filter(|l| l.contains("ERROR")).collect();
    assert_eq!(errors.len(), 1, "{:#?}", hub.log);
    assert!(errors[0].contains("free space"), "{}", errors[0]);
    assert_eq!(add_channel(&hub, &token, "after").await, 200);
    hub.child.kill().await.unwrap();
}

/// Asserts that `pdchannels serve` on `db` exits at once with one line: the file, the cause,
/// the fix.
async fn assert_refused_at_start(db: &Path, cause: &str) {
    let (status, _, stderr) = run(pdchannels(db).args(["serve", "--listen", "127.0.0.1:0"])).await;
    assert!(!status.success(), "serve must refuse: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {stderr}");
    let line = lines[0];
    assert!(line.starts_with("error: cannot "), "{line}");
    assert!(line.contains(&db.display().to_string()), "the file: {line}");
    assert!(
        line.to_lowercase().contains(cause),
        "the cause {cause:?}: {line}"
    );
    assert!(line.contains("--db PATH"), "what to do: {line}");
}

#[tokio::test]
async fn a_database_on_a_read_only_filesystem_is_refused_at_start() {
    let Some(fs) = SmallFilesystem::mount("read-only filesystem").await else {
        return;
    };
    let db = fs.path().join("channels.db");
    create_token(&db).await;
    fs.remount_read_only().await;
    assert_refused_at_start(&db, "read-only").await;
}

#[tokio::test]
async fn a_database_on_a_full_disk_is_refused_at_start() {
    let Some(fs) = SmallFilesystem::mount("full disk at start").await else {
        return;
    };
    let db = fs.path().join("channels.db");
    let token = create_token(&db).await;
    // After a clean close SQLite must create the -shm file again, which fails at open.
    let filler = fs.fill();
    assert_refused_at_start(&db, "free space").await;

    // After a crash the -wal and -shm files remain and the database opens: only the probe
    // write finds out that nothing can be written.
    std::fs::remove_file(filler).unwrap();
    let mut hub = Hub::start(&db).await;
    assert_eq!(add_channel(&hub, &token, "before").await, 200);
    hub.child.kill().await.unwrap();
    assert!(with_suffix(&db, "-shm").exists() && with_suffix(&db, "-wal").exists());
    fs.fill();
    assert_refused_at_start(&db, "cannot write to the database").await;
}

#[tokio::test]
async fn a_database_in_a_missing_directory_that_cannot_be_created_says_so_once() {
    let dir = tempfile::tempdir().unwrap();
    // A file where the directory should be: it cannot be created, even by root.
    std::fs::write(dir.path().join("not-a-dir"), "").unwrap();
    let db = dir.path().join("not-a-dir/channels.db");
    let (status, _, stderr) = run(pdchannels(&db).args(["token", "create", "--name", "x"])).await;
    assert!(!status.success());
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {stderr}");
    assert!(lines[0].contains("not-a-dir"), "{stderr}");
    assert!(lines[0].contains("--db PATH"), "{stderr}");
}
