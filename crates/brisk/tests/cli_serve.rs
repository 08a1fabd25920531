//! The real `brisk` binary: `brisk serve` start-up output, graceful shutdown, configuration
//! errors, and `brisk admin` against a data directory that a server then uses.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

const BRISK: &str = env!("CARGO_BIN_EXE_brisk");
const GUEST_KEY: &str = "23bc46b1-71f6-4ed5-8c54-816aa4f8c502:123zO3xZCLrMN6v2BKK1dXYFpXlPkccOFqm12CdAsMgRU4VrNZ9lyGVCGuMDGIwP";
/// Generous bounds: these guard against hangs, they do not measure speed.
const START_TIMEOUT: Duration = Duration::from_secs(30);
const EXIT_TIMEOUT: Duration = Duration::from_secs(20);
const EX_USAGE: i32 = 64;

/// A `brisk` command with no `BRISK_*` settings inherited from the environment.
fn brisk(args: &[&str]) -> Command {
    let mut cmd = Command::new(BRISK);
    cmd.args(args);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("BRISK_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("BRISK_LOG", "warn");
    cmd
}

fn admin(dir: &Path, args: &[&str]) -> Output {
    let mut all = vec!["admin", "--data-dir", dir.to_str().expect("utf-8 path")];
    all.extend_from_slice(args);
    brisk(&all).output().expect("run brisk admin")
}

#[track_caller]
fn stdout_ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "status {:?}, stderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).expect("utf-8 stdout")
}

/// A running `brisk serve`; killed on drop if still running.
struct Server {
    child: Child,
    base: String,
    /// Lines printed on stdout at start-up, up to and including the `wsk property set` line.
    banner: Vec<String>,
}

/// `brisk serve` on a free port over `dir`, without stem cells.
fn serve(dir: &Path) -> Command {
    brisk(&[
        "serve",
        "--port",
        "0",
        "--prewarm",
        "false",
        "--data-dir",
        dir.to_str().expect("utf-8 path"),
    ])
}

impl Server {
    fn start(dir: &Path) -> Self {
        let mut child = serve(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn brisk serve");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + START_TIMEOUT;
        let mut banner = Vec::new();
        let mut base = None;
        while !banner
            .iter()
            .any(|l: &String| l.contains("wsk property set"))
        {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx
                .recv_timeout(left)
                .unwrap_or_else(|e| panic!("no start-up banner ({e}); got {banner:?}"));
            if let Some(rest) = line.split("OpenWhisk API on ").nth(1) {
                base = rest.split_whitespace().next().map(str::to_owned);
            }
            banner.push(line);
        }
        let base = base.unwrap_or_else(|| panic!("no address in {banner:?}"));
        Server {
            child,
            base,
            banner,
        }
    }

    fn get(&self, path: &str, key: &str) -> (u16, Value) {
        let auth = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(key)
        );
        let res = reqwest::blocking::Client::new()
            .get(format!("{}{path}", self.base))
            .header("authorization", auth)
            .send()
            .expect("request");
        let status = res.status().as_u16();
        (status, res.json().unwrap_or(Value::Null))
    }

    /// Sends SIGTERM and waits for the exit status.
    fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let kill = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run kill");
        assert!(kill.success(), "kill -TERM {pid}");
        let deadline = Instant::now() + EXIT_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "brisk serve did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[test]
fn serve_prints_the_address_and_guest_key_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().expect("temp dir");
    let srv = Server::start(dir.path());
    assert!(srv.base.starts_with("http://127.0.0.1:"), "{}", srv.base);
    assert!(
        !srv.base.ends_with(":0"),
        "the bound port is printed: {}",
        srv.base
    );
    assert!(
        srv.banner
            .iter()
            .any(|l| l.contains("guest key") && l.contains(GUEST_KEY)),
        "{:?}",
        srv.banner
    );
    let wsk = srv
        .banner
        .iter()
        .find(|l| l.contains("wsk property set"))
        .expect("wsk line");
    assert!(
        wsk.contains(&format!("--apihost {}", srv.base))
            && wsk.contains(&format!("--auth {GUEST_KEY}")),
        "{wsk}"
    );

    // It serves the API with the printed key.
    assert_eq!(
        srv.get("/api/v1/namespaces", GUEST_KEY),
        (200, json!(["guest"]))
    );
    let (status, utils) = srv.get("/api/v1/namespaces/whisk.system/packages/utils", GUEST_KEY);
    assert_eq!(status, 200, "{utils}");

    let status = srv.terminate();
    assert_eq!(status.code(), Some(0), "graceful exit: {status:?}");
}

#[test]
fn sigint_also_stops_the_server() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut srv = Server::start(dir.path());
    // The banner is printed before the signal handlers are installed (reported); one request
    // first makes sure the server is past that point.
    assert_eq!(srv.get("/api/v1/namespaces", GUEST_KEY).0, 200);
    let pid = srv.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .expect("kill")
            .success()
    );
    let deadline = Instant::now() + EXIT_TIMEOUT;
    let status = loop {
        if let Some(s) = srv.child.try_wait().expect("try_wait") {
            break s;
        }
        assert!(Instant::now() < deadline, "no exit after SIGINT");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
}

#[test]
fn bad_configuration_exits_with_64_before_touching_anything() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let data = data.to_str().expect("utf-8");
    let missing = dir.path().join("missing.json");
    for args in [
        vec![
            "serve",
            "--host",
            "not-an-ip",
            "--port",
            "0",
            "--data-dir",
            data,
        ],
        vec![
            "serve",
            "--port",
            "0",
            "--runtimes",
            missing.to_str().expect("utf-8"),
            "--data-dir",
            data,
        ],
        vec![
            "serve",
            "--port",
            "0",
            "--blocking-timeout-ms",
            "0",
            "--data-dir",
            data,
        ],
    ] {
        let out = brisk(&args).output().expect("run brisk");
        assert_eq!(out.status.code(), Some(EX_USAGE), "{args:?}: {out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "one-line message for {args:?}: {stderr}");
        assert!(lines[0].starts_with("error: "), "{stderr}");
        assert!(out.stdout.is_empty(), "nothing printed on stdout");
        assert!(
            !Path::new(data).exists(),
            "the data dir is not created: {args:?}"
        );
    }
    let out = brisk(&[
        "serve",
        "--host",
        "not-an-ip",
        "--port",
        "0",
        "--data-dir",
        data,
    ])
    .output()
    .expect("run brisk");
    assert!(String::from_utf8_lossy(&out.stderr).contains("not-an-ip"));
}

#[test]
fn admin_manages_namespaces_a_server_then_honours() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();

    let key = stdout_ok(&admin(d, &["create", "alice"])).trim().to_owned();
    let (uuid, secret) = key.split_once(':').expect("uuid:key");
    assert_eq!(uuid.len(), 36, "{key}");
    assert_eq!(secret.len(), 64, "{key}");
    assert!(secret.chars().all(|c| c.is_ascii_alphanumeric()));
    let bob = stdout_ok(&admin(
        d,
        &[
            "create",
            "bob",
            "--subject",
            "team",
            "--key",
            &format!("{uuid}0:{secret}"),
        ],
    ));
    assert_eq!(bob.trim(), format!("{uuid}0:{secret}"));

    let list = stdout_ok(&admin(d, &["list"]));
    let rows: Vec<Vec<&str>> = list.lines().map(|l| l.split('\t').collect()).collect();
    assert!(rows.contains(&vec!["alice", "alice", uuid]), "{list}");
    assert!(
        rows.iter().any(|r| r[0] == "bob" && r[1] == "team"),
        "{list}"
    );
    assert!(!list.contains(secret), "keys are never shown");

    let limits = stdout_ok(&admin(
        d,
        &[
            "limits",
            "alice",
            "--invocations-per-minute",
            "7",
            "--allowed-kinds",
            "nodejs:20,python:3.11",
        ],
    ));
    let limits: Value = serde_json::from_str(limits.trim()).expect("limits JSON");
    assert_eq!(limits["invocationsPerMinute"], 7);

    // Mistakes are reported with a non-zero status.
    assert!(
        !admin(d, &["create", "alice"]).status.success(),
        "duplicate"
    );
    assert_eq!(
        admin(d, &["create", "bad$name"]).status.code(),
        Some(EX_USAGE)
    );
    assert_eq!(
        admin(d, &["create", "carol", "--key", "nocolon"])
            .status
            .code(),
        Some(EX_USAGE)
    );
    assert!(!admin(d, &["delete", "nobody"]).status.success());
    assert!(!admin(d, &["block", "nobody"]).status.success());
    assert!(
        !admin(d, &["limits", "nobody", "--fires-per-minute", "1"])
            .status
            .success()
    );

    // A server started on the directory accepts the new keys and shows the limits.
    let srv = Server::start(d);
    assert_eq!(srv.get("/api/v1/namespaces", &key), (200, json!(["alice"])));
    let (status, l) = srv.get("/api/v1/namespaces/_/limits", &key);
    assert_eq!(status, 200, "{l}");
    assert_eq!(l["invocationsPerMinute"], 7);
    assert_eq!(l["allowedKinds"], json!(["nodejs:20", "python:3.11"]));
    assert_eq!(
        srv.get("/api/v1/namespaces", GUEST_KEY),
        (200, json!(["guest"]))
    );
    assert_eq!(srv.terminate().code(), Some(0));

    // Blocked subjects and deleted namespaces no longer authenticate.
    assert!(stdout_ok(&admin(d, &["block", "team"])).contains("blocked"));
    assert!(stdout_ok(&admin(d, &["delete", "alice"])).contains("alice"));
    let list = stdout_ok(&admin(d, &["list"]));
    assert!(
        list.lines()
            .any(|l| l.starts_with("bob\t") && l.ends_with("(blocked)")),
        "{list}"
    );
    assert!(!list.lines().any(|l| l.starts_with("alice\t")), "{list}");
    let srv = Server::start(d);
    for k in [key.as_str(), bob.trim()] {
        let (status, body) = srv.get("/api/v1/namespaces", k);
        assert_eq!(status, 401, "{body}");
        assert_eq!(body["error"], "The supplied authentication is invalid");
    }
    assert_eq!(srv.get("/api/v1/namespaces", GUEST_KEY).0, 200);
    assert_eq!(srv.terminate().code(), Some(0));

    // Unblocking restores access.
    stdout_ok(&admin(d, &["unblock", "team"]));
    let srv = Server::start(d);
    assert_eq!(
        srv.get("/api/v1/namespaces", bob.trim()),
        (200, json!(["bob"]))
    );
    assert_eq!(srv.terminate().code(), Some(0));
}

#[test]
fn data_survives_a_server_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let srv = Server::start(dir.path());
    let auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(GUEST_KEY)
    );
    let res = reqwest::blocking::Client::new()
        .put(format!("{}/api/v1/namespaces/_/triggers/kept", srv.base))
        .header("authorization", auth)
        .json(&json!({"parameters": [{"key": "a", "value": 1}]}))
        .send()
        .expect("request");
    assert_eq!(res.status().as_u16(), 200);
    assert_eq!(srv.terminate().code(), Some(0));

    let srv = Server::start(dir.path());
    let (status, t) = srv.get("/api/v1/namespaces/_/triggers/kept", GUEST_KEY);
    assert_eq!(status, 200, "{t}");
    assert_eq!(t["parameters"], json!([{"key": "a", "value": 1}]));
    assert_eq!(srv.terminate().code(), Some(0));
}

#[test]
fn a_second_server_on_the_same_data_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let first = Server::start(dir.path());
    let out = serve(dir.path())
        .output()
        .expect("run a second brisk serve");
    assert!(!out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("is in use by another `brisk serve`"),
        "{stderr}"
    );
    // The first server is untouched and still answers.
    let (status, _) = first.get("/api/v1", "");
    assert_eq!(status, 200);
    assert!(first.terminate().success());
    // Once it has stopped, the directory can be served again.
    let again = Server::start(dir.path());
    assert!(again.terminate().success());
}
