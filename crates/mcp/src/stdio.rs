//! MCP over stdin and stdout, where every line gets its answer.
//!
//! rmcp's own stdio transport drops a line that is not JSON without a word, so a client that
//! sent a request with a broken body waits forever. [`LineTransport`] reads the lines itself:
//! each is classified by [`classify_line`]; a well-formed message goes to the server, a faulty
//! one is answered at once with its JSON-RPC error (with its id when it can be read).
//!
//! One writer task owns stdout and writes whole frames, one per line, so the server's answers
//! and the transport's own error answers never interleave.

use std::io;

use rmcp::RoleServer;
use rmcp::model::{ClientJsonRpcMessage, ServerJsonRpcMessage};
use rmcp::transport::Transport;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::line::{Fault, Line, classify_line};

/// How much of an oversized line is kept to read its id from.
const OVERSIZED_HEAD_BYTES: usize = 4096;

/// Frames waiting for the writer; a full queue makes senders wait (stdout is the bottleneck).
const QUEUED_FRAMES: usize = 64;

/// A newline-delimited JSON-RPC transport for a server that answers every faulty line.
pub struct LineTransport<R> {
    reader: BufReader<R>,
    /// The line being read; kept across cancelled reads (`receive` runs inside a `select!`).
    line: Vec<u8>,
    /// The current line is over `max_line_bytes`: only its head is kept, the rest is skipped.
    oversized: bool,
    max_line_bytes: usize,
    /// A fault answer not yet queued for the writer (kept if `receive` is cancelled).
    pending: Option<Vec<u8>>,
    frames: Option<mpsc::Sender<Vec<u8>>>,
    writer: Option<JoinHandle<io::Result<()>>>,
}

enum Read {
    Line,
    Oversized,
    Eof,
}

impl<R: AsyncRead + Unpin + Send> LineTransport<R> {
    /// Reads lines of up to `max_line_bytes` from `input` and writes frames to `output`.
    /// Must be called inside a Tokio runtime (it spawns the writer task).
    pub fn new<W>(input: R, output: W, max_line_bytes: usize) -> Self
    where
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let (frames, queue) = mpsc::channel(QUEUED_FRAMES);
        Self {
            reader: BufReader::new(input),
            line: Vec::new(),
            oversized: false,
            max_line_bytes,
            pending: None,
            frames: Some(frames),
            writer: Some(tokio::spawn(write_frames(output, queue))),
        }
    }

    /// Reads up to the next `\n` (or the end of input) into `self.line`, never holding more
    /// than `max_line_bytes`. Cancellation-safe: bytes are moved from the reader's buffer to
    /// `self.line` with no await in between, so a cancelled read resumes where it stopped.
    async fn read_line(&mut self) -> io::Result<Read> {
        loop {
            let (consumed, ended) = {
                let available = self.reader.fill_buf().await?;
                if available.is_empty() {
                    // The end of input ends a last line sent without its newline.
                    return Ok(if self.oversized {
                        Read::Oversized
                    } else if self.line.is_empty() {
                        Read::Eof
                    } else {
                        Read::Line
                    });
                }
                let newline = available.iter().position(|b| *b == b'\n');
                let take = newline.map_or(available.len(), |at| at + 1);
                if !self.oversized && self.line.len() + take > self.max_line_bytes {
                    self.oversized = true;
                    let room = OVERSIZED_HEAD_BYTES.saturating_sub(self.line.len());
                    self.line.truncate(OVERSIZED_HEAD_BYTES);
                    self.line.extend_from_slice(&available[..take.min(room)]);
                } else if !self.oversized {
                    self.line.extend_from_slice(&available[..take]);
                }
                (take, newline.is_some())
            };
            self.reader.consume(consumed);
            if ended {
                return Ok(if self.oversized {
                    Read::Oversized
                } else {
                    Read::Line
                });
            }
        }
    }

    fn queue_answer(&mut self, fault: &Fault) {
        tracing::warn!(
            code = fault.code,
            id = ?fault.id,
            path = fault.path.as_deref(),
            answered = fault.answer,
            "refused a faulty message on stdin"
        );
        if fault.answer {
            self.pending = Some(encode(&fault.frame()));
        }
    }
}

impl<R: AsyncRead + Unpin + Send> Transport<RoleServer> for LineTransport<R> {
    type Error = io::Error;

    fn send(
        &mut self,
        item: ServerJsonRpcMessage,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        let frames = self.frames.clone();
        let frame = serde_json::to_value(&item).map(|value| encode(&value));
        async move {
            let frames = frames.ok_or_else(closed)?;
            frames.send(frame?).await.map_err(|_| closed())
        }
    }

    async fn receive(&mut self) -> Option<ClientJsonRpcMessage> {
        loop {
            if self.pending.is_some() {
                // Reserve first: if this is cancelled, the answer is still pending.
                let permit = self.frames.as_ref()?.reserve().await.ok()?;
                permit.send(self.pending.take()?);
            }
            let read = match self.read_line().await {
                Ok(read) => read,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read stdin");
                    return None;
                }
            };
            let class = match read {
                Read::Eof => return None,
                Read::Oversized => Line::Fault(Fault::too_long(&self.line, self.max_line_bytes)),
                Read::Line => {
                    let line = self.line.strip_suffix(b"\n").unwrap_or(&self.line);
                    classify_line(line.strip_suffix(b"\r").unwrap_or(line))
                }
            };
            self.line.clear();
            self.oversized = false;
            match class {
                Line::Blank => {}
                Line::Message(message) => return Some(*message),
                Line::Fault(fault) => self.queue_answer(&fault),
            }
        }
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        // Dropping the last sender lets the writer finish the queue, flush and stop.
        drop(self.frames.take());
        match self.writer.take() {
            Some(writer) => writer.await.map_err(io::Error::other)?,
            None => Ok(()),
        }
    }
}

fn encode(value: &serde_json::Value) -> Vec<u8> {
    let mut frame = value.to_string().into_bytes();
    frame.push(b'\n');
    frame
}

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "stdout is closed")
}

/// Writes each frame whole, flushing when no other frame is waiting.
async fn write_frames<W: AsyncWrite + Unpin>(
    mut output: W,
    mut queue: mpsc::Receiver<Vec<u8>>,
) -> io::Result<()> {
    while let Some(frame) = queue.recv().await {
        output.write_all(&frame).await?;
        if queue.is_empty() {
            output.flush().await?;
        }
    }
    output.flush().await
}
