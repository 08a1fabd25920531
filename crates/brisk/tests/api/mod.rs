//! Harness for API tests: a real `brisk serve` process over a temporary data directory, and a
//! blocking HTTP client acting as `guest`.
#![allow(
    dead_code,
    reason = "each test binary uses a different part of the harness"
)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use base64::Engine;
pub use serde_json::{Value, json};

pub const BRISK: &str = env!("CARGO_BIN_EXE_brisk");
pub const GUEST_KEY: &str = "23bc46b1-71f6-4ed5-8c54-816aa4f8c502:123zO3xZCLrMN6v2BKK1dXYFpXlPkccOFqm12CdAsMgRU4VrNZ9lyGVCGuMDGIwP";
pub const SYSTEM_KEY: &str = "789c46b1-71f6-4ed5-8c54-816aa4f8c502:abczO3xZCLrMN6v2BKK1dXYFpXlPkccOFqm12CdAsMgRU4VrNZ9lyGVCGuMDGIwP";
/// Guards against hangs; not a speed assertion.
const PATIENCE: Duration = Duration::from_secs(30);

pub struct Brisk {
    child: Option<Child>,
    pub base: String,
    pub dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    http: reqwest::blocking::Client,
}

pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }
}

impl Brisk {
    /// Starts a server with extra `brisk serve` flags over a fresh data directory.
    pub fn start(args: &[&str]) -> Self {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = tmp.path().to_path_buf();
        let mut b = Self::start_in(&dir, args);
        b._tmp = Some(tmp);
        b
    }

    /// Starts a server over `dir` (kept after the server stops).
    pub fn start_in(dir: &Path, args: &[&str]) -> Self {
        let mut cmd = Command::new(BRISK);
        cmd.args(["serve", "--port", "0", "--data-dir"]).arg(dir);
        if !args.contains(&"--pause-grace-ms") {
            cmd.args(["--pause-grace-ms", "60000"]);
        }
        cmd.args(args)
            .env("BRISK_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("BRISK_") && k != "BRISK_LOG" {
                cmd.env_remove(k);
            }
        }
        let mut child = cmd.spawn().expect("spawn brisk serve");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let base = loop {
            let line = rx.recv_timeout(PATIENCE).expect("server start-up line");
            if let Some(rest) = line.split("OpenWhisk API on ").nth(1) {
                break rest.split_whitespace().next().expect("address").to_owned();
            }
        };
        Self {
            child: Some(child),
            base,
            dir: dir.to_path_buf(),
            _tmp: None,
            http: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(120))
                .build()
                .expect("client"),
        }
    }

    /// Stops the server with SIGTERM and waits for it to exit; returns its exit success.
    pub fn stop(&mut self) -> bool {
        let Some(mut child) = self.child.take() else {
            return true;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status.success();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    pub fn url(&self, path: &str) -> String {
        if path.starts_with('/') {
            format!("{}{path}", self.base)
        } else {
            format!("{}/api/v1/namespaces/_/{path}", self.base)
        }
    }

    /// A request as `key` (None = anonymous) with optional JSON body and extra headers.
    pub fn send(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<Vec<u8>>,
        headers: &[(&str, &str)],
    ) -> Resp {
        let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self.http.request(m, self.url(path));
        if let Some(k) = key {
            let b64 = base64::engine::general_purpose::STANDARD.encode(k);
            req = req.header("Authorization", format!("Basic {b64}"));
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.body(b);
        }
        let res = req.send().expect("request");
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let text = res.text().unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Resp {
            status,
            headers,
            body,
            text,
        }
    }

    fn json(&self, method: &str, path: &str, body: &Value) -> Resp {
        self.send(
            method,
            path,
            Some(GUEST_KEY),
            Some(body.to_string().into_bytes()),
            &[("Content-Type", "application/json")],
        )
    }

    pub fn get(&self, path: &str) -> Resp {
        self.send("GET", path, Some(GUEST_KEY), None, &[])
    }

    pub fn put(&self, path: &str, body: Value) -> Resp {
        self.json("PUT", path, &body)
    }

    pub fn post(&self, path: &str, body: Value) -> Resp {
        self.json("POST", path, &body)
    }

    pub fn delete(&self, path: &str) -> Resp {
        self.send("DELETE", path, Some(GUEST_KEY), None, &[])
    }

    /// Creates (or replaces) an action and asserts success.
    pub fn action(&self, name: &str, kind: &str, code: &str, extra: Value) -> Value {
        let mut body = json!({"exec": {"kind": kind, "code": code}});
        if let (Value::Object(b), Value::Object(e)) = (&mut body, extra) {
            for (k, v) in e {
                if k == "exec" {
                    if let (Some(Value::Object(be)), Value::Object(ee)) = (b.get_mut("exec"), v) {
                        be.extend(ee);
                    }
                } else {
                    b.insert(k, v);
                }
            }
        }
        let r = self.put(&format!("actions/{name}?overwrite=true"), body);
        assert_eq!(r.status, 200, "create {name}: {}", r.text);
        r.body
    }

    /// Blocking invoke; returns the response (full activation unless `result`).
    pub fn invoke(&self, name: &str, args: Value) -> Resp {
        self.post(&format!("actions/{name}?blocking=true"), args)
    }

    pub fn invoke_result(&self, name: &str, args: Value) -> Resp {
        self.post(&format!("actions/{name}?blocking=true&result=true"), args)
    }

    /// Waits until the activation record exists and returns it.
    pub fn activation(&self, id: &str) -> Value {
        self.wait_for(&format!("activations/{id}"), |r| r.status == 200)
            .body
    }

    /// Polls `path` until `done` holds (guards against hangs only).
    pub fn wait_for(&self, path: &str, done: impl Fn(&Resp) -> bool) -> Resp {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let r = self.get(path);
            if done(&r) {
                return r;
            }
            assert!(
                Instant::now() < deadline,
                "gave up waiting for {path}: {}",
                r.text
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

impl Drop for Brisk {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Value of an annotation in an activation or entity.
pub fn annotation<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v["annotations"]
        .as_array()?
        .iter()
        .find(|a| a["key"] == key)
        .map(|a| &a["value"])
}

/// A zip archive (base64) of `(path, contents, executable)` entries.
pub fn zip_b64(files: &[(&str, &str, bool)]) -> String {
    use std::io::Write;
    let mut buf = std::io::Cursor::new(Vec::new());
    {
        let mut z = zip::ZipWriter::new(&mut buf);
        for (name, text, exec) in files {
            let mode = if *exec { 0o755 } else { 0o644 };
            let opts = zip::write::SimpleFileOptions::default().unix_permissions(mode);
            z.start_file(*name, opts).expect("zip entry");
            z.write_all(text.as_bytes()).expect("zip write");
        }
        z.finish().expect("zip finish");
    }
    base64::engine::general_purpose::STANDARD.encode(buf.into_inner())
}
