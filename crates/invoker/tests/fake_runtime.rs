//! Protocol corner cases with a scripted runtime proxy: a container that answers `/run` with
//! 503 (shutting down) makes the activation move to another container.

mod common;

use std::sync::Arc;

use brisk_invoker::{Invoker, InvokerConfig};
use brisk_model::{RuntimeManifest, StatusCode};
use common::*;
use serde_json::json;

/// Serves `/init`, answers the first `/run` with its pid and every later one with 503.
const FAKE_PROXY: &str = r#"
import json, os, socketserver, sys, http.server
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
socketserver.UnixStreamServer(os.environ['BRISK_SOCKET'], H).serve_forever()
"#;

#[tokio::test]
async fn a_503_from_a_warm_container_moves_the_activation() {
    let dir = tempfile::Builder::new()
        .prefix("bf")
        .tempdir_in("/tmp")
        .unwrap();
    let runtimes = dir.path().join("runtimes");
    std::fs::create_dir_all(runtimes.join("fake")).unwrap();
    std::fs::write(runtimes.join("fake/proxy.py"), FAKE_PROXY).unwrap();
    let mut manifest = RuntimeManifest::builtin();
    let mut fake = manifest.runtimes["python"][0].clone();
    fake.kind = "fake:1".into();
    fake.proxy = "fake".into();
    fake.default = true;
    fake.stem_cells.clear();
    manifest.runtimes.insert("fake".into(), vec![fake]);
    let mut config = InvokerConfig::new(dir.path().join("run"), &runtimes);
    config.prewarm = false;
    config.user_memory_mb = 1024;
    let inv = Invoker::start(config, Arc::new(manifest)).await.unwrap();

    let a = Arc::new(action("flaky", code("fake:1", "unused")));
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
