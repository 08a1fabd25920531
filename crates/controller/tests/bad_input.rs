//! Bad input on every entity collection: malformed JSON, wrong JSON types,
//! wrong media type, illegal names, oversized bodies. Each is answered with the error envelope,
//! never a 500, and never leaves a partial write behind.

mod common;

use common::*;
use reqwest::Method;

const CODE: &str = "function main(a) { return a }";
const COLLECTIONS: [&str; 4] = ["actions", "packages", "triggers", "rules"];

/// A valid creation body for each collection (rules refer to `t` and `a`, created by `setup`).
fn valid_body(coll: &str) -> serde_json::Value {
    match coll {
        "actions" => json!({"exec": {"kind": "nodejs:20", "code": CODE}}),
        "rules" => json!({"trigger": "/_/t", "action": "/_/a"}),
        _ => json!({}),
    }
}

async fn setup(srv: &TestServer) {
    srv.put("triggers/t", json!({})).await.ok();
    srv.create_action("actions/a", json!({})).await;
}

/// A fresh entity path per collection (names are shared across collections).
fn target(coll: &str) -> String {
    format!("{coll}/new-{coll}")
}

/// Sends `body` raw with `content_type` as a PUT to `path`.
async fn put_raw(srv: &TestServer, path: &str, content_type: &str, body: &[u8]) -> Resp {
    srv.as_guest()
        .send(
            Method::PUT,
            path,
            &[("content-type", content_type)],
            Some(body.to_vec()),
        )
        .await
}

#[tokio::test]
async fn malformed_json_is_400() {
    let srv = TestServer::start().await;
    setup(&srv).await;
    for coll in COLLECTIONS {
        let path = target(coll);
        for body in [
            &b"{"[..],
            b"{\"exec\": }",
            b"not json",
            b"{\"a\":1}}",
            b"\xff\xfe",
        ] {
            put_raw(&srv, &path, "application/json", body)
                .await
                .err_contains(400, "The request content was malformed");
        }
        srv.get(&path).await.err(404);
    }
    srv.post("rules/x", json!({})).await.err(400);
    let r = srv
        .as_guest()
        .send(
            Method::POST,
            "rules/x",
            &[("content-type", "application/json")],
            Some(b"{status".to_vec()),
        )
        .await;
    r.err_contains(400, "The request content was malformed");
}

#[tokio::test]
async fn wrong_json_types_are_400() {
    let srv = TestServer::start().await;
    setup(&srv).await;
    let cases = [
        ("packages", json!({"parameters": "a=1"})),
        ("packages", json!({"parameters": [{"value": 1}]})),
        ("packages", json!({"annotations": {"key": "a"}})),
        ("packages", json!({"publish": 1})),
        ("packages", json!({"version": 1})),
        ("packages", json!([])),
        ("triggers", json!({"parameters": [1, 2]})),
        ("triggers", json!({"limits": []})),
        ("triggers", json!({"publish": "true"})),
        ("triggers", json!("just a string")),
        ("rules", json!({"trigger": ["/_/t"], "action": "/_/a"})),
        (
            "rules",
            json!({"trigger": "/_/t", "action": "/_/a", "publish": null, "annotations": 5}),
        ),
        (
            "actions",
            json!({"exec": {"kind": "nodejs:20", "code": CODE}, "annotations": [{"key": 1, "value": 2}]}),
        ),
        (
            "actions",
            json!({"exec": {"kind": "nodejs:20", "code": CODE}, "delAnnotations": "x"}),
        ),
        (
            "actions",
            json!({"exec": {"kind": "nodejs:20", "code": CODE}, "limits": {"timeout": -5}}),
        ),
        (
            "actions",
            json!({"exec": {"kind": "nodejs:20", "code": CODE}, "limits": 7}),
        ),
    ];
    for (coll, body) in cases {
        let r = srv.put(&target(coll), body.clone()).await;
        assert_eq!(r.status, 400, "{coll} {body}: {}", r.text);
        r.err(400);
        srv.get(&target(coll)).await.err(404);
    }
}

#[tokio::test]
async fn wrong_media_type_is_415() {
    let srv = TestServer::start().await;
    setup(&srv).await;
    for coll in COLLECTIONS {
        let body = serde_json::to_vec(&valid_body(coll)).unwrap();
        for ct in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "application/xml",
        ] {
            let r = put_raw(&srv, &target(coll), ct, &body).await;
            assert_eq!(r.status, 415, "{coll} {ct}: {}", r.text);
            r.err_msg(
                415,
                "The request's Content-Type is not supported. Expected:\napplication/json",
            );
        }
        // No content type at all.
        let r = srv
            .as_guest()
            .send(
                Method::PUT,
                &target(coll),
                &[("content-type", "")],
                Some(body.clone()),
            )
            .await;
        assert_eq!(r.status, 415, "{coll} without content type: {}", r.text);
        srv.get(&target(coll)).await.err(404);
        // Parameters on the media type are fine.
        put_raw(
            &srv,
            &target(coll),
            "application/json; charset=utf-8",
            &body,
        )
        .await
        .ok();
    }
}

#[tokio::test]
async fn illegal_names_are_400() {
    let srv = TestServer::start().await;
    setup(&srv).await;
    let long = "n".repeat(257);
    for coll in COLLECTIONS {
        let body = valid_body(coll);
        for name in ["bad$name", "%20lead", "trail%20", "-dash", "%C3%A9", "a:b"] {
            let r = srv.put(&format!("{coll}/{name}"), body.clone()).await;
            assert_eq!(r.status, 400, "{coll}/{name}: {}", r.text);
            r.err_msg(400, "The name of the entity contains illegal characters.");
            srv.get(&format!("{coll}/{name}"))
                .await
                .err_msg(400, "The name of the entity contains illegal characters.");
        }
        srv.put(&format!("{coll}/{long}"), body.clone())
            .await
            .err_msg(400, "Name segement longer than allowed: 257 > 256.");
        let ok = "n".repeat(256);
        let ok = format!("{}{coll}", &ok[..256 - coll.len()]);
        srv.put(&format!("{coll}/{ok}"), body.clone()).await.ok();
        // Spaces and the other allowed punctuation are fine.
        srv.put(&format!("{coll}/a%20b@c.d&e-f_{coll}"), body)
            .await
            .ok();
    }
    srv.put("packages/p", json!({})).await.ok();
    srv.put(
        "actions/p/bad$",
        json!({"exec": {"kind": "nodejs:20", "code": CODE}}),
    )
    .await
    .err_msg(400, "The name of the entity contains illegal characters.");
    // Undecodable path segments are rejected with the envelope too.
    for path in ["actions/%ZZ", "triggers/%FF%FE", "rules/a%"] {
        let r = srv.get(path).await;
        assert_eq!(r.status, 400, "{path}: {}", r.text);
        r.err(400);
    }
    srv.get("actions/bad$pkg/a")
        .await
        .err_msg(400, "The name of the entity contains illegal characters.");
}

#[tokio::test]
async fn oversized_parameters_and_annotations_are_413() {
    let srv = TestServer::start().await;
    setup(&srv).await;
    let big = "x".repeat(1024 * 1024);
    let big_list = json!([{"key": "k", "value": big}]);
    for coll in ["actions", "packages", "triggers"] {
        for field in ["parameters", "annotations"] {
            let mut body = valid_body(coll);
            body[field] = big_list.clone();
            let msg = srv.put(&target(coll), body).await.err(413);
            assert!(
                msg.starts_with(&format!("{field} larger than allowed: "))
                    && msg.ends_with(&format!(" > {} bytes.", 1024 * 1024)),
                "{coll} {field}: {msg}"
            );
            srv.get(&target(coll)).await.err(404);
        }
    }
    // Just under the limit is accepted.
    let fits = "x".repeat(1024 * 1024 - 100);
    srv.put(
        "packages/fits",
        json!({"parameters": [{"key": "k", "value": fits}]}),
    )
    .await
    .ok();
}

#[tokio::test]
async fn oversized_code_and_requests_are_413() {
    let srv = TestServer::start().await;
    let limit = 48 * 1024 * 1024;
    let code = "x".repeat(limit + 1);
    let msg = srv
        .put(
            "actions/huge",
            json!({"exec": {"kind": "nodejs:20", "code": code}}),
        )
        .await
        .err(413);
    assert_eq!(
        msg,
        format!("exec larger than allowed: {} > {limit} bytes.", limit + 1)
    );
    drop(code);
    srv.get("actions/huge").await.err(404);

    // The whole request may not exceed 50 MB.
    let body = vec![b' '; 50 * 1024 * 1024 + 1];
    let r = put_raw(&srv, "packages/huge", "application/json", &body).await;
    r.err(413);
    srv.get("packages/huge").await.err(404);
}

#[tokio::test]
async fn rejected_updates_leave_the_old_entity_unchanged() {
    let srv = TestServer::start().await;
    setup(&srv).await;
    let action = srv
        .create_action(
            "actions/keep",
            json!({"parameters": [{"key": "p", "value": 1}],
                   "annotations": [{"key": "a", "value": 1}]}),
        )
        .await;
    let big = "x".repeat(1024 * 1024 + 1);
    let rejected = [
        json!({"limits": {"memory": 4096}, "parameters": [{"key": "p", "value": 2}]}),
        json!({"exec": {"kind": "cobol:1", "code": "x"}, "parameters": []}),
        json!({"annotations": [{"key": "b", "value": big}], "delAnnotations": ["a"]}),
        json!({"exec": {"kind": "sequence", "components": ["/_/nope"]}}),
        json!({"exec": {"kind": "sequence", "components": []}}),
        json!({"version": "x.y.z", "publish": true}),
        json!({"limits": {"timeout": 1}, "annotations": [{"key": "a", "value": 2}]}),
    ];
    for body in rejected {
        let r = srv.put("actions/keep?overwrite=true", body.clone()).await;
        assert!(
            (400..500).contains(&r.status),
            "{body}: {} {}",
            r.status,
            r.text
        );
        r.err(r.status);
        assert_eq!(srv.get("actions/keep").await.ok(), action, "after {body}");
    }

    let pkg = srv
        .put(
            "packages/pkeep",
            json!({"parameters": [{"key": "p", "value": 1}]}),
        )
        .await
        .ok();
    for body in [
        json!({"binding": {"namespace": "_", "name": "missing"}, "parameters": []}),
        json!({"parameters": [{"key": "p", "value": big}]}),
        json!({"publish": "no"}),
    ] {
        let r = srv.put("packages/pkeep?overwrite=true", body.clone()).await;
        assert!((400..500).contains(&r.status), "{body}: {}", r.text);
        assert_eq!(
            srv.get("packages/pkeep").await.ok()["version"],
            pkg["version"]
        );
        assert_eq!(
            srv.get("packages/pkeep").await.ok()["parameters"],
            pkg["parameters"]
        );
    }

    let trig = srv.get("triggers/t").await.ok();
    for body in [
        json!({"annotations": [{"key": "feed", "value": "not a/valid/feed/name"}]}),
        json!({"parameters": [{"key": "p", "value": big}]}),
    ] {
        let r = srv.put("triggers/t?overwrite=true", body.clone()).await;
        assert!((400..500).contains(&r.status), "{body}: {}", r.text);
        assert_eq!(srv.get("triggers/t").await.ok(), trig);
    }

    srv.put("rules/r", json!({"trigger": "/_/t", "action": "/_/a"}))
        .await
        .ok();
    let rule = srv.get("rules/r").await.ok();
    let trig = srv.get("triggers/t").await.ok();
    for body in [
        json!({"trigger": "/_/missing"}),
        json!({"action": "/_/missing"}),
    ] {
        srv.put("rules/r?overwrite=true", body.clone())
            .await
            .err(400);
        assert_eq!(srv.get("rules/r").await.ok(), rule, "after {body}");
        assert_eq!(srv.get("triggers/t").await.ok(), trig, "after {body}");
    }
}

#[tokio::test]
async fn no_request_is_a_server_error() {
    let srv = TestServer::start().await;
    setup(&srv).await;
    let garbage: [&[u8]; 5] = [b"", b"null", b"{}", b"[]", b"{\"exec\":null}"];
    for coll in COLLECTIONS {
        for method in [Method::GET, Method::PUT, Method::POST, Method::DELETE] {
            if coll == "actions" && method == Method::POST {
                continue; // invoking is out of scope here
            }
            for body in garbage {
                for path in [target(coll), format!("{coll}/a"), format!("{coll}/t")] {
                    let r = srv
                        .as_guest()
                        .send(
                            method.clone(),
                            &path,
                            &[("content-type", "application/json")],
                            Some(body.to_vec()),
                        )
                        .await;
                    assert!(
                        r.status < 500,
                        "{method} {path} {:?}: {} {}",
                        String::from_utf8_lossy(body),
                        r.status,
                        r.text
                    );
                    if r.status >= 400 {
                        r.err(r.status);
                    }
                }
            }
        }
    }
}

#[tokio::test]
async fn odd_query_strings_are_400_never_500() {
    let srv = TestServer::start().await;
    setup(&srv).await;
    let cases = [
        ("actions?limit=99999999999999999999", 400),
        ("actions?limit=1e3", 400),
        ("actions?limit=", 400),
        ("actions?skip=%zz", 400),
        ("triggers?count=", 400),
        ("rules?count=yes", 200),
        ("packages?count=0", 200),
        ("actions/a?code=nope", 400),
        ("actions/a?code=off", 200),
        ("actions?limit=5&limit=500", 400),
        ("actions?unknown=1&limit=1", 200),
        ("activations?since=-1", 400),
        ("activations?upto=1.5", 400),
        ("activations?name=", 400),
    ];
    for (path, status) in cases {
        let r = srv.get(path).await;
        assert_eq!(r.status, status, "{path}: {}", r.text);
        if status >= 400 {
            r.err(status);
        }
    }
    for (path, status) in [
        ("packages/p?overwrite=maybe", 400),
        ("packages/p?overwrite=1", 200),
        ("packages/p?overwrite=0", 409),
    ] {
        let r = srv.put(path, json!({})).await;
        assert_eq!(r.status, status, "{path}: {}", r.text);
        if status >= 400 {
            r.err(status);
        }
    }
    srv.delete("packages/p?force=perhaps").await.err(400);
}
