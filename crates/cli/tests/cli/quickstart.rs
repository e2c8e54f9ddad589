//! The README's quick start, run as written: the block between its `quickstart` markers goes to
//! bash against a real `pdchannels serve`, with `pdchannels` on the PATH. Only the hub's address
//! is changed (the hub listens on a free port, not 8787). If the README changes, this runs the
//! new text; if the commands stop working, this fails.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const README_ADDRESS: &str = "http://127.0.0.1:8787";

/// The shell block between `<!-- quickstart: begin -->` and `<!-- quickstart: end -->`.
fn quickstart_block() -> String {
    let readme = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md");
    let text = std::fs::read_to_string(&readme).expect("the README is readable");
    let start = text
        .find("<!-- quickstart: begin -->")
        .expect("the README marks its quick start");
    let end = text
        .find("<!-- quickstart: end -->")
        .expect("the README marks the end of its quick start");
    let block = &text[start..end];
    let body = block
        .split_once("```sh\n")
        .and_then(|(_, rest)| rest.split_once("```"))
        .map(|(body, _)| body)
        .expect("the quick start is one ```sh block");
    assert!(
        body.contains(README_ADDRESS),
        "the quick start talks to {README_ADDRESS}"
    );
    body.to_owned()
}

struct Hub {
    child: Child,
}

impl Drop for Hub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `pdchannels serve` on a free port; answers it and its `http://` address.
fn serve(binary: &Path, db: &Path, log: &Path) -> (Hub, String) {
    let child = Command::new(binary)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("PDCHANNELS_DB", db)
        .env_remove("PDCHANNELS_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(log).unwrap())
        .spawn()
        .unwrap();
    let mut hub = Hub { child };
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(at) = text.find("http://127.0.0.1:") {
            let address: String = text[at..]
                .chars()
                .take_while(|c| !c.is_whitespace() && *c != ')' && *c != ',')
                .collect();
            return (hub, address);
        }
        if let Some(status) = hub.child.try_wait().unwrap() {
            panic!("the hub exited ({status}): {text}");
        }
        assert!(Instant::now() < until, "the hub did not start: {text}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_pdchannels"))
}

#[test]
fn the_readme_quick_start_runs_as_written() {
    assert!(
        Command::new("curl").arg("--version").output().is_ok(),
        "the quick start uses curl: install it (apt-get install curl)"
    );
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("channels.db");
    let (_hub, address) = serve(&binary(), &db, &dir.path().join("serve.log"));
    let script = quickstart_block().replace(README_ADDRESS, &address);
    let path = format!(
        "{}:{}",
        binary().parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let output = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .env("PATH", path)
        .env("PDCHANNELS_DB", &db)
        .env_remove("PDCHANNELS_LOG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the quick start failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    // One JSON answer per curl, back to back.
    let answers: Vec<Value> = serde_json::Deserializer::from_str(&stdout)
        .into_iter()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("the answers are JSON ({e}): {stdout}"));
    assert_eq!(answers.len(), 3, "{stdout}");
    for answer in &answers {
        assert_eq!(answer["success"], true, "{answer}");
    }
    assert_eq!(answers[0]["data"]["provider_channel_id"], "whatsapp-main");
    assert_eq!(answers[1]["data"]["id"], "msg-1");
    let conversation = &answers[2]["data"];
    assert_eq!(conversation["conversation_id"], "conv-15551234567");
    assert_eq!(conversation["participants"][0], "customer-15551234567");
    assert_eq!(conversation["messages"][0]["id"], "msg-1");
    assert_eq!(
        conversation["messages"][0]["message"],
        "Hi! Is the blue one still in stock?"
    );
}
