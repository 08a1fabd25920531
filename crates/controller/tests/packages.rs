//! Packages and bindings (wire spec §1.6, §2.3, §4.2): CRUD, bindings with parameter merging,
//! `actions`/`feeds` listing, published packages across namespaces, delete with `force`.

mod common;

use common::*;

const CODE: &str = "function main(a) { return a }";

#[tokio::test]
async fn create_get_update_delete_a_package() {
    let srv = TestServer::start().await;
    let p = srv
        .put(
            "packages/p",
            json!({"parameters": [{"key": "a", "value": 1}],
                   "annotations": [{"key": "description", "value": "mine"}]}),
        )
        .await
        .ok();
    assert_eq!(p["namespace"], "guest");
    assert_eq!(p["name"], "p");
    assert_eq!(p["binding"], json!({}));
    assert_eq!(p["version"], "0.0.1");
    assert_eq!(p["publish"], false);
    assert_eq!(p["parameters"], json!([{"key": "a", "value": 1}]));
    assert_eq!(
        p["annotations"],
        json!([{"key": "description", "value": "mine"}])
    );
    assert!(p["updated"].is_u64());

    let got = srv.get("packages/p").await.ok();
    assert_eq!(got["actions"], json!([]));
    assert_eq!(got["feeds"], json!([]));
    assert_eq!(got["parameters"], p["parameters"]);

    srv.put("packages/p", json!({}))
        .await
        .err_msg(409, "resource already exists");

    // Update replaces parameters and annotations wholesale (no merge, unlike actions).
    let p2 = srv
        .put(
            "packages/p?overwrite=true",
            json!({"annotations": [{"key": "other", "value": true}], "publish": true}),
        )
        .await
        .ok();
    assert_eq!(p2["version"], "0.0.2");
    assert_eq!(p2["annotations"], json!([{"key": "other", "value": true}]));
    assert_eq!(p2["parameters"], p["parameters"], "absent fields are kept");
    assert_eq!(p2["publish"], true);
    let p3 = srv
        .put("packages/p?overwrite=true", json!({"parameters": []}))
        .await
        .ok();
    assert_eq!(p3["version"], "0.0.3");
    assert_eq!(p3["parameters"], json!([]));
    assert_eq!(p3["annotations"], p2["annotations"]);

    let deleted = srv.delete("packages/p").await.ok();
    assert_eq!(deleted["name"], "p");
    srv.get("packages/p")
        .await
        .err_msg(404, "The requested resource does not exist.");
}

#[tokio::test]
async fn package_lists_its_actions_and_feeds() {
    let srv = TestServer::start().await;
    srv.put("packages/p", json!({})).await.ok();
    srv.create_action("actions/p/plain", json!({})).await;
    srv.create_action(
        "actions/p/feed",
        json!({"annotations": [{"key": "feed", "value": true}]}),
    )
    .await;
    let got = srv.get("packages/p").await.ok();
    let mut actions = names(&got["actions"]);
    actions.sort();
    assert_eq!(actions, ["feed", "plain"]);
    assert_eq!(names(&got["feeds"]), ["feed"]);
    let entry = got["actions"].as_array().unwrap()[0].clone();
    let mut keys: Vec<&str> = entry
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort();
    assert_eq!(keys, ["annotations", "name", "version"]);
}

#[tokio::test]
async fn list_packages() {
    let srv = TestServer::start().await;
    srv.put("packages/plain", json!({})).await.ok();
    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    srv.put(
        "packages/bound",
        json!({"binding": {"namespace": "whisk.system", "name": "utils"}}),
    )
    .await
    .ok();
    let list = srv.get("packages").await.ok();
    assert_eq!(names(&list), ["bound", "plain"]);
    assert_eq!(
        list[0]["binding"],
        json!({"namespace": "whisk.system", "name": "utils"})
    );
    assert_eq!(list[1]["binding"], json!(false));
    assert!(list[1].get("parameters").is_none(), "summaries: {list}");
    assert_eq!(
        srv.get("packages?count=true").await.ok(),
        json!({"packages": 2})
    );
    assert_eq!(
        names(&srv.get("packages?limit=1&skip=1").await.ok()),
        ["plain"]
    );
}

#[tokio::test]
async fn bindings_merge_parameters_and_show_the_bound_packages_actions() {
    let srv = TestServer::start().await;
    srv.put(
        "packages/base",
        json!({"parameters": [{"key": "x", "value": "base"}, {"key": "y", "value": "base"}]}),
    )
    .await
    .ok();
    srv.create_action("actions/base/act", json!({})).await;

    let b = srv
        .put(
            "packages/b",
            json!({"binding": {"namespace": "_", "name": "base"},
                   "parameters": [{"key": "y", "value": "binding"}, {"key": "z", "value": "binding"}]}),
        )
        .await
        .ok();
    assert_eq!(b["binding"], json!({"namespace": "guest", "name": "base"}));
    assert_eq!(
        kv(&b["annotations"], "binding"),
        Some(&json!({"namespace": "guest", "name": "base"}))
    );

    let got = srv.get("packages/b").await.ok();
    assert_eq!(got["name"], "b");
    assert_eq!(
        got["binding"],
        json!({"namespace": "guest", "name": "base"})
    );
    let p = &got["parameters"];
    assert_eq!(kv(p, "x"), Some(&json!("base")));
    assert_eq!(kv(p, "y"), Some(&json!("binding")), "the binding wins");
    assert_eq!(kv(p, "z"), Some(&json!("binding")));
    assert_eq!(names(&got["actions"]), ["act"]);

    // A user-supplied `binding` annotation is replaced by the real one.
    let b2 = srv
        .put(
            "packages/b?overwrite=true",
            json!({"annotations": [{"key": "binding", "value": "fake"}]}),
        )
        .await
        .ok();
    assert_eq!(
        kv(&b2["annotations"], "binding"),
        Some(&json!({"namespace": "guest", "name": "base"}))
    );
    assert_eq!(b2["binding"], b["binding"], "binding kept on update");
}

#[tokio::test]
async fn binding_errors() {
    let srv = TestServer::start().await;
    srv.put("packages/base", json!({})).await.ok();
    srv.put(
        "packages/b",
        json!({"binding": {"namespace": "_", "name": "base"}}),
    )
    .await
    .ok();
    srv.put("triggers/t", json!({})).await.ok();
    let alice = srv.create_namespace("alice").await;
    srv.as_key(&alice)
        .put("packages/secret", json!({}))
        .await
        .ok();

    let bind = |name: &'static str, ns: &'static str, target: &'static str| {
        let srv = &srv;
        async move {
            srv.put(
                &format!("packages/{name}"),
                json!({"binding": {"namespace": ns, "name": target}}),
            )
            .await
        }
    };
    bind("x", "_", "missing")
        .await
        .err_msg(400, "Binding references a package that does not exist.");
    bind("x", "_", "b")
        .await
        .err_msg(400, "Cannot bind to another package binding.");
    bind("x", "_", "t")
        .await
        .err_msg(409, "Cannot bind to a resource that is not a package.");
    bind("x", "alice", "secret").await.err_msg(
        403,
        "The supplied authentication is not authorized to access 'alice/secret'.",
    );
    srv.get("packages/x").await.err(404);

    // A package cannot become a binding.
    srv.put(
        "packages/base?overwrite=true",
        json!({"binding": {"namespace": "whisk.system", "name": "utils"}}),
    )
    .await
    .err_msg(
        409,
        "Resource is a package and cannot be converted into a binding.",
    );
    assert_eq!(srv.get("packages/base").await.ok()["binding"], json!({}));

    srv.put("packages/default", json!({}))
        .await
        .err_msg(400, "Package name 'default' is reserved.");
    srv.put("packages/x", json!({"binding": "whisk.system/utils"}))
        .await
        .err(400);
    srv.put("packages/x", json!({"binding": {"namespace": "_"}}))
        .await
        .err(400);
    srv.get("packages/x").await.err(404);
}

#[tokio::test]
async fn published_packages_are_readable_by_other_namespaces() {
    let srv = TestServer::start().await;
    let alice_key = srv.create_namespace("alice").await;
    let alice = srv.as_key(&alice_key);
    alice
        .put(
            "packages/shared",
            json!({"publish": true, "parameters": [{"key": "k", "value": 1}]}),
        )
        .await
        .ok();
    alice
        .put(
            "actions/shared/act",
            json!({"exec": {"kind": "nodejs:20", "code": CODE}}),
        )
        .await
        .ok();
    alice.put("packages/private", json!({})).await.ok();
    alice
        .put(
            "actions/private/act",
            json!({"exec": {"kind": "nodejs:20", "code": CODE}}),
        )
        .await
        .ok();
    alice
        .put(
            "actions/loose",
            json!({"exec": {"kind": "nodejs:20", "code": CODE}}),
        )
        .await
        .ok();
    alice
        .put(
            "packages/alias",
            json!({"binding": {"namespace": "alice", "name": "shared"}, "publish": true}),
        )
        .await
        .ok();

    // Guest reads the published package and its actions.
    let got = srv
        .get("/api/v1/namespaces/alice/packages/shared")
        .await
        .ok();
    assert_eq!(got["namespace"], "alice");
    assert_eq!(names(&got["actions"]), ["act"]);
    let act = srv
        .get("/api/v1/namespaces/alice/actions/shared/act")
        .await
        .ok();
    assert_eq!(act["namespace"], "alice/shared");
    assert_eq!(kv(&act["parameters"], "k"), Some(&json!(1)));
    assert_eq!(
        names(
            &srv.get("/api/v1/namespaces/alice/actions/shared/")
                .await
                .ok()
        ),
        ["act"]
    );
    // Listing another namespace's packages shows only published non-bindings.
    assert_eq!(
        names(&srv.get("/api/v1/namespaces/alice/packages").await.ok()),
        ["shared"]
    );
    assert_eq!(
        srv.get("/api/v1/namespaces/alice/packages?count=true")
            .await
            .ok(),
        json!({"packages": 1})
    );
    // The catalogue is such a package.
    let utils = srv
        .get("/api/v1/namespaces/whisk.system/packages/utils")
        .await
        .ok();
    let mut catalog = names(&utils["actions"]);
    catalog.sort();
    for a in ["cat", "date", "echo", "head", "sort", "split"] {
        assert!(catalog.iter().any(|c| c == a), "utils/{a} in {catalog:?}");
    }
    srv.get("/api/v1/namespaces/whisk.system/actions/samples/helloWorld")
        .await
        .ok();

    // Guest can bind to it.
    srv.put(
        "packages/mine",
        json!({"binding": {"namespace": "alice", "name": "shared"}}),
    )
    .await
    .ok();
    assert_eq!(names(&srv.get("actions/mine/").await.ok()), ["act"]);
    assert_eq!(srv.get("actions/mine/act").await.ok()["name"], "act");

    // Everything else is forbidden.
    let forbidden =
        |what: &str| format!("The supplied authentication is not authorized to access '{what}'.");
    srv.get("/api/v1/namespaces/alice/packages/private")
        .await
        .err_msg(403, &forbidden("alice/private"));
    srv.get("/api/v1/namespaces/alice/packages/alias")
        .await
        .err_msg(403, &forbidden("alice/alias"));
    srv.get("/api/v1/namespaces/alice/actions/private/act")
        .await
        .err(403);
    srv.get("/api/v1/namespaces/alice/actions/private/")
        .await
        .err(403);
    srv.get("/api/v1/namespaces/alice/actions/loose")
        .await
        .err(403);
    srv.put(
        "/api/v1/namespaces/alice/packages/shared?overwrite=true",
        json!({}),
    )
    .await
    .err(403);
    srv.put(
        "/api/v1/namespaces/alice/actions/shared/act?overwrite=true",
        json!({}),
    )
    .await
    .err(403);
    srv.delete("/api/v1/namespaces/alice/actions/shared/act")
        .await
        .err(403);
    srv.delete("/api/v1/namespaces/alice/packages/shared")
        .await
        .err(403);
    // Nothing changed.
    assert_eq!(alice.get("packages/shared").await.ok()["version"], "0.0.1");
    alice.get("actions/shared/act").await.ok();
}

#[tokio::test]
async fn delete_a_package_with_and_without_force() {
    let srv = TestServer::start().await;
    srv.put("packages/p", json!({})).await.ok();
    srv.create_action("actions/p/a", json!({})).await;
    srv.create_action("actions/p/b", json!({})).await;
    srv.put(
        "packages/b",
        json!({"binding": {"namespace": "_", "name": "p"}}),
    )
    .await
    .ok();

    srv.delete("packages/p").await.err_msg(
        409,
        "Package not empty (contains 2 entities). Set force param or delete package contents.",
    );
    srv.get("actions/p/a").await.ok();
    srv.delete("packages/p?force=false").await.err(409);

    // A binding is deleted without touching the bound package.
    srv.delete("packages/b").await.ok();
    assert_eq!(names(&srv.get("actions/p/").await.ok()).len(), 2);

    srv.delete("packages/p?force=true").await.ok();
    srv.get("packages/p").await.err(404);
    srv.get("actions/p/a").await.err(404);
    assert!(names(&srv.get("actions").await.ok()).is_empty());

    // An empty package goes without force.
    srv.put("packages/empty", json!({})).await.ok();
    srv.delete("packages/empty").await.ok();
    srv.delete("packages/empty").await.err(404);
}

#[tokio::test]
async fn a_binding_is_readable_only_while_its_package_is() {
    let srv = TestServer::start().await;
    let alice_key = srv.create_namespace("alice").await;
    let alice = srv.as_key(&alice_key);
    alice
        .put("packages/shared", json!({"publish": true}))
        .await
        .ok();
    alice
        .put(
            "actions/shared/act",
            json!({"exec": {"kind": "nodejs:20", "code": CODE}}),
        )
        .await
        .ok();
    srv.put(
        "packages/mine",
        json!({"binding": {"namespace": "alice", "name": "shared"}}),
    )
    .await
    .ok();
    srv.get("packages/mine").await.ok();
    srv.get("actions/mine/act").await.ok();

    // Alice withdraws the package: guest's binding no longer reaches into it.
    alice
        .put("packages/shared?overwrite=true", json!({"publish": false}))
        .await
        .ok();
    srv.get("packages/mine").await.err(403);
    srv.get("actions/mine/act").await.err(403);
    srv.get("actions/mine/").await.err(403);
    // The binding itself can still be removed by its owner.
    srv.delete("packages/mine").await.ok();
}

#[tokio::test]
async fn rules_cannot_reach_through_a_withdrawn_binding() {
    let srv = TestServer::start().await;
    let alice_key = srv.create_namespace("alice").await;
    let alice = srv.as_key(&alice_key);
    alice
        .put("packages/shared", json!({"publish": true}))
        .await
        .ok();
    alice
        .put(
            "actions/shared/act",
            json!({"exec": {"kind": "nodejs:20", "code": CODE}}),
        )
        .await
        .ok();
    srv.put(
        "packages/mine",
        json!({"binding": {"namespace": "alice", "name": "shared"}}),
    )
    .await
    .ok();
    srv.put("triggers/t", json!({})).await.ok();
    srv.put("rules/ok", json!({"trigger": "t", "action": "mine/act"}))
        .await
        .ok();
    alice
        .put("packages/shared?overwrite=true", json!({"publish": false}))
        .await
        .ok();
    srv.put("rules/r", json!({"trigger": "t", "action": "mine/act"}))
        .await
        .err(403);
    for component in ["/alice/shared/act", "/_/mine/act"] {
        srv.put(
            "actions/seq",
            json!({"exec": {"kind": "sequence", "components": [component]}}),
        )
        .await
        .err(403);
    }
}
