//! `brisk action`, `brisk package`, `brisk namespace` and `brisk list` against a real server:
//! each flag's effect on the stored entity, kind inference, zip upload, parameter files,
//! sequences, invocation output and exit codes.

mod common;

use std::io::Write;

use common::{Server, Wsk, id_from, kv};
use serde_json::{Value, json};

const HELLO_JS: &str = r#"
function main(p) {
  console.log("hello log " + p.name);
  return { greeting: "hello " + (p.name || "stranger"), count: p.count, obj: p.obj };
}
function greet(p) { return { greeted: p.name }; }
"#;

const HELLO_PY: &str =
    "def main(args):\n    print('py log')\n    return {'py': args.get('name', 'none')}\n";

fn zip_of(files: &[(&str, &str)]) -> Vec<u8> {
    let mut buf = std::io::Cursor::new(Vec::new());
    {
        let mut zip = zip::ZipWriter::new(&mut buf);
        let opts = zip::write::SimpleFileOptions::default();
        for (name, text) in files {
            zip.start_file(*name, opts).expect("zip entry");
            zip.write_all(text.as_bytes()).expect("zip write");
        }
        zip.finish().expect("zip finish");
    }
    buf.into_inner()
}

#[test]
fn actions_flags_kinds_invoke_and_errors() {
    let server = Server::start();
    let wsk = Wsk::new(&server);
    let hello = wsk.file("hello.js", HELLO_JS.as_bytes());
    let hello_py = wsk.file("hello.py", HELLO_PY.as_bytes());

    // Kind inference from the extension.
    assert_eq!(
        wsk.ok(&["action", "create", "hello", &hello]),
        "ok: created action hello\n"
    );
    let action = wsk.json(&["action", "get", "hello"]);
    assert_eq!(action["exec"]["kind"], "nodejs:20");
    assert_eq!(action["name"], "hello");
    assert_eq!(
        wsk.ok(&["action", "create", "pyhello", &hello_py]),
        "ok: created action pyhello\n"
    );
    assert_eq!(
        wsk.json(&["action", "get", "pyhello"])["exec"]["kind"],
        "python:3.11"
    );
    assert_eq!(
        wsk.json(&["action", "invoke", "pyhello", "-r", "-p", "name", "Ann"]),
        json!({"py": "Ann"})
    );
    let text = wsk.file("notes.txt", b"x");
    let run = wsk.fails(&["action", "create", "txt", &text], 2);
    assert!(run.stderr.contains("add --kind"), "{run:?}");
    let explicit = wsk.json(&[
        "action",
        "create",
        "txt",
        &hello,
        "--kind",
        "nodejs:default",
    ]);
    assert_eq!(explicit["exec"]["kind"], "nodejs:20");

    // Zip upload needs --kind; the code goes up base64 and runs.
    let zip = zip_of(&[(
        "index.js",
        "exports.main = (p) => ({ zipped: true, name: p.name });",
    )]);
    let zip_path = wsk.file("code.zip", &zip);
    let run = wsk.fails(&["action", "create", "zipped", &zip_path], 2);
    assert!(run.stderr.contains("--kind"), "{run:?}");
    wsk.ok(&[
        "action",
        "create",
        "zipped",
        &zip_path,
        "--kind",
        "nodejs:20",
    ]);
    let zipped = wsk.json(&["action", "get", "zipped"]);
    assert_eq!(zipped["exec"]["binary"], true);
    assert_eq!(
        wsk.json(&["action", "invoke", "zipped", "-r", "-p", "name", "z"]),
        json!({"zipped": true, "name": "z"})
    );

    // -p values are JSON when they parse, else strings; -P/-A files; -a; limits; --main.
    let params = wsk.file("params.json", br#"{"fromFile": [1, 2], "name": "file"}"#);
    let annots = wsk.file("annots.json", br#"{"sampleInput": {"name": "x"}}"#);
    let out = wsk.ok(&[
        "action",
        "update",
        "hello",
        &hello,
        "-P",
        &params,
        "-p",
        "name",
        "World",
        "-p",
        "count",
        "3",
        "-p",
        "obj",
        r#"{"a":1}"#,
        "-A",
        &annots,
        "-a",
        "description",
        "says hi",
        "-t",
        "5000",
        "-m",
        "128",
        "-l",
        "5",
        "-c",
        "1",
    ]);
    assert_eq!(out, "ok: updated action hello\n");
    let action = wsk.json(&["action", "get", "hello"]);
    let p = &action["parameters"];
    assert_eq!(kv(p, "name"), Some(&json!("World")));
    assert_eq!(kv(p, "count"), Some(&json!(3)));
    assert_eq!(kv(p, "obj"), Some(&json!({"a": 1})));
    assert_eq!(kv(p, "fromFile"), Some(&json!([1, 2])));
    let a = &action["annotations"];
    assert_eq!(kv(a, "description"), Some(&json!("says hi")));
    assert_eq!(kv(a, "sampleInput"), Some(&json!({"name": "x"})));
    assert_eq!(action["limits"]["timeout"], 5000);
    assert_eq!(action["limits"]["memory"], 128);
    assert_eq!(action["limits"]["logs"], 5);
    assert_eq!(action["limits"]["concurrency"], 1);
    assert_eq!(action["version"], "0.0.2");
    wsk.ok(&["action", "update", "hello", &hello, "--main", "greet"]);
    assert_eq!(
        wsk.json(&["action", "get", "hello"])["exec"]["main"],
        "greet"
    );
    assert_eq!(
        wsk.json(&["action", "invoke", "hello", "-r"]),
        json!({"greeted": "World"})
    );
    wsk.ok(&["action", "update", "hello", &hello, "--main", "main"]);

    // --web / --web-secure annotations (wire spec 7.6).
    let web = |args: &[&str]| {
        let mut all = vec!["action", "update", "hello"];
        all.extend_from_slice(args);
        wsk.ok(&all);
        wsk.json(&["action", "get", "hello"])["annotations"].clone()
    };
    let a = web(&["--web", "true"]);
    assert_eq!(
        (kv(&a, "web-export"), kv(&a, "raw-http"), kv(&a, "final")),
        (Some(&json!(true)), Some(&json!(false)), Some(&json!(true)))
    );
    let a = web(&["--web", "raw"]);
    assert_eq!(
        (kv(&a, "web-export"), kv(&a, "raw-http"), kv(&a, "final")),
        (Some(&json!(true)), Some(&json!(true)), Some(&json!(true)))
    );
    let a = web(&["--web-secure", "s3cret"]);
    assert_eq!(kv(&a, "require-whisk-auth"), Some(&json!("s3cret")));
    let a = web(&["--web-secure", "true"]);
    assert!(
        kv(&a, "require-whisk-auth").is_some_and(Value::is_u64),
        "{a}"
    );
    let a = web(&["--web-secure", "false"]);
    assert_eq!(kv(&a, "require-whisk-auth"), None, "{a}");
    let a = web(&["--web", "false"]);
    assert_eq!(
        (kv(&a, "web-export"), kv(&a, "raw-http"), kv(&a, "final")),
        (
            Some(&json!(false)),
            Some(&json!(false)),
            Some(&json!(false))
        )
    );
    wsk.fails(&["action", "update", "hello", "--web", "maybe"], 2);

    // get variants.
    let out = wsk.ok(&["action", "get", "hello"]);
    assert!(
        out.starts_with("ok: got action hello\n{\n    \"namespace\": \"guest\""),
        "{out}"
    );
    let out = wsk.ok(&["action", "get", "hello", "--url"]);
    assert_eq!(
        out,
        format!(
            "ok: got action hello\n{}/api/v1/web/guest/default/hello\n",
            server.apihost
        )
    );
    let out = wsk.ok(&["action", "get", "hello", "--summary"]);
    assert_eq!(
        out,
        "action /guest/hello: says hi\n   (parameters: *count, *fromFile, *name, *obj)\n"
    );
    let saved = wsk.path("saved.js");
    wsk.ok(&[
        "action",
        "get",
        "hello",
        "--save-as",
        saved.to_str().expect("path"),
    ]);
    assert_eq!(std::fs::read_to_string(&saved).expect("saved"), HELLO_JS);

    // list: wsk's table and JSON.
    let out = wsk.ok(&["action", "list"]);
    assert!(out.starts_with("actions\n"), "{out}");
    let row = out
        .lines()
        .find(|l| l.starts_with("/guest/hello "))
        .expect("hello row");
    assert!(row.ends_with(" private nodejs:20"), "{row}");
    assert!(
        out.contains("/guest/pyhello") && out.contains("private python:3.11"),
        "{out}"
    );
    assert_eq!(
        wsk.json(&["action", "list"]).as_array().map(Vec::len),
        Some(4)
    );
    assert_eq!(
        wsk.ok(&["action", "list", "--limit", "1"]).lines().count(),
        2
    );
    let names = wsk.ok(&["action", "list", "--name-sort"]);
    let names: Vec<&str> = names
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().next().unwrap_or(""))
        .collect();
    assert_eq!(
        names,
        [
            "/guest/hello",
            "/guest/pyhello",
            "/guest/txt",
            "/guest/zipped"
        ]
    );

    // invoke: non-blocking, blocking, result.
    let out = wsk.ok(&["action", "invoke", "hello"]);
    assert!(out.starts_with("ok: invoked /_/hello with id "), "{out}");
    id_from(&out);
    let out = wsk.ok(&["action", "invoke", "hello", "-b", "-p", "name", "Bob"]);
    let id = id_from(&out);
    let json_part: Value =
        serde_json::from_str(out.split_once('\n').expect("two parts").1).expect("activation JSON");
    assert_eq!(json_part["activationId"], id.as_str());
    assert_eq!(json_part["response"]["result"]["greeting"], "hello Bob");
    assert_eq!(
        wsk.ok(&["action", "invoke", "hello", "-r", "-p", "name", "Bob"]),
        "{\n    \"greeting\": \"hello Bob\",\n    \"count\": 3,\n    \"obj\": {\n        \"a\": 1\n    }\n}\n"
    );
    let doc = wsk.json(&["action", "invoke", "hello"]);
    assert_eq!(doc["activationId"].as_str().map(str::len), Some(32));

    // An action that fails: output as usual, exit 502 - 256 like wsk.
    let fail = wsk.file("fail.js", b"function main() { return { error: 'boom' }; }");
    wsk.ok(&["action", "create", "fail", &fail]);
    let run = wsk.fails(&["action", "invoke", "fail", "-b"], 246);
    assert!(
        run.stdout.contains("\"status\": \"application error\""),
        "{run:?}"
    );
    let run = wsk.fails(&["action", "invoke", "fail", "-r"], 246);
    assert_eq!(run.stdout, "{\n    \"error\": \"boom\"\n}\n");

    // Sequences.
    let shout = wsk.file(
        "shout.js",
        b"function main(p) { return { shouted: p.greeting.toUpperCase() }; }",
    );
    wsk.ok(&["action", "create", "shout", &shout]);
    assert_eq!(
        wsk.ok(&["action", "create", "seq", "--sequence", "hello,/_/shout"]),
        "ok: created action seq\n"
    );
    let seq = wsk.json(&["action", "get", "seq"]);
    assert_eq!(seq["exec"]["kind"], "sequence");
    assert_eq!(
        seq["exec"]["components"],
        json!(["/guest/hello", "/guest/shout"])
    );
    assert_eq!(
        wsk.json(&["action", "invoke", "seq", "-r", "-p", "name", "Zed"]),
        json!({"shouted": "HELLO ZED"})
    );
    wsk.fails(&["action", "create", "seq2", "--sequence"], 2);

    // --docker and --native make blackbox actions; the native skeleton runs scripts.
    let docker = wsk.json(&["action", "create", "dock", "--docker", "example/image:1.0"]);
    assert_eq!(docker["exec"]["kind"], "blackbox");
    assert_eq!(docker["exec"]["image"], "example/image:1.0");
    let script = wsk.file(
        "run.sh",
        b"#!/bin/bash\necho native log\necho '{\"native\": true}'\n",
    );
    wsk.ok(&["action", "create", "native", &script, "--native"]);
    let native = wsk.json(&["action", "get", "native"]);
    assert_eq!(native["exec"]["kind"], "blackbox");
    assert_eq!(native["exec"]["image"], "openwhisk/dockerskeleton");
    assert_eq!(
        wsk.json(&["action", "invoke", "native", "-r"]),
        json!({"native": true})
    );

    // Errors carry the server's message and wsk's exit codes.
    let run = wsk.fails(&["action", "create", "hello", &hello], 153);
    assert!(
        run.stderr
            .starts_with("error: Unable to create action 'hello': resource already exists"),
        "{run:?}"
    );
    let run = wsk.fails(&["action", "get", "nope"], 148);
    assert!(
        run.stderr.starts_with(
            "error: Unable to get action 'nope': The requested resource does not exist."
        ),
        "{run:?}"
    );
    let run = wsk.fails(&["action", "invoke", "nope", "-b"], 148);
    assert!(
        run.stderr
            .contains("The requested resource does not exist."),
        "{run:?}"
    );
    wsk.fails(&["action", "create", "nofile", "missing.js"], 2);
    assert_eq!(
        wsk.ok(&["action", "delete", "hello"]),
        "ok: deleted action hello\n"
    );
    let run = wsk.fails(&["action", "delete", "hello"], 148);
    assert!(
        run.stderr
            .contains("Unable to delete action 'hello': The requested resource does not exist."),
        "{run:?}"
    );
}

#[test]
fn packages_bindings_namespaces_and_list() {
    let server = Server::start();
    let wsk = Wsk::new(&server);
    let echo = wsk.file(
        "echo.js",
        b"function main(p) { return { color: p.color, size: p.size }; }",
    );

    let out = wsk.ok(&[
        "package",
        "create",
        "utils",
        "-p",
        "color",
        "red",
        "-a",
        "description",
        "tools",
        "--shared",
        "yes",
    ]);
    assert_eq!(out, "ok: created package utils\n");
    let pkg = wsk.json(&["package", "get", "utils"]);
    assert_eq!(pkg["publish"], true);
    assert_eq!(kv(&pkg["parameters"], "color"), Some(&json!("red")));
    wsk.ok(&[
        "package", "update", "utils", "--shared", "no", "-p", "color", "red", "-p", "size", "2",
    ]);
    let pkg = wsk.json(&["package", "get", "utils"]);
    assert_eq!(pkg["publish"], false);
    assert_eq!(kv(&pkg["parameters"], "size"), Some(&json!(2)));
    wsk.fails(&["package", "update", "utils", "--shared", "perhaps"], 2);

    assert_eq!(
        wsk.ok(&["action", "create", "utils/echo", &echo]),
        "ok: created action utils/echo\n"
    );
    let out = wsk.ok(&["action", "list", "utils"]);
    assert!(
        out.lines()
            .any(|l| l.starts_with("/guest/utils/echo ") && l.ends_with("private nodejs:20")),
        "{out}"
    );
    assert_eq!(
        wsk.json(&["action", "invoke", "utils/echo", "-r"]),
        json!({"color": "red", "size": 2})
    );

    assert_eq!(
        wsk.ok(&["package", "bind", "utils", "mine", "-p", "color", "blue"]),
        "ok: created binding mine\n"
    );
    let binding = wsk.json(&["package", "get", "mine"]);
    assert_eq!(
        binding["binding"],
        json!({"namespace": "guest", "name": "utils"})
    );
    assert_eq!(
        wsk.json(&["action", "invoke", "/guest/mine/echo", "-r"]),
        json!({"color": "blue", "size": 2})
    );

    let out = wsk.ok(&["package", "list"]);
    assert!(out.starts_with("packages\n"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("/guest/utils ") && l.ends_with("private")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("/guest/mine ") && l.contains("binding /guest/utils")),
        "{out}"
    );
    let out = wsk.ok(&["package", "get", "utils", "--summary"]);
    assert_eq!(
        out,
        "package /guest/utils: tools\n   (parameters: *color, *size)\n action /guest/utils/echo\n"
    );
    let out = wsk.ok(&["package", "refresh"]);
    assert!(
        out.starts_with("ok: refreshed namespace guest\nCurrent bindings:\n/guest/mine\n"),
        "{out}"
    );

    // namespace get and list: every collection.
    let trig = wsk.ok(&["trigger", "create", "t"]);
    assert_eq!(trig, "ok: created trigger t\n");
    let out = wsk.ok(&["list"]);
    assert!(
        out.starts_with("Entities in namespace: guest\npackages\n"),
        "{out}"
    );
    for needle in [
        "\nactions\n/guest/utils/echo",
        "\ntriggers\n/guest/t ",
        "\nrules\n",
    ] {
        assert!(out.contains(needle), "{needle} in {out}");
    }
    assert_eq!(wsk.ok(&["namespace", "get"]), out);
    let doc = wsk.json(&["list"]);
    assert_eq!(doc["namespace"], "guest");
    assert_eq!(doc["packages"].as_array().map(Vec::len), Some(2));
    assert_eq!(doc["triggers"][0]["name"], "t");

    // Deleting: a package with actions needs --force.
    let run = wsk.fails(&["package", "delete", "utils"], 153);
    assert!(run.stderr.contains("Package not empty"), "{run:?}");
    assert_eq!(
        wsk.ok(&["package", "delete", "mine"]),
        "ok: deleted package mine\n"
    );
    assert_eq!(
        wsk.ok(&["package", "delete", "utils", "--force"]),
        "ok: deleted package utils\n"
    );
    let run = wsk.fails(&["package", "get", "utils"], 148);
    assert!(
        run.stderr
            .contains("Unable to get package 'utils': The requested resource does not exist."),
        "{run:?}"
    );
    let run = wsk.fails(&["package", "bind", "/guest/nothere", "b2"], 144);
    assert!(
        run.stderr
            .contains("Binding references a package that does not exist."),
        "{run:?}"
    );
}

/// The progress indicator shows on a terminal only: run under `script` for a pseudo-terminal.
#[test]
fn progress_indicator_on_a_terminal_only() {
    let server = Server::start();
    let wsk = Wsk::new(&server);
    let mut big = String::from("function main() { return { big: true }; }\n//");
    big.push_str(&"x".repeat(1536 * 1024));
    let big = wsk.file("big.js", big.as_bytes());
    let slow = wsk.file(
        "slow.js",
        b"function main() { return new Promise(r => setTimeout(() => r({ slow: true }), 2500)); }",
    );

    // Not a terminal: stderr stays clean.
    let run = wsk.run(&["action", "create", "big", &big]);
    assert_eq!(
        (run.code, run.stdout.as_str(), run.stderr.as_str()),
        (0, "ok: created action big\n", "")
    );

    let on_tty = |args: &str| {
        let mut cmd = std::process::Command::new("script");
        cmd.args(["-qec", &format!("{} {args}", common::BRISK), "/dev/null"])
            .env_remove("__OW_API_HOST")
            .env_remove("__OW_API_KEY")
            .env_remove("__OW_NAMESPACE")
            .env("WSK_CONFIG_FILE", &wsk.config)
            .env("HOME", wsk.dir.path())
            .current_dir(wsk.dir.path())
            .stdin(std::process::Stdio::null());
        let out = cmd.output().expect("run script");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let out = on_tty(&format!("action update big {big}"));
    assert!(
        out.contains("uploading 1.5 MB") && out.contains("ok: updated action big"),
        "{out:?}"
    );
    wsk.ok(&["action", "create", "slow", &slow]);
    let out = on_tty("action invoke slow -r");
    assert!(
        out.contains("waiting for /_/slow") && out.contains("\"slow\": true"),
        "{out:?}"
    );
}
