//! Test harness: the real controller app on `127.0.0.1:0` over a fresh SQLite data directory,
//! and a small HTTP client speaking to it as a given identity.
//!
//! Paths given to the request helpers that do not start with `/` are relative to the caller's
//! own namespace: `"actions/hello"` means `/api/v1/namespaces/_/actions/hello`.
#![allow(
    dead_code,
    reason = "each test binary uses a different part of the harness"
)]

use std::path::Path;
use std::sync::Arc;

use base64::Engine;
use brisk_controller::{Controller, ControllerConfig, bootstrap};
use brisk_model::{AuthKey, EntityName, RuntimeManifest};
use brisk_store::{AuthStore, SqliteStore, Store};
use reqwest::Method;
use serde_json::Value;
use tempfile::TempDir;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use brisk_controller::bootstrap::{GUEST_KEY, SYSTEM_KEY};
pub use serde_json::json;

/// A running server over its own data directory.
pub struct TestServer {
    pub base: String,
    pub store: Arc<SqliteStore>,
    dir: TempDir,
    http: reqwest::Client,
    shutdown: CancellationToken,
    task: JoinHandle<std::io::Result<()>>,
}

impl TestServer {
    /// Starts a server over a fresh temporary data directory.
    pub async fn start() -> Self {
        Self::start_in(tempfile::tempdir().expect("create temp dir")).await
    }

    /// Starts a server over `dir` (bootstrapping it if new).
    pub async fn start_in(dir: TempDir) -> Self {
        let store = Arc::new(SqliteStore::open(dir.path()).expect("open store"));
        let config = ControllerConfig::default();
        bootstrap::bootstrap(store.as_ref(), &config.limits)
            .await
            .expect("bootstrap");
        let dyn_store: Arc<dyn Store> = store.clone();
        let controller = Controller::new(config, dyn_store, Arc::new(RuntimeManifest::builtin()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("local addr"));
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(brisk_controller::serve(
            listener,
            controller.router(),
            shutdown.clone(),
        ));
        Self {
            base,
            store,
            dir,
            http: reqwest::Client::new(),
            shutdown,
            task,
        }
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Stops the server gracefully and hands back its data directory.
    pub async fn stop(self) -> TempDir {
        self.shutdown.cancel();
        self.task
            .await
            .expect("server task")
            .expect("server exits cleanly");
        self.dir
    }

    /// Creates namespace `ns` with a fresh key and returns the key (`uuid:key`).
    pub async fn create_namespace(&self, ns: &str) -> String {
        let key = AuthKey::generate();
        let name = EntityName::namespace(ns).expect("valid namespace");
        self.store
            .create_namespace(ns, &name, &key)
            .await
            .expect("create namespace");
        key.to_string()
    }

    pub fn as_guest(&self) -> Caller<'_> {
        self.as_key(GUEST_KEY)
    }

    pub fn as_system(&self) -> Caller<'_> {
        self.as_key(SYSTEM_KEY)
    }

    pub fn as_key(&self, key: &str) -> Caller<'_> {
        Caller {
            srv: self,
            auth: Some(basic(key)),
        }
    }

    /// No `Authorization` header at all.
    pub fn anonymous(&self) -> Caller<'_> {
        Caller {
            srv: self,
            auth: None,
        }
    }

    /// A raw `Authorization` header value.
    pub fn with_authorization(&self, value: &str) -> Caller<'_> {
        Caller {
            srv: self,
            auth: Some(value.to_owned()),
        }
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.as_guest().get(path).await
    }

    pub async fn put(&self, path: &str, body: Value) -> Resp {
        self.as_guest().put(path, body).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Resp {
        self.as_guest().post(path, body).await
    }

    pub async fn delete(&self, path: &str) -> Resp {
        self.as_guest().delete(path).await
    }

    /// Creates a nodejs action as guest and asserts success.
    pub async fn create_action(&self, path: &str, extra: Value) -> Value {
        let mut body =
            json!({"exec": {"kind": "nodejs:20", "code": "function main(a) { return a }"}});
        merge(&mut body, extra);
        self.put(path, body).await.ok()
    }
}

/// Shallow-merges the fields of `extra` (an object) into `base`.
pub fn merge(base: &mut Value, extra: Value) {
    if let (Value::Object(b), Value::Object(e)) = (base, extra) {
        b.extend(e);
    }
}

pub fn basic(key: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(key)
    )
}

fn url(base: &str, path: &str) -> String {
    if path.starts_with('/') {
        format!("{base}{path}")
    } else {
        format!("{base}/api/v1/namespaces/_/{path}")
    }
}

/// Requests as one identity.
pub struct Caller<'a> {
    srv: &'a TestServer,
    auth: Option<String>,
}

impl Caller<'_> {
    pub async fn get(&self, path: &str) -> Resp {
        self.send(Method::GET, path, &[], None).await
    }

    pub async fn put(&self, path: &str, body: Value) -> Resp {
        self.send(Method::PUT, path, &[], Some(json_bytes(&body)))
            .await
    }

    pub async fn post(&self, path: &str, body: Value) -> Resp {
        self.send(Method::POST, path, &[], Some(json_bytes(&body)))
            .await
    }

    pub async fn delete(&self, path: &str) -> Resp {
        self.send(Method::DELETE, path, &[], None).await
    }

    /// Any request: `body` is sent as-is with the given headers (no content type added).
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Resp {
        let mut rb = self.srv.http.request(method, url(&self.srv.base, path));
        if let Some(a) = &self.auth {
            rb = rb.header("authorization", a);
        }
        let has_type = headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"));
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        if let Some(b) = body {
            if !has_type {
                rb = rb.header("content-type", "application/json");
            }
            rb = rb.body(b);
        }
        let res = rb.send().await.expect("send request");
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let text = res.text().await.expect("read body");
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Resp {
            status,
            headers,
            text,
            body,
        }
    }
}

fn json_bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).expect("serialize")
}

/// A response, read completely.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
    /// The body as JSON (`Null` if it is not JSON).
    pub body: Value,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts 200 and returns the JSON body.
    #[track_caller]
    pub fn ok(self) -> Value {
        assert_eq!(
            self.status, 200,
            "expected 200, got {}: {}",
            self.status, self.text
        );
        self.body
    }

    /// Asserts `status` and the OpenWhisk error envelope `{"error", "code"}` with `code` equal to
    /// the `X-Request-ID` header; returns the message.
    #[track_caller]
    pub fn err(&self, status: u16) -> String {
        assert_eq!(
            self.status, status,
            "unexpected status; body: {}",
            self.text
        );
        let obj = self
            .body
            .as_object()
            .unwrap_or_else(|| panic!("error body is not a JSON object: {:?}", self.text));
        let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["code", "error"], "envelope keys of {}", self.text);
        let tid = self.header("x-request-id").expect("X-Request-ID header");
        assert_eq!(obj["code"], Value::from(tid), "code must be the request id");
        assert_eq!(
            self.header("content-type"),
            Some("application/json"),
            "error content type"
        );
        obj["error"].as_str().expect("error is a string").to_owned()
    }

    /// Asserts `status`, the envelope and the exact message.
    #[track_caller]
    pub fn err_msg(&self, status: u16, message: &str) {
        assert_eq!(self.err(status), message, "message for {status}");
    }

    /// Asserts `status`, the envelope and that the message contains `part`.
    #[track_caller]
    pub fn err_contains(&self, status: u16, part: &str) {
        let msg = self.err(status);
        assert!(
            msg.contains(part),
            "message {msg:?} should contain {part:?}"
        );
    }
}

/// `names` of the entities in a list response, in order.
pub fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .expect("list is an array")
        .iter()
        .map(|e| e["name"].as_str().expect("name").to_owned())
        .collect()
}

/// The value of annotation or parameter `key` in a `[{"key","value"}]` list.
pub fn kv<'v>(list: &'v Value, key: &str) -> Option<&'v Value> {
    list.as_array()?
        .iter()
        .find(|e| e["key"] == key)
        .map(|e| &e["value"])
}

/// Keys of a `[{"key","value"}]` list, in order.
pub fn keys(list: &Value) -> Vec<String> {
    list.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e["key"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}
