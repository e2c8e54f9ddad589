//! A newcomer's first hour, as subprocesses: start-up mistakes that explain themselves, help
//! that reads well, `pdchannels mcp` typed at a terminal, completions and the manual page.

use std::net::TcpListener;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use assert_cmd::cargo::CommandCargoExt;
use pdchannels_testkit::wait_within;
use tempfile::TempDir;

/// Far above a debug build's start on a loaded machine.
const DEADLINE: Duration = Duration::from_secs(30);

fn pdchannels(dir: &TempDir) -> Command {
    let mut cmd = Command::cargo_bin("pdchannels").unwrap();
    cmd.env("PDCHANNELS_DB", dir.path().join("channels.db"));
    for var in [
        "PDCHANNELS_LOG",
        "PDCHANNELS_LOG_FORMAT",
        "PDCHANNELS_UPSTREAM",
        "PDCHANNELS_LISTEN",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// Runs to the end with no stdin, within the deadline.
fn run(cmd: &mut Command) -> Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let id = child.id();
    let waiter = std::thread::spawn(move || child.wait_with_output().unwrap());
    let until = std::time::Instant::now() + DEADLINE;
    while !waiter.is_finished() {
        if std::time::Instant::now() > until {
            let _ = Command::new("kill").arg(id.to_string()).status();
            panic!("pdchannels did not finish within {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    waiter.join().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn a_port_in_use_is_one_line_suggesting_listen_and_creates_no_token() {
    let dir = tempfile::tempdir().unwrap();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let out = run(pdchannels(&dir).args(["serve", "--listen", &format!("127.0.0.1:{port}")]));
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains("already in use"), "{stderr}");
    let next = format!("--listen 127.0.0.1:{}", port + 1);
    assert!(stderr.contains(&next), "suggests {next}: {stderr}");
    assert!(!stderr.contains("pdc_"), "no token printed: {stderr}");
    // Nothing was created either (no database, so no token): the next start that binds
    // creates the database and prints the first token.
    assert!(
        !dir.path().join("channels.db").exists(),
        "a start that could not bind leaves no database behind"
    );
    drop(taken);
}

#[test]
fn help_lists_a_commands_own_options_before_the_global_ones() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(pdchannels(&dir).args(["serve", "--help"]));
    let help = text(&out.stdout);
    let own = help.find("--listen").expect("serve's own option is listed");
    let global = help
        .find("Global options:")
        .expect("a Global options heading");
    let db = help.find("--db").expect("--db is listed");
    assert!(own < global && global < db, "{help}");
}

#[test]
fn auth_login_help_offers_no_db_and_does_not_require_a_secret_flag() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(pdchannels(&dir)
        .args(["auth", "login", "--help"])
        .env("PDCHANNELS_CLIENT_SECRET", "from-the-environment"));
    let help = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!help.contains("--db"), "{help}");
    let usage = help
        .lines()
        .find(|l| l.starts_with("Usage:"))
        .expect("a usage line");
    assert!(!usage.contains("--client-secret"), "{usage}");
    assert!(
        !help.contains("from-the-environment"),
        "the secret is never shown"
    );
    // --db still works for the commands that use it.
    let paths = run(pdchannels(&dir).args(["--db", "/tmp/elsewhere.db", "paths"]));
    assert!(text(&paths.stdout).contains("/tmp/elsewhere.db"));
}

#[test]
fn logs_carry_no_colour_codes_when_stderr_is_not_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(pdchannels(&dir).args([
        "--log", "debug", "channels", "create", "--id", "wa", "--name", "WhatsApp",
    ]));
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("DEBUG"),
        "some log lines were written: {stderr}"
    );
    assert!(!stderr.contains('\u{1b}'), "no escape codes: {stderr:?}");
}

#[test]
fn completions_and_the_manual_page_are_generated() {
    let dir = tempfile::tempdir().unwrap();
    for (shell, marker) in [
        ("bash", "_pdchannels()"),
        ("zsh", "#compdef pdchannels"),
        ("fish", "complete -c pdchannels"),
    ] {
        let out = run(pdchannels(&dir).args(["completions", shell]));
        let script = text(&out.stdout);
        assert!(out.status.success(), "{shell}: {}", text(&out.stderr));
        assert!(script.contains(marker), "{shell}: {script}");
        assert!(script.contains("serve"), "{shell} completes subcommands");
    }
    let out = run(pdchannels(&dir).arg("man"));
    let page = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(page.contains(".TH pdchannels 1"), "{page}");
    assert!(page.contains("serve"), "{page}");
    // The main page names pdchannels-serve(1) and its siblings: `--dir` writes them all.
    let pages = dir.path().join("man1");
    let out = run(pdchannels(&dir).args(["man", "--dir"]).arg(&pages));
    assert!(out.status.success(), "{}", text(&out.stderr));
    for page in [
        "pdchannels.1",
        "pdchannels-serve.1",
        "pdchannels-outbox-retry.1",
    ] {
        let roff = std::fs::read_to_string(pages.join(page)).unwrap_or_default();
        assert!(roff.contains(".TH "), "{page} written: {roff}");
    }
    assert!(
        !dir.path().join("channels.db").exists(),
        "neither needs a database"
    );
}

/// `pdchannels mcp` typed at a terminal explains itself on stderr; stdout stays the protocol's.
/// `script` gives it a terminal as stdin (util-linux; the test is skipped without it).
#[test]
fn mcp_at_a_terminal_says_what_it_is_on_stderr_only() {
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipped: no `script` command to provide a terminal");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let bin = assert_cmd::cargo::cargo_bin("pdchannels");
    let (out, err) = (dir.path().join("out"), dir.path().join("err"));
    let inner = format!(
        "{} --db {} mcp >{} 2>{}",
        bin.display(),
        dir.path().join("channels.db").display(),
        out.display(),
        err.display()
    );
    let mut child = Command::new("script")
        .args(["-qec", &inner, "/dev/null"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_within(&mut child, DEADLINE, "pdchannels mcp under script");
    let stderr = std::fs::read_to_string(&err).unwrap();
    assert!(stderr.contains("is an MCP server"), "{stderr}");
    assert!(stderr.contains("pdchannels serve"), "{stderr}");
    assert!(stderr.contains("\"command\": \"pdchannels\""), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "",
        "stdout stays empty"
    );

    // Not on a terminal (an MCP client's pipe): not a word.
    let piped = run(pdchannels(&dir).arg("mcp"));
    assert!(!text(&piped.stderr).contains("is an MCP server"));
}

/// Revoking every token shuts every client out, and a restart does not undo it: no new token is
/// made or printed, and the start-up says how to make one.
#[test]
fn a_hub_whose_tokens_are_all_revoked_stays_locked_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let created = run(pdchannels(&dir).args(["token", "create", "--name", "only"]));
    assert!(created.status.success(), "{created:?}");
    let listed = run(pdchannels(&dir).args(["token", "list", "--json"]));
    let id = text(&listed.stdout)
        .lines()
        .find_map(|line| {
            serde_json::from_str::<serde_json::Value>(line).ok()?["id"]
                .as_str()
                .map(str::to_owned)
        })
        .unwrap_or_else(|| panic!("a token id: {listed:?}"));
    assert!(
        run(pdchannels(&dir).args(["token", "revoke", &id]))
            .status
            .success()
    );

    let log = dir.path().join("serve.log");
    let mut serve = pdchannels(&dir)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let until = std::time::Instant::now() + DEADLINE;
    let started = loop {
        let so_far = std::fs::read_to_string(&log).unwrap_or_default();
        if so_far.contains("pdchannels hub on") {
            break true;
        }
        if std::time::Instant::now() > until || serve.try_wait().unwrap().is_some() {
            break false;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = serve.kill();
    let _ = serve.wait();
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert!(started, "the hub started: {stderr}");
    assert!(!stderr.contains("Created the API token"), "{stderr}");
    assert!(!stderr.contains("pdc_"), "no token printed: {stderr}");
    assert!(
        stderr.contains("every API token of this database is revoked"),
        "{stderr}"
    );
}

/// A URL given as a host, or a bare host given as an origin, could never match: refused at
/// start with the value to pass instead.
#[test]
fn allowed_hosts_and_origins_that_could_never_match_are_refused_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let host = run(pdchannels(&dir).args(["serve", "--allowed-host", "https://hub.example.com/"]));
    assert_eq!(host.status.code(), Some(2), "{host:?}");
    assert!(
        text(&host.stderr).contains("--allowed-host hub.example.com"),
        "{host:?}"
    );
    let origin = run(pdchannels(&dir).args(["serve", "--mcp-allowed-origin", "app.example.com"]));
    assert_eq!(origin.status.code(), Some(2), "{origin:?}");
    assert!(
        text(&origin.stderr).contains("--mcp-allowed-origin https://app.example.com"),
        "{origin:?}"
    );
}

/// A `--listen` that is not an IP address and a port says what to pass.
#[test]
fn a_listen_address_that_is_not_ip_and_port_names_examples() {
    let dir = tempfile::tempdir().unwrap();
    for wrong in ["localhost:8790", "127.0.0.1"] {
        let out = run(pdchannels(&dir).args(["serve", "--listen", wrong]));
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        assert!(
            text(&out.stderr).contains("--listen 127.0.0.1:8787"),
            "{wrong}: {out:?}"
        );
    }
}

/// A token name with control characters (an escape sequence, say) is refused: it would be
/// echoed raw into terminals and logs by `token list`.
#[test]
fn a_token_name_with_control_characters_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["", "a\u{1b}[31mb", "line\nbreak"] {
        let out = run(pdchannels(&dir).args(["token", "create", "--name", name]));
        assert_eq!(out.status.code(), Some(2), "{name:?}: {out:?}");
        assert!(
            text(&out.stderr).contains("without control characters"),
            "{out:?}"
        );
    }
    assert!(!dir.path().join("channels.db").exists(), "nothing created");
}

/// A hub told to relay to its own address would loop forever: refused at start.
#[test]
fn a_hub_relaying_to_itself_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = run(pdchannels(&dir)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--upstream", &format!("http://localhost:{port}/v1")])
        .env("PDCHANNELS_UPSTREAM_TOKEN", "upstream-token"));
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(text(&out.stderr).contains("is this hub itself"), "{out:?}");
}
