//! HTTP/1.1 to a runtime proxy over its Unix socket, with keep-alive connections reused per
//! container (at most as many as the container's concurrency are ever open at once).
//!
//! The exchange is written directly on the socket by the task that runs the activation: one
//! `write` for the request, reads parsed with `httparse`. The proxies are ours and always
//! answer with `Content-Length`, so a general client (a connection task per socket, a channel
//! hop per request) buys nothing here and cost about a tenth of the server's CPU per invoke.

use std::io::{ErrorKind, Write as _};
use std::path::{Path, PathBuf};

use bytes::{Buf, Bytes, BytesMut};
use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::time::Instant;

use crate::error::{Error, Result};

/// The readiness probe, answered by every proxy as soon as it serves (docs/runtime-protocol.md).
const READY_PATH: &str = "/ready";
/// Largest response head accepted from a proxy.
const MAX_HEAD: usize = 64 * 1024;
const READ_CHUNK: usize = 16 * 1024;

/// A proxy's reply. `body` holds at most the requested number of bytes; `len` is the full size.
#[derive(Debug)]
pub struct ProxyResponse {
    pub status: u16,
    pub body: Bytes,
    pub len: usize,
    /// The proxy reported (`X-Brisk-Logs: none`) that the run wrote no output and that it
    /// sent no log sentinels for it.
    pub quiet: bool,
}

impl ProxyResponse {
    pub fn truncated(&self) -> bool {
        self.len > self.body.len()
    }
}

/// One keep-alive connection and what was read past the last response.
struct Conn {
    stream: UnixStream,
    buf: BytesMut,
}

/// Connections to one container.
pub struct ProxyClient {
    socket: PathBuf,
    container: String,
    idle: Mutex<Vec<Conn>>,
}

impl ProxyClient {
    pub fn new(socket: &Path, container: &str) -> Self {
        Self {
            socket: socket.to_path_buf(),
            container: container.to_owned(),
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Waits until the proxy answers the readiness probe (`POST /ready`) on a new connection,
    /// which is kept for the first request. Only used while a container starts.
    ///
    /// Containers are socket-activated: the socket listened before the proxy started, so the
    /// connection is made at once and the probe waits in the backlog until the proxy accepts it;
    /// nothing polls. The proxy is the socket's only holder: should it exit before answering,
    /// the socket closes and fails the connection at once ([`Error::ExitedBeforeReady`]). No
    /// answer by `deadline` is [`Error::NotReady`]. `exited` is asked when no connection can be
    /// made at all, to tell a proxy that exited from another failure.
    pub async fn wait_ready(&self, deadline: Instant, exited: impl Fn() -> bool) -> Result<()> {
        let gone = || Error::ExitedBeforeReady(self.container.clone());
        let probe = async {
            let stream = match UnixStream::connect(&self.socket).await {
                Ok(s) => s,
                // Nothing listens any more, or the pending connection was dropped with the
                // socket: every holder of the socket has exited.
                Err(e)
                    if e.kind() == ErrorKind::ConnectionRefused || closed_early(&e) || exited() =>
                {
                    return Err(gone());
                }
                Err(source) => {
                    return Err(Error::Connect {
                        container: self.container.clone(),
                        source,
                    });
                }
            };
            let mut conn = Conn::new(stream);
            match conn.exchange(READY_PATH, "", b"{}", 0).await {
                Ok((_, keep)) => {
                    if keep {
                        self.idle.lock().push(conn);
                    }
                    Ok(())
                }
                // Closed before any answer: the proxy (the last holder of the socket) is gone.
                Err(e) if closed_early(&e) => Err(gone()),
                Err(source) => Err(Error::Exchange {
                    container: self.container.clone(),
                    source,
                }),
            }
        };
        tokio::time::timeout_at(deadline, probe)
            .await
            .unwrap_or_else(|_| Err(Error::NotReady(self.container.clone())))
    }

    /// An idle connection that is still open, or a new one.
    async fn conn(&self) -> Result<Conn> {
        loop {
            let Some(mut c) = self.idle.lock().pop() else {
                break;
            };
            // Without pending readiness this is answered from tokio's readiness state, no
            // system call: `WouldBlock` means open and quiet. End of stream (the proxy died
            // while idle) or stray bytes make the connection unusable.
            let mut probe = [0u8; 1];
            if matches!(c.stream.try_read(&mut probe), Err(e) if e.kind() == ErrorKind::WouldBlock)
            {
                c.buf.clear();
                return Ok(c);
            }
        }
        let stream = UnixStream::connect(&self.socket)
            .await
            .map_err(|source| Error::Connect {
                container: self.container.clone(),
                source,
            })?;
        Ok(Conn::new(stream))
    }

    /// POSTs JSON to `path` and reads the reply, keeping at most `max_body` bytes of it.
    pub async fn post(&self, path: &str, body: Vec<u8>, max_body: usize) -> Result<ProxyResponse> {
        self.post_with(path, "", body, max_body).await
    }

    /// [`Self::post`] with `extra` in the request head: header lines, each ending in `\r\n`.
    pub async fn post_with(
        &self,
        path: &str,
        extra: &str,
        body: Vec<u8>,
        max_body: usize,
    ) -> Result<ProxyResponse> {
        let mut conn = self.conn().await?;
        let (resp, keep) = conn
            .exchange(path, extra, &body, max_body)
            .await
            .map_err(|source| Error::Exchange {
                container: self.container.clone(),
                source,
            })?;
        if keep {
            self.idle.lock().push(conn);
        }
        Ok(resp)
    }

    /// Drops idle connections (before pausing, or when destroying).
    pub fn close_idle(&self) {
        self.idle.lock().clear();
    }
}

fn closed() -> std::io::Error {
    std::io::Error::new(ErrorKind::UnexpectedEof, "the proxy closed the connection")
}

/// Whether an exchange failed because the peer's end went away (rather than a bad reply).
fn closed_early(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::UnexpectedEof
            | ErrorKind::ConnectionReset
            | ErrorKind::ConnectionAborted
            | ErrorKind::BrokenPipe
    )
}

fn bad(msg: impl Into<String>) -> std::io::Error {
    std::io::Error::new(ErrorKind::InvalidData, msg.into())
}

impl Conn {
    fn new(stream: UnixStream) -> Self {
        Self {
            stream,
            buf: BytesMut::with_capacity(READ_CHUNK),
        }
    }

    /// Reads more into the buffer; `false` at the end of the stream.
    async fn read_more(&mut self) -> std::io::Result<bool> {
        self.buf.reserve(READ_CHUNK);
        Ok(self.stream.read_buf(&mut self.buf).await? > 0)
    }

    /// One request and its response; `true` when the connection may be reused.
    async fn exchange(
        &mut self,
        path: &str,
        extra: &str,
        body: &[u8],
        max_body: usize,
    ) -> std::io::Result<(ProxyResponse, bool)> {
        let mut req = Vec::with_capacity(body.len() + extra.len() + 128);
        req.extend_from_slice(b"POST ");
        req.extend_from_slice(path.as_bytes());
        req.extend_from_slice(b" HTTP/1.1\r\nHost: localhost\r\n");
        req.extend_from_slice(extra.as_bytes());
        req.extend_from_slice(b"Content-Type: application/json\r\nContent-Length: ");
        // Written into the request, not through a string of its own.
        write!(req, "{}\r\n\r\n", body.len())?;
        req.extend_from_slice(body);
        self.stream.write_all(&req).await?;
        drop(req);

        // Head.
        let (status, head_len, content_length, close, quiet) = loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut resp = httparse::Response::new(&mut headers);
            match resp.parse(&self.buf) {
                Ok(httparse::Status::Complete(n)) => {
                    let status = resp.code.unwrap_or(0);
                    let mut length = None;
                    let mut close = resp.version == Some(0);
                    let mut quiet = false;
                    for h in resp.headers.iter() {
                        if h.name.eq_ignore_ascii_case("content-length") {
                            let v = std::str::from_utf8(h.value)
                                .ok()
                                .and_then(|v| v.trim().parse::<usize>().ok())
                                .ok_or_else(|| bad("invalid Content-Length from the proxy"))?;
                            length = Some(v);
                        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                            return Err(bad("the proxy sent a chunked response"));
                        } else if h.name.eq_ignore_ascii_case("x-brisk-logs") {
                            quiet = h.value.eq_ignore_ascii_case(b"none");
                        } else if h.name.eq_ignore_ascii_case("connection") {
                            let v = String::from_utf8_lossy(h.value);
                            if v.trim().eq_ignore_ascii_case("close") {
                                close = true;
                            }
                        }
                    }
                    break (status, n, length, close, quiet);
                }
                Ok(httparse::Status::Partial) => {
                    if self.buf.len() > MAX_HEAD {
                        return Err(bad("the proxy's response head is too large"));
                    }
                    if !self.read_more().await? {
                        return Err(closed());
                    }
                }
                Err(e) => return Err(bad(format!("invalid response from the proxy: {e}"))),
            }
        };
        self.buf.advance(head_len);

        // Body: Content-Length bytes, or (without it) everything up to the end of the stream.
        if let Some(len) = content_length
            && self.buf.len() >= len
        {
            // The common case: the whole body arrived with the head.
            let body = self.buf.split_to(len).freeze().slice(..len.min(max_body));
            let resp = ProxyResponse {
                status,
                body,
                len,
                quiet,
            };
            return Ok((resp, !close));
        }
        let mut kept = BytesMut::with_capacity(content_length.unwrap_or(0).min(max_body));
        let mut total = 0usize;
        loop {
            let take = content_length.map_or(self.buf.len(), |len| self.buf.len().min(len - total));
            let chunk = self.buf.split_to(take);
            total += take;
            let room = max_body.saturating_sub(kept.len());
            kept.extend_from_slice(&chunk[..take.min(room)]);
            if content_length == Some(total) {
                break;
            }
            if !self.read_more().await? {
                if content_length.is_some() {
                    return Err(closed());
                }
                break;
            }
        }
        let resp = ProxyResponse {
            status,
            body: kept.freeze(),
            len: total,
            quiet,
        };
        Ok((resp, content_length.is_some() && !close))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::task::Poll;
    use std::time::Duration;
    use tokio::net::UnixListener;

    /// A one-connection-at-a-time server that answers each request with the next canned
    /// reply, written in the given pieces; it closes a connection after a reply marked so.
    async fn serve(listener: UnixListener, replies: Vec<(Vec<&'static [u8]>, bool)>) {
        let mut replies = replies.into_iter();
        'accept: while let Ok((mut s, _)) = listener.accept().await {
            loop {
                let mut buf = vec![0u8; 64 * 1024];
                let mut got = 0;
                // Read one full request (head + Content-Length body).
                loop {
                    let n = s.read(&mut buf[got..]).await.unwrap_or(0);
                    if n == 0 {
                        continue 'accept;
                    }
                    got += n;
                    let mut h = [httparse::EMPTY_HEADER; 16];
                    let mut r = httparse::Request::new(&mut h);
                    if let Ok(httparse::Status::Complete(head)) = r.parse(&buf[..got]) {
                        let len: usize = r
                            .headers
                            .iter()
                            .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                            .map(|h| std::str::from_utf8(h.value).unwrap().parse().unwrap())
                            .unwrap();
                        if got >= head + len {
                            break;
                        }
                    }
                }
                let Some((pieces, close)) = replies.next() else {
                    return;
                };
                for p in pieces {
                    s.write_all(p).await.unwrap();
                    s.flush().await.unwrap();
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                if close {
                    continue 'accept;
                }
            }
        }
    }

    fn setup(replies: Vec<(Vec<&'static [u8]>, bool)>) -> (tempfile::TempDir, ProxyClient) {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("p.sock");
        let listener = UnixListener::bind(&sock).unwrap();
        tokio::spawn(serve(listener, replies));
        let client = ProxyClient::new(&sock, "c1");
        (dir, client)
    }

    #[tokio::test]
    async fn reads_split_responses_and_reuses_the_connection() {
        let (_d, client) = setup(vec![
            (
                vec![
                    b"HTTP/1.1 200 OK\r\nContent-Le",
                    b"ngth: 10\r\n\r\n{\"a\"",
                    b":true}",
                ],
                false,
            ),
            (
                vec![b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 2\r\n\r\n{}"],
                false,
            ),
        ]);
        let r = client.post("/run", b"{}".to_vec(), 1024).await.unwrap();
        assert_eq!(
            (r.status, &r.body[..], r.len),
            (200, &b"{\"a\":true}"[..], 10)
        );
        // Exactly one idle connection, reused by the second request (the server only
        // accepts one connection at a time, so a new one would hang).
        assert_eq!(client.idle.lock().len(), 1);
        let r = tokio::time::timeout(
            Duration::from_secs(5),
            client.post("/run", b"{}".to_vec(), 1024),
        )
        .await
        .expect("the kept connection is reused")
        .unwrap();
        assert_eq!((r.status, &r.body[..]), (502, &b"{}"[..]));
    }

    #[tokio::test]
    async fn a_silent_run_is_reported_by_its_header() {
        let (_d, client) =
            setup(vec![
            (
                vec![b"HTTP/1.1 200 OK\r\nX-Brisk-Logs: none\r\nContent-Length: 2\r\n\r\n{}"],
                false,
            ),
            (
                vec![b"HTTP/1.1 200 OK\r\nX-Brisk-Logs: sentinels\r\nContent-Length: 2\r\n\r\n{}"],
                false,
            ),
            (vec![b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"], false),
        ]);
        let mut quiet = Vec::new();
        for _ in 0..3 {
            quiet.push(client.post("/run", b"{}".to_vec(), 64).await.unwrap().quiet);
        }
        assert_eq!(quiet, [true, false, false]);
    }

    #[tokio::test]
    async fn keeps_at_most_max_body_and_reports_the_full_length() {
        let (_d, client) = setup(vec![(
            vec![
                b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n01234",
                b"56789",
            ],
            false,
        )]);
        let r = client.post("/run", b"{}".to_vec(), 4).await.unwrap();
        assert_eq!(
            (&r.body[..], r.len, r.truncated()),
            (&b"0123"[..], 10, true)
        );
        assert_eq!(
            client.idle.lock().len(),
            1,
            "the body was drained, so the connection stays"
        );
    }

    #[tokio::test]
    async fn a_response_without_length_runs_to_the_end_and_closes() {
        let (_d, client) = setup(vec![(
            vec![
                b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{\"x\"",
                b":1}",
            ],
            true,
        )]);
        let r = client.post("/init", b"{}".to_vec(), 1024).await.unwrap();
        assert_eq!((&r.body[..], r.len), (&b"{\"x\":1}"[..], 7));
        assert!(client.idle.lock().is_empty());
    }

    #[tokio::test]
    async fn chunked_and_garbage_replies_are_errors() {
        let (_d, client) = setup(vec![
            (
                vec![b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"],
                true,
            ),
            (vec![b"NOT HTTP AT ALL\r\n\r\n"], true),
        ]);
        for _ in 0..2 {
            let e = client.post("/run", b"{}".to_vec(), 1024).await.unwrap_err();
            assert!(matches!(e, Error::Exchange { .. }), "{e:?}");
        }
    }

    #[tokio::test]
    async fn an_idle_connection_closed_by_the_proxy_is_replaced() {
        let (_d, client) = setup(vec![
            (
                vec![b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"],
                true,
            ),
            (
                vec![b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n[42]"],
                false,
            ),
        ]);
        let r = client.post("/run", b"{}".to_vec(), 1024).await.unwrap();
        assert_eq!(&r.body[..], b"{}");
        // The server closed its end after the first reply; let the close arrive.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let r = client.post("/run", b"{}".to_vec(), 1024).await.unwrap();
        assert_eq!(&r.body[..], b"[42]");
    }

    /// A socket bound and listening as the factories do it, before any proxy runs.
    fn activated() -> (
        tempfile::TempDir,
        std::os::unix::net::UnixListener,
        ProxyClient,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("p.sock");
        let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        (dir, listener, ProxyClient::new(&sock, "c1"))
    }

    fn far() -> Instant {
        Instant::now() + Duration::from_secs(60)
    }

    #[tokio::test]
    async fn the_probe_waits_in_the_backlog_and_its_connection_is_kept() {
        let (_d, listener, client) = activated();
        // The probe is sent before anything accepts; the "proxy" starts serving afterwards.
        let ready = tokio::spawn(async move {
            let r = client.wait_ready(far(), || false).await;
            (r, client)
        });
        listener.set_nonblocking(true).unwrap();
        let listener = UnixListener::from_std(listener).unwrap();
        tokio::spawn(serve(
            listener,
            vec![
                (
                    vec![b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n{\"ok\":true}"],
                    false,
                ),
                (
                    vec![b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n{\"ok\":true}"],
                    false,
                ),
            ],
        ));
        let (r, client) = ready.await.unwrap();
        r.unwrap();
        assert_eq!(client.idle.lock().len(), 1, "the probed connection is kept");
        // The server serves one connection at a time: the first request reuses it.
        let r = tokio::time::timeout(
            Duration::from_secs(5),
            client.post("/init", b"{}".to_vec(), 64),
        )
        .await
        .expect("the probed connection is reused")
        .unwrap();
        assert_eq!(r.status, 200);
    }

    #[tokio::test]
    async fn a_proxy_that_goes_away_before_answering_is_reported_at_once() {
        let (_d, listener, client) = activated();
        let mut ready = std::pin::pin!(client.wait_ready(far(), || false));
        // The first poll connects (a Unix socket connects at once) and sends the probe, which
        // waits in the backlog: nothing accepts it.
        let first = std::future::poll_fn(|cx| Poll::Ready(ready.as_mut().poll(cx))).await;
        assert!(first.is_pending(), "{first:?}");
        // The last holder of the socket closes it: the pending connection fails, long before
        // the deadline.
        drop(listener);
        let r = ready.await;
        assert!(matches!(r, Err(Error::ExitedBeforeReady(_))), "{r:?}");
    }

    #[tokio::test]
    async fn a_socket_nobody_holds_any_more_is_an_exited_proxy() {
        let (_d, listener, client) = activated();
        drop(listener);
        let r = client.wait_ready(far(), || false).await;
        assert!(matches!(r, Err(Error::ExitedBeforeReady(_))), "{r:?}");
    }

    #[tokio::test]
    async fn a_proxy_that_never_answers_is_not_ready_at_the_deadline() {
        let (_d, _listener, client) = activated();
        let deadline = Instant::now() + Duration::from_millis(100);
        let r = client.wait_ready(deadline, || false).await;
        assert!(matches!(r, Err(Error::NotReady(_))), "{r:?}");
    }

    #[tokio::test]
    async fn a_missing_socket_is_a_connect_error() {
        let client = ProxyClient::new(Path::new("/nonexistent/brisk.sock"), "c9");
        let e = client.post("/run", b"{}".to_vec(), 16).await.unwrap_err();
        assert!(matches!(e, Error::Connect { .. }), "{e:?}");
    }
}
