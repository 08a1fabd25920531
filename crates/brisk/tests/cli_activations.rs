//! `brisk activation list|get|logs|result|poll`, `action invoke --logs`, and `--verbose`.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Instant;

use common::{HANG_GUARD, Server, Wsk, id_from};
use serde_json::{Value, json};

const HELLO_JS: &str = r#"
function main(p) {
  console.log("hello log " + p.name);
  console.error("to stderr");
  return { greeting: "hello " + p.name };
}
"#;

#[test]
fn activation_list_get_logs_result_and_invoke_logs() {
    let server = Server::start();
    let wsk = Wsk::new(&server);
    let hello = wsk.file("hello.js", HELLO_JS.as_bytes());
    wsk.ok(&["action", "create", "hello", &hello]);
    wsk.ok(&["action", "create", "other", &hello]);

    // invoke --logs: result and logs together.
    let out = wsk.ok(&["action", "invoke", "hello", "--logs", "-p", "name", "Pat"]);
    let (result, logs) = out.split_once("}\n").expect("result then logs");
    assert_eq!(
        serde_json::from_str::<Value>(&format!("{result}}}")).expect("result json"),
        json!({"greeting": "hello Pat"})
    );
    assert!(
        logs.lines().any(|l| l.ends_with(" stdout: hello log Pat"))
            && logs.lines().any(|l| l.ends_with(" stderr: to stderr")),
        "{logs}"
    );
    let doc = wsk.json(&["action", "invoke", "hello", "--logs", "-p", "name", "Q"]);
    assert_eq!(doc["result"], json!({"greeting": "hello Q"}));
    assert_eq!(doc["success"], true);
    assert!(
        doc["logs"].as_array().is_some_and(|a| a
            .iter()
            .any(|l| l.as_str().is_some_and(|l| l.ends_with("hello log Q")))),
        "{doc}"
    );

    let id = id_from(&wsk.ok(&["action", "invoke", "hello", "-b", "-p", "name", "Kim"]));
    let other_id = id_from(&wsk.ok(&["action", "invoke", "other", "-b", "-p", "name", "O"]));
    // The record is written when the activation finishes; wait until it is listed.
    wsk.eventually("the activations to be listed", || {
        let list = wsk.json(&["activation", "list"]);
        let ids: Vec<&str> = list
            .as_array()?
            .iter()
            .filter_map(|a| a["activationId"].as_str())
            .collect();
        (ids.contains(&id.as_str()) && ids.contains(&other_id.as_str())).then_some(())
    });

    // list: wsk's table, filters, paging, time window, full records.
    let out = wsk.ok(&["activation", "list"]);
    assert!(
        out.starts_with(
            "Datetime            Activation ID                    Kind      Start Duration   Status"
        ),
        "{out}"
    );
    let row = out
        .lines()
        .find(|l| l.contains(&id))
        .expect("row for the activation");
    for needle in [" nodejs:20 ", " success ", " guest/hello:0.0.1"] {
        assert!(row.contains(needle), "{needle} in {row}");
    }
    let list = wsk.json(&["activation", "list", "other"]);
    assert_eq!(list.as_array().map(Vec::len), Some(1));
    assert_eq!(list[0]["activationId"], other_id.as_str());
    assert_eq!(
        wsk.json(&["activation", "list", "--limit", "1"])[0]["activationId"],
        other_id.as_str()
    );
    assert_eq!(
        wsk.json(&["activation", "list", "--limit", "1", "--skip", "1"])[0]["activationId"],
        id.as_str()
    );
    let start = wsk.json(&["activation", "get", &other_id])["start"]
        .as_i64()
        .expect("start");
    let before = wsk.json(&["activation", "list", "--upto", &(start - 1).to_string()]);
    assert!(
        before
            .as_array()
            .expect("array")
            .iter()
            .all(|a| a["activationId"] != other_id.as_str())
    );
    let since = wsk.json(&["activation", "list", "--since", &start.to_string()]);
    assert_eq!(since.as_array().map(Vec::len), Some(1), "{since}");
    let out = wsk.ok(&["activation", "list", "other", "--full"]);
    assert!(out.starts_with("activations\n{\n"), "{out}");
    assert!(out.contains("\"logs\": ["), "{out}");

    // get: the record, --last, a field, --summary.
    let out = wsk.ok(&["activation", "get", &id]);
    assert!(
        out.starts_with(&format!("ok: got activation {id}\n{{\n")),
        "{out}"
    );
    let last = wsk.json(&["activation", "get", "--last"]);
    assert_eq!(last["activationId"], other_id.as_str());
    let out = wsk.ok(&["activation", "get", &id, "response"]);
    assert!(
        out.starts_with(&format!(
            "ok: got activation {id}, displaying field response\n"
        )),
        "{out}"
    );
    assert!(out.contains("\"greeting\": \"hello Kim\""), "{out}");
    let out = wsk.ok(&["activation", "get", &id, "--summary"]);
    assert!(
        out.starts_with("activation result for '/guest/hello' (success, "),
        "{out}"
    );

    // logs (raw and --strip), result.
    let out = wsk.ok(&["activation", "logs", &id]);
    assert!(
        out.lines().any(|l| l.ends_with(" stdout: hello log Kim")),
        "{out}"
    );
    // stdout and stderr lines may interleave either way; compare them sorted.
    let sorted = |out: String| {
        let mut lines: Vec<String> = out.lines().map(str::to_owned).collect();
        lines.sort();
        lines
    };
    assert_eq!(
        sorted(wsk.ok(&["activation", "logs", &id, "--strip"])),
        ["hello log Kim", "to stderr"]
    );
    assert_eq!(
        sorted(wsk.ok(&["activation", "logs", "--last", "-r"])),
        ["hello log O", "to stderr"]
    );
    assert_eq!(
        wsk.ok(&["activation", "result", &id]),
        "{\n    \"greeting\": \"hello Kim\"\n}\n"
    );
    assert_eq!(
        wsk.json(&["activation", "result", "--last"])["result"],
        json!({"greeting": "hello O"})
    );

    // Errors.
    let run = wsk.fails(
        &["activation", "get", "0123456789abcdef0123456789abcdef"],
        148,
    );
    assert!(
        run.stderr
            .contains("The requested resource does not exist."),
        "{run:?}"
    );
    let run = wsk.fails(&["activation", "logs", "nothex"], 144);
    assert!(
        run.stderr
            .starts_with("error: Unable to get logs for activation 'nothex'"),
        "{run:?}"
    );
    let run = wsk.fails(&["activation", "result"], 2);
    assert!(run.stderr.contains("--last"), "{run:?}");

    // --verbose shows the HTTP exchange on stderr and leaves stdout alone.
    let run = wsk.run(&["-v", "action", "get", "hello"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stderr.contains("REQ: GET ") && run.stderr.contains("RESP: 200"),
        "{run:?}"
    );
    assert!(run.stdout.starts_with("ok: got action hello\n"), "{run:?}");
}

#[test]
fn activation_poll_streams_new_activations_with_logs() {
    let server = Server::start();
    let wsk = Wsk::new(&server);
    let hello = wsk.file("hello.js", HELLO_JS.as_bytes());
    wsk.ok(&["action", "create", "hello", &hello]);
    wsk.ok(&["action", "create", "quiet", &hello]);
    let earlier = id_from(&wsk.ok(&["action", "invoke", "hello", "-b", "-p", "name", "Early"]));

    // --exit bounds a poll; --since-minutes includes earlier activations; --json is NDJSON.
    let out = wsk.eventually("the earlier activation in a bounded poll", || {
        let out = wsk.ok(&[
            "activation",
            "poll",
            "--since-minutes",
            "5",
            "--exit",
            "1",
            "--json",
        ]);
        out.contains(&earlier).then_some(out)
    });
    let line: Value =
        serde_json::from_str(out.lines().find(|l| l.contains(&earlier)).expect("line"))
            .expect("ndjson");
    assert_eq!(line["name"], "hello");
    assert!(
        line["logs"].as_array().is_some_and(|a| a
            .iter()
            .any(|l| l.as_str().is_some_and(|l| l.ends_with("hello log Early")))),
        "{line}"
    );
    let out = wsk.ok(&["activation", "poll", "--exit", "1"]);
    assert!(
        out.starts_with("Enter Ctrl-c to exit.\nPolling for activation logs\n"),
        "{out}"
    );

    // A live poll of one action: started first, it shows activations that finish later.
    let mut child = wsk
        .command(&[
            "activation",
            "poll",
            "hello",
            "--interval",
            "0.2",
            "--exit",
            "120",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn poll");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + HANG_GUARD;
    let next_line = || {
        rx.recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("poll output")
    };
    while next_line() != "Polling for activation logs" {}
    wsk.ok(&["action", "invoke", "quiet", "-b", "-p", "name", "Nobody"]);
    let id = id_from(&wsk.ok(&["action", "invoke", "hello", "-b", "-p", "name", "Live"]));
    let mut seen = Vec::new();
    loop {
        let line = next_line();
        seen.push(line.clone());
        if line.contains("hello log Live") {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let seen = seen.join("\n");
    assert!(
        seen.contains(&format!("Activation: 'hello' ({id}) success")),
        "{seen}"
    );
    assert!(
        !seen.contains("quiet") && !seen.contains("Nobody"),
        "only the named action: {seen}"
    );
    assert!(!seen.contains("Early"), "only new activations: {seen}");
}
