//! Actions of every runtime against the real proxies: results, error classification, records.

mod common;

use std::sync::Arc;

use brisk_model::{Exec, StatusCode};
use common::*;
use serde_json::json;

#[tokio::test]
async fn node_python_and_native_plain_actions_succeed() {
    let f = invoker(|_| {}).await;
    let cases = [
        node("function main(p) { return {greeting: 'hello ' + p.name}; }"),
        python("def main(args):\n    return {'greeting': 'hello ' + args['name']}\n"),
        native(
            "#!/bin/bash\nNAME=$(echo \"$1\" | sed -E 's/.*\"name\": *\"([^\"]*)\".*/\\1/')\necho \"{\\\"greeting\\\": \\\"hello $NAME\\\"}\"\n",
        ),
    ];
    for exec in cases {
        let kind = exec.kind().to_owned();
        let a = Arc::new(action("hello", exec));
        let act = f.inv.run(job(&a, json!({"name": "brisk"}))).await;
        assert_eq!(
            act.response.status_code,
            StatusCode::Success,
            "{kind}: {act:?}"
        );
        assert_eq!(result(&act), json!({"greeting": "hello brisk"}), "{kind}");
    }
    f.inv.shutdown().await;
}

#[tokio::test]
async fn zipped_actions_of_every_runtime_succeed() {
    let f = invoker(|_| {}).await;
    let node_zip = zip_b64(&[
        ("package.json", r#"{"main": "lib/main.js"}"#, 0o644),
        (
            "lib/main.js",
            "const h = require('./helper'); exports.main = p => ({v: h(p.x)});",
            0o644,
        ),
        ("lib/helper.js", "module.exports = x => x * 2;", 0o644),
    ]);
    let py_zip = zip_b64(&[
        (
            "__main__.py",
            "from helper import double\ndef main(args):\n    return {'v': double(args['x'])}\n",
            0o644,
        ),
        ("helper.py", "def double(x):\n    return x * 2\n", 0o644),
    ]);
    let native_zip = zip_b64(&[(
        "exec",
        "#!/bin/sh\necho 'a log line'\necho '{\"v\": 42}'\n",
        0o755,
    )]);
    let cases = [
        Exec::Code {
            kind: "nodejs:20".into(),
            code: node_zip,
            binary: true,
            main: None,
        },
        Exec::Code {
            kind: "python:3.11".into(),
            code: py_zip,
            binary: true,
            main: None,
        },
        Exec::Blackbox {
            image: "openwhisk/dockerskeleton".into(),
            code: Some(native_zip),
            binary: true,
            main: None,
        },
    ];
    for exec in cases {
        let kind = exec.kind().to_owned();
        let a = Arc::new(action("zipped", exec));
        let act = f.inv.run(job(&a, json!({"x": 21}))).await;
        assert_eq!(
            act.response.status_code,
            StatusCode::Success,
            "{kind}: {act:?}"
        );
        assert_eq!(result(&act), json!({"v": 42}), "{kind}");
    }
    f.inv.shutdown().await;
}

#[tokio::test]
async fn results_are_classified_per_the_wire_spec() {
    let f = invoker(|_| {}).await;
    let check = |exec: Exec, status: StatusCode, want: &'static str| (exec, status, want);
    let cases = [
        check(
            node("function main() { return {error: 'nope', other: 1}; }"),
            StatusCode::ApplicationError,
            r#"{"error":"nope"}"#,
        ),
        check(
            node("function main() { return Promise.reject({code: 7}); }"),
            StatusCode::ApplicationError,
            r#"{"error":{"code":7}}"#,
        ),
        check(
            node("function main() { return [1, 2]; }"),
            StatusCode::Success,
            "[1,2]",
        ),
        check(
            node("function main() { throw new Error('boom'); }"),
            StatusCode::DeveloperError,
            "An error has occurred: Error: boom",
        ),
        check(
            node("function main() { return 42; }"),
            StatusCode::DeveloperError,
            "The action did not return a dictionary or array.",
        ),
        check(
            node("function main( { syntax error"),
            StatusCode::DeveloperError,
            "Initialization has failed",
        ),
        check(
            node("process.exit(3);"),
            StatusCode::DeveloperError,
            "The action did not initialize and exited unexpectedly.",
        ),
        check(
            node("function main() { process.exit(1); }"),
            StatusCode::DeveloperError,
            "The action did not produce a valid response and exited unexpectedly.",
        ),
        check(
            python("def main(args):\n    raise ValueError('bad')\n"),
            StatusCode::ApplicationError,
            "bad",
        ),
        check(
            python("import os\ndef main(args):\n    os._exit(1)\n"),
            StatusCode::DeveloperError,
            "The action did not produce a valid response and exited unexpectedly.",
        ),
        check(
            Exec::Blackbox {
                image: "someone/custom:1".into(),
                code: None,
                binary: false,
                main: None,
            },
            StatusCode::DeveloperError,
            "Failed to pull container image 'someone/custom:1'.",
        ),
    ];
    for (i, (exec, status, want)) in cases.into_iter().enumerate() {
        let a = Arc::new(action(&format!("c{i}"), exec));
        let act = f.inv.run(job(&a, json!({}))).await;
        assert_eq!(act.response.status_code, status, "case {i}: {act:?}");
        let got = serde_json::to_string(&result(&act)).unwrap();
        assert!(got.contains(want), "case {i}: {got} should contain {want}");
    }
    // Developer errors destroy their containers; successes and application errors stay warm.
    eventually("failed containers destroyed", || {
        f.inv.stats().live_containers == 4
    })
    .await;
    f.inv.shutdown().await;
}

#[tokio::test]
async fn timeouts_are_developer_errors_and_destroy_the_container() {
    let f = invoker(|_| {}).await;
    let mut a = action(
        "slow",
        node("function main() { console.log('before'); return new Promise(() => {}); }"),
    );
    // Long enough that a loaded machine still initializes in time; the run never ends.
    a.limits.timeout = 2000;
    let a = Arc::new(a);
    let act = f.inv.run(job(&a, json!({}))).await;
    assert_eq!(act.response.status_code, StatusCode::DeveloperError);
    assert_eq!(
        result(&act),
        json!({"error": "The action exceeded its time limits of 2000 milliseconds."})
    );
    assert_eq!(act.annotations.get("timeout"), Some(&json!(true)));
    assert!(
        act.logs.iter().any(|l| l.ends_with("stdout: before")),
        "{:?}",
        act.logs
    );
    assert!(act.logs.last().unwrap().ends_with(
        "stderr: The action did not initialize or run as expected. Log data might be missing."
    ));
    eventually("container destroyed", || f.inv.stats().live_containers == 0).await;

    let mut b = action(
        "slowinit",
        node(
            "const t = Date.now(); while (Date.now() - t < 5000) {}\nfunction main() { return {}; }",
        ),
    );
    b.limits.timeout = 1000;
    let act = f.inv.run(job(&Arc::new(b), json!({}))).await;
    assert_eq!(
        result(&act),
        json!({"error": "The action exceeded its time limits of 1000 milliseconds during initialization."})
    );
    f.inv.shutdown().await;
}

#[tokio::test]
async fn oversized_results_are_truncated_application_errors() {
    let f = invoker(|_| {}).await;
    let a = Arc::new(action(
        "big",
        node("function main() { return {s: 'x'.repeat(1100000)}; }"),
    ));
    let act = f.inv.run(job(&a, json!({}))).await;
    assert_eq!(act.response.status_code, StatusCode::ApplicationError);
    let msg = result(&act)["error"].as_str().unwrap().to_owned();
    assert!(
        msg.starts_with("The action produced a response that exceeded the allowed length: 1100008 > 1048576 bytes. The truncated response was: {\"s\":\"xxx"),
        "{}",
        &msg[..200]
    );
    f.inv.shutdown().await;
}

#[tokio::test]
async fn record_carries_the_openwhisk_fields() {
    let f = invoker(|_| {}).await;
    let mut a = action("rec", node("function main(p) { return p; }"));
    a.namespace = brisk_model::EntityPath::parse("other/pkg").unwrap();
    let a = Arc::new(a);
    let cause = brisk_model::ActivationId::generate();
    let mut j = job(&a, json!({"k": 1}));
    j.binding = Some("guest/mybinding".into());
    j.cause = Some(cause);
    j.caused_by_sequence = true;
    let id = j.activation_id;
    let act = f.inv.run(j).await;
    assert_eq!(act.activation_id, id);
    assert_eq!(
        (
            act.namespace.as_str(),
            act.name.as_str(),
            act.subject.as_str()
        ),
        ("guest", "rec", "guest")
    );
    assert_eq!(act.cause, Some(cause));
    assert_eq!(act.duration, Some(act.end - act.start));
    let ann = |k: &str| act.annotations.get(k).cloned();
    assert_eq!(ann("path"), Some(json!("other/pkg/rec")));
    assert_eq!(ann("kind"), Some(json!("nodejs:20")));
    assert_eq!(ann("timeout"), Some(json!(false)));
    assert_eq!(ann("causedBy"), Some(json!("sequence")));
    assert_eq!(ann("binding"), Some(json!("guest/mybinding")));
    assert_eq!(
        ann("limits"),
        Some(json!({"timeout": 60000, "memory": 256, "logs": 10, "concurrency": 1}))
    );
    assert!(ann("waitTime").is_some_and(|w| w.is_u64()));
    assert!(
        ann("initTime").is_some_and(|w| w.is_u64()),
        "cold start has initTime"
    );
    f.inv.shutdown().await;
}

#[tokio::test]
async fn init_params_go_to_the_environment_and_the_api_key_follows_the_annotation() {
    let f = invoker(|_| {}).await;
    let src = "function main(p) { return {args: p, secret: process.env.secret || null, n: process.env.n || null, key: process.env.__OW_API_KEY || null, ns: process.env.__OW_NAMESPACE, name: process.env.__OW_ACTION_NAME, deadline: process.env.__OW_DEADLINE}; }";
    let mut with_key = action("withkey", node(src));
    with_key
        .parameters
        .0
        .push(init_param("secret", json!("s3cr3t")));
    with_key.parameters.0.push(init_param("n", json!({"a": 1})));
    let with_key = Arc::new(with_key);
    let act = f
        .inv
        .run(job(
            &with_key,
            json!({"secret": "s3cr3t", "n": {"a": 1}, "plain": true}),
        ))
        .await;
    let r = result(&act);
    assert_eq!(
        r["args"],
        json!({"plain": true}),
        "init params are not run arguments"
    );
    assert_eq!(r["secret"], json!("s3cr3t"));
    assert_eq!(r["n"], json!("{\"a\":1}"));
    assert_eq!(r["key"], json!(KEY), "no annotation: key provided");
    assert_eq!(r["ns"], json!("guest"));
    assert_eq!(r["name"], json!("/guest/withkey"));
    assert!(r["deadline"].as_str().unwrap().parse::<u64>().unwrap() > act.start);

    let mut no_key = action("nokey", node(src));
    no_key.annotations.set("provide-api-key", json!(false));
    let act = f.inv.run(job(&Arc::new(no_key), json!({}))).await;
    assert_eq!(result(&act)["key"], json!(null));
    f.inv.shutdown().await;
}

#[tokio::test]
async fn a_missing_interpreter_is_a_whisk_error_naming_it() {
    let mut manifest = brisk_model::RuntimeManifest::builtin();
    for kinds in manifest.runtimes.values_mut() {
        for k in kinds {
            if k.kind == "nodejs:20" {
                k.interpreter = vec!["no-such-node".into(), "/nope/node".into()];
            }
        }
    }
    let f = invoker_with(manifest, |c| c.prewarm = true).await;
    let a = Arc::new(action("x", node("function main() { return {}; }")));
    let act = f.inv.run(job(&a, json!({}))).await;
    assert_eq!(act.response.status_code, StatusCode::WhiskError);
    assert_eq!(
        result(&act),
        json!({"error": "nodejs:20 runtime unavailable: no `no-such-node` interpreter found (tried no-such-node, /nope/node)"})
    );
    f.inv.shutdown().await;
}

#[tokio::test]
async fn manifest_args_reach_the_interpreter_before_the_proxy() {
    let mut manifest = brisk_model::RuntimeManifest::builtin();
    for k in manifest.runtimes.values_mut().flatten() {
        if k.kind == "python:3.11" {
            k.args = vec!["-X".into(), "brisk_probe=from-manifest".into()];
        }
    }
    let f = invoker_with(manifest, |_| {}).await;
    let a = Arc::new(action(
        "probe",
        python(
            "import sys\ndef main(args):\n    return {'x': sys._xoptions.get('brisk_probe'), 'script': sys.argv[0].endswith(('proxy.py', '.pyc'))}\n",
        ),
    ));
    let act = f.inv.run(job(&a, json!({}))).await;
    assert_eq!(
        result(&act),
        json!({"x": "from-manifest", "script": true}),
        "{act:?}"
    );
    f.inv.shutdown().await;

    // The built-in manifest keeps Node's V8 thread pool to one worker.
    let f = invoker(|_| {}).await;
    let a = Arc::new(action(
        "argv",
        node("function main() { return {argv: process.execArgv}; }"),
    ));
    let act = f.inv.run(job(&a, json!({}))).await;
    assert_eq!(
        result(&act),
        json!({"argv": ["--v8-pool-size=1"]}),
        "{act:?}"
    );
    f.inv.shutdown().await;
}
