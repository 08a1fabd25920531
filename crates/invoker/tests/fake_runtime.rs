//! Protocol corner cases with a scripted runtime proxy: a container that answers `/run` with
//! 503 (shutting down) makes the activation move to another container; a runtime that dies
//! before it answers fails its start at once.

mod common;

use std::time::{Duration, Instant};

use brisk_model::StatusCode;
use common::*;
use serde_json::json;

/// Serves `/init` (and the readiness probe) on the socket it is given as stdin, answers the
/// first `/run` with its pid and every later one with 503.
const FAKE_PROXY: &str = r#"
import json, os, socket, socketserver, sys, http.server
SENTINEL = 'XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX'
runs = 0
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    def log_message(self, *a):
        pass
    def do_POST(self):
        global runs
        n = int(self.headers.get('Content-Length', 0))
        body = json.loads(self.rfile.read(n) or b'{}')
        status, out = 200, {'ok': True}
        if self.path == '/run':
            runs += 1
            tag = '\x01' + body.get('activation_id', '') + '\x02'
            for f in (sys.stdout, sys.stderr):
                f.write(tag + SENTINEL + '\n')
                f.flush()
            status, out = (200, {'pid': os.getpid()}) if runs == 1 else (503, {'error': 'going away'})
        data = json.dumps(out).encode()
        self.send_response(status)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(data)))
        self.end_headers()
        self.wfile.write(data)
server = socketserver.UnixStreamServer(None, H, bind_and_activate=False)
server.socket = socket.socket(fileno=int(os.environ['BRISK_LISTEN_FD']))
server.serve_forever()
"#;

#[tokio::test]
async fn a_503_from_a_warm_container_moves_the_activation() {
    let f = fake_invoker(FAKE_PROXY).await;
    let inv = &f.inv;
    let a = std::sync::Arc::new(action("flaky", code("fake:1", "unused")));
    let first = inv.run(job(&a, json!({}))).await;
    assert_eq!(first.response.status_code, StatusCode::Success, "{first:?}");
    let second = inv.run(job(&a, json!({}))).await;
    assert_eq!(
        second.response.status_code,
        StatusCode::Success,
        "{second:?}"
    );
    assert_ne!(result(&first)["pid"], result(&second)["pid"]);
    assert!(
        second.annotations.get("initTime").is_some(),
        "ran on a new container"
    );
    assert_eq!(inv.stats().cold_starts, 2);
    inv.shutdown().await;
}

/// The proxy is the only holder of its socket, so a runtime that exits, fails to load or is
/// killed before it answers fails its start at once (the platform's error, no initTime), not
/// when the action's time limit (60 s) runs out with a timeout blamed on the developer.
#[tokio::test]
async fn a_runtime_that_dies_before_answering_fails_its_start_at_once() {
    let cases = [
        ("exits", "import sys\nsys.exit(3)\n"),
        ("syntax-error", "def broken(:\n"),
        (
            "killed",
            "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n",
        ),
    ];
    for (name, proxy) in cases {
        let f = fake_invoker(proxy).await;
        let a = std::sync::Arc::new(action(name, code("fake:1", "unused")));
        assert_eq!(a.limits.timeout, 60_000);
        let t0 = Instant::now();
        let act = f.inv.run(job(&a, json!({}))).await;
        let took = t0.elapsed();
        assert_eq!(
            act.response.status_code,
            StatusCode::WhiskError,
            "{name}: {act:?}"
        );
        assert_eq!(
            result(&act),
            json!({"error": "Failed to provision resources to run the action."}),
            "{name}"
        );
        assert!(act.annotations.get("initTime").is_none(), "{name}: {act:?}");
        assert!(
            took < Duration::from_secs(30),
            "{name}: the start failed only after {took:?}"
        );
        assert_eq!(f.inv.stats().live_containers, 0, "{name}");
        f.inv.shutdown().await;
    }
}
