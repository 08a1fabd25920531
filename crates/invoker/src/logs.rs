//! Log collection: one reader task per output stream turns the proxy's tagged lines into
//! timestamped log entries of the right activation (docs/runtime-protocol.md, "Logs").

use std::sync::Arc;
use std::time::Duration;

use brisk_model::ActivationId;
use parking_lot::Mutex;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::oneshot;

use crate::container::ContainerOutput;

pub const SENTINEL: &[u8] = b"XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX";
pub const COLLECTION_ISSUE: &str =
    "There was an issue while collecting your logs. Data might be missing.";
pub const DEVELOPER_ERROR_LOGS: &str =
    "The action did not initialize or run as expected. Log data might be missing.";
/// A single line longer than this is cut into pieces.
const MAX_LINE: usize = 1024 * 1024;
const READ_BUFFER: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout = 0,
    Stderr = 1,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// Logs of one activation; `complete` when both sentinels were seen.
#[derive(Debug, Default)]
pub struct CollectedLogs {
    pub lines: Vec<String>,
    pub complete: bool,
}

struct Collector {
    id: ActivationId,
    lines: Vec<String>,
    bytes: usize,
    limit: usize,
    truncated: bool,
    seen: [bool; 2],
    done: Option<oneshot::Sender<CollectedLogs>>,
}

impl Collector {
    fn push(&mut self, stream: Stream, text: &[u8]) {
        if self.truncated || self.limit == 0 {
            return;
        }
        let text = String::from_utf8_lossy(text);
        let text = text.strip_suffix('\r').unwrap_or(&text);
        if self.bytes + text.len() > self.limit {
            self.truncated = true;
            self.lines.push(entry(
                Stream::Stderr,
                &format!(
                    "Logs were truncated because the total bytes size exceeds the limit of {} bytes.",
                    self.limit
                ),
            ));
            return;
        }
        self.bytes += text.len();
        self.lines.push(entry(stream, text));
    }

    fn finish(mut self, complete: bool) {
        if let Some(tx) = self.done.take() {
            let _ = tx.send(CollectedLogs {
                lines: std::mem::take(&mut self.lines),
                complete,
            });
        }
    }
}

/// `2024-05-01T10:00:00.123456789Z stdout: text`, stamped now.
pub fn entry(stream: Stream, text: &str) -> String {
    let ts = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.9fZ");
    format!("{ts} {}: {text}", stream.name())
}

#[derive(Default)]
struct HubState {
    /// In registration order: the first is the oldest in-flight activation.
    inflight: Vec<Collector>,
    eof: [bool; 2],
}

/// The log state of one container.
#[derive(Default)]
pub struct LogHub {
    state: Mutex<HubState>,
}

impl LogHub {
    /// Starts the reader tasks of a container's output.
    pub fn start(output: ContainerOutput, container: &str) -> Arc<Self> {
        let hub = Arc::new(Self::default());
        for (stream, reader) in [
            (Stream::Stdout, output.stdout),
            (Stream::Stderr, output.stderr),
        ] {
            let hub = hub.clone();
            let name = container.to_owned();
            tokio::spawn(async move { hub.read(stream, reader, &name).await });
        }
        hub
    }

    async fn read(&self, stream: Stream, reader: Box<dyn AsyncRead + Send + Unpin>, name: &str) {
        let mut reader = BufReader::with_capacity(READ_BUFFER, reader);
        let mut line = Vec::with_capacity(256);
        loop {
            let (consumed, newline) = match reader.fill_buf().await {
                Ok([]) => break,
                Ok(buf) => match buf.iter().position(|b| *b == b'\n') {
                    Some(i) => {
                        line.extend_from_slice(&buf[..i]);
                        (i + 1, true)
                    }
                    None => {
                        line.extend_from_slice(buf);
                        (buf.len(), false)
                    }
                },
                Err(e) => {
                    tracing::debug!(container = name, error = %e, "read container output");
                    break;
                }
            };
            reader.consume(consumed);
            if newline || line.len() >= MAX_LINE {
                self.on_line(stream, &line);
                line.clear();
            }
        }
        if !line.is_empty() {
            self.on_line(stream, &line);
        }
        self.on_eof(stream);
    }

    /// Routes one raw line (without its newline) to its activation.
    pub(crate) fn on_line(&self, stream: Stream, raw: &[u8]) {
        let (tag, text, marked_stderr) = split_tag(raw);
        let mut st = self.state.lock();
        let idx = match tag {
            Some(id) => st
                .inflight
                .iter()
                .position(|c| c.id.as_str().as_bytes() == id),
            None if st.inflight.is_empty() => None,
            None => Some(0),
        };
        let Some(idx) = idx else {
            return;
        };
        let c = &mut st.inflight[idx];
        if text == SENTINEL {
            c.seen[stream as usize] = true;
            if c.seen == [true, true] {
                st.inflight.remove(idx).finish(true);
            }
        } else {
            c.push(
                if marked_stderr {
                    Stream::Stderr
                } else {
                    stream
                },
                text,
            );
        }
    }

    fn on_eof(&self, stream: Stream) {
        let mut st = self.state.lock();
        st.eof[stream as usize] = true;
        if st.eof == [true, true] {
            for c in st.inflight.drain(..) {
                c.finish(false);
            }
        }
    }

    /// Starts collecting for `id`, keeping at most `limit` bytes (0 = keep nothing).
    pub fn register(self: &Arc<Self>, id: ActivationId, limit: usize) -> LogTicket {
        let (tx, rx) = oneshot::channel();
        let c = Collector {
            id,
            lines: Vec::new(),
            bytes: 0,
            limit,
            truncated: false,
            seen: [false; 2],
            done: Some(tx),
        };
        let mut st = self.state.lock();
        if st.eof == [true, true] {
            c.finish(false);
        } else {
            st.inflight.push(c);
        }
        LogTicket {
            hub: self.clone(),
            id,
            rx,
        }
    }

    fn abandon(&self, id: ActivationId) -> Vec<String> {
        let mut st = self.state.lock();
        match st.inflight.iter().position(|c| c.id == id) {
            Some(i) => std::mem::take(&mut st.inflight.remove(i).lines),
            None => Vec::new(),
        }
    }
}

/// `\x01<id>\x02text` (a line of the stream it arrived on) or `\x01<id>\x03text` (a stderr line
/// sent through stdout so that the order of both streams survives).
fn split_tag(raw: &[u8]) -> (Option<&[u8]>, &[u8], bool) {
    if raw.len() >= 34 && raw[0] == 1 && (raw[33] == 2 || raw[33] == 3) {
        (Some(&raw[1..33]), &raw[34..], raw[33] == 3)
    } else {
        (None, raw, false)
    }
}

/// The right to one activation's logs.
pub struct LogTicket {
    hub: Arc<LogHub>,
    id: ActivationId,
    rx: oneshot::Receiver<CollectedLogs>,
}

impl LogTicket {
    /// Waits up to `wait` for both sentinels (or the end of the output); on timeout returns what
    /// was collected with `complete: false`.
    pub async fn collect(self, wait: Duration) -> CollectedLogs {
        match tokio::time::timeout(wait, self.rx).await {
            Ok(Ok(logs)) => logs,
            Ok(Err(_)) => CollectedLogs::default(),
            Err(_) => CollectedLogs {
                lines: self.hub.abandon(self.id),
                complete: false,
            },
        }
    }

    /// Stops collecting without waiting.
    pub fn discard(self) {
        self.hub.abandon(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tagged(id: &ActivationId, text: &str) -> Vec<u8> {
        let mut v = vec![1u8];
        v.extend_from_slice(id.as_str().as_bytes());
        v.push(2);
        v.extend_from_slice(text.as_bytes());
        v
    }

    fn texts(logs: &CollectedLogs) -> Vec<&str> {
        logs.lines.iter().map(|l| &l[31..]).collect()
    }

    #[tokio::test]
    async fn tagged_lines_go_to_their_activation_and_untagged_to_the_oldest() {
        let hub = Arc::new(LogHub::default());
        let (a, b) = (ActivationId::generate(), ActivationId::generate());
        let (ta, tb) = (hub.register(a, 1000), hub.register(b, 1000));
        hub.on_line(Stream::Stdout, &tagged(&b, "b1"));
        hub.on_line(Stream::Stdout, b"untagged");
        hub.on_line(Stream::Stderr, &tagged(&a, "a1"));
        for id in [&a, &b] {
            hub.on_line(
                Stream::Stdout,
                &tagged(id, "XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX"),
            );
            hub.on_line(
                Stream::Stderr,
                &tagged(id, "XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX"),
            );
        }
        let la = ta.collect(Duration::from_secs(1)).await;
        let lb = tb.collect(Duration::from_secs(1)).await;
        assert!(la.complete && lb.complete);
        assert_eq!(texts(&la), ["stdout: untagged", "stderr: a1"]);
        assert_eq!(texts(&lb), ["stdout: b1"]);
    }

    #[tokio::test]
    async fn truncation_adds_one_marker_and_eof_completes() {
        let hub = Arc::new(LogHub::default());
        let a = ActivationId::generate();
        let t = hub.register(a, 10);
        hub.on_line(Stream::Stdout, b"12345");
        hub.on_line(Stream::Stdout, b"67890");
        hub.on_line(Stream::Stdout, b"x");
        hub.on_line(Stream::Stdout, b"y");
        hub.on_eof(Stream::Stdout);
        hub.on_eof(Stream::Stderr);
        let logs = t.collect(Duration::from_secs(1)).await;
        assert!(!logs.complete);
        assert_eq!(
            texts(&logs),
            [
                "stdout: 12345",
                "stdout: 67890",
                "stderr: Logs were truncated because the total bytes size exceeds the limit of 10 bytes."
            ]
        );
    }

    #[tokio::test]
    async fn a_missing_sentinel_times_out_with_what_was_read() {
        let hub = Arc::new(LogHub::default());
        let a = ActivationId::generate();
        let t = hub.register(a, 100);
        hub.on_line(Stream::Stdout, &tagged(&a, "partial"));
        let logs = t.collect(Duration::from_millis(20)).await;
        assert!(!logs.complete);
        assert_eq!(texts(&logs), ["stdout: partial"]);
        assert!(entry(Stream::Stdout, "x").ends_with("Z stdout: x"));
    }
}
