//! HTTP/1.1 to a runtime proxy over its Unix socket, with keep-alive connections reused per
//! container (at most as many as the container's concurrency are ever open at once).

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use tokio::net::UnixStream;
use tokio::time::Instant;

use crate::error::{Error, Result};

/// Interval of connection attempts while a proxy starts.
const CONNECT_RETRY: Duration = Duration::from_millis(1);

type Sender = SendRequest<Full<Bytes>>;

/// A proxy's reply. `body` holds at most the requested number of bytes; `len` is the full size.
#[derive(Debug)]
pub struct ProxyResponse {
    pub status: u16,
    pub body: Bytes,
    pub len: usize,
}

impl ProxyResponse {
    pub fn truncated(&self) -> bool {
        self.len > self.body.len()
    }
}

/// Connections to one container.
pub struct ProxyClient {
    socket: PathBuf,
    container: String,
    idle: Mutex<Vec<Sender>>,
}

impl ProxyClient {
    pub fn new(socket: &Path, container: &str) -> Self {
        Self {
            socket: socket.to_path_buf(),
            container: container.to_owned(),
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Polls until the proxy accepts a connection (kept for the first request), the process
    /// exits, or `deadline` passes. Only used while a container starts.
    pub async fn wait_ready(&self, deadline: Instant, exited: impl Fn() -> bool) -> Result<()> {
        loop {
            match UnixStream::connect(&self.socket).await {
                Ok(stream) => {
                    let sender = self.handshake(stream).await?;
                    self.idle.lock().push(sender);
                    return Ok(());
                }
                Err(_) if exited() => return Err(Error::ExitedBeforeReady(self.container.clone())),
                Err(_) if Instant::now() >= deadline => {
                    return Err(Error::NotReady(self.container.clone()));
                }
                Err(_) => tokio::time::sleep(CONNECT_RETRY).await,
            }
        }
    }

    async fn handshake(&self, stream: UnixStream) -> Result<Sender> {
        let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            // The connection ends when the proxy dies or the client side is dropped.
            let _ = conn.await;
        });
        Ok(sender)
    }

    async fn sender(&self) -> Result<Sender> {
        loop {
            let Some(s) = self.idle.lock().pop() else {
                break;
            };
            if !s.is_closed() {
                return Ok(s);
            }
        }
        let stream = UnixStream::connect(&self.socket)
            .await
            .map_err(|source| Error::Connect {
                container: self.container.clone(),
                source,
            })?;
        self.handshake(stream).await
    }

    /// POSTs JSON to `path` and reads the reply, keeping at most `max_body` bytes of it.
    pub async fn post(&self, path: &str, body: Vec<u8>, max_body: usize) -> Result<ProxyResponse> {
        let mut sender = self.sender().await?;
        sender.ready().await?;
        let req = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header(HOST, "localhost")
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| Error::Task(format!("build request: {e}")))?;
        let resp = sender.send_request(req).await?;
        let status = resp.status().as_u16();
        let mut incoming = resp.into_body();
        let mut first: Option<Bytes> = None;
        let mut buf: Vec<u8> = Vec::new();
        let mut len = 0usize;
        while let Some(frame) = incoming.frame().await {
            let Ok(data) = frame?.into_data() else {
                continue;
            };
            len += data.len();
            let kept = first.as_ref().map_or(0, Bytes::len) + buf.len();
            if kept >= max_body {
                continue;
            }
            let take = data.len().min(max_body - kept);
            // The common case is one frame: keep it without copying.
            match &first {
                None if take == data.len() && buf.is_empty() => first = Some(data),
                _ => {
                    if let Some(f) = first.take() {
                        buf.extend_from_slice(&f);
                    }
                    buf.extend_from_slice(&data[..take]);
                }
            }
        }
        if !sender.is_closed() {
            self.idle.lock().push(sender);
        }
        let body = match first {
            Some(f) if buf.is_empty() => f,
            _ => Bytes::from(buf),
        };
        Ok(ProxyResponse { status, body, len })
    }

    /// Drops idle connections (before pausing, or when destroying).
    pub fn close_idle(&self) {
        self.idle.lock().clear();
    }
}
