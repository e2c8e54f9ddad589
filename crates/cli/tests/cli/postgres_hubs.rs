//! Two `pdchannels serve` processes on one PostgreSQL database behave as one hub: load spread
//! over both, one killed with SIGKILL mid-load, and every message either hub acknowledged is
//! stored exactly once, with conversation counters that match the messages.

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use sqlx::Connection;
use tempfile::TempDir;

use crate::relay_crash::{Process, find_token, http, pdchannels};

/// Client threads, each sending to both hubs in turn.
const CLIENTS: usize = 8;
const CONVERSATIONS: usize = 20;

struct Hub {
    process: Process,
    addr: String,
}

/// Starts `pdchannels serve` on `db`; answers it and the token it printed, if it printed one
/// (only the first hub on a database creates one).
fn start_hub(dir: &Path, db: &str, name: &str) -> (Hub, Option<String>) {
    let mut cmd = pdchannels();
    cmd.args(["--db", db, "serve", "--listen", "127.0.0.1:0"]);
    let mut process = Process::spawn(cmd, dir.join(format!("{name}.log")));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        process.assert_running(name);
        let log = process.log();
        if let Some(at) = log.find("pdchannels hub on http://") {
            let addr: String = log[at + "pdchannels hub on http://".len()..]
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
                .collect();
            return (Hub { process, addr }, find_token(&log));
        }
        assert!(Instant::now() < deadline, "{name} did not start:\n{log}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn two_hubs_on_one_postgres_lose_nothing_acknowledged_when_one_is_killed_mid_load() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let Some(db) = runtime.block_on(pdchannels_testkit::TestDatabase::postgres()) else {
        return;
    };
    let url = db.flag_value();
    let dir = TempDir::new().unwrap();
    let (mut a, token) = start_hub(dir.path(), &url, "hub-a");
    let token = token.expect("the first hub on a new database prints a token");
    let (mut b, second_token) = start_hub(dir.path(), &url, "hub-b");
    assert_eq!(
        second_token, None,
        "the second hub shares the first one's tokens"
    );
    let (status, body) = http(
        &b.addr,
        "POST",
        "/v1/channels",
        &token,
        Some(&json!({"name": "wa", "provider_channel_id": "wa"})),
    );
    assert_eq!(status, 200, "{body}");

    let acknowledged = Arc::new(Mutex::new(HashSet::new()));
    let a_alive = Arc::new(AtomicBool::new(true));
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let (acknowledged, a_alive, stop) =
                (acknowledged.clone(), a_alive.clone(), stop.clone());
            let (a_addr, b_addr, token) = (a.addr.clone(), b.addr.clone(), token.clone());
            std::thread::spawn(move || {
                let mut n = 0usize;
                while !stop.load(Ordering::SeqCst) {
                    n += 1;
                    let id = format!("m-{client}-{n}");
                    let message = json!({
                        "id": id, "channel_id": "wa", "sender_id": format!("s{client}"),
                        "conversation_id": format!("c{}", n % CONVERSATIONS),
                        "message": "hello", "status": "sent",
                        "created_at": "2024-05-01T10:00:00.000Z",
                    });
                    // Every other request to hub A while it lives; a request A never answers
                    // (killed) is simply not acknowledged.
                    let to_a = n.is_multiple_of(2) && a_alive.load(Ordering::SeqCst);
                    let addr = if to_a { &a_addr } else { &b_addr };
                    let Some(status) = try_post(addr, &token, &message) else {
                        continue;
                    };
                    if status == 200 {
                        acknowledged.lock().unwrap().insert(id);
                    }
                }
            })
        })
        .collect();

    std::thread::sleep(Duration::from_millis(1500));
    a.process.crash();
    a_alive.store(false, Ordering::SeqCst);
    let at_kill = acknowledged.lock().unwrap().len();
    std::thread::sleep(Duration::from_millis(1500));
    stop.store(true, Ordering::SeqCst);
    for client in clients {
        client.join().unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    eprintln!(
        "{} messages acknowledged ({at_kill} before hub A was killed)",
        acknowledged.len()
    );
    assert!(at_kill > 50, "too little load before the kill: {at_kill}");
    assert!(
        acknowledged.len() > at_kill,
        "hub B stopped acknowledging after hub A was killed"
    );

    runtime.block_on(async {
        let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
        let stored: Vec<String> = sqlx::query_scalar("SELECT message_id FROM messages")
            .fetch_all(&mut conn)
            .await
            .unwrap();
        let stored_set: HashSet<String> = stored.iter().cloned().collect();
        assert_eq!(stored.len(), stored_set.len(), "a message stored twice");
        let missing: Vec<_> = acknowledged.difference(&stored_set).take(5).collect();
        assert!(
            missing.is_empty(),
            "acknowledged but not stored: {missing:?}"
        );
        // The counters the triggers keep agree with the messages, under two writers.
        let wrong: Vec<(String, i64, i64)> = sqlx::query_as(
            "SELECT v.conversation_id, v.message_count, count(m.pk)
               FROM conversations v
               LEFT JOIN messages m
                 ON m.channel_pk = v.channel_pk AND m.conversation_id = v.conversation_id
              GROUP BY v.channel_pk, v.conversation_id, v.message_count
             HAVING v.message_count <> count(m.pk)",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap();
        assert!(wrong.is_empty(), "conversation counters off: {wrong:?}");
        conn.close().await.unwrap();
    });
    b.process.stop("hub B");
}

/// POSTs a receive; `None` when the hub is gone (connection refused or cut).
fn try_post(addr: &str, token: &str, message: &serde_json::Value) -> Option<u16> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let body = message.to_string();
    let request = format!(
        "POST /v1/channels/messages/receive HTTP/1.1\r\nHost: {addr}\r\nx-api-token: {token}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).ok()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).ok()?;
    let head = String::from_utf8_lossy(&raw);
    head.split_whitespace().nth(1)?.parse().ok()
}

/// A wrong URL, a server that is not there, a database that does not exist and one written by
/// a newer pdchannels: each one clear line at start, exit code 1 (2 for a malformed flag).
#[test]
fn bad_postgres_databases_are_one_clear_line_each_at_start() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let run = |db: &str| {
        let output = pdchannels()
            .args(["--db", db, "token", "list"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).to_string();
        (output.status.code(), stderr)
    };
    let (code, stderr) = run("postgres://app:s3cret@127.0.0.1:1/hub");
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("Connection refused") && stderr.contains("pg_isready"),
        "{stderr}"
    );
    assert!(!stderr.contains("s3cret"), "the password leaked: {stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");

    // A malformed URL is refused without repeating it: it may hold a password (found by an
    // outside test: clap's own error printed the value whole).
    for bad in [
        "postgres://app:s3cret@h:notaport/db",
        "postgres://app:s3cret@127.0.0.1:5432/",
        "postgres://app:s3cret@[::1:5432/db",
    ] {
        let (code, stderr) = run(bad);
        assert_eq!(code, Some(2), "{stderr}");
        assert!(
            stderr.contains("not a valid PostgreSQL URL") || stderr.contains("names no database"),
            "{stderr}"
        );
        assert!(!stderr.contains("s3cret"), "the password leaked: {stderr}");
        let from_env = pdchannels()
            .env("PDCHANNELS_DB", bad)
            .args(["token", "list"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&from_env.stderr);
        assert_eq!(from_env.status.code(), Some(2), "{stderr}");
        assert!(!stderr.contains("s3cret"), "the password leaked: {stderr}");
    }

    let Some(db) = runtime.block_on(pdchannels_testkit::TestDatabase::postgres()) else {
        return;
    };
    let admin = pdchannels_testkit::test_postgres_url();
    let missing = pdchannels_testkit::database_url(&admin, "pdc_no_such_database");
    let (code, stderr) = run(&missing);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("does not exist") && stderr.contains("createdb"),
        "{stderr}"
    );

    // A database a newer version migrated: refused, not half-used.
    let url = db.flag_value();
    assert_eq!(run(&url).0, Some(0));
    runtime.block_on(async {
        let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
        sqlx::query(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
             VALUES (9999, 'from the future', true, '\\x00', 0)",
        )
        .execute(&mut conn)
        .await
        .unwrap();
        conn.close().await.unwrap();
    });
    let (code, stderr) = run(&url);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("newer pdchannels"), "{stderr}");
}
