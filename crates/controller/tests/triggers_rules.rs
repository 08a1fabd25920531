//! Triggers and rules (wire spec §1.4, §1.5, §2.4, §2.5): CRUD, rule status kept on the
//! trigger, enable/disable, moving a rule between triggers.

mod common;

use common::*;

async fn setup(srv: &TestServer) {
    srv.put("triggers/t1", json!({})).await.ok();
    srv.put("triggers/t2", json!({})).await.ok();
    srv.create_action("actions/hello", json!({})).await;
}

#[tokio::test]
async fn create_get_update_delete_a_trigger() {
    let srv = TestServer::start().await;
    let t = srv
        .put(
            "triggers/t",
            json!({"parameters": [{"key": "p", "value": 1}],
                   "annotations": [{"key": "feed", "value": "/whisk.system/alarms/alarm"}]}),
        )
        .await
        .ok();
    assert_eq!(t["namespace"], "guest");
    assert_eq!(t["name"], "t");
    assert_eq!(t["version"], "0.0.1");
    assert_eq!(t["publish"], false);
    assert_eq!(t["limits"], json!({}));
    assert_eq!(t["parameters"], json!([{"key": "p", "value": 1}]));
    assert!(t.get("rules").is_none(), "no rules yet: {t}");
    assert_eq!(srv.get("triggers/t").await.ok(), t);

    srv.put("triggers/t", json!({}))
        .await
        .err_msg(409, "resource already exists");
    let t2 = srv
        .put(
            "triggers/t?overwrite=true",
            json!({"annotations": [{"key": "x", "value": 2}]}),
        )
        .await
        .ok();
    assert_eq!(t2["version"], "0.0.2");
    assert_eq!(
        t2["annotations"],
        json!([{"key": "x", "value": 2}]),
        "replaced"
    );
    assert_eq!(t2["parameters"], t["parameters"], "kept");

    assert_eq!(srv.delete("triggers/t").await.ok(), t2);
    srv.get("triggers/t").await.err(404);
    srv.delete("triggers/t").await.err(404);
}

#[tokio::test]
async fn trigger_feed_annotation_must_be_a_name() {
    let srv = TestServer::start().await;
    srv.put(
        "triggers/t",
        json!({"annotations": [{"key": "feed", "value": "a,b"}]}),
    )
    .await
    .err_msg(400, "Feed name is not valid");
    srv.put(
        "triggers/t",
        json!({"annotations": [{"key": "feed", "value": 42}]}),
    )
    .await
    .err_msg(400, "Feed name is not valid");
    srv.get("triggers/t").await.err(404);
}

#[tokio::test]
async fn list_triggers_and_rules() {
    let srv = TestServer::start().await;
    for i in 0..3 {
        srv.put(&format!("triggers/t{i}"), json!({})).await.ok();
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    srv.create_action("actions/a", json!({})).await;
    assert_eq!(names(&srv.get("triggers").await.ok()), ["t2", "t1", "t0"]);
    assert_eq!(
        names(&srv.get("triggers?limit=1&skip=1").await.ok()),
        ["t1"]
    );
    assert_eq!(
        srv.get("triggers?count=true").await.ok(),
        json!({"triggers": 3})
    );
    let first = &srv.get("triggers?limit=1").await.ok()[0];
    for k in [
        "namespace",
        "name",
        "version",
        "publish",
        "annotations",
        "updated",
    ] {
        assert!(first.get(k).is_some(), "summary has {k}: {first}");
    }

    for i in 0..3 {
        srv.put(
            &format!("rules/r{i}"),
            json!({"trigger": format!("/_/t{i}"), "action": "/_/a"}),
        )
        .await
        .ok();
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    let rules = srv.get("rules").await.ok();
    assert_eq!(names(&rules), ["r2", "r1", "r0"]);
    assert_eq!(rules[0]["trigger"], json!({"path": "guest", "name": "t2"}));
    assert_eq!(rules[0]["action"], json!({"path": "guest", "name": "a"}));
    assert_eq!(names(&srv.get("rules?skip=2").await.ok()), ["r0"]);
    assert_eq!(srv.get("rules?count=true").await.ok(), json!({"rules": 3}));
}

#[tokio::test]
async fn rule_lifecycle() {
    let srv = TestServer::start().await;
    setup(&srv).await;

    let r = srv
        .put(
            "rules/r",
            json!({"trigger": "/_/t1", "action": "/_/hello", "status": "inactive"}),
        )
        .await
        .ok();
    assert_eq!(r["namespace"], "guest");
    assert_eq!(r["name"], "r");
    assert_eq!(r["status"], "active", "a status in the PUT body is ignored");
    assert_eq!(r["trigger"], json!({"path": "guest", "name": "t1"}));
    assert_eq!(r["action"], json!({"path": "guest", "name": "hello"}));
    assert_eq!(r["version"], "0.0.1");
    assert_eq!(r["publish"], false);
    assert_eq!(srv.get("rules/r").await.ok(), r);

    // The link lives on the trigger.
    let t1 = srv.get("triggers/t1").await.ok();
    assert_eq!(
        t1["rules"],
        json!({"guest/r": {"action": {"path": "guest", "name": "hello"}, "status": "active"}})
    );

    // Updating the trigger keeps its rules.
    let t1 = srv
        .put(
            "triggers/t1?overwrite=true",
            json!({"parameters": [{"key": "k", "value": 1}]}),
        )
        .await
        .ok();
    assert_eq!(t1["rules"]["guest/r"]["status"], "active");

    // Disable and enable.
    let off = srv.post("rules/r", json!({"status": "inactive"})).await;
    assert_eq!(off.status, 200, "{}", off.text);
    assert_eq!(srv.get("rules/r").await.ok()["status"], "inactive");
    assert_eq!(
        srv.get("triggers/t1").await.ok()["rules"]["guest/r"]["status"],
        "inactive"
    );
    // Same state again is fine.
    assert_eq!(
        srv.post("rules/r", json!({"status": "inactive"}))
            .await
            .status,
        200
    );
    assert_eq!(
        srv.post("rules/r", json!({"status": "active"}))
            .await
            .status,
        200
    );
    assert_eq!(srv.get("rules/r").await.ok()["status"], "active");

    srv.post("rules/r", json!({"status": "paused"}))
        .await
        .err_msg(
            400,
            "'paused' is not a recognized rule state, must be one of ['active', 'inactive']",
        );
    srv.post("rules/missing", json!({"status": "active"}))
        .await
        .err(404);

    // Overwrite keeps the status as the trigger records it.
    srv.post("rules/r", json!({"status": "inactive"})).await;
    let r2 = srv
        .put(
            "rules/r?overwrite=true",
            json!({"annotations": [{"key": "a", "value": 1}]}),
        )
        .await
        .ok();
    assert_eq!(r2["version"], "0.0.2");
    assert_eq!(r2["status"], "inactive");
    assert_eq!(r2["trigger"], r["trigger"]);
    assert_eq!(r2["annotations"], json!([{"key": "a", "value": 1}]));
    srv.put("rules/r", json!({"trigger": "/_/t1", "action": "/_/hello"}))
        .await
        .err_msg(409, "resource already exists");

    // Delete unlinks it from the trigger and reports it inactive.
    srv.post("rules/r", json!({"status": "active"})).await;
    let deleted = srv.delete("rules/r").await.ok();
    assert_eq!(deleted["status"], "inactive");
    assert_eq!(deleted["name"], "r");
    srv.get("rules/r").await.err(404);
    assert!(srv.get("triggers/t1").await.ok().get("rules").is_none());
}

#[tokio::test]
async fn moving_a_rule_to_another_trigger() {
    let srv = TestServer::start().await;
    setup(&srv).await;
    srv.put("rules/r", json!({"trigger": "/_/t1", "action": "/_/hello"}))
        .await
        .ok();
    srv.post("rules/r", json!({"status": "inactive"})).await;

    let moved = srv
        .put("rules/r?overwrite=true", json!({"trigger": "/guest/t2"}))
        .await
        .ok();
    assert_eq!(moved["trigger"], json!({"path": "guest", "name": "t2"}));
    assert_eq!(moved["action"], json!({"path": "guest", "name": "hello"}));
    assert!(
        srv.get("triggers/t1").await.ok().get("rules").is_none(),
        "link removed from the old trigger"
    );
    let t2 = srv.get("triggers/t2").await.ok();
    assert_eq!(
        t2["rules"]["guest/r"]["action"],
        json!({"path": "guest", "name": "hello"})
    );
    assert_eq!(srv.get("rules/r").await.ok()["status"], moved["status"]);

    // Changing the action updates the link.
    srv.create_action("actions/other", json!({})).await;
    srv.put("rules/r?overwrite=true", json!({"action": "other"}))
        .await
        .ok();
    assert_eq!(
        srv.get("triggers/t2").await.ok()["rules"]["guest/r"]["action"],
        json!({"path": "guest", "name": "other"})
    );
}

#[tokio::test]
async fn rules_with_missing_triggers() {
    let srv = TestServer::start().await;
    setup(&srv).await;
    srv.put("rules/r", json!({"trigger": "/_/t1", "action": "/_/hello"}))
        .await
        .ok();
    // Deleting the trigger leaves the rule, now inactive.
    srv.delete("triggers/t1").await.ok();
    let r = srv.get("rules/r").await.ok();
    assert_eq!(r["status"], "inactive");
    srv.post("rules/r", json!({"status": "active"}))
        .await
        .err_msg(404, "Only rules with existing triggers can be activated");
    assert_eq!(srv.delete("rules/r").await.ok()["status"], "inactive");
}

#[tokio::test]
async fn rules_to_packaged_and_public_actions() {
    let srv = TestServer::start().await;
    setup(&srv).await;
    srv.put("packages/p", json!({})).await.ok();
    srv.create_action("actions/p/inner", json!({})).await;
    let r = srv
        .put("rules/r1", json!({"trigger": "t1", "action": "p/inner"}))
        .await
        .ok();
    assert_eq!(r["action"], json!({"path": "guest/p", "name": "inner"}));
    let r = srv
        .put(
            "rules/r2",
            json!({"trigger": "/_/t1", "action": "/whisk.system/utils/echo"}),
        )
        .await
        .ok();
    assert_eq!(
        r["action"],
        json!({"path": "whisk.system/utils", "name": "echo"})
    );
    let t1 = srv.get("triggers/t1").await.ok();
    assert_eq!(t1["rules"].as_object().unwrap().len(), 2);
}

#[tokio::test]
async fn rule_bad_inputs() {
    let srv = TestServer::start().await;
    setup(&srv).await;
    let alice = srv.create_namespace("alice").await;
    srv.as_key(&alice)
        .put(
            "actions/a",
            json!({"exec": {"kind": "nodejs:20", "code": "x"}}),
        )
        .await
        .ok();
    let rule = |body: serde_json::Value| {
        let srv = &srv;
        async move { srv.put("rules/bad", body).await }
    };
    let invalid = "rule requires a valid trigger and a valid action";
    rule(json!({})).await.err_msg(400, invalid);
    rule(json!({"trigger": "/_/t1"}))
        .await
        .err_msg(400, invalid);
    rule(json!({"action": "/_/hello"}))
        .await
        .err_msg(400, invalid);
    rule(json!({"trigger": "/_/t1", "action": "/"}))
        .await
        .err_msg(400, invalid);
    rule(json!({"trigger": "/_/t1", "action": 7}))
        .await
        .err_contains(400, "The request content was malformed");
    rule(json!({"trigger": "/_/nope", "action": "/_/hello"}))
        .await
        .err_msg(400, "trigger /guest/nope does not exist");
    rule(json!({"trigger": "/_/t1", "action": "/_/nope"}))
        .await
        .err_msg(400, "action /guest/nope does not exist");
    rule(json!({"trigger": "/_/t1", "action": "/alice/a"}))
        .await
        .err(403);
    srv.get("rules/bad").await.err(404);
    assert!(srv.get("triggers/t1").await.ok().get("rules").is_none());
    srv.post("rules/bad", json!({"status": "active"}))
        .await
        .err(404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_rules_on_one_trigger_are_all_linked() {
    let srv = std::sync::Arc::new(TestServer::start().await);
    setup(&srv).await;
    let n = 24;
    let tasks = (0..n).map(|i| {
        let srv = srv.clone();
        tokio::spawn(async move {
            srv.put(
                &format!("rules/r{i}"),
                json!({"trigger": "/_/t1", "action": "/_/hello"}),
            )
            .await
        })
    });
    let mut created = Vec::new();
    for (i, t) in tasks.enumerate() {
        let r = t.await.expect("task");
        if r.status == 200 {
            assert_eq!(r.body["status"], "active");
            created.push(format!("guest/r{i}"));
        } else {
            r.err(r.status);
            // A rejected rule leaves nothing behind.
            srv.get(&format!("rules/r{i}")).await.err(404);
        }
    }
    let t1 = srv.get("triggers/t1").await.ok();
    let mut linked: Vec<String> = t1["rules"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    linked.sort();
    created.sort();
    assert_eq!(
        linked, created,
        "every created rule is linked on the trigger"
    );
}
