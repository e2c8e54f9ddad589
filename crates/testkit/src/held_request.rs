//! A request held in flight for real: the server has read its headers and its handler is
//! waiting for the body, which the test sends when it chooses (e.g. after starting shutdown).
//!
//! `Expect: 100-continue` makes this observable: hyper answers `100 Continue` only when the
//! handler starts reading the body, so once the test has read it the request is being handled,
//! not merely connected.

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long any step may take: far above a debug hub's answer on a loaded machine, so only a
/// missing answer fails (and fails rather than hangs).
const STEP_DEADLINE: Duration = Duration::from_secs(30);

/// A POST whose body the server is waiting for.
pub struct HeldRequest {
    stream: TcpStream,
    body: Vec<u8>,
}

impl HeldRequest {
    /// Sends the headers of `POST path` with `body` to `addr` (`host:port`), authenticated with
    /// `token`, and returns once the handler is reading the body.
    pub async fn start(addr: &str, path: &str, token: &str, body: &Value) -> Self {
        let body = body.to_string().into_bytes();
        let mut stream = within("connecting", TcpStream::connect(addr))
            .await
            .expect("the server accepts a connection");
        let head = format!(
            "POST {path} HTTP/1.1\r\nhost: {addr}\r\nx-api-token: {token}\r\n\
             content-type: application/json\r\ncontent-length: {}\r\n\
             expect: 100-continue\r\nconnection: close\r\n\r\n",
            body.len()
        );
        within("sending the headers", stream.write_all(head.as_bytes()))
            .await
            .expect("the headers are sent");
        let interim = within("waiting for 100 Continue", read_head(&mut stream)).await;
        assert!(
            interim.starts_with("HTTP/1.1 100"),
            "expected 100 Continue (the handler reading the body), got {interim:?}"
        );
        Self { stream, body }
    }

    /// Sends the body and answers the final status and JSON body.
    pub async fn finish(mut self) -> (u16, Value) {
        within("sending the body", self.stream.write_all(&self.body))
            .await
            .expect("the body is sent");
        let mut answer = Vec::new();
        within("reading the answer", self.stream.read_to_end(&mut answer))
            .await
            .expect("the answer is read");
        let answer = String::from_utf8_lossy(&answer);
        let (head, body) = answer
            .split_once("\r\n\r\n")
            .unwrap_or_else(|| panic!("not an HTTP answer: {answer:?}"));
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status in {head:?}"));
        let body = serde_json::from_str(body).unwrap_or_else(|_| Value::String(body.to_owned()));
        (status, body)
    }
}

/// Reads up to the end of one response head.
async fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = stream.read(&mut byte).await.expect("reading the answer");
        assert!(
            n > 0,
            "the server closed the connection after {:?}",
            String::from_utf8_lossy(&head)
        );
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

async fn within<T>(what: &str, step: impl Future<Output = T>) -> T {
    tokio::time::timeout(STEP_DEADLINE, step)
        .await
        .unwrap_or_else(|_| panic!("{what} took over {STEP_DEADLINE:?}"))
}
