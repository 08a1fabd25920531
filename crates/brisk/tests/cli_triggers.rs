//! `brisk trigger` and `brisk rule` against a real server, and feeds: the client-side lifecycle
//! protocol (wire spec §6) checked with a feed action of the test's own that records what it was
//! called with, and the built-in `/whisk.system/alarms` feed firing a rule.

mod common;

use common::{GUEST_KEY, Server, Wsk, id_from, kv};
use serde_json::{Value, json};

/// Records its lifecycle call in its result and logs; refuses when asked to.
const FEED_JS: &str = r#"
function main(p) {
  console.log("lifecycle " + p.lifecycleEvent + " " + p.triggerName);
  if (p.fail) return { error: "feed refused" };
  return { event: p.lifecycleEvent, triggerName: p.triggerName, authKey: p.authKey, cron: p.cron };
}
"#;

const ECHO_JS: &str = "function main(p) { console.log('echo ran'); return p; }";

/// Full records of the activations of `action`, newest first.
fn records(wsk: &Wsk, action: &str) -> Vec<Value> {
    wsk.json(&["activation", "list", action, "--full", "--limit", "100"])
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn triggers_rules_fire_and_errors() {
    let server = Server::start();
    let wsk = Wsk::new(&server);
    let echo = wsk.file("echo.js", ECHO_JS.as_bytes());
    wsk.ok(&["action", "create", "echo", &echo]);
    wsk.ok(&["action", "create", "echo2", &echo]);

    let out = wsk.ok(&[
        "trigger",
        "create",
        "t1",
        "-p",
        "k",
        "v",
        "-a",
        "description",
        "a trigger",
    ]);
    assert_eq!(out, "ok: created trigger t1\n");
    let t = wsk.json(&["trigger", "get", "t1"]);
    assert_eq!(kv(&t["parameters"], "k"), Some(&json!("v")));
    assert_eq!(
        kv(&t["annotations"], "description"),
        Some(&json!("a trigger"))
    );
    assert_eq!(
        wsk.ok(&["trigger", "update", "t1", "-p", "k", "v2"]),
        "ok: updated trigger t1\n"
    );
    assert_eq!(
        kv(&wsk.json(&["trigger", "get", "t1"])["parameters"], "k"),
        Some(&json!("v2"))
    );
    let out = wsk.ok(&["trigger", "get", "t1", "--summary"]);
    assert_eq!(out, "trigger /guest/t1: a trigger\n   (parameters: *k)\n");
    let out = wsk.ok(&["trigger", "list"]);
    assert!(
        out.starts_with("triggers\n")
            && out
                .lines()
                .any(|l| l.starts_with("/guest/t1 ") && l.ends_with(" private")),
        "{out}"
    );

    // No rule yet: nothing runs.
    assert_eq!(
        wsk.ok(&["trigger", "fire", "t1"]),
        "ok: triggered /_/t1 (no active rules; no activation)\n"
    );

    // Rules.
    assert_eq!(
        wsk.ok(&["rule", "create", "r1", "t1", "echo"]),
        "ok: created rule r1\n"
    );
    let rule = wsk.json(&["rule", "get", "r1"]);
    assert_eq!(rule["status"], "active");
    assert_eq!(rule["trigger"], json!({"path": "guest", "name": "t1"}));
    assert_eq!(wsk.ok(&["rule", "status", "r1"]), "ok: rule r1 is active\n");
    let out = wsk.ok(&["rule", "list"]);
    let row = out
        .lines()
        .find(|l| l.starts_with("/guest/r1 "))
        .expect("rule row");
    assert!(
        row.contains(" private ") && row.ends_with(" active"),
        "{row}"
    );
    let out = wsk.ok(&["trigger", "fire", "t1", "-p", "x", "1"]);
    let fire_id = id_from(&out);
    assert!(out.starts_with("ok: triggered /_/t1 with id "), "{out}");
    let fired = wsk.eventually("the rule's activation", || {
        records(&wsk, "echo")
            .into_iter()
            .find(|r| r["response"]["result"]["x"] == 1)
    });
    assert_eq!(fired["response"]["result"]["k"], "v2");
    assert_eq!(
        fired["cause"],
        fire_id.as_str(),
        "caused by the trigger activation"
    );
    let trigger_record = wsk.json(&["activation", "get", &fire_id]);
    assert_eq!(trigger_record["name"], "t1");

    assert_eq!(wsk.ok(&["rule", "disable", "r1"]), "ok: disabled rule r1\n");
    assert_eq!(
        wsk.ok(&["rule", "status", "r1"]),
        "ok: rule r1 is inactive\n"
    );
    assert!(
        wsk.ok(&["trigger", "fire", "t1"])
            .contains("no active rules")
    );
    assert_eq!(wsk.ok(&["rule", "enable", "r1"]), "ok: enabled rule r1\n");
    assert_eq!(
        wsk.json(&["rule", "status", "r1"]),
        json!({"name": "r1", "status": "active"})
    );
    assert_eq!(
        wsk.ok(&["rule", "update", "r1", "t1", "echo2"]),
        "ok: updated rule r1\n"
    );
    assert_eq!(
        wsk.json(&["rule", "get", "r1"])["action"],
        json!({"path": "guest", "name": "echo2"})
    );
    assert_eq!(
        wsk.ok(&["rule", "get", "r1", "--summary"]),
        "rule /guest/r1\n   (status: active)\n"
    );

    let run = wsk.fails(&["rule", "create", "r2", "nosuchtrigger", "echo"], 144);
    assert!(
        run.stderr.contains("Unable to create rule 'r2'") && run.stderr.contains("does not exist"),
        "{run:?}"
    );
    assert_eq!(
        wsk.ok(&["rule", "delete", "r1", "--disable"]),
        "ok: deleted rule r1\n"
    );
    let run = wsk.fails(&["rule", "get", "r1"], 148);
    assert!(
        run.stderr
            .contains("The requested resource does not exist."),
        "{run:?}"
    );
    assert_eq!(
        wsk.ok(&["trigger", "delete", "t1"]),
        "ok: deleted trigger t1\n"
    );
    let run = wsk.fails(&["trigger", "fire", "t1"], 148);
    assert!(
        run.stderr
            .contains("Unable to fire trigger 't1': The requested resource does not exist."),
        "{run:?}"
    );
}

#[test]
fn feeds_lifecycle_and_alarms() {
    let server = Server::start();
    let wsk = Wsk::new(&server);
    let feed = wsk.file("feed.js", FEED_JS.as_bytes());
    wsk.ok(&["action", "create", "feeds", &feed]);

    // CREATE: trigger with the feed annotation, then the feed action with the lifecycle params.
    let out = wsk.ok(&[
        "trigger",
        "create",
        "ft",
        "--feed",
        "feeds",
        "-p",
        "cron",
        "*/5 * * * *",
    ]);
    let mut lines = out.lines();
    let create_id = id_from(lines.next().expect("invoked line"));
    assert!(
        out.starts_with("ok: invoked /guest/feeds with id "),
        "{out}"
    );
    assert_eq!(lines.next(), Some("ok: created trigger ft"));
    let t = wsk.json(&["trigger", "get", "ft"]);
    assert_eq!(kv(&t["annotations"], "feed"), Some(&json!("/guest/feeds")));
    assert_eq!(
        kv(&t["parameters"], "cron"),
        None,
        "feed parameters go to the feed: {t}"
    );
    let created = wsk.eventually("the CREATE record", || {
        let run = wsk.run(&["activation", "result", &create_id, "--json"]);
        (run.code == 0).then(|| serde_json::from_str::<Value>(&run.stdout).expect("json"))
    });
    assert_eq!(
        created["result"],
        json!({"event": "CREATE", "triggerName": "/guest/ft", "authKey": GUEST_KEY, "cron": "*/5 * * * *"})
    );

    // READ on get, UPDATE with the new parameters on update, DELETE before the trigger goes.
    wsk.ok(&["trigger", "get", "ft"]);
    let out = wsk.ok(&["trigger", "update", "ft", "-p", "cron", "0 * * * *"]);
    assert!(
        out.starts_with("ok: invoked /guest/feeds with id ")
            && out.ends_with("ok: updated trigger ft\n"),
        "{out}"
    );
    let out = wsk.ok(&["trigger", "delete", "ft"]);
    assert!(
        out.starts_with("ok: invoked /guest/feeds with id ")
            && out.ends_with("ok: deleted trigger ft\n"),
        "{out}"
    );
    wsk.fails(&["trigger", "get", "ft"], 148);
    // Two READs: the `trigger get --json` above and the plain one.
    let events = wsk.eventually("all five lifecycle records", || {
        let mut events: Vec<(String, Value)> = records(&wsk, "feeds")
            .iter()
            .map(|r| {
                let result = &r["response"]["result"];
                (
                    result["event"].as_str().unwrap_or("").to_owned(),
                    result["cron"].clone(),
                )
            })
            .collect();
        events.reverse();
        (events.len() == 5).then_some(events)
    });
    assert_eq!(
        events,
        [
            ("CREATE".to_owned(), json!("*/5 * * * *")),
            ("READ".to_owned(), Value::Null),
            ("READ".to_owned(), Value::Null),
            ("UPDATE".to_owned(), json!("0 * * * *")),
            ("DELETE".to_owned(), Value::Null),
        ]
    );
    let logs = wsk.ok(&["activation", "logs", &create_id, "--strip"]);
    assert_eq!(logs, "lifecycle CREATE /guest/ft\n");

    // A feed that fails: the trigger is deleted again and the feed's error is shown.
    let run = wsk.run(&[
        "trigger", "create", "bad", "--feed", "/_/feeds", "-p", "fail", "true",
    ]);
    assert_ne!(run.code, 0, "{run:?}");
    assert!(
        run.stderr.starts_with(
            "error: Unable to create trigger 'bad': the feed action /guest/feeds failed on CREATE"
        ) && run.stderr.contains("feed refused"),
        "{run:?}"
    );
    wsk.fails(&["trigger", "get", "bad"], 148);
    let run = wsk.run(&["trigger", "create", "bad2", "--feed", "/guest/nofeed"]);
    assert_eq!(run.code, 148, "{run:?}");
    wsk.fails(&["trigger", "get", "bad2"], 148);

    // The built-in alarms feed: invalid parameters are refused (and the trigger removed);
    // a valid schedule fires the trigger, whose rule runs an action.
    let run = wsk.run(&[
        "trigger",
        "create",
        "badcron",
        "--feed",
        "/whisk.system/alarms/alarm",
        "-p",
        "cron",
        "nonsense",
    ]);
    assert_ne!(run.code, 0, "{run:?}");
    assert!(
        run.stderr.contains("Unable to create trigger 'badcron'"),
        "{run:?}"
    );
    wsk.fails(&["trigger", "get", "badcron"], 148);
    let echo = wsk.file("echo.js", ECHO_JS.as_bytes());
    wsk.ok(&["action", "create", "tick", &echo]);
    let out = wsk.ok(&[
        "trigger",
        "create",
        "every",
        "--feed",
        "/whisk.system/alarms/alarm",
        "-p",
        "cron",
        "* * * * * *",
        "-p",
        "trigger_payload",
        r#"{"tick": true}"#,
    ]);
    assert!(
        out.starts_with("ok: invoked /whisk.system/alarms/alarm with id ")
            && out.ends_with("ok: created trigger every\n"),
        "{out}"
    );
    wsk.ok(&["rule", "create", "on-every", "every", "tick"]);
    let fired = wsk.eventually("an alarm-fired activation", || {
        records(&wsk, "tick")
            .into_iter()
            .find(|r| r["response"]["result"]["tick"] == true)
    });
    assert_eq!(fired["name"], "tick");
    let out = wsk.ok(&["trigger", "delete", "every"]);
    assert!(
        out.starts_with("ok: invoked /whisk.system/alarms/alarm with id ")
            && out.ends_with("ok: deleted trigger every\n"),
        "{out}"
    );
}
