//! The programming model beyond single actions, through the API of a real `brisk serve`:
//! sequences, conductors, triggers and rules, alarms, CloudEvents and web actions.

mod api;

use std::time::Duration;

use api::*;

fn id_of(r: &Resp) -> String {
    r.body["activationId"]
        .as_str()
        .expect("activation id")
        .to_owned()
}

#[test]
fn sequences_chain_results_stop_on_errors_and_record_components() {
    let b = Brisk::start(&[]);
    b.action(
        "inc",
        "nodejs:20",
        "function main(a) { return {n: (a.n || 0) + 1} }",
        json!({}),
    );
    b.action(
        "dbl",
        "python:3.11",
        "def main(a):\n    return {'n': a['n'] * 2}\n",
        json!({}),
    );
    b.action(
        "fail",
        "nodejs:20",
        "function main(a) { return {error: 'stop at ' + a.n} }",
        json!({}),
    );
    let r = b.put("actions/seq", json!({"exec": {"kind": "sequence", "components": ["/_/inc", "/_/dbl", "/whisk.system/utils/echo", "/_/inc"]}}));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["parameters"][0]["key"], "_actions");
    let r = b.invoke("seq", json!({"n": 1}));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["response"]["result"], json!({"n": 5}));
    assert_eq!(annotation(&r.body, "kind"), Some(&json!("sequence")));
    assert_eq!(annotation(&r.body, "topmost"), Some(&json!(true)));
    let seq_id = id_of(&r);
    let steps = r.body["logs"].as_array().unwrap().clone();
    assert_eq!(steps.len(), 4);
    let mut total = 0;
    for s in &steps {
        let rec = b.activation(s.as_str().unwrap());
        assert_eq!(rec["cause"], seq_id.as_str());
        assert_eq!(annotation(&rec, "causedBy"), Some(&json!("sequence")));
        total += rec["duration"].as_u64().unwrap();
    }
    assert_eq!(r.body["duration"].as_u64().unwrap(), total);

    // An error mid-sequence ends it with that step's response.
    b.put(
        "actions/broken",
        json!({"exec": {"kind": "sequence", "components": ["/_/inc", "/_/fail", "/_/dbl"]}}),
    );
    let r = b.invoke("broken", json!({"n": 1}));
    assert_eq!(r.status, 502, "{}", r.text);
    assert_eq!(r.body["response"]["result"], json!({"error": "stop at 2"}));
    assert_eq!(r.body["logs"].as_array().unwrap().len(), 2);

    // Nested sequences run inline; bad definitions are refused.
    b.put(
        "actions/outer",
        json!({"exec": {"kind": "sequence", "components": ["/_/seq", "/_/inc"]}}),
    );
    assert_eq!(
        b.invoke_result("outer", json!({"n": 1})).body,
        json!({"n": 6})
    );
    let r = b.put(
        "actions/cyc?overwrite=true",
        json!({"exec": {"kind": "sequence", "components": ["/_/cyc"]}}),
    );
    assert_eq!(r.status, 400);
    let r = b.put(
        "actions/miss",
        json!({"exec": {"kind": "sequence", "components": ["/_/nothere"]}}),
    );
    assert_eq!(
        (r.status, r.body["error"].as_str()),
        (400, Some("Sequence component does not exist."))
    );
    // A component deleted after creation fails the run as an application error.
    b.action(
        "tmp",
        "nodejs:20",
        "function main(a) { return a }",
        json!({}),
    );
    b.put(
        "actions/dangling",
        json!({"exec": {"kind": "sequence", "components": ["/_/tmp"]}}),
    );
    b.delete("actions/tmp");
    let r = b.invoke("dangling", json!({}));
    assert_eq!(
        r.body["response"]["result"]["error"],
        "Sequence component does not exist."
    );
}

#[test]
fn conductor_actions_drive_compositions() {
    let b = Brisk::start(&[]);
    b.action(
        "triple",
        "nodejs:20",
        "function main(a) { return {v: a.v * 3} }",
        json!({}),
    );
    b.action(
        "plus1",
        "nodejs:20",
        "function main(a) { return {v: a.v + 1} }",
        json!({}),
    );
    // Runs triple then plus1, carrying a step counter in state.
    let code = "function main(p) {\n\
        const step = p.step || 0;\n\
        if (step === 0) return {action: 'triple', params: {v: p.v}, state: {step: 1}};\n\
        if (step === 1) return {action: '/_/plus1', params: {v: p.v}, state: {step: 2}};\n\
        return {params: {v: p.v, steps: step}};\n}";
    b.action(
        "cond",
        "nodejs:20",
        code,
        json!({"annotations": [{"key": "conductor", "value": true}]}),
    );
    let r = b.invoke("cond", json!({"v": 2}));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["response"]["result"], json!({"v": 7, "steps": 2}));
    assert_eq!(annotation(&r.body, "conductor"), Some(&json!(true)));
    // conductor, triple, conductor, plus1, conductor
    assert_eq!(r.body["logs"].as_array().unwrap().len(), 5);
    // An unknown component is reported back to the conductor as an error.
    let code = "function main(p) { if (p.error) return {params: {seen: p.error}}; return {action: 'nope'} }";
    b.action(
        "lost",
        "nodejs:20",
        code,
        json!({"annotations": [{"key": "conductor", "value": true}]}),
    );
    let r = b.invoke_result("lost", json!({}));
    assert!(
        r.body["seen"]
            .as_str()
            .unwrap()
            .contains("Failed to resolve action"),
        "{}",
        r.text
    );
}

#[test]
fn triggers_fan_out_to_rules_and_record_the_fire() {
    let b = Brisk::start(&[]);
    b.action(
        "a1",
        "nodejs:20",
        "function main(a) { return {who: 'a1', got: a} }",
        json!({}),
    );
    b.action(
        "a2",
        "nodejs:20",
        "function main(a) { return {who: 'a2', got: a} }",
        json!({}),
    );
    b.put("triggers/t", json!({"parameters": [{"key": "fromTrigger", "value": 1}, {"key": "x", "value": "trigger"}]}));
    // No rules: 204 and no record.
    let r = b.post("triggers/t", json!({}));
    assert_eq!(r.status, 204);
    b.put("rules/r1", json!({"trigger": "/_/t", "action": "/_/a1"}));
    b.put("rules/r2", json!({"trigger": "/_/t", "action": "/_/a2"}));
    b.put("rules/r3", json!({"trigger": "/_/t", "action": "/_/a2"}));
    assert_eq!(
        b.post("rules/r3", json!({"status": "inactive"})).status,
        200
    );
    let r = b.post("triggers/t", json!({"x": "payload"}));
    assert_eq!(r.status, 202, "{}", r.text);
    let fire = id_of(&r);
    let rec = b.activation(&fire);
    assert_eq!(rec["name"], "t");
    assert_eq!(rec["response"]["result"], json!({"x": "payload"}));
    assert!(rec.get("end").is_none() && rec.get("duration").is_none());
    let logs: Vec<Value> = rec["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| serde_json::from_str(l.as_str().unwrap()).unwrap())
        .collect();
    assert_eq!(logs.len(), 3);
    let inactive = logs.iter().find(|l| l["rule"] == "guest/r3").unwrap();
    assert_eq!(inactive["statusCode"], 1);
    assert!(inactive["error"].as_str().unwrap().contains("is inactive"));
    for l in logs.iter().filter(|l| l["success"] == true) {
        let a = b.activation(l["activationId"].as_str().unwrap());
        assert_eq!(a["cause"], fire.as_str());
        assert_eq!(
            a["response"]["result"]["got"]["x"], "payload",
            "payload wins over trigger params"
        );
        assert_eq!(a["response"]["result"]["got"]["fromTrigger"], 1);
        assert!(
            a["response"]["result"]["got"]["__ow_headers"]
                .get("authorization")
                .is_none()
        );
    }
    // Deleting the trigger before its rules works; the rule then reads inactive.
    assert_eq!(b.delete("triggers/t").status, 200);
    assert_eq!(b.get("rules/r1").body["status"], "inactive");
    assert_eq!(b.post("triggers/t", json!({})).status, 404);
}

#[test]
fn fires_are_throttled_per_minute() {
    let b = Brisk::start(&["--fires-per-minute", "2", "--invocations-per-minute", "3"]);
    b.action("a", "nodejs:20", "function main() { return {} }", json!({}));
    b.put("triggers/t", json!({}));
    b.put("rules/r", json!({"trigger": "/_/t", "action": "/_/a"}));
    let codes: Vec<u16> = (0..3)
        .map(|_| b.post("triggers/t", json!({})).status)
        .collect();
    assert_eq!(codes, vec![202, 202, 429]);
    // Two rule invocations used two of three invocations; one more invoke is allowed, then 429.
    let codes: Vec<u16> = (0..2)
        .map(|_| b.post("actions/a", json!({})).status)
        .collect();
    assert_eq!(codes, vec![202, 429]);
    let r = b.post("actions/a", json!({}));
    assert!(
        r.body["error"]
            .as_str()
            .unwrap()
            .starts_with("Too many requests in the last minute")
    );
    assert!(r.header("retry-after").is_some());
    assert_eq!(b.get("limits").body["invocationsPerMinute"], 3);
}

#[test]
fn concurrent_and_per_action_throttles() {
    let b = Brisk::start(&["--concurrent-invocations", "2"]);
    let slow = "function main() { return new Promise(r => setTimeout(() => r({}), 3000)) }";
    b.action("slow", "nodejs:20", slow, json!({}));
    b.action(
        "one",
        "nodejs:20",
        slow,
        json!({"limits": {"instances": 1}}),
    );
    assert_eq!(b.post("actions/one", json!({})).status, 202);
    let r = b.post("actions/one", json!({}));
    assert_eq!(r.status, 429, "{}", r.text);
    assert!(
        r.body["error"]
            .as_str()
            .unwrap()
            .contains("for action 'guest/one'")
    );
    assert_eq!(b.post("actions/slow", json!({})).status, 202);
    let r = b.post("actions/slow", json!({}));
    assert_eq!(r.status, 429);
    assert_eq!(
        r.body["error"],
        "Too many concurrent requests in flight (count: 2, allowed: 2)."
    );
}

#[test]
fn alarms_fire_on_time_and_survive_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = Brisk::start_in(dir.path(), &[]);
    b.action(
        "tick",
        "nodejs:20",
        "function main(a) { return {tick: a.n} }",
        json!({}),
    );
    for t in ["soon", "later"] {
        b.put(
            &format!("triggers/{t}"),
            json!({"annotations": [{"key": "feed", "value": "/whisk.system/alarms/once"}]}),
        );
        b.put(
            &format!("rules/r_{t}"),
            json!({"trigger": format!("/_/{t}"), "action": "/_/tick"}),
        );
    }
    let feed = |event: &str, trigger: &str, extra: Value| {
        let mut body = json!({"lifecycleEvent": event, "triggerName": format!("/guest/{trigger}"), "authKey": GUEST_KEY});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        b.post(
            "/api/v1/namespaces/whisk.system/actions/alarms/once?blocking=true",
            body,
        )
    };
    let now = now_ms();
    let r = feed(
        "CREATE",
        "soon",
        json!({"date": now + 1000, "trigger_payload": {"n": 1}}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    // Bad dates and a key of another namespace are refused.
    assert_eq!(
        feed("CREATE", "soon", json!({"date": now - 1000})).status,
        502
    );
    let r = b.post(
        "/api/v1/namespaces/whisk.system/actions/alarms/alarm?blocking=true",
        json!({"lifecycleEvent": "CREATE", "triggerName": "/guest/soon", "authKey": GUEST_KEY, "cron": "99 * * * *"}),
    );
    assert_eq!(r.status, 502);
    assert!(
        r.body["response"]["result"]["error"]
            .as_str()
            .unwrap()
            .contains("not valid")
    );
    let r = b.send("POST", "/api/v1/namespaces/whisk.system/actions/alarms/once?blocking=true", Some(SYSTEM_KEY),
        Some(json!({"lifecycleEvent": "CREATE", "triggerName": "/guest/soon", "authKey": SYSTEM_KEY, "date": now + 5000}).to_string().into_bytes()),
        &[("Content-Type", "application/json")]);
    assert_eq!(r.status, 502, "{}", r.text);
    let read = feed("READ", "soon", json!({}));
    assert_eq!(
        read.body["response"]["result"]["config"]["date"],
        now + 1000
    );
    // The trigger fires within a second or so of its date.
    let fired = b.wait_for("activations?name=tick&docs=true", |r| {
        r.body.as_array().is_some_and(|a| !a.is_empty())
    });
    let tick = &fired.body[0];
    assert_eq!(tick["response"]["result"], json!({"tick": 1}));
    assert!(tick["start"].as_u64().unwrap() >= now + 1000);
    // A schedule due while the server is down fires once at start-up.
    assert_eq!(
        feed(
            "CREATE",
            "later",
            json!({"date": now_ms() + 1500, "trigger_payload": {"n": 2}})
        )
        .status,
        200
    );
    assert!(b.stop());
    std::thread::sleep(Duration::from_millis(2000));
    let b = Brisk::start_in(dir.path(), &[]);
    let fired = b.wait_for("activations?name=tick&docs=true", |r| {
        r.body.as_array().is_some_and(|a| a.len() >= 2)
    });
    assert_eq!(fired.body[0]["response"]["result"], json!({"tick": 2}));
}

#[test]
fn cloudevents_fire_triggers_in_both_modes() {
    let b = Brisk::start(&[]);
    b.action(
        "ce",
        "nodejs:20",
        "function main(a) { return a }",
        json!({}),
    );
    b.put("triggers/t", json!({}));
    b.put("rules/r", json!({"trigger": "/_/t", "action": "/_/ce"}));
    let structured = json!({"specversion": "1.0", "id": "e1", "source": "/orders", "type": "order.created",
                            "datacontenttype": "application/json", "data": {"order": 7}});
    let r = b.send(
        "POST",
        "triggers/t",
        Some(GUEST_KEY),
        Some(structured.to_string().into_bytes()),
        &[("Content-Type", "application/cloudevents+json")],
    );
    assert_eq!(r.status, 202, "{}", r.text);
    let fire = b.activation(&id_of(&r));
    let rule_run: Value = serde_json::from_str(fire["logs"][0].as_str().unwrap()).unwrap();
    let got =
        b.activation(rule_run["activationId"].as_str().unwrap())["response"]["result"].clone();
    assert_eq!(got["order"], 7);
    assert_eq!(got["__cloudevent"]["type"], "order.created");
    assert_eq!(got["__cloudevent"]["id"], "e1");
    let r = b.send(
        "POST",
        "triggers/t",
        Some(GUEST_KEY),
        Some(br#"{"sku": "x"}"#.to_vec()),
        &[
            ("ce-specversion", "1.0"),
            ("ce-id", "e2"),
            ("ce-source", "urn:shop"),
            ("ce-type", "item.added"),
            ("Content-Type", "application/json"),
        ],
    );
    assert_eq!(r.status, 202, "{}", r.text);
    let fire = b.activation(&id_of(&r));
    let rule_run: Value = serde_json::from_str(fire["logs"][0].as_str().unwrap()).unwrap();
    let got =
        b.activation(rule_run["activationId"].as_str().unwrap())["response"]["result"].clone();
    assert_eq!(
        (got["sku"].as_str(), got["__cloudevent"]["source"].as_str()),
        (Some("x"), Some("urn:shop"))
    );
    // Malformed events are a 400 with the envelope.
    let r = b.send(
        "POST",
        "triggers/t",
        Some(GUEST_KEY),
        Some(br#"{"id": "no spec"}"#.to_vec()),
        &[("Content-Type", "application/cloudevents+json")],
    );
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.body["code"].is_string() && r.body["error"].as_str().unwrap().contains("CloudEvent"));
}

#[test]
fn web_actions_serve_every_extension() {
    let b = Brisk::start(&[]);
    let web = json!({"annotations": [{"key": "web-export", "value": true}]});
    b.action(
        "echo",
        "nodejs:20",
        "function main(a) { return a }",
        web.clone(),
    );
    b.action(
        "page",
        "nodejs:20",
        "function main(a) { return {body: '<h1>' + (a.name || 'x') + '</h1>'} }",
        web.clone(),
    );
    b.action("img", "nodejs:20", "function main() { return {headers: {'content-type': 'image/png'}, statusCode: 201, body: Buffer.from([137, 80, 78, 71]).toString('base64')} }", web.clone());
    b.action(
        "err",
        "nodejs:20",
        "function main() { return {error: {statusCode: 418, body: 'teapot'}} }",
        web.clone(),
    );
    b.action(
        "hidden",
        "nodejs:20",
        "function main() { return {} }",
        json!({}),
    );
    b.action("raw", "nodejs:20", "function main(a) { return {body: a.__ow_query + '|' + a.__ow_body} }",
        json!({"annotations": [{"key": "web-export", "value": true}, {"key": "raw-http", "value": true}]}));
    b.action("secure", "nodejs:20", "function main(a) { return {user: a.__ow_user || null} }",
        json!({"annotations": [{"key": "web-export", "value": true}, {"key": "require-whisk-auth", "value": "s3cret"}]}));
    let web_get = |path: &str, headers: &[(&str, &str)]| {
        b.send(
            "GET",
            &format!("/api/v1/web/guest/default/{path}"),
            None,
            None,
            headers,
        )
    };

    let r = web_get("echo.json/some/path?q=1", &[]);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        (
            r.body["q"].as_str(),
            r.body["__ow_path"].as_str(),
            r.body["__ow_method"].as_str()
        ),
        (Some("1"), Some("/some/path"), Some("get"))
    );
    assert_eq!(
        r.header("access-control-allow-origin").as_deref(),
        Some("*")
    );
    assert!(r.header("x-openwhisk-activation-id").is_some());
    let r = web_get("page.html?name=brisk", &[]);
    assert_eq!((r.status, r.text.as_str()), (200, "<h1>brisk</h1>"));
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    let r = web_get("page.text", &[]);
    assert_eq!(r.text, "<h1>x</h1>");
    let r = web_get("page", &[]);
    assert_eq!(r.status, 200);
    let r = b.send("GET", "/api/v1/web/guest/default/img.http", None, None, &[]);
    assert_eq!(
        (r.status, r.header("content-type").as_deref()),
        (201, Some("image/png"))
    );
    let r = web_get("err.http", &[]);
    assert_eq!((r.status, r.text.as_str()), (418, "teapot"));
    assert_eq!(web_get("hidden.json", &[]).status, 404);
    assert_eq!(web_get("nothing.json", &[]).status, 404);
    assert_eq!(
        b.send(
            "GET",
            "/api/v1/web/nobody/default/echo.json",
            None,
            None,
            &[]
        )
        .status,
        404
    );
    let r = b.send(
        "POST",
        "/api/v1/web/guest/default/echo.json",
        None,
        Some(br#"{"k": [1]}"#.to_vec()),
        &[("Content-Type", "application/json")],
    );
    assert_eq!(r.body["k"], json!([1]));
    let r = b.send(
        "POST",
        "/api/v1/web/guest/default/echo.json",
        None,
        Some(b"a=1&b=two".to_vec()),
        &[("Content-Type", "application/x-www-form-urlencoded")],
    );
    assert_eq!(
        (r.body["a"].as_str(), r.body["b"].as_str()),
        (Some("1"), Some("two"))
    );
    let r = b.send(
        "POST",
        "/api/v1/web/guest/default/echo.json?__ow_method=x",
        None,
        None,
        &[],
    );
    assert_eq!(r.status, 400);
    let r = b.send(
        "POST",
        "/api/v1/web/guest/default/raw.http?a=b",
        None,
        Some(b"plain".to_vec()),
        &[("Content-Type", "text/plain")],
    );
    assert_eq!(r.text, "a=b|plain");
    let r = b.send(
        "OPTIONS",
        "/api/v1/web/guest/default/echo.json",
        None,
        None,
        &[("Access-Control-Request-Headers", "X-Custom")],
    );
    assert_eq!(
        (
            r.status,
            r.header("access-control-allow-headers").as_deref()
        ),
        (200, Some("X-Custom"))
    );
    assert_eq!(web_get("secure.json", &[]).status, 401);
    let r = web_get("secure.json", &[("X-Require-Whisk-Auth", "s3cret")]);
    assert_eq!((r.status, &r.body), (200, &json!({"user": null})));
    // Activations of web actions belong to the owner.
    assert!(
        b.get("activations?name=echo")
            .body
            .as_array()
            .unwrap()
            .len()
            >= 3
    );
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[test]
fn a_fresh_sequence_prepares_its_later_steps_while_the_first_runs() {
    // No stem cells: without preparation every step would be a cold start with `initTime`.
    let b = Brisk::start(&["--prewarm", "false"]);
    b.action(
        "first",
        "nodejs:20",
        "function main(a) { return new Promise(r => setTimeout(() => r({n: 1}), 2500)) }",
        json!({}),
    );
    for i in 2..=5 {
        let kind = if i % 2 == 0 {
            "python:3.11"
        } else {
            "nodejs:20"
        };
        let code = if kind.starts_with("python") {
            "def main(a):\n    return {'n': a['n'] + 1}\n"
        } else {
            "function main(a) { return {n: a.n + 1} }"
        };
        b.action(&format!("step{i}"), kind, code, json!({}));
    }
    b.put("actions/five", json!({"exec": {"kind": "sequence", "components": ["/_/first", "/_/step2", "/_/step3", "/_/step4", "/_/step5"]}}));
    let r = b.invoke("five", json!({}));
    assert_eq!(r.body["response"]["result"], json!({"n": 5}), "{}", r.text);
    let steps = r.body["logs"].as_array().unwrap();
    let first = b.activation(steps[0].as_str().unwrap());
    assert!(
        annotation(&first, "initTime").is_some(),
        "the first step starts cold"
    );
    assert_warm_steps(&b, &steps[1..]);
}

/// Every one of these steps ran in a container prepared for it (no `initTime`: not a cold
/// start of its own).
fn assert_warm_steps(b: &Brisk, steps: &[serde_json::Value]) {
    for s in steps {
        let rec = b.activation(s.as_str().unwrap());
        assert!(
            annotation(&rec, "initTime").is_none(),
            "step {} did not run in the container prepared for it: {rec}",
            rec["name"]
        );
    }
}

#[test]
fn a_step_arriving_before_its_prepared_container_is_ready_waits_for_it() {
    // The first step is quick, so later steps arrive while the containers prepared for them
    // are still starting: each waits for its own rather than starting a second one (which
    // would be a cold start, with `initTime`).
    let b = Brisk::start(&["--prewarm", "false"]);
    b.action(
        "quick",
        "nodejs:20",
        "function main(a) { return {n: 1} }",
        json!({}),
    );
    for i in 2..=4 {
        b.action(
            &format!("next{i}"),
            "nodejs:20",
            "function main(a) { return {n: a.n + 1} }",
            json!({}),
        );
    }
    b.put("actions/four", json!({"exec": {"kind": "sequence", "components": ["/_/quick", "/_/next2", "/_/next3", "/_/next4"]}}));
    let r = b.invoke("four", json!({}));
    assert_eq!(r.body["response"]["result"], json!({"n": 4}), "{}", r.text);
    let steps = r.body["logs"].as_array().unwrap();
    assert_warm_steps(&b, &steps[1..]);
}

#[test]
fn a_conductor_prepares_the_components_it_called_last_time() {
    let b = Brisk::start(&["--prewarm", "false"]);
    let component = |v: u32| format!("function main(a) {{ return {{v: (a.v || 0) + {v}}} }}");
    b.action("c1", "nodejs:20", &component(1), json!({}));
    b.action(
        "c2",
        "python:3.11",
        "def main(a):\n    return {'v': a.get('v', 0) + 10}\n",
        json!({}),
    );
    // The conductor's first step is slow, so prepared containers are ready before they are used.
    let code = "function main(p) {\n\
        if (p.step === undefined) return new Promise(r => setTimeout(() => r({action: 'c1', params: {v: 0}, state: {step: 1}}), 2500));\n\
        if (p.step === 1) return {action: 'c2', params: {v: p.v}, state: {step: 2}};\n\
        return {params: {v: p.v}};\n}";
    b.action(
        "cond",
        "nodejs:20",
        code,
        json!({"annotations": [{"key": "conductor", "value": true}]}),
    );
    assert_eq!(b.invoke_result("cond", json!({})).body, json!({"v": 11}));
    // New versions of the components: their old containers cannot serve them.
    b.action("c1", "nodejs:20", &component(2), json!({}));
    b.action(
        "c2",
        "python:3.11",
        "def main(a):\n    return {'v': a.get('v', 0) + 20}\n",
        json!({}),
    );
    let r = b.invoke("cond", json!({}));
    assert_eq!(r.body["response"]["result"], json!({"v": 22}), "{}", r.text);
    let steps = r.body["logs"].as_array().unwrap();
    for s in steps {
        let rec = b.activation(s.as_str().unwrap());
        if rec["name"] == "c1" || rec["name"] == "c2" {
            assert!(
                annotation(&rec, "initTime").is_none(),
                "{} was prepared ahead: {rec}",
                rec["name"]
            );
        }
    }
}
