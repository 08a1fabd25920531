//! Invocation through the OpenWhisk API against a real `brisk serve`: every runtime kind, every
//! outcome class and its HTTP code, logs, limits, warm reuse, the 202 hand-off and records.

mod api;

use api::*;

#[test]
fn node_python_and_native_actions_run_plain_and_zipped() {
    let b = Brisk::start(&[]);
    // Node, plain.
    b.action(
        "n",
        "nodejs:20",
        "function main(p) { return {hello: p.name, kind: 'node'} }",
        json!({}),
    );
    let r = b.invoke_result("n", json!({"name": "❄ ☃ ❄"}));
    assert_eq!(
        (r.status, &r.body),
        (200, &json!({"hello": "❄ ☃ ❄", "kind": "node"}))
    );
    assert_eq!(
        r.header("x-openwhisk-activation-id").map(|h| h.len()),
        Some(32)
    );
    // Python, plain, non-default main.
    b.action(
        "py",
        "python:default",
        "def handler(args):\n    return {'sum': args['a'] + args['b']}\n",
        json!({"exec": {"main": "handler"}}),
    );
    assert_eq!(
        b.invoke_result("py", json!({"a": 2, "b": 3})).body,
        json!({"sum": 5})
    );
    // Node zip with package.json and a nested main file.
    let zip = zip_b64(&[
        ("package.json", r#"{"main": "lib/app.js"}"#, false),
        (
            "lib/app.js",
            "exports.main = p => ({zipped: true, dep: require('./dep').v})",
            false,
        ),
        ("lib/dep.js", "exports.v = 7", false),
    ]);
    b.action("nz", "nodejs:20", &zip, json!({}));
    assert_eq!(
        b.invoke_result("nz", json!({})).body,
        json!({"zipped": true, "dep": 7})
    );
    // Python zip with __main__.py.
    let zip = zip_b64(&[
        (
            "__main__.py",
            "from helper import f\ndef main(a):\n    return {'v': f()}\n",
            false,
        ),
        ("helper.py", "def f():\n    return 'from zip'\n", false),
    ]);
    b.action("pz", "python:3.11", &zip, json!({}));
    assert_eq!(
        b.invoke_result("pz", json!({})).body,
        json!({"v": "from zip"})
    );
    // Native script (dockerskeleton contract: argv[1] is the JSON, last stdout line the result).
    let r = b.put(
        "actions/sh?overwrite=true",
        json!({"exec": {"kind": "blackbox", "image": "openwhisk/dockerskeleton",
               "code": "#!/bin/bash\necho log line\necho \"{\\\"args\\\": $1}\"\n"}}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let r = b.invoke("sh", json!({"x": 1}));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["response"]["result"]["args"]["x"], 1);
    // Native zip with `exec` at the top.
    let zip = zip_b64(&[("exec", "#!/bin/sh\necho '{\"native\": \"zip\"}'\n", true)]);
    let r = b.put(
        "actions/nzip?overwrite=true",
        json!({"exec": {"kind": "blackbox", "image": "openwhisk/dockerskeleton", "code": zip}}),
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        b.invoke_result("nzip", json!({})).body,
        json!({"native": "zip"})
    );
    // Other images cannot be pulled here.
    b.put(
        "actions/img?overwrite=true",
        json!({"exec": {"kind": "blackbox", "image": "someone/custom:1"}}),
    );
    let r = b.invoke("img", json!({}));
    assert_eq!(r.status, 502, "{}", r.text);
    assert_eq!(r.body["response"]["status"], "action developer error");
    // The public catalogue runs for guest.
    let r = b.post(
        "/api/v1/namespaces/whisk.system/actions/utils/sort?blocking=true&result=true",
        json!({"lines": ["b", "c", "a"]}),
    );
    assert_eq!(r.body, json!({"lines": ["a", "b", "c"], "length": 3}));
}

#[test]
fn zipped_code_is_unpacked_when_the_action_is_saved() {
    let b = Brisk::start(&[]);
    let cache = b.dir.join("run/.code");
    // Unpacked versions (temporary directories of an unpacking in progress start with '.').
    let entries = || -> Vec<std::path::PathBuf> {
        let mut v: Vec<_> = std::fs::read_dir(&cache)
            .map(|d| {
                d.flatten()
                    .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                    .map(|e| e.path())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    };
    let wait_for_entries = |n: usize| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while entries().len() < n {
            assert!(
                std::time::Instant::now() < deadline,
                "no unpacked code after saving: {:?}",
                entries()
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        entries()
    };
    let zip = |v: u32| {
        zip_b64(&[
            ("package.json", r#"{"main": "app.js"}"#, false),
            (
                "app.js",
                &format!("exports.main = () => ({{v: {v}, dep: require('dep')}})"),
                false,
            ),
            ("node_modules/dep/index.js", "module.exports = 'dep'", false),
        ])
    };
    b.action("z", "nodejs:20", &zip(1), json!({}));
    // Unpacked before anything invoked it.
    let first = wait_for_entries(1);
    assert_eq!(first.len(), 1);
    assert!(first[0].join("node_modules/dep/index.js").is_file());
    assert_eq!(
        b.invoke_result("z", json!({})).body,
        json!({"v": 1, "dep": "dep"})
    );
    // Its containers link that tree: still one version unpacked.
    assert_eq!(entries(), first);
    // An update is unpacked ahead too, and runs.
    b.action("z", "nodejs:20", &zip(2), json!({}));
    let both = wait_for_entries(2);
    assert!(both.contains(&first[0]));
    assert_eq!(
        b.invoke_result("z", json!({})).body,
        json!({"v": 2, "dep": "dep"})
    );
    // Plain code has nothing to unpack.
    b.action(
        "plain",
        "nodejs:20",
        "function main() { return {} }",
        json!({}),
    );
    assert_eq!(b.invoke_result("plain", json!({})).status, 200);
    assert_eq!(entries().len(), 2);
}

#[test]
fn outcomes_map_to_openwhisk_status_codes_and_records() {
    let b = Brisk::start(&[]);
    b.action(
        "ok",
        "nodejs:20",
        "function main() { return {a: 1} }",
        json!({}),
    );
    b.action(
        "app",
        "nodejs:20",
        "function main() { return {error: 'nope', other: 1} }",
        json!({}),
    );
    b.action(
        "throw",
        "nodejs:20",
        "function main() { throw new Error('boom') }",
        json!({}),
    );
    b.action("syntax", "nodejs:20", "function main( {", json!({}));
    b.action(
        "scalar",
        "nodejs:20",
        "function main() { return 42 }",
        json!({}),
    );
    b.action(
        "crash",
        "nodejs:20",
        "function main() { process.exit(3) }",
        json!({}),
    );
    b.action(
        "arr",
        "nodejs:20",
        "function main() { return [1, 2] }",
        json!({}),
    );
    let check = |name: &str, http: u16, status: &str| {
        let r = b.invoke(name, json!({}));
        assert_eq!(r.status, http, "{name}: {}", r.text);
        assert_eq!(r.body["response"]["status"], status, "{name}: {}", r.text);
        assert!(
            r.body["response"].get("statusCode").is_none(),
            "API form hides statusCode"
        );
        r.body
    };
    check("ok", 200, "success");
    let app = check("app", 502, "application error");
    assert_eq!(app["response"]["result"], json!({"error": "nope"}));
    let t = check("throw", 502, "action developer error");
    assert!(
        t["response"]["result"]["error"]
            .as_str()
            .unwrap()
            .contains("boom")
    );
    check("syntax", 502, "action developer error");
    check("scalar", 502, "action developer error");
    let c = check("crash", 502, "action developer error");
    assert!(
        c["response"]["result"]["error"]
            .as_str()
            .unwrap()
            .contains("exited unexpectedly")
    );
    // An array result is returned as is, even without result=true.
    let r = b.invoke("arr", json!({}));
    assert_eq!((r.status, r.body), (200, json!([1, 2])));
    // result=true on an error gives only the result.
    let r = b.invoke_result("app", json!({}));
    assert_eq!((r.status, r.body), (502, json!({"error": "nope"})));
    // The list exposes statusCode in summaries.
    let list = b.get("activations?name=app&limit=1").body;
    assert_eq!(list[0]["statusCode"], 1);
    // Missing actions and bad queries.
    assert_eq!(b.invoke("missing", json!({})).status, 404);
    assert_eq!(
        b.post("actions/ok?blocking=true&timeout=0", json!({}))
            .status,
        400
    );
    let big = "x".repeat(1024 * 1024 + 10);
    let r = b.post("actions/ok?blocking=true", json!({"big": big}));
    assert_eq!(r.status, 413, "{}", r.text);
    assert!(
        r.body["error"]
            .as_str()
            .unwrap()
            .starts_with("Request larger than allowed")
    );
}

#[test]
fn timeouts_logs_truncation_and_init_params() {
    let b = Brisk::start(&[]);
    b.action(
        "slow",
        "nodejs:20",
        "function main() { return new Promise(r => setTimeout(() => r({}), 20000)) }",
        // Long enough that even a loaded machine initializes in time; the run never finishes.
        json!({"limits": {"timeout": 2000}}),
    );
    let r = b.invoke("slow", json!({}));
    assert_eq!(r.status, 502, "{}", r.text);
    assert_eq!(
        r.body["response"]["result"]["error"],
        "The action exceeded its time limits of 2000 milliseconds."
    );
    assert_eq!(annotation(&r.body, "timeout"), Some(&json!(true)));

    b.action(
        "logs",
        "python:3.11",
        "import sys\ndef main(a):\n    print('out 1')\n    print('err 1', file=sys.stderr)\n    print('out 2')\n    return {}\n",
        json!({}),
    );
    let id = b.invoke("logs", json!({})).body["activationId"]
        .as_str()
        .unwrap()
        .to_owned();
    let logs = b.activation(&id)["logs"].clone();
    let lines: Vec<&str> = logs
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(
        lines[0].ends_with(" stdout: out 1") && lines[2].ends_with(" stdout: out 2"),
        "{lines:?}"
    );
    assert!(lines[1].ends_with(" stderr: err 1"), "{lines:?}");
    assert!(lines[0].len() > 30 && lines[0].as_bytes()[4] == b'-' && lines[0].contains('T'));
    assert_eq!(b.get(&format!("activations/{id}/logs")).body["logs"], logs);

    // Logs beyond limits.logs (1 MB) are cut with OpenWhisk's marker.
    b.action(
        "chatty",
        "nodejs:20",
        "function main() { for (let i = 0; i < 20000; i++) console.log('x'.repeat(100)); return {} }",
        json!({"limits": {"logs": 1}}),
    );
    let id = b.invoke("chatty", json!({})).body["activationId"]
        .as_str()
        .unwrap()
        .to_owned();
    let logs = b.activation(&id)["logs"].as_array().unwrap().clone();
    assert!(logs.len() < 20000);
    assert!(
        logs.last().unwrap().as_str().unwrap().contains(
            "Logs were truncated because the total bytes size exceeds the limit of 1048576 bytes."
        ),
        "{:?}",
        logs.last()
    );

    // init:true parameters arrive as environment at /init, not as arguments.
    b.action(
        "env",
        "nodejs:20",
        "function main(a) { return {secret: process.env.SECRET, args: Object.keys(a), ns: process.env.__OW_NAMESPACE, key: process.env.__OW_API_KEY || null} }",
        json!({"parameters": [{"key": "SECRET", "value": "s3", "init": true}, {"key": "plain", "value": 1}]}),
    );
    let r = b.invoke_result("env", json!({}));
    assert_eq!(r.body["secret"], "s3");
    assert_eq!(r.body["args"], json!(["plain"]));
    assert_eq!(r.body["ns"], "guest");
    assert_eq!(
        r.body["key"],
        Value::Null,
        "provide-api-key defaults to false"
    );
}

#[test]
fn warm_reuse_prewarm_concurrency_and_parameter_merging() {
    let b = Brisk::start(&[]);
    b.action(
        "w",
        "nodejs:20",
        "let n = 0; function main() { return {n: ++n} }",
        json!({}),
    );
    let first = b.invoke("w", json!({})).body;
    assert!(
        annotation(&first, "initTime").is_some(),
        "first run initialises: {first}"
    );
    let second = b.invoke("w", json!({})).body;
    assert!(
        annotation(&second, "initTime").is_none(),
        "warm run does not: {second}"
    );
    assert_eq!(
        second["response"]["result"]["n"], 2,
        "same container, state kept"
    );
    // Updating the action makes a new version: no reuse of the old container.
    b.action(
        "w",
        "nodejs:20",
        "let n = 100; function main() { return {n: ++n} }",
        json!({}),
    );
    assert_eq!(b.invoke_result("w", json!({})).body["n"], 101);

    // concurrency > 1: overlapping runs in one container, logs kept apart.
    b.action(
        "conc",
        "nodejs:20",
        "async function main(a) { console.log('start ' + a.i); await new Promise(r => setTimeout(r, 200)); console.log('end ' + a.i); return {i: a.i, pid: process.pid} }",
        json!({"limits": {"concurrency": 4}}),
    );
    // One run first, so the container exists; the overlapping runs then share it.
    b.invoke("conc", json!({"i": 99}));
    let b = std::sync::Arc::new(b);
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let b = b.clone();
            std::thread::spawn(move || b.invoke("conc", json!({"i": i})).body)
        })
        .collect();
    let results: Vec<Value> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    for r in &results {
        let i = r["response"]["result"]["i"].as_i64().unwrap();
        let rec = b.activation(r["activationId"].as_str().unwrap());
        let logs: Vec<String> = rec["logs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap().split(": ").last().unwrap().to_owned())
            .collect();
        assert_eq!(
            logs,
            vec![format!("start {i}"), format!("end {i}")],
            "logs of run {i}"
        );
    }
    let pids: std::collections::HashSet<_> = results
        .iter()
        .map(|r| r["response"]["result"]["pid"].clone())
        .collect();
    assert!(
        pids.len() < 4,
        "overlapping runs shared a container: {pids:?}"
    );

    // Parameters: package < binding < action < request.
    b.put("packages/p", json!({"parameters": [{"key": "a", "value": "pkg"}, {"key": "b", "value": "pkg"}, {"key": "c", "value": "pkg"}, {"key": "d", "value": "pkg"}]}));
    b.put("packages/bnd", json!({"binding": {"namespace": "_", "name": "p"}, "parameters": [{"key": "b", "value": "binding"}, {"key": "c", "value": "binding"}, {"key": "d", "value": "binding"}]}));
    let r = b.put(
        "actions/p/echo",
        json!({"exec": {"kind": "nodejs:20", "code": "function main(a) { return a }"},
               "parameters": [{"key": "c", "value": "action"}, {"key": "d", "value": "action"}]}),
    );
    assert_eq!(r.status, 200);
    let r = b.invoke("bnd/echo", json!({"d": "request"}));
    assert_eq!(
        r.body["response"]["result"],
        json!({"a": "pkg", "b": "binding", "c": "action", "d": "request"})
    );
    assert_eq!(annotation(&r.body, "binding"), Some(&json!("guest/bnd")));
    assert_eq!(annotation(&r.body, "path"), Some(&json!("guest/p/echo")));
    // `final` forbids overriding defined parameters.
    b.action("fin", "nodejs:20", "function main(a) { return a }", json!({"parameters": [{"key": "x", "value": 1}], "annotations": [{"key": "final", "value": true}]}));
    let r = b.invoke("fin", json!({"x": 2}));
    assert_eq!(r.status, 400);
    assert_eq!(
        r.body["error"],
        "Request defines parameters that are not allowed (e.g., reserved properties)."
    );
}

#[test]
fn blocking_wait_hands_off_with_202_and_records_arrive_later() {
    let b = Brisk::start(&[]);
    b.action(
        "slow",
        "nodejs:20",
        "function main() { return new Promise(r => setTimeout(() => r({done: true}), 1500)) }",
        json!({}),
    );
    let r = b.post("actions/slow?blocking=true&timeout=200", json!({}));
    assert_eq!(r.status, 202, "{}", r.text);
    let id = r.body["activationId"].as_str().unwrap().to_owned();
    assert_eq!(
        r.header("x-openwhisk-activation-id").as_deref(),
        Some(id.as_str())
    );
    let rec = b.activation(&id);
    assert_eq!(rec["response"]["result"], json!({"done": true}));
    assert_eq!(
        b.get(&format!("activations/{id}/result")).body["result"],
        json!({"done": true})
    );
    // Non-blocking.
    let r = b.post("actions/slow", json!({}));
    assert_eq!(r.status, 202);
    assert_eq!(r.body.as_object().unwrap().len(), 1);
}

#[test]
fn a_blocking_invoke_whose_client_goes_away_still_runs_to_its_record() {
    use base64::Engine;
    use std::io::Write;
    // One server thread: the request's task and everything else share it.
    let b = Brisk::start(&["--server-threads", "1"]);
    b.action(
        "leftalone",
        "nodejs:20",
        "function main() { return new Promise(r => setTimeout(() => r({done: true}), 800)) }",
        json!({}),
    );
    // The activation runs on the request's own task until the client goes away.
    let addr = b.base.trim_start_matches("http://").to_owned();
    let auth = base64::engine::general_purpose::STANDARD.encode(api::GUEST_KEY);
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    write!(
        s,
        "POST /api/v1/namespaces/_/actions/leftalone?blocking=true HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Basic {auth}\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{{}}"
    )
    .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    drop(s);
    let list = b.wait_for("activations?name=leftalone&docs=true", |r| {
        r.body.as_array().is_some_and(|a| !a.is_empty())
    });
    let rec = &list.body[0];
    assert_eq!(rec["response"]["result"], json!({"done": true}), "{rec}");
    assert_eq!(rec["response"]["success"], json!(true));
}

#[test]
fn activation_list_filters_and_persistence_across_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = Brisk::start_in(dir.path(), &[]);
    b.action("a", "nodejs:20", "function main() { return {} }", json!({}));
    b.action("b", "nodejs:20", "function main() { return {} }", json!({}));
    b.put("packages/pk", json!({}));
    b.put(
        "actions/pk/c",
        json!({"exec": {"kind": "nodejs:20", "code": "function main() { return {} }"}}),
    );
    let before = brisk_model_now();
    let mut ids = Vec::new();
    for name in ["a", "a", "b", "pk/c"] {
        ids.push(
            b.invoke(name, json!({})).body["activationId"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    b.wait_for("activations?count=true", |r| r.body["activations"] == 4);
    let names = |q: &str| -> Vec<String> {
        b.get(&format!("activations?{q}"))
            .body
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(names("name=a").len(), 2);
    assert_eq!(names("name=pk/c"), vec!["c"]);
    assert_eq!(names("limit=2").len(), 2);
    assert_eq!(names("limit=2&skip=3").len(), 1);
    assert_eq!(names(&format!("since={}", before + 600_000)).len(), 0);
    assert_eq!(names(&format!("upto={before}")).len(), 0);
    assert_eq!(
        b.get("activations?count=true").body,
        json!({"activations": 4})
    );
    assert!(b.get("activations?docs=true&limit=1").body[0]["logs"].is_array());
    assert_eq!(b.get("activations?count=true&docs=true").status, 400);
    assert_eq!(b.get("activations?name=a/b/c").status, 400);
    assert_eq!(b.get("activations?since=yesterday").status, 400);
    assert_eq!(b.get("activations/nothex").status, 400);
    assert_eq!(
        b.get(&format!("activations/{}", "0".repeat(32))).status,
        404
    );
    // Another namespace cannot read guest's activations.
    let r = b.send(
        "GET",
        "/api/v1/namespaces/guest/activations",
        Some(SYSTEM_KEY),
        None,
        &[],
    );
    assert_eq!(r.status, 403);
    assert!(b.stop());
    let b = Brisk::start_in(dir.path(), &[]);
    for id in &ids {
        assert_eq!(
            b.get(&format!("activations/{id}")).status,
            200,
            "{id} survived the restart"
        );
    }
}

#[test]
fn stopping_the_server_records_every_accepted_activation() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = Brisk::start_in(dir.path(), &["--shutdown-grace-s", "1"]);
    b.action(
        "long",
        "nodejs:20",
        "function main() { return new Promise(r => setTimeout(() => r({finished: true}), 20000)) }",
        json!({}),
    );
    b.action(
        "quick",
        "nodejs:20",
        "function main() { return {q: 1} }",
        json!({}),
    );
    let ids: Vec<String> = (0..3)
        .map(|i| {
            let name = if i == 0 { "quick" } else { "long" };
            b.post(&format!("actions/{name}"), json!({})).body["activationId"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(b.stop(), "graceful exit");
    let b = Brisk::start_in(dir.path(), &[]);
    for id in &ids {
        let r = b.get(&format!("activations/{id}"));
        assert_eq!(r.status, 200, "record of {id} after shutdown: {}", r.text);
    }
    let cut = b.get(&format!("activations/{}", ids[1])).body;
    assert_eq!(
        cut["response"]["success"], false,
        "interrupted run is not a success: {cut}"
    );
}

fn brisk_model_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}
