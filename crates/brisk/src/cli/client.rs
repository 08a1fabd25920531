//! The HTTP client for the OpenWhisk REST API (`/api/v1`): one place that adds the key, prints
//! requests and responses with `--verbose`, and turns transport failures and error envelopes
//! into [`CliError`]s with the server's message.

use std::time::Duration;

use reqwest::Method;
use serde_json::Value;

use super::config::Config;
use super::progress::Spinner;
use super::{CliError, GlobalArgs};

/// Bodies larger than this get an upload indicator on a terminal.
const UPLOAD_PROGRESS_BYTES: usize = 1024 * 1024;

pub struct Client {
    http: reqwest::Client,
    base: String,
    auth: String,
    /// Default namespace (`_` unless configured).
    pub namespace: String,
    verbose: bool,
    debug: bool,
}

/// A response with any status; the body parsed as JSON when it is JSON, else a string.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: Value,
    /// `x-openwhisk-activation-id`: set when the response is about an activation (so an
    /// `{"error": ...}` body is an action's result, not an error envelope).
    pub activation_id: Option<String>,
}

impl Response {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The server's error message and transaction id from the error envelope.
    pub fn error_message(&self) -> String {
        match &self.body {
            Value::Object(map) => {
                let msg = match map.get("error") {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Object(o)) => o
                        .get("error")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                        .unwrap_or_else(|| Value::Object(o.clone()).to_string()),
                    Some(other) => other.to_string(),
                    None => format!("HTTP {}", self.status),
                };
                match map.get("code").and_then(Value::as_str) {
                    Some(code) => format!("{msg} (code {code})"),
                    None => msg,
                }
            }
            Value::String(s) if !s.is_empty() => s.clone(),
            _ => format!("the server answered HTTP {}", self.status),
        }
    }

    /// A failure to do `what`, e.g. `Unable to get action 'x'`.
    pub fn into_error(self, what: &str) -> CliError {
        let mut msg = format!("{what}: {}", self.error_message());
        if self.status == 401 {
            msg.push_str(
                "\ncheck the key with 'brisk property get --auth' and set the right one with 'brisk property set --auth <uuid:key>'",
            );
        }
        CliError::http(self.status, msg, self.body)
    }
}

/// Encodes one path segment (entity names may contain spaces, `&` and `@`).
pub fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'@') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Encodes a `/`-separated path of segments.
pub fn encode_path(path: &str) -> String {
    path.split('/')
        .map(encode_segment)
        .collect::<Vec<_>>()
        .join("/")
}

impl Client {
    pub fn new(config: &Config, global: &GlobalArgs) -> Result<Self, CliError> {
        let base = config.base_url()?;
        let auth = config.auth()?.to_owned();
        let http = reqwest::Client::builder()
            .danger_accept_invalid_certs(global.insecure)
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("brisk-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| CliError::general(format!("cannot build the HTTP client: {e}")))?;
        if global.debug {
            eprintln!(
                "[debug] apihost {base}, namespace {}, config file {}",
                config.namespace,
                super::config::Props::path().display()
            );
        }
        Ok(Self {
            http,
            base,
            auth,
            namespace: config.namespace.clone(),
            verbose: global.verbose || global.debug,
            debug: global.debug,
        })
    }

    pub fn auth_key(&self) -> &str {
        &self.auth
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// Sends a request to `/api/v1/<path>` (path already encoded); any HTTP status is returned.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
        wait_message: Option<&str>,
    ) -> Result<Response, CliError> {
        let url = format!("{}/api/v1/{path}", self.base);
        let (user, key) = self.auth.split_once(':').unwrap_or((&self.auth, ""));
        let mut req = self
            .http
            .request(method.clone(), &url)
            .basic_auth(user, Some(key))
            .query(query);
        let body_text = match body {
            Some(b) => Some(
                serde_json::to_string(b)
                    .map_err(|e| CliError::general(format!("encode the request: {e}")))?,
            ),
            None => None,
        };
        if let Some(text) = &body_text {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(text.clone());
        }
        if self.verbose {
            let q: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let q = if q.is_empty() {
                String::new()
            } else {
                format!("?{}", q.join("&"))
            };
            eprintln!("REQ: {method} {url}{q}");
            eprintln!(
                "Req Headers: Authorization: Basic <redacted>, Content-Type: application/json"
            );
            if let Some(text) = &body_text {
                eprintln!("Req Body: {}", truncate_for_log(text, self.debug));
            }
        }
        let size = body_text.as_ref().map_or(0, String::len);
        let _spinner = if size > UPLOAD_PROGRESS_BYTES {
            Spinner::start(
                format!("uploading {:.1} MB", size as f64 / 1_048_576.0),
                Duration::ZERO,
            )
        } else {
            wait_message.and_then(|m| Spinner::start(m.to_owned(), Duration::from_secs(1)))
        };
        let started = std::time::Instant::now();
        let resp = req.send().await.map_err(|e| self.transport_error(e))?;
        let status = resp.status().as_u16();
        let activation_id = resp
            .headers()
            .get("x-openwhisk-activation-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = resp.bytes().await.map_err(|e| self.transport_error(e))?;
        drop(_spinner);
        let text = String::from_utf8_lossy(&bytes);
        if self.verbose {
            eprintln!("RESP: {status} ({} ms)", started.elapsed().as_millis());
            eprintln!("Resp Body: {}", truncate_for_log(&text, self.debug));
        }
        let body = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| Value::String(text.into_owned()))
        };
        Ok(Response {
            status,
            body,
            activation_id,
        })
    }

    /// Like [`Client::send`], but a non-2xx status is an error saying `what` failed.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
        what: &str,
    ) -> Result<Value, CliError> {
        let resp = self.send(method, path, query, body, None).await?;
        if resp.ok() {
            Ok(resp.body)
        } else {
            Err(resp.into_error(what))
        }
    }

    pub async fn get(
        &self,
        path: &str,
        query: &[(&str, String)],
        what: &str,
    ) -> Result<Value, CliError> {
        self.call(Method::GET, path, query, None, what).await
    }

    fn transport_error(&self, e: reqwest::Error) -> CliError {
        let mut cause = String::new();
        let mut source: Option<&dyn std::error::Error> = Some(&e);
        while let Some(s) = source {
            cause = s.to_string();
            source = s.source();
        }
        let hint = if e.is_connect() {
            "is the server running? check the host with 'brisk property get --apihost' or change it with 'brisk property set --apihost <host:port>'"
        } else if e.is_timeout() {
            "the request timed out"
        } else {
            "check the API host and your network"
        };
        CliError::network(format!(
            "cannot reach the API host {}: {cause}\n{hint}",
            self.base
        ))
    }
}

fn truncate_for_log(text: &str, full: bool) -> String {
    const MAX: usize = 2000;
    if full || text.len() <= MAX {
        return text.to_owned();
    }
    let mut end = MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} bytes)", &text[..end], text.len())
}
