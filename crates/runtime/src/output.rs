//! An instance's stdout and stderr: every line goes to the server log with the request id,
//! and into the invocation's captured log. A flush drains what the process wrote before it
//! answered, so an invocation's log is complete when its result is.

use std::io::ErrorKind;
use std::sync::Arc;

use tokio::net::unix::pipe;
use tokio::sync::{mpsc, oneshot};

use crate::instance::{lock, Shared, CAPTURE_MAX_BYTES};

/// Asks the output task to drain both pipes, answering when done.
pub(crate) type FlushRequest = oneshot::Sender<()>;

/// One output pipe and the partial line read from it so far.
struct Stream {
    pipe: Option<pipe::Receiver>,
    partial: Vec<u8>,
    name: &'static str,
}

impl Stream {
    fn new(pipe: Option<pipe::Receiver>, name: &'static str) -> Self {
        Stream {
            pipe,
            partial: Vec::new(),
            name,
        }
    }

    /// Reads what is available now, without waiting; closes the stream at end of file.
    fn drain(&mut self, shared: &Shared) {
        let mut buf = [0u8; 16 * 1024];
        while let Some(pipe) = &self.pipe {
            match pipe.try_read(&mut buf) {
                Ok(0) => {
                    self.finish(shared);
                    self.pipe = None;
                }
                Ok(n) => self.push(&buf[..n], shared),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => self.pipe = None,
            }
        }
    }

    fn push(&mut self, bytes: &[u8], shared: &Shared) {
        self.partial.extend_from_slice(bytes);
        while let Some(end) = self.partial.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=end).collect();
            emit(&line[..line.len() - 1], self.name, shared);
        }
        // A very long line without a newline is emitted in pieces.
        if self.partial.len() >= CAPTURE_MAX_BYTES {
            let piece = std::mem::take(&mut self.partial);
            emit(&piece, self.name, shared);
        }
    }

    fn finish(&mut self, shared: &Shared) {
        if !self.partial.is_empty() {
            let rest = std::mem::take(&mut self.partial);
            emit(&rest, self.name, shared);
        }
    }
}

/// The line that ends a capture which hit its cap.
const TRUNCATED: &[u8] = b"[nimbus] output truncated: this invocation printed more than 1 MiB\n";

/// Logs one line and adds it to the current invocation's capture.
fn emit(line: &[u8], stream: &'static str, shared: &Shared) {
    let request_id = lock(&shared.current_request).clone().unwrap_or_default();
    if let Some(captured) = lock(&shared.capture).as_mut() {
        if captured.len() + line.len() < CAPTURE_MAX_BYTES {
            captured.extend_from_slice(line);
            captured.push(b'\n');
        } else if !captured.ends_with(TRUNCATED) {
            // Keep the log bounded, and say so in it.
            captured.extend_from_slice(TRUNCATED);
        }
    }
    tracing::debug!(
        target: "nimbus::function",
        function = %shared.identity.function,
        instance = %shared.identity.id,
        request_id = %request_id,
        stream,
        "{}",
        String::from_utf8_lossy(line)
    );
}

/// Turns a child's pipe into a non-blocking reader.
pub(crate) fn receiver(fd: Option<impl TryInto<std::os::fd::OwnedFd>>) -> Option<pipe::Receiver> {
    let fd = fd?.try_into().ok()?;
    pipe::Receiver::from_owned_fd(fd).ok()
}

/// Forwards both streams until they close, draining them on each flush request.
pub(crate) async fn forward(
    stdout: Option<pipe::Receiver>,
    stderr: Option<pipe::Receiver>,
    shared: Arc<Shared>,
    mut flushes: mpsc::Receiver<FlushRequest>,
) {
    let mut out = Stream::new(stdout, "stdout");
    let mut err = Stream::new(stderr, "stderr");
    loop {
        if out.pipe.is_none() && err.pipe.is_none() {
            // Nothing more will come; answer flushes until the instance goes away.
            while let Some(done) = flushes.recv().await {
                let _ = done.send(());
            }
            return;
        }
        tokio::select! {
            ready = readable(&out.pipe) => if ready { out.drain(&shared) } else { out.pipe = None },
            ready = readable(&err.pipe) => if ready { err.drain(&shared) } else { err.pipe = None },
            request = flushes.recv() => match request {
                Some(done) => {
                    out.drain(&shared);
                    err.drain(&shared);
                    let _ = done.send(());
                }
                None => return,
            },
        }
    }
}

/// Waits until `pipe` can be read; `false` if it failed. Pends forever for a closed pipe.
async fn readable(pipe: &Option<pipe::Receiver>) -> bool {
    match pipe {
        Some(p) => p.readable().await.is_ok(),
        None => std::future::pending().await,
    }
}
