//! Connection bounds over raw TCP: idle connections, half-sent heads and trickled bodies are
//! cut off, and a full hub still answers new clients.

use std::time::Duration;

use pdchannels_hub::ConnectionLimits;
use pdchannels_testkit::TestHub;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};

/// Every wait in these tests ends by this deadline, so a server that never answers fails them.
const DEADLINE: Duration = Duration::from_secs(5);

async fn spawn_with(limits: ConnectionLimits) -> TestHub {
    TestHub::start_with(|config| config.connections = limits).await
}

/// Short timeouts, each distinct, so a test can tell which one closed a connection.
fn limits() -> ConnectionLimits {
    ConnectionLimits {
        max_connections: 512,
        header_timeout: Duration::from_secs(30),
        body_timeout: Duration::from_secs(30),
        idle_timeout: Duration::from_secs(30),
    }
}

async fn connect(app: &TestHub) -> TcpStream {
    let address = app.address.trim_start_matches("http://");
    timeout(DEADLINE, TcpStream::connect(address))
        .await
        .expect("connecting within the deadline")
        .unwrap()
}

/// Reads until the server closes the connection; what it sent, or `None` if it is still open at
/// the deadline.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> Option<String> {
    let mut received = Vec::new();
    let read = timeout(within, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    read.ok()
        .map(|()| String::from_utf8_lossy(&received).into_owned())
}

/// The JSON body of a raw HTTP/1.1 response (not chunked: the hub's errors have a length).
fn json_of(response: &str) -> Value {
    let (_, body) = response.split_once("\r\n\r\n").expect("a complete head");
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {response}"))
}

#[tokio::test]
async fn an_idle_connection_is_closed_after_the_idle_timeout() {
    let app = spawn_with(ConnectionLimits {
        idle_timeout: Duration::from_millis(300),
        ..limits()
    })
    .await;

    // Never sends anything.
    let mut silent = connect(&app).await;
    let started = Instant::now();
    assert_eq!(
        read_until_closed(&mut silent, DEADLINE).await.as_deref(),
        Some(""),
        "a connection that never sends a request is closed"
    );
    assert!(started.elapsed() >= Duration::from_millis(250));

    // Idle after a response (keep-alive).
    let mut kept = connect(&app).await;
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let answered = read_until_closed(&mut kept, DEADLINE)
        .await
        .expect("closed after idling past the timeout");
    assert!(answered.starts_with("HTTP/1.1 200"), "{answered}");
}

#[tokio::test]
async fn a_half_sent_head_is_closed_after_the_header_timeout() {
    let app = spawn_with(ConnectionLimits {
        header_timeout: Duration::from_millis(300),
        ..limits()
    })
    .await;
    let mut slow = connect(&app).await;
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        .await
        .unwrap();
    // The idle timeout (30 s) is far beyond the deadline: only the header timeout can close it.
    assert!(
        read_until_closed(&mut slow, DEADLINE).await.is_some(),
        "a head that never completes is cut off"
    );
}

#[tokio::test]
async fn a_body_sent_a_byte_at_a_time_is_cut_off_with_a_408() {
    let app = spawn_with(ConnectionLimits {
        body_timeout: Duration::from_millis(500),
        ..limits()
    })
    .await;
    let stream = connect(&app).await;
    let (mut reader, mut writer) = stream.into_split();
    let head = format!(
        "POST /v1/channels HTTP/1.1\r\nHost: 127.0.0.1\r\nx-api-token: {}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n",
        app.token
    );
    writer.write_all(head.as_bytes()).await.unwrap();
    // The slow client: a byte every 100 ms, 10 s for the whole body.
    let trickle = tokio::spawn(async move {
        for _ in 0..100 {
            if writer.write_all(b" ").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let mut response = Vec::new();
    let read = timeout(DEADLINE, reader.read_to_end(&mut response)).await;
    trickle.abort();
    assert!(read.is_ok(), "the connection is closed within the deadline");
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    let body = json_of(&response);
    assert_eq!(body["success"], json!(false));
    assert_eq!(body["additional_data"]["code"], json!("REQUEST_TIMEOUT"));
    assert!(
        body["error_info"]
            .as_str()
            .unwrap()
            .contains("--body-timeout"),
        "{body}"
    );
}

#[tokio::test]
async fn at_the_connection_cap_a_new_client_takes_the_place_of_the_longest_idle() {
    const CAP: usize = 50;
    const IDLE: usize = 60;
    let app = spawn_with(ConnectionLimits {
        max_connections: CAP,
        ..limits()
    })
    .await;
    // 60 connections that send nothing, each waiting for the server to close it.
    let (closed_tx, mut closed_rx) = tokio::sync::mpsc::unbounded_channel();
    for _ in 0..IDLE {
        let mut idle = connect(&app).await;
        let closed_tx = closed_tx.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 64];
            while let Ok(n) = idle.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
            let _ = closed_tx.send(());
        });
    }

    let client = reqwest::Client::builder()
        .timeout(DEADLINE)
        .build()
        .unwrap();
    let response = client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(response.status(), 200);

    // The hub holds at most CAP connections: the 60 idle ones and the client made room by
    // closing at least 11 of the idle ones.
    for closed in 0..=(IDLE - CAP) {
        timeout(DEADLINE, closed_rx.recv())
            .await
            .unwrap_or_else(|_| panic!("only {closed} idle connections were closed"));
    }
}

#[tokio::test]
async fn when_every_connection_is_busy_a_new_client_gets_a_quick_503() {
    let app = spawn_with(ConnectionLimits {
        max_connections: 2,
        ..limits()
    })
    .await;
    // Two requests in progress, their bodies never sent (the body timeout is 30 s). The hub
    // says "100 Continue" once it starts reading a body: from then on the request is its own.
    let mut busy = Vec::new();
    for _ in 0..2 {
        let mut stream = connect(&app).await;
        let head = format!(
            "POST /v1/channels HTTP/1.1\r\nHost: 127.0.0.1\r\nx-api-token: {}\r\n\
             Content-Type: application/json\r\nContent-Length: 100\r\nExpect: 100-continue\r\n\r\n",
            app.token
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut continue_line = [0u8; 25];
        timeout(DEADLINE, stream.read_exact(&mut continue_line))
            .await
            .expect("100 Continue within the deadline")
            .unwrap();
        assert_eq!(&continue_line, b"HTTP/1.1 100 Continue\r\n\r\n");
        busy.push(stream);
    }

    let client = reqwest::Client::builder()
        .timeout(DEADLINE)
        .build()
        .unwrap();
    let started = Instant::now();
    let response = client.get(app.url("/healthz")).send().await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "refused quickly"
    );
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["additional_data"]["code"],
        json!("SERVICE_UNAVAILABLE")
    );
    assert!(
        body["error_info"]
            .as_str()
            .unwrap()
            .contains("--max-connections"),
        "{body}"
    );
    drop(busy);
}

#[tokio::test]
async fn a_streaming_mcp_response_is_not_idle() {
    let app = spawn_with(ConnectionLimits {
        idle_timeout: Duration::from_millis(200),
        ..limits()
    })
    .await;
    let client = reqwest::Client::builder()
        .timeout(DEADLINE)
        .build()
        .unwrap();
    let initialize = client
        .post(app.url("/mcp"))
        .bearer_auth(&app.token)
        .header("accept", "application/json, text/event-stream")
        .json(
            &json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "test", "version": "0"}}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(initialize.status(), 200);
    let session = initialize.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    initialize.text().await.unwrap();
    let initialized = client
        .post(app.url("/mcp"))
        .bearer_auth(&app.token)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2025-06-18")
        .json(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        .send()
        .await
        .unwrap();
    assert!(initialized.status().is_success());

    // The session's stream for server messages: open for as long as the session.
    let mut stream = connect(&app).await;
    let request = format!(
        "GET /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {}\r\n\
         Accept: text/event-stream\r\nMcp-Session-Id: {session}\r\n\
         Mcp-Protocol-Version: 2025-06-18\r\n\r\n",
        app.token
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = [0u8; 12];
    timeout(DEADLINE, stream.read_exact(&mut head))
        .await
        .expect("the stream's head arrives")
        .unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    // Five idle timeouts later the stream is still open.
    assert_eq!(
        read_until_closed(&mut stream, Duration::from_secs(1)).await,
        None,
        "a streaming response is not closed as idle"
    );

    // Shutdown still ends it (graceful shutdown must not wait on it).
    app.shutdown.cancel();
    assert!(
        read_until_closed(&mut stream, DEADLINE).await.is_some(),
        "shutdown closes the stream"
    );
    assert!(timeout(DEADLINE, app.server).await.is_ok());
}
