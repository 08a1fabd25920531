//! Actions (wire spec §1.3, §2.2): create, get, update, delete, list, packaged actions,
//! sequences and the action-specific bad inputs.

mod common;

use common::*;

const CODE: &str = "function main(a) { return a }";

#[tokio::test]
async fn create_get_delete_an_action() {
    let srv = TestServer::start().await;
    let created = srv
        .put(
            "actions/hello",
            json!({"exec": {"kind": "nodejs:20", "code": CODE},
                   "parameters": [{"key": "name", "value": "World"}]}),
        )
        .await
        .ok();
    assert_eq!(created["namespace"], "guest");
    assert_eq!(created["name"], "hello");
    assert_eq!(created["version"], "0.0.1");
    assert_eq!(created["publish"], false);
    assert_eq!(
        created["exec"],
        json!({"kind": "nodejs:20", "code": CODE, "binary": false})
    );
    assert_eq!(
        created["parameters"],
        json!([{"key": "name", "value": "World"}])
    );
    assert_eq!(
        created["limits"],
        json!({"timeout": 60000, "memory": 256, "logs": 10, "concurrency": 1})
    );
    assert_eq!(
        kv(&created["annotations"], "exec"),
        Some(&json!("nodejs:20"))
    );
    assert_eq!(
        kv(&created["annotations"], "provide-api-key"),
        Some(&json!(false))
    );
    assert!(created["updated"].as_u64().unwrap() > 1_600_000_000_000);

    let got = srv.get("actions/hello").await.ok();
    assert_eq!(got, created);
    // The explicit namespace works as well as `_`.
    assert_eq!(
        srv.get("/api/v1/namespaces/guest/actions/hello").await.ok(),
        created
    );

    let no_code = srv.get("actions/hello?code=false").await.ok();
    assert_eq!(
        no_code["exec"],
        json!({"kind": "nodejs:20", "binary": false})
    );
    assert_eq!(no_code["parameters"], created["parameters"]);

    assert_eq!(srv.delete("actions/hello").await.ok(), created);
    srv.get("actions/hello")
        .await
        .err_msg(404, "The requested resource does not exist.");
    srv.delete("actions/hello")
        .await
        .err_msg(404, "The requested resource does not exist.");
}

#[tokio::test]
async fn kinds_main_binary_and_blackbox() {
    let srv = TestServer::start().await;
    let a = srv
        .put(
            "actions/d",
            json!({"exec": {"kind": "nodejs:default", "code": CODE, "main": "handler"}}),
        )
        .await
        .ok();
    assert_eq!(a["exec"]["kind"], "nodejs:20");
    assert_eq!(a["exec"]["main"], "handler");
    assert_eq!(kv(&a["annotations"], "exec"), Some(&json!("nodejs:20")));

    let py = srv
        .put(
            "actions/py",
            json!({"exec": {"kind": "python:default", "code": "def main(a):\n  return a"}}),
        )
        .await
        .ok();
    assert_eq!(py["exec"]["kind"], "python:3.11");

    // Base64 code is binary whatever the client says.
    let zip = srv
        .put(
            "actions/z",
            json!({"exec": {"kind": "nodejs:20", "code": "UEsDBBQAAAAIAA==", "binary": false}}),
        )
        .await
        .ok();
    assert_eq!(zip["exec"]["binary"], true);
    let text = srv
        .put(
            "actions/t",
            json!({"exec": {"kind": "nodejs:20", "code": CODE, "binary": true}}),
        )
        .await
        .ok();
    assert_eq!(text["exec"]["binary"], false);

    let bb = srv
        .put(
            "actions/bb",
            json!({"exec": {"kind": "blackbox", "image": "openwhisk/dockerskeleton"}}),
        )
        .await
        .ok();
    assert_eq!(bb["exec"]["kind"], "blackbox");
    assert_eq!(bb["exec"]["image"], "openwhisk/dockerskeleton");
    assert_eq!(kv(&bb["annotations"], "exec"), Some(&json!("blackbox")));
}

#[tokio::test]
async fn user_annotations_are_kept_and_exec_is_forced() {
    let srv = TestServer::start().await;
    let a = srv
        .create_action(
            "actions/a",
            json!({"annotations": [
                {"key": "exec", "value": "python:3"},
                {"key": "provide-api-key", "value": true},
                {"key": "web-export", "value": true}
            ]}),
        )
        .await;
    assert_eq!(kv(&a["annotations"], "exec"), Some(&json!("nodejs:20")));
    assert_eq!(kv(&a["annotations"], "provide-api-key"), Some(&json!(true)));
    assert_eq!(kv(&a["annotations"], "web-export"), Some(&json!(true)));
}

#[tokio::test]
async fn update_needs_overwrite_and_merges_fields() {
    let srv = TestServer::start().await;
    let v1 = srv
        .create_action(
            "actions/a",
            json!({"parameters": [{"key": "p", "value": 1}],
                   "annotations": [{"key": "x", "value": 1}, {"key": "y", "value": 2}],
                   "limits": {"timeout": 1000, "memory": 128}}),
        )
        .await;

    srv.put(
        "actions/a",
        json!({"exec": {"kind": "nodejs:20", "code": "x"}}),
    )
    .await
    .err_msg(409, "resource already exists");
    srv.put("actions/a?overwrite=false", json!({}))
        .await
        .err_msg(409, "resource already exists");

    // Only what is given changes; the version's patch goes up.
    let v2 = srv
        .put(
            "actions/a?overwrite=true",
            json!({"limits": {"memory": 512},
                   "annotations": [{"key": "y", "value": 3}, {"key": "z", "value": 4}],
                   "delAnnotations": ["x"]}),
        )
        .await
        .ok();
    assert_eq!(v2["version"], "0.0.2");
    assert_eq!(v2["exec"], v1["exec"]);
    assert_eq!(v2["parameters"], v1["parameters"]);
    assert_eq!(v2["limits"]["memory"], 512);
    assert_eq!(v2["limits"]["timeout"], 1000, "other limits are kept");
    assert_eq!(kv(&v2["annotations"], "x"), None, "deleted");
    assert_eq!(kv(&v2["annotations"], "y"), Some(&json!(3)), "merged");
    assert_eq!(kv(&v2["annotations"], "z"), Some(&json!(4)), "added");
    assert_eq!(kv(&v2["annotations"], "exec"), Some(&json!("nodejs:20")));
    assert_eq!(
        kv(&v2["annotations"], "provide-api-key"),
        Some(&json!(false)),
        "system annotations survive a merge"
    );
    assert!(v2["updated"].as_u64() >= v1["updated"].as_u64());

    // Parameters are replaced wholesale; code and kind can change.
    let v3 = srv
        .put(
            "actions/a?overwrite=true",
            json!({"exec": {"kind": "python:3.11", "code": "def main(a): return a"},
                   "parameters": [{"key": "q", "value": true}],
                   "publish": true}),
        )
        .await
        .ok();
    assert_eq!(v3["version"], "0.0.3");
    assert_eq!(v3["exec"]["kind"], "python:3.11");
    assert_eq!(v3["parameters"], json!([{"key": "q", "value": true}]));
    assert_eq!(v3["publish"], true);
    assert_eq!(kv(&v3["annotations"], "exec"), Some(&json!("python:3.11")));
    assert_eq!(kv(&v3["annotations"], "y"), Some(&json!(3)));

    // An explicit version wins.
    let v4 = srv
        .put("actions/a?overwrite=true", json!({"version": "2.1.0"}))
        .await
        .ok();
    assert_eq!(v4["version"], "2.1.0");
    assert_eq!(srv.get("actions/a").await.ok(), v4);

    // overwrite=true on a missing action creates it.
    let fresh = srv
        .put(
            "actions/fresh?overwrite=true",
            json!({"exec": {"kind": "nodejs:20", "code": CODE}}),
        )
        .await
        .ok();
    assert_eq!(fresh["version"], "0.0.1");
}

#[tokio::test]
async fn limits_are_validated_with_openwhisks_messages() {
    let srv = TestServer::start().await;
    let exec = json!({"kind": "nodejs:20", "code": CODE});
    let check = |limits: serde_json::Value, msg: &'static str| {
        let srv = &srv;
        let exec = exec.clone();
        async move {
            srv.put("actions/lim", json!({"exec": exec, "limits": limits}))
                .await
                .err_msg(400, msg);
        }
    };
    check(
        json!({"memory": 1024}),
        "memory size 1024 MB exceeds allowed threshold of 512 MB",
    )
    .await;
    check(
        json!({"memory": 64}),
        "memory size 64 MB below allowed threshold of 128 MB",
    )
    .await;
    check(
        json!({"timeout": 50}),
        "duration 50 milliseconds below allowed threshold of 100 milliseconds",
    )
    .await;
    check(
        json!({"timeout": 300001}),
        "duration 300001 milliseconds exceeds allowed threshold of 300000 milliseconds",
    )
    .await;
    check(
        json!({"logs": 11}),
        "log size 11 MB exceeds allowed threshold of 10 MB",
    )
    .await;
    check(
        json!({"concurrency": 501}),
        "concurrency 501 exceeds allowed threshold of 500",
    )
    .await;
    check(
        json!({"concurrency": 0}),
        "concurrency 0 below allowed threshold of 1",
    )
    .await;
    srv.get("actions/lim").await.err(404);

    // The edges are accepted; concurrency up to 500 is first-class here.
    let a = srv
        .create_action(
            "actions/lim",
            json!({"limits": {"memory": 128, "timeout": 300000, "logs": 0, "concurrency": 500}}),
        )
        .await;
    assert_eq!(
        a["limits"],
        json!({"timeout": 300000, "memory": 128, "logs": 0, "concurrency": 500})
    );
}

#[tokio::test]
async fn packaged_actions() {
    let srv = TestServer::start().await;
    srv.put(
        "packages/pkg",
        json!({"parameters": [{"key": "a", "value": "pkg"}, {"key": "b", "value": "pkg"}]}),
    )
    .await
    .ok();
    let a = srv
        .create_action(
            "actions/pkg/act",
            json!({"parameters": [{"key": "b", "value": "act"}]}),
        )
        .await;
    assert_eq!(a["namespace"], "guest/pkg");
    assert_eq!(a["name"], "act");

    // GET through the package shows package parameters under the action's.
    let got = srv.get("actions/pkg/act").await.ok();
    assert_eq!(got["namespace"], "guest/pkg");
    let params = &got["parameters"];
    assert_eq!(kv(params, "a"), Some(&json!("pkg")));
    assert_eq!(kv(params, "b"), Some(&json!("act")));

    // Listing the package (trailing slash) and the namespace.
    srv.create_action("actions/top", json!({})).await;
    assert_eq!(names(&srv.get("actions/pkg/").await.ok()), ["act"]);
    let all = srv.get("actions").await.ok();
    let mut all_names = names(&all);
    all_names.sort();
    assert_eq!(
        all_names,
        ["act", "top"],
        "namespace list includes packaged actions"
    );
    let listed = all
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "act")
        .unwrap();
    assert_eq!(listed["namespace"], "guest/pkg");

    // A package must exist to hold an action.
    srv.put(
        "actions/nopkg/act",
        json!({"exec": {"kind": "nodejs:20", "code": CODE}}),
    )
    .await
    .err(404);
    srv.get("actions/nopkg/act").await.err(404);
    srv.get("actions/nopkg/").await.err(404);

    assert_eq!(srv.delete("actions/pkg/act").await.ok()["name"], "act");
    assert!(names(&srv.get("actions/pkg/").await.ok()).is_empty());
}

#[tokio::test]
async fn actions_through_a_binding() {
    let srv = TestServer::start().await;
    srv.put(
        "packages/base",
        json!({"parameters": [{"key": "x", "value": "base"}, {"key": "y", "value": "base"}]}),
    )
    .await
    .ok();
    srv.create_action(
        "actions/base/act",
        json!({"parameters": [{"key": "z", "value": "act"}]}),
    )
    .await;
    srv.put(
        "packages/bound",
        json!({"binding": {"namespace": "_", "name": "base"},
               "parameters": [{"key": "y", "value": "binding"}]}),
    )
    .await
    .ok();

    let got = srv.get("actions/bound/act").await.ok();
    assert_eq!(got["name"], "act");
    assert_eq!(got["namespace"], "guest/bound");
    let p = &got["parameters"];
    assert_eq!(kv(p, "x"), Some(&json!("base")));
    assert_eq!(kv(p, "y"), Some(&json!("binding")));
    assert_eq!(kv(p, "z"), Some(&json!("act")));
    assert_eq!(names(&srv.get("actions/bound/").await.ok()), ["act"]);

    // Writing through a binding is not allowed.
    srv.put(
        "actions/bound/other",
        json!({"exec": {"kind": "nodejs:20", "code": CODE}}),
    )
    .await
    .err_msg(400, "Operation not permitted on package binding.");
    srv.delete("actions/bound/act")
        .await
        .err_msg(400, "Operation not permitted on package binding.");
    srv.get("actions/base/act").await.ok();
}

#[tokio::test]
async fn list_limit_skip_count() {
    let srv = TestServer::start().await;
    for i in 0..5 {
        srv.create_action(&format!("actions/a{i}"), json!({})).await;
        // Lists are ordered by `updated` (ms); keep the timestamps distinct.
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    // Newest first.
    assert_eq!(
        names(&srv.get("actions").await.ok()),
        ["a4", "a3", "a2", "a1", "a0"]
    );
    assert_eq!(names(&srv.get("actions?limit=2").await.ok()), ["a4", "a3"]);
    assert_eq!(
        names(&srv.get("actions?limit=2&skip=2").await.ok()),
        ["a2", "a1"]
    );
    assert_eq!(names(&srv.get("actions?skip=4").await.ok()), ["a0"]);
    assert!(names(&srv.get("actions?skip=10").await.ok()).is_empty());
    assert_eq!(names(&srv.get("actions?limit=0").await.ok()).len(), 5);
    assert_eq!(
        srv.get("actions?count=true").await.ok(),
        json!({"actions": 5})
    );

    // Summaries: no code, no parameters; exec reduced to binary.
    let first = &srv.get("actions?limit=1").await.ok()[0];
    assert_eq!(first["exec"], json!({"binary": false}));
    assert!(first.get("parameters").is_none(), "{first}");
    for k in [
        "namespace",
        "name",
        "version",
        "publish",
        "annotations",
        "limits",
        "updated",
    ] {
        assert!(first.get(k).is_some(), "summary has {k}: {first}");
    }

    // An update moves an action to the front.
    srv.put("actions/a0?overwrite=true", json!({})).await.ok();
    assert_eq!(names(&srv.get("actions?limit=1").await.ok()), ["a0"]);
}

#[tokio::test]
async fn list_parameters_are_validated() {
    let srv = TestServer::start().await;
    for coll in ["actions", "packages", "triggers", "rules"] {
        srv.get(&format!("{coll}?limit=201")).await.err_msg(
            400,
            &format!("The value '201' is not in the range of 0 to 200 for {coll}."),
        );
        srv.get(&format!("{coll}?limit=-1")).await.err_msg(
            400,
            &format!("The value '-1' is not in the range of 0 to 200 for {coll}."),
        );
        srv.get(&format!("{coll}?limit=x"))
            .await
            .err_msg(400, &format!("The value 'x' is not an integer for {coll}."));
        srv.get(&format!("{coll}?skip=y"))
            .await
            .err_msg(400, &format!("The value 'y' is not an integer for {coll}."));
        srv.get(&format!("{coll}?skip=-1")).await.err_msg(
            400,
            &format!("The value '-1' is not greater than or equal to 0 for {coll}."),
        );
        srv.get(&format!("{coll}?limit=200")).await.ok();
        srv.get(&format!("{coll}?count=maybe")).await.err(400);
    }
}

#[tokio::test]
async fn sequences() {
    let srv = TestServer::start().await;
    srv.create_action("actions/a", json!({})).await;
    srv.put("packages/p", json!({})).await.ok();
    srv.create_action("actions/p/b", json!({})).await;

    let seq = srv
        .put(
            "actions/seq",
            json!({"exec": {"kind": "sequence",
                            "components": ["/_/a", "/guest/p/b", "/whisk.system/utils/echo"]},
                   "parameters": [{"key": "dropped", "value": 1}]}),
        )
        .await
        .ok();
    assert_eq!(
        seq["exec"],
        json!({"kind": "sequence",
               "components": ["/guest/a", "/guest/p/b", "/whisk.system/utils/echo"]})
    );
    assert_eq!(
        seq["parameters"],
        json!([{"key": "_actions",
                "value": ["/guest/a", "/guest/p/b", "/whisk.system/utils/echo"]}])
    );
    assert_eq!(kv(&seq["annotations"], "exec"), Some(&json!("sequence")));
    assert_eq!(srv.get("actions/seq").await.ok(), seq);

    // A sequence of sequences.
    srv.put(
        "actions/seq2",
        json!({"exec": {"kind": "sequence", "components": ["/_/seq", "/_/a"]}}),
    )
    .await
    .ok();

    let put_seq = |name: &'static str, components: serde_json::Value| {
        let srv = &srv;
        async move {
            srv.put(
                &format!("actions/{name}?overwrite=true"),
                json!({"exec": {"kind": "sequence", "components": components}}),
            )
            .await
        }
    };
    put_seq("bad", json!(["/_/a", "/_/missing"]))
        .await
        .err_msg(400, "Sequence component does not exist.");
    put_seq("bad", json!(["/whisk.system/utils/nope"]))
        .await
        .err_msg(400, "Sequence component does not exist.");
    put_seq("bad", json!([]))
        .await
        .err_msg(400, "No component specified for the sequence.");
    put_seq("selfref", json!(["/_/selfref"]))
        .await
        .err_msg(400, "Sequence may not refer to itself.");
    // Updating `seq` to include `seq2`, which contains `seq`, is a cycle.
    put_seq("seq", json!(["/_/seq2"]))
        .await
        .err_msg(400, "Sequence may not refer to itself.");
    assert_eq!(
        srv.get("actions/seq").await.ok(),
        seq,
        "rejected update left it intact"
    );

    // 50 atomic actions are fine, 51 are too many (nested sequences count their contents).
    let fifty: Vec<String> = (0..50).map(|_| "/_/a".to_owned()).collect();
    put_seq("s50", json!(fifty)).await.ok();
    put_seq("s51", json!(["/_/s50", "/_/a"]))
        .await
        .err_msg(400, "Too many actions in the sequence.");
    let fifty_one: Vec<String> = (0..51).map(|_| "/_/a".to_owned()).collect();
    put_seq("s51", json!(fifty_one))
        .await
        .err_msg(400, "Too many actions in the sequence.");
    srv.get("actions/bad").await.err(404);
    srv.get("actions/s51").await.err(404);
}

#[tokio::test]
async fn sequence_components_must_be_readable() {
    let srv = TestServer::start().await;
    let alice = srv.create_namespace("alice").await;
    let alice = srv.as_key(&alice);
    alice.put("packages/private", json!({})).await.ok();
    alice
        .put(
            "actions/private/x",
            json!({"exec": {"kind": "nodejs:20", "code": CODE}}),
        )
        .await
        .ok();
    alice
        .put(
            "actions/y",
            json!({"exec": {"kind": "nodejs:20", "code": CODE}}),
        )
        .await
        .ok();
    for comp in ["/alice/private/x", "/alice/y"] {
        let r = srv
            .put(
                "actions/s",
                json!({"exec": {"kind": "sequence", "components": [comp]}}),
            )
            .await;
        assert_eq!(r.status, 403, "{comp}: {}", r.text);
        r.err(403);
    }
}

#[tokio::test]
async fn names_are_shared_across_collections() {
    let srv = TestServer::start().await;
    srv.create_action("actions/thing", json!({})).await;
    let msg = "Resource by this name exists but is not in this collection.";
    srv.put("triggers/thing", json!({})).await.err_msg(409, msg);
    srv.put("packages/thing", json!({})).await.err_msg(409, msg);
    srv.put(
        "rules/thing",
        json!({"trigger": "/_/t", "action": "/_/thing"}),
    )
    .await
    .err_msg(409, msg);
    srv.get("triggers/thing").await.err_msg(409, msg);
    srv.get("packages/thing").await.err_msg(409, msg);
    srv.get("rules/thing").await.err_msg(409, msg);
    srv.delete("triggers/thing").await.err_msg(409, msg);

    srv.put("triggers/trig", json!({})).await.ok();
    srv.put(
        "actions/trig",
        json!({"exec": {"kind": "nodejs:20", "code": CODE}}),
    )
    .await
    .err_msg(409, msg);
    srv.get("actions/trig").await.err_msg(409, msg);
    srv.delete("actions/trig").await.err_msg(409, msg);
    // Nothing was changed by the rejected requests.
    assert_eq!(srv.get("actions/thing").await.ok()["version"], "0.0.1");
    assert_eq!(srv.get("triggers/trig").await.ok()["name"], "trig");
}

#[tokio::test]
async fn action_bad_inputs() {
    let srv = TestServer::start().await;
    let put = |path: &'static str, body: serde_json::Value| {
        let srv = &srv;
        async move { srv.put(path, body).await }
    };
    put("actions/x", json!({}))
        .await
        .err_msg(400, "exec undefined");
    put("actions/x", json!({"parameters": []}))
        .await
        .err_msg(400, "exec undefined");
    put(
        "actions/x",
        json!({"exec": {"kind": "cobol:1", "code": "x"}}),
    )
    .await
    .err_contains(
        400,
        "The specified runtime 'cobol:1' is not supported by this platform.",
    );
    put("actions/x", json!({"exec": {"code": "x"}}))
        .await
        .err_contains(400, "The request content was malformed");
    put("actions/x", json!({"exec": "nodejs:20"}))
        .await
        .err_contains(400, "The request content was malformed");
    put(
        "actions/x",
        json!({"exec": {"kind": "nodejs:20", "code": 42}}),
    )
    .await
    .err_contains(400, "The request content was malformed");
    put(
        "actions/x",
        json!({"exec": {"kind": "nodejs:20", "code": CODE}, "parameters": {"a": 1}}),
    )
    .await
    .err_contains(400, "The request content was malformed");
    put(
        "actions/x",
        json!({"exec": {"kind": "nodejs:20", "code": CODE}, "limits": {"memory": "big"}}),
    )
    .await
    .err_contains(400, "The request content was malformed");
    put(
        "actions/x",
        json!({"exec": {"kind": "nodejs:20", "code": CODE}, "limits": {"memory": 256.5}}),
    )
    .await
    .err_contains(400, "The request content was malformed");
    put(
        "actions/x",
        json!({"exec": {"kind": "nodejs:20", "code": CODE}, "publish": "yes"}),
    )
    .await
    .err_contains(400, "The request content was malformed");
    put(
        "actions/x",
        json!({"exec": {"kind": "nodejs:20", "code": CODE}, "version": "0.0.0"}),
    )
    .await
    .err(400);
    put(
        "actions/x",
        json!({"exec": {"kind": "nodejs:20", "code": CODE}, "version": "banana"}),
    )
    .await
    .err(400);
    put("actions/x", json!({"exec": {"kind": "blackbox"}}))
        .await
        .err(400);
    put("actions/x", json!([1, 2]))
        .await
        .err_contains(400, "The request content was malformed");
    srv.get("actions/x").await.err(404);
}

#[tokio::test]
async fn namespace_limits_restrict_kinds_and_instances() {
    use brisk_model::UserLimits;
    use brisk_store::AuthStore;

    let srv = TestServer::start().await;
    let key = srv.create_namespace("alice").await;
    let limits = UserLimits {
        allowed_kinds: Some(vec!["python:3.11".into()]),
        concurrent_invocations: Some(5),
        ..UserLimits::default()
    };
    srv.store
        .set_limits("alice", &limits)
        .await
        .expect("set limits");
    let alice = srv.as_key(&key);
    alice
        .put(
            "actions/js",
            json!({"exec": {"kind": "nodejs:20", "code": CODE}}),
        )
        .await
        .err_msg(
            403,
            "The supplied authentication is not authorized to access actions of kind 'nodejs:20'.",
        );
    let py = json!({"kind": "python:3.11", "code": "def main(a):\n  return a"});
    alice
        .put(
            "actions/py",
            json!({"exec": py, "limits": {"instances": 6}}),
        )
        .await
        .err_msg(
            400,
            "Max action instance concurrency must not exceed your namespace concurrency of 5.",
        );
    alice
        .put(
            "actions/py",
            json!({"exec": py, "limits": {"instances": 0}}),
        )
        .await
        .err(400);
    let a = alice
        .put(
            "actions/py",
            json!({"exec": py, "limits": {"instances": 5}}),
        )
        .await
        .ok();
    assert_eq!(a["limits"]["instances"], 5);
    // Sequences are not a kind the namespace has to be allowed.
    alice
        .put(
            "actions/seq",
            json!({"exec": {"kind": "sequence", "components": ["/_/py"]}}),
        )
        .await
        .ok();
    let l = alice.get("limits").await.ok();
    assert_eq!(l["allowedKinds"], json!(["python:3.11"]));
    assert_eq!(l["concurrentInvocations"], 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_conflict_cleanly() {
    let srv = std::sync::Arc::new(TestServer::start().await);
    let body = json!({"exec": {"kind": "nodejs:20", "code": CODE}});

    // Racing creates: exactly one wins, the others see the entity exists.
    let creates = (0..16).map(|_| {
        let (srv, body) = (srv.clone(), body.clone());
        tokio::spawn(async move { srv.put("actions/race", body).await })
    });
    let mut statuses = Vec::new();
    for c in creates {
        let r = c.await.expect("task");
        if r.status != 200 {
            r.err_msg(409, "resource already exists");
        }
        statuses.push(r.status);
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );

    // Racing updates: each either lands (bumping the version) or reports the conflict.
    let updates = (0..16).map(|i| {
        let srv = srv.clone();
        tokio::spawn(async move {
            srv.put(
                "actions/race?overwrite=true",
                json!({"annotations": [{"key": format!("k{i}"), "value": i}]}),
            )
            .await
        })
    });
    let mut landed = 0;
    for u in updates {
        let r = u.await.expect("task");
        match r.status {
            200 => landed += 1,
            _ => r.err_msg(409, "Concurrent modification to resource detected."),
        }
    }
    assert!(landed >= 1);
    let a = srv.get("actions/race").await.ok();
    assert_eq!(a["version"], format!("0.0.{}", 1 + landed));
    let user_keys = keys(&a["annotations"])
        .into_iter()
        .filter(|k| k.starts_with('k'))
        .count();
    assert_eq!(
        user_keys, landed,
        "every landed update merged its annotation"
    );
}
