//! Everything survives a restart over the same data directory.

mod common;

use common::*;

/// What a client sees of the entities created below.
const PATHS: [&str; 13] = [
    "actions/a",
    "actions/p/inner",
    "actions/b/echo",
    "actions/seq",
    "actions/zip",
    "packages/p",
    "packages/b",
    "triggers/t",
    "rules/r",
    "actions",
    "packages",
    "triggers",
    "rules",
];

async fn snapshot(srv: &TestServer) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for path in PATHS {
        out.push(srv.get(path).await.ok());
    }
    out
}

#[tokio::test]
async fn entities_survive_a_restart() {
    let srv = TestServer::start().await;
    let alice_key = srv.create_namespace("alice").await;
    srv.put(
        "packages/p",
        json!({"parameters": [{"key": "k", "value": "v"}]}),
    )
    .await
    .ok();
    srv.create_action("actions/p/inner", json!({})).await;
    srv.create_action("actions/a", json!({"limits": {"memory": 128}}))
        .await;
    let action = srv
        .put(
            "actions/a?overwrite=true",
            json!({"annotations": [{"key": "x", "value": 1}]}),
        )
        .await
        .ok();
    assert_eq!(action["version"], "0.0.2");
    srv.put(
        "packages/b",
        json!({"binding": {"namespace": "whisk.system", "name": "utils"}}),
    )
    .await
    .ok();
    srv.put(
        "actions/seq",
        json!({"exec": {"kind": "sequence", "components": ["/_/a", "/whisk.system/utils/echo"]}}),
    )
    .await
    .ok();
    srv.create_action(
        "actions/zip",
        json!({"exec": {"kind": "nodejs:20", "code": "UEsDBBQAAAAIAA=="}}),
    )
    .await;
    srv.put(
        "triggers/t",
        json!({"parameters": [{"key": "p", "value": 1}]}),
    )
    .await
    .ok();
    srv.put("rules/r", json!({"trigger": "/_/t", "action": "/_/a"}))
        .await
        .ok();
    srv.post("rules/r", json!({"status": "inactive"})).await;
    let before = snapshot(&srv).await;
    let alice_pkg = srv
        .as_key(&alice_key)
        .put("packages/x", json!({"publish": true}))
        .await
        .ok();

    let dir = srv.stop().await;
    let srv = TestServer::start_in(dir).await;

    let after = snapshot(&srv).await;
    assert_eq!(before, after);
    assert_eq!(after[8]["status"], "inactive", "rule status survives");
    assert_eq!(after[0]["version"], "0.0.2");
    // Keys of created namespaces still authenticate.
    assert_eq!(
        srv.as_key(&alice_key).get("packages/x").await.ok()["updated"],
        alice_pkg["updated"]
    );
    // Bootstrap on an existing directory changes nothing.
    assert_eq!(srv.get("/api/v1/namespaces").await.ok(), json!(["guest"]));
    srv.get("/api/v1/namespaces/whisk.system/packages/utils")
        .await
        .ok();
    // Updates continue from the stored version.
    assert_eq!(
        srv.put("actions/a?overwrite=true", json!({})).await.ok()["version"],
        "0.0.3"
    );
}
