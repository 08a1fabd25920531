//! The load generator's connection: HTTP/1.1 over one keep-alive TCP connection (TCP_NODELAY),
//! with each request encoded once before the load starts and each response parsed in place in one
//! reusable buffer. Per request it costs one write, usually one read, and no allocation, so the
//! generator takes as little as possible of the CPU that the server under test shares with it
//! (like `wrk`, which OpenWhisk's own throughput test uses).

use std::io;

use anyhow::{Context, bail};
use bytes::Bytes;
use hyper::{Method, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::client::Target;

/// Headers a response may have; more is an error.
const MAX_HEADERS: usize = 32;
/// Largest response head or body the generator accepts.
const MAX_RESPONSE: usize = 16 << 20;

/// A request, encoded once: the bytes written for every send of it.
#[derive(Debug, Clone)]
pub struct Encoded(Bytes);

impl Encoded {
    pub fn new(target: &Target, method: &Method, path: &str, body: &[u8]) -> Self {
        let mut out = Vec::with_capacity(256 + body.len());
        out.extend_from_slice(method.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(path.as_bytes());
        out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
        out.extend_from_slice(target.host());
        if let Some(auth) = target.auth() {
            out.extend_from_slice(b"\r\nauthorization: ");
            out.extend_from_slice(auth);
        }
        if !body.is_empty() {
            out.extend_from_slice(b"\r\ncontent-type: application/json");
        }
        out.extend_from_slice(format!("\r\ncontent-length: {}\r\n\r\n", body.len()).as_bytes());
        out.extend_from_slice(body);
        Self(Bytes::from(out))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// How the body of a parsed response head is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(usize),
    Chunked,
    /// Neither a length nor chunks: the body ends when the server closes the connection.
    UntilClose,
}

/// A parsed response head: status, where the body starts, how it ends, whether the server
/// closes the connection after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Head {
    status: StatusCode,
    len: usize,
    framing: Framing,
    close: bool,
}

/// Parses a response head at the start of `buf`; `None` while it is incomplete.
fn parse_head(buf: &[u8]) -> anyhow::Result<Option<Head>> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut res = httparse::Response::new(&mut headers);
    let len = match res.parse(buf).context("malformed response head")? {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => return Ok(None),
    };
    let status = StatusCode::from_u16(res.code.unwrap_or(0)).context("response status")?;
    let mut framing = None;
    let mut close = res.version == Some(0);
    for h in res.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
                .context("content-length")?;
            if framing != Some(Framing::Chunked) {
                framing = Some(Framing::Length(n));
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            if !h.value.eq_ignore_ascii_case(b"chunked") {
                bail!(
                    "unsupported transfer-encoding {}",
                    String::from_utf8_lossy(h.value)
                );
            }
            framing = Some(Framing::Chunked);
        } else if h.name.eq_ignore_ascii_case("connection") {
            close = h.value.eq_ignore_ascii_case(b"close");
        }
    }
    // Responses that never have a body; any other without length or chunks runs to the close.
    let bodiless = status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let framing = match framing {
        _ if bodiless => Framing::Length(0),
        Some(f) => f,
        None => {
            close = true;
            Framing::UntilClose
        }
    };
    Ok(Some(Head {
        status,
        len,
        framing,
        close,
    }))
}

/// Decodes a chunked body at the start of `buf` into `out`; returns the bytes it took up, or
/// `None` while it is incomplete (then `out` is left empty).
fn parse_chunked(buf: &[u8], out: &mut Vec<u8>) -> anyhow::Result<Option<usize>> {
    out.clear();
    let mut at = 0;
    loop {
        let Some(eol) = find_crlf(&buf[at..]) else {
            out.clear();
            return Ok(None);
        };
        let line = std::str::from_utf8(&buf[at..at + eol]).context("chunk size")?;
        let hex = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(hex, 16).context("chunk size")?;
        at += eol + 2;
        if size == 0 {
            // Trailers, if any, end with an empty line.
            loop {
                let Some(eol) = find_crlf(&buf[at..]) else {
                    out.clear();
                    return Ok(None);
                };
                at += eol + 2;
                if eol == 0 {
                    return Ok(Some(at));
                }
            }
        }
        if buf.len() < at + size + 2 {
            out.clear();
            return Ok(None);
        }
        if out.len() + size > MAX_RESPONSE {
            bail!("response body over {MAX_RESPONSE} bytes");
        }
        out.extend_from_slice(&buf[at..at + size]);
        at += size + 2;
    }
}

fn find_crlf(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\r\n")
}

/// One keep-alive connection of the load generator.
pub struct WireConn {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Bytes at the start of `buf` that belong to the previous response.
    consumed: usize,
    /// The decoded body of a chunked response.
    chunked: Vec<u8>,
    closed: bool,
}

impl WireConn {
    pub async fn connect(target: &Target) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(target.addr)
            .await
            .with_context(|| format!("connect to {}", target.addr))?;
        stream.set_nodelay(true).context("set TCP_NODELAY")?;
        Ok(Self {
            stream,
            buf: Vec::with_capacity(8192),
            consumed: 0,
            chunked: Vec::new(),
            closed: false,
        })
    }

    /// False once the server said it closes the connection; the caller connects again.
    pub fn reusable(&self) -> bool {
        !self.closed
    }

    /// Sends one request and reads its whole response: the status and the body, which stays
    /// valid until the next call.
    pub async fn exchange(&mut self, request: &Encoded) -> anyhow::Result<(StatusCode, &[u8])> {
        if self.closed {
            bail!("connection closed by the server");
        }
        self.buf.drain(..self.consumed);
        self.consumed = 0;
        self.stream
            .write_all(request.as_bytes())
            .await
            .context("send request")?;
        let head = loop {
            if let Some(head) = parse_head(&self.buf)? {
                break head;
            }
            self.fill().await?;
        };
        self.closed = head.close;
        match head.framing {
            Framing::Length(n) => {
                if n > MAX_RESPONSE {
                    bail!("response body over {MAX_RESPONSE} bytes");
                }
                while self.buf.len() < head.len + n {
                    self.fill().await?;
                }
                self.consumed = head.len + n;
                Ok((head.status, &self.buf[head.len..head.len + n]))
            }
            Framing::Chunked => loop {
                if let Some(used) = parse_chunked(&self.buf[head.len..], &mut self.chunked)? {
                    self.consumed = head.len + used;
                    return Ok((head.status, &self.chunked));
                }
                self.fill().await?;
            },
            Framing::UntilClose => {
                while self.read_more().await? > 0 {}
                self.consumed = self.buf.len();
                Ok((head.status, &self.buf[head.len..]))
            }
        }
    }

    /// Reads more of the response into the buffer; fails at the end of the stream.
    async fn fill(&mut self) -> anyhow::Result<()> {
        if self.read_more().await? == 0 {
            return Err(io::Error::from(io::ErrorKind::UnexpectedEof)).context("read response");
        }
        Ok(())
    }

    /// Reads more of the response into the buffer: the bytes read, 0 at the end of the stream.
    async fn read_more(&mut self) -> anyhow::Result<usize> {
        if self.buf.len() > MAX_RESPONSE {
            bail!("response over {MAX_RESPONSE} bytes");
        }
        self.buf.reserve(8192);
        let n = self
            .stream
            .read_buf(&mut self.buf)
            .await
            .context("read response")?;
        if n == 0 {
            self.closed = true;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_a_request_once() {
        let t = Target::new("http://127.0.0.1:3233", Some("a:b")).unwrap();
        let e = Encoded::new(&t, &Method::POST, "/x?y=1", b"{}");
        assert_eq!(
            e.as_bytes(),
            b"POST /x?y=1 HTTP/1.1\r\nhost: 127.0.0.1:3233\r\nauthorization: Basic YTpi\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"
        );
        let bare = Target::new("127.0.0.1:9", None).unwrap();
        let e = Encoded::new(&bare, &Method::GET, "/", b"");
        assert_eq!(
            e.as_bytes(),
            b"GET / HTTP/1.1\r\nhost: 127.0.0.1:9\r\ncontent-length: 0\r\n\r\n"
        );
    }

    #[test]
    fn parses_heads_only_when_complete() {
        let full =
            b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 5\r\nconnection: close\r\n\r\nhello";
        assert_eq!(parse_head(&full[..20]).unwrap(), None);
        let head = parse_head(full).unwrap().unwrap();
        assert_eq!(head.status, StatusCode::BAD_GATEWAY);
        assert_eq!(head.framing, Framing::Length(5));
        assert!(head.close);
        assert_eq!(&full[head.len..], b"hello");
        let chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n";
        let head = parse_head(chunked).unwrap().unwrap();
        assert_eq!(head.framing, Framing::Chunked);
        assert!(!head.close);
        assert!(parse_head(b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n").is_err());
        // No length and no chunks: the body runs until the server closes, except where a
        // response never has one.
        let head = parse_head(b"HTTP/1.0 200 OK\r\n\r\n").unwrap().unwrap();
        assert_eq!((head.framing, head.close), (Framing::UntilClose, true));
        let head = parse_head(b"HTTP/1.1 204 No Content\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!((head.framing, head.close), (Framing::Length(0), false));
        assert!(parse_head(b"garbage\r\n\r\n").is_err());
    }

    #[test]
    fn decodes_chunked_bodies_only_when_complete() {
        let body = b"3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\n\r\nNEXT";
        let mut out = Vec::new();
        for cut in 0..body.len() - 4 {
            assert_eq!(
                parse_chunked(&body[..cut], &mut out).unwrap(),
                None,
                "{cut}"
            );
            assert!(out.is_empty());
        }
        assert_eq!(parse_chunked(body, &mut out).unwrap(), Some(body.len() - 4));
        assert_eq!(out, b"abcde");
        assert!(parse_chunked(b"zz\r\n", &mut out).is_err());
    }

    /// A server for one connection, handled by `handle`, and the target to reach it.
    async fn serve_one<F, Fut>(handle: F) -> (Target, tokio::task::JoinHandle<()>)
    where
        F: FnOnce(TcpStream) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            handle(s).await;
        });
        (
            Target::new(&format!("http://{addr}"), None).unwrap(),
            server,
        )
    }

    #[tokio::test]
    async fn exchanges_over_keep_alive_and_reconnects_after_close() {
        // A server that answers two requests on one connection (the second chunked and in
        // pieces, then closing), counting the requests it parsed.
        let (target, server) = serve_one(|mut s| async move {
            let mut seen = Vec::new();
            let mut buf = vec![0u8; 4096];
            let mut answered = 0;
            while answered < 2 {
                let n = s.read(&mut buf).await.unwrap();
                seen.extend_from_slice(&buf[..n]);
                while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&seen[..end]).to_string();
                    assert!(head.contains("content-length: 0"), "{head}");
                    seen.drain(..end + 4);
                    answered += 1;
                    if answered == 1 {
                        s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")
                            .await
                            .unwrap();
                    } else {
                        s.write_all(b"HTTP/1.1 404 Not Found\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n4\r\nno")
                            .await
                            .unwrap();
                        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                        s.write_all(b"pe\r\n0\r\n\r\n").await.unwrap();
                    }
                }
            }
        })
        .await;
        let req = Encoded::new(&target, &Method::GET, "/", b"");
        let mut c = WireConn::connect(&target).await.unwrap();
        let (status, body) = c.exchange(&req).await.unwrap();
        assert_eq!((status, body), (StatusCode::OK, &b"{}"[..]));
        assert!(c.reusable());
        let (status, body) = c.exchange(&req).await.unwrap();
        assert_eq!((status, body), (StatusCode::NOT_FOUND, &b"nope"[..]));
        assert!(!c.reusable());
        assert!(c.exchange(&req).await.is_err());
        server.await.unwrap();
    }

    #[tokio::test]
    async fn reads_a_body_that_ends_with_the_connection() {
        let (target, server) = serve_one(|mut s| async move {
            let mut buf = vec![0u8; 4096];
            let _ = s.read(&mut buf).await.unwrap();
            s.write_all(b"HTTP/1.0 200 OK\r\n\r\nall of it")
                .await
                .unwrap();
        })
        .await;
        let req = Encoded::new(&target, &Method::GET, "/", b"");
        let mut c = WireConn::connect(&target).await.unwrap();
        let (status, body) = c.exchange(&req).await.unwrap();
        assert_eq!((status, body), (StatusCode::OK, &b"all of it"[..]));
        assert!(!c.reusable());
        server.await.unwrap();
    }
}
