//! A minimal HTTP/1.1 client over one keep-alive TCP connection (TCP_NODELAY), built on hyper's
//! low-level connection API so the load generator adds as little as possible to what it measures.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;

/// Where a server is and how to authenticate to it.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    host: HeaderValue,
    auth: Option<HeaderValue>,
}

impl Target {
    /// `apihost` is `http://host:port`, `host:port` or a bare host (port 80); `auth` is
    /// `uuid:key` for HTTP Basic, or `None` for the bare floor servers.
    pub fn new(apihost: &str, auth: Option<&str>) -> anyhow::Result<Self> {
        let rest = apihost.strip_prefix("http://").unwrap_or(apihost);
        if rest.starts_with("https://") {
            bail!("https is not supported by the benchmark client: {apihost}");
        }
        let hostport = rest.trim_end_matches('/');
        let with_port = if hostport.contains(':') {
            hostport.to_string()
        } else {
            format!("{hostport}:80")
        };
        let addr = with_port
            .to_socket_addrs()
            .with_context(|| format!("resolve {apihost}"))?
            .next()
            .with_context(|| format!("{apihost} resolves to no address"))?;
        let auth = auth
            .map(|a| {
                let b64 = base64::engine::general_purpose::STANDARD.encode(a);
                HeaderValue::from_str(&format!("Basic {b64}")).context("auth header")
            })
            .transpose()?;
        Ok(Self {
            addr,
            host: HeaderValue::from_str(hostport).context("host header")?,
            auth,
        })
    }

    /// The `host` header's value.
    pub fn host(&self) -> &[u8] {
        self.host.as_bytes()
    }

    /// The `authorization` header's value, when the target needs one.
    pub fn auth(&self) -> Option<&[u8]> {
        self.auth.as_ref().map(HeaderValue::as_bytes)
    }
}

/// One keep-alive connection. Reconnects transparently when the server closed it.
pub struct Conn {
    target: Target,
    sender: Option<SendRequest<Full<Bytes>>>,
}

/// A response: status and the whole body.
pub struct Reply {
    pub status: StatusCode,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> anyhow::Result<Value> {
        serde_json::from_slice(&self.body).with_context(|| {
            format!(
                "parse response ({}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// Fails with the body when the status is not a success.
    pub fn ok(self) -> anyhow::Result<Self> {
        if self.status.is_success() {
            Ok(self)
        } else {
            bail!(
                "HTTP {}: {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        }
    }
}

impl Conn {
    pub async fn connect(target: &Target) -> anyhow::Result<Self> {
        let mut c = Self {
            target: target.clone(),
            sender: None,
        };
        c.ensure().await?;
        Ok(c)
    }

    async fn ensure(&mut self) -> anyhow::Result<&mut SendRequest<Full<Bytes>>> {
        let usable = self.sender.as_ref().is_some_and(|s| !s.is_closed());
        if !usable {
            let stream = tokio::net::TcpStream::connect(self.target.addr)
                .await
                .with_context(|| format!("connect to {}", self.target.addr))?;
            stream.set_nodelay(true).context("set TCP_NODELAY")?;
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .context("HTTP handshake")?;
            tokio::spawn(async move {
                // The connection ends when the sender is dropped or the server closes it.
                let _ = conn.await;
            });
            self.sender = Some(sender);
        }
        self.sender.as_mut().context("no connection")
    }

    /// Sends one request and reads the whole response.
    pub async fn request(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> anyhow::Result<Reply> {
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, self.target.host.clone());
        if let Some(auth) = &self.target.auth {
            builder = builder.header(AUTHORIZATION, auth.clone());
        }
        if body.is_some() {
            builder = builder.header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        let req = builder
            .body(Full::new(body.unwrap_or_default()))
            .context("build request")?;
        let sender = self.ensure().await?;
        sender.ready().await.context("connection not ready")?;
        let res = match sender.send_request(req).await {
            Ok(res) => res,
            Err(e) => {
                self.sender = None;
                return Err(e).context("send request");
            }
        };
        let status = res.status();
        let body = res
            .into_body()
            .collect()
            .await
            .context("read response body")?
            .to_bytes();
        Ok(Reply { status, body })
    }

    pub async fn get(&mut self, path: &str) -> anyhow::Result<Reply> {
        self.request(Method::GET, path, None).await
    }

    pub async fn put_json(&mut self, path: &str, body: &Value) -> anyhow::Result<Reply> {
        self.request(Method::PUT, path, Some(Bytes::from(body.to_string())))
            .await
    }

    pub async fn post_json(&mut self, path: &str, body: &Value) -> anyhow::Result<Reply> {
        self.request(Method::POST, path, Some(Bytes::from(body.to_string())))
            .await
    }

    /// Sends a request and times it end to end (request written to body read).
    pub async fn timed(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> anyhow::Result<(Reply, Duration)> {
        let t0 = Instant::now();
        let reply = self.request(method, path, body).await?;
        Ok((reply, t0.elapsed()))
    }
}

/// The value of annotation `key` in an activation record, if present.
pub fn annotation<'a>(record: &'a Value, key: &str) -> Option<&'a Value> {
    record
        .get("annotations")?
        .as_array()?
        .iter()
        .find(|a| a.get("key").and_then(Value::as_str) == Some(key))?
        .get("value")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn apihost_forms() {
        let t = Target::new("http://127.0.0.1:3233", Some("a:b")).unwrap();
        assert_eq!(t.addr, "127.0.0.1:3233".parse().unwrap());
        assert_eq!(t.auth.unwrap(), "Basic YTpi");
        let t = Target::new("127.0.0.1:9/", None).unwrap();
        assert_eq!(t.addr.port(), 9);
        assert!(Target::new("https://127.0.0.1:1", None).is_err());
    }

    #[test]
    fn finds_annotations() {
        let rec = json!({"annotations": [{"key": "waitTime", "value": 3}, {"key": "initTime", "value": 12}]});
        assert_eq!(annotation(&rec, "initTime"), Some(&json!(12)));
        assert_eq!(annotation(&rec, "kind"), None);
        assert_eq!(annotation(&json!({}), "initTime"), None);
    }
}
