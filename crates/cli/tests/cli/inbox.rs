//! `pdchannels inbox link`: a one-time login link for an active token, and a clear refusal
//! for any other id.

use tempfile::TempDir;

use crate::commands::{json_lines, pdchannels, run, stderr, stdout};

#[test]
fn inbox_link_prints_a_one_time_link_for_an_active_token_only() {
    let dir = TempDir::new().unwrap();
    let created = run(pdchannels(&dir).args(["token", "create", "--name", "ada"]));
    assert!(created.status.success(), "{}", stderr(&created));
    let tokens = json_lines(&run(pdchannels(&dir).args(["token", "list", "--json"])));
    let id = tokens[0]["id"].as_str().unwrap().to_owned();

    let link = run(pdchannels(&dir).args([
        "inbox",
        "link",
        "--token-id",
        &id,
        "--hub-url",
        "https://hub.example/",
    ]));
    assert!(link.status.success(), "{}", stderr(&link));
    let url = stdout(&link);
    assert!(
        url.trim()
            .starts_with("https://hub.example/inbox/login/pdl_"),
        "{url}"
    );
    assert!(stderr(&link).contains("works once"), "{}", stderr(&link));

    let unknown = run(pdchannels(&dir).args(["inbox", "link", "--token-id", "tok_nope"]));
    assert_eq!(unknown.status.code(), Some(1));
    assert!(
        stderr(&unknown).contains("token list"),
        "{}",
        stderr(&unknown)
    );
}
