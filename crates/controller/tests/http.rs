//! Cross-cutting HTTP behaviour (wire spec §0, §1.1, §1.2, §1.8, §1.9): info routes, the error
//! envelope, request ids, CORS, `OPTIONS`, authentication, routing errors.

mod common;

use common::*;
use reqwest::Method;

#[tokio::test]
async fn info_routes_need_no_auth() {
    let srv = TestServer::start().await;
    let anon = srv.anonymous();

    let root = anon.get("/").await.ok();
    assert_eq!(root["description"], "OpenWhisk");
    assert_eq!(root["api_paths"], json!(["/api/v1"]));
    assert_eq!(
        root["support"]["github"],
        "https://github.com/apache/openwhisk/issues"
    );
    let limits = &root["limits"];
    for (k, v) in [
        ("sequence_length", 50),
        ("min_action_duration", 100),
        ("max_action_duration", 300_000),
        ("min_action_memory", 128 * 1024 * 1024),
        ("max_action_memory", 512 * 1024 * 1024),
        ("min_action_logs", 0),
        ("max_action_logs", 10 * 1024 * 1024),
        ("default_max_action_memory", 512 * 1024 * 1024),
    ] {
        assert_eq!(limits[k], json!(v), "limits.{k}");
    }
    let runtimes = &root["runtimes"];
    let default_of = |family: &str| {
        runtimes[family]
            .as_array()
            .unwrap_or_else(|| panic!("runtimes.{family}"))
            .iter()
            .find(|k| k["default"] == true)
            .map(|k| k["kind"].clone())
    };
    assert_eq!(default_of("nodejs"), Some(json!("nodejs:20")));
    assert_eq!(default_of("python"), Some(json!("python:3.11")));
    assert!(runtimes["blackbox"].is_array(), "blackbox pseudo-kind");
    assert_eq!(runtimes["sequence"][0]["kind"], "sequence");

    let api = anon.get("/api/v1").await.ok();
    assert_eq!(api["description"], "OpenWhisk API");
    assert_eq!(api["api_version"], "1.0.0");
    assert_eq!(api["api_version_path"], "v1");
    assert_eq!(
        api["swagger_paths"],
        json!({"ui": "/docs", "api-docs": "/api-docs"})
    );
    assert_eq!(anon.get("/api/v1/").await.ok(), api);

    let ping = anon.get("/ping").await;
    assert_eq!((ping.status, ping.text.as_str()), (200, "pong"));
}

#[tokio::test]
async fn namespaces_lists_the_callers_namespace() {
    let srv = TestServer::start().await;
    assert_eq!(srv.get("/api/v1/namespaces").await.ok(), json!(["guest"]));
    assert_eq!(
        srv.as_system().get("/api/v1/namespaces").await.ok(),
        json!(["whisk.system"])
    );
}

#[tokio::test]
async fn limits_show_the_defaults_for_the_own_namespace_only() {
    let srv = TestServer::start().await;
    let l = srv.get("limits").await.ok();
    for (k, v) in [
        ("minActionMemory", json!(128)),
        ("maxActionMemory", json!(512)),
        ("minActionLogs", json!(0)),
        ("maxActionLogs", json!(10)),
        ("minActionTimeout", json!(100)),
        ("maxActionTimeout", json!(300_000)),
        ("minActionConcurrency", json!(1)),
        ("maxActionConcurrency", json!(500)),
        ("maxParameterSize", json!("1 MB")),
    ] {
        assert_eq!(l[k], v, "limits.{k}");
    }
    for k in [
        "invocationsPerMinute",
        "concurrentInvocations",
        "firesPerMinute",
        "maxActionInstances",
    ] {
        assert!(l[k].is_u64(), "limits.{k} is a number: {l}");
    }
    assert_eq!(srv.get("/api/v1/namespaces/guest/limits").await.ok(), l);
    srv.get("/api/v1/namespaces/whisk.system/limits")
        .await
        .err_msg(
            403,
            "The supplied authentication is not authorized to access 'whisk.system'.",
        );
}

#[tokio::test]
async fn every_response_carries_a_request_id_and_cors_headers() {
    let srv = TestServer::start().await;
    for r in [
        srv.get("actions").await,
        srv.get("actions/nope").await,
        srv.anonymous().get("actions").await,
        srv.anonymous().get("/api/v1").await,
    ] {
        let tid = r.header("x-request-id").expect("X-Request-ID");
        assert_eq!(tid.len(), 32, "generated ids are 32 characters: {tid}");
        assert!(tid.chars().all(|c| c.is_ascii_alphanumeric()), "{tid}");
        assert_eq!(r.header("access-control-allow-origin"), Some("*"));
        assert_eq!(
            r.header("access-control-allow-headers"),
            Some("Authorization, Origin, X-Requested-With, Content-Type, Accept, User-Agent")
        );
        assert_eq!(
            r.header("access-control-allow-methods"),
            Some("GET, DELETE, POST, PUT, HEAD")
        );
    }
    let a = srv.get("actions").await;
    let b = srv.get("actions").await;
    assert_ne!(a.header("x-request-id"), b.header("x-request-id"));
}

#[tokio::test]
async fn a_client_request_id_is_reused_unless_it_is_a_session_id() {
    let srv = TestServer::start().await;
    let guest = srv.as_guest();
    let r = guest
        .send(
            Method::GET,
            "actions",
            &[("x-request-id", "my-tid-123")],
            None,
        )
        .await;
    assert_eq!(
        (r.status, r.header("x-request-id")),
        (200, Some("my-tid-123"))
    );

    // Errors carry it in the envelope too.
    let r = guest
        .send(
            Method::GET,
            "actions/missing",
            &[("x-request-id", "tid-404")],
            None,
        )
        .await;
    r.err_msg(404, "The requested resource does not exist.");
    assert_eq!(r.body["code"], "tid-404");

    let r = guest
        .send(Method::GET, "actions", &[("x-request-id", "sid_abc")], None)
        .await;
    assert_ne!(r.header("x-request-id"), Some("sid_abc"));
}

#[tokio::test]
async fn options_answers_200_without_auth() {
    let srv = TestServer::start().await;
    for path in [
        "/api/v1/namespaces/_/actions",
        "/api/v1/namespaces/guest/actions/hello",
        "/api/v1/namespaces/_/triggers/t",
        "/api/v1/namespaces",
    ] {
        let r = srv.anonymous().send(Method::OPTIONS, path, &[], None).await;
        assert_eq!(r.status, 200, "OPTIONS {path}: {}", r.text);
        assert_eq!(r.header("access-control-allow-origin"), Some("*"));
        assert!(r.header("access-control-allow-methods").is_some());
        assert!(r.header("x-request-id").is_some());
    }
}

#[tokio::test]
async fn missing_or_invalid_credentials_are_401_with_a_challenge() {
    let srv = TestServer::start().await;
    let wrong_key = format!("{}x", &GUEST_KEY[..GUEST_KEY.len() - 1]);
    let unknown_uuid = "00000000-0000-0000-0000-000000000000:123zO3xZCLrMN6v2BKK1dXYFpXlPkccOFqm12CdAsMgRU4VrNZ9lyGVCGuMDGIwP";
    let cases: Vec<(&str, Caller<'_>, &str)> = vec![
        (
            "no header",
            srv.anonymous(),
            "The resource requires authentication, which was not supplied with the request",
        ),
        (
            "wrong key",
            srv.as_key(&wrong_key),
            "The supplied authentication is invalid",
        ),
        (
            "unknown uuid",
            srv.as_key(unknown_uuid),
            "The supplied authentication is invalid",
        ),
        (
            "not uuid:key",
            srv.as_key("nocolon"),
            "The supplied authentication is invalid",
        ),
        (
            "bad base64",
            srv.with_authorization("Basic !!!not-base64"),
            "The supplied authentication is invalid",
        ),
        (
            "other scheme",
            srv.with_authorization("Bearer abc"),
            "The supplied authentication is invalid",
        ),
    ];
    for (what, caller, msg) in cases {
        for path in ["actions", "packages/p", "/api/v1/namespaces", "limits"] {
            let r = caller.get(path).await;
            assert_eq!(r.status, 401, "{what} {path}");
            r.err_msg(401, msg);
            assert_eq!(
                r.header("www-authenticate"),
                Some("Basic realm=\"OpenWhisk secure realm\""),
                "{what} {path}"
            );
        }
    }
    // The scheme is matched case-insensitively.
    let lower = format!("basic {}", &basic(GUEST_KEY)[6..]);
    srv.with_authorization(&lower).get("actions").await.ok();
}

#[tokio::test]
async fn unknown_routes_are_404_and_wrong_methods_405() {
    let srv = TestServer::start().await;
    let not_found = "The requested resource does not exist.";
    for path in [
        "/nope",
        "/api/v2",
        "/api/v1/nope",
        "/api/v1/namespaces/_/widgets",
        "/api/v1/namespaces/_/widgets/x",
        "/api/v1/namespaces/_/triggers/t/extra",
        "/api/v1/namespaces/_/rules/r/extra",
        "/api/v1/namespaces/_/packages/p/extra",
        "/api/v1/namespaces/_/actions/p/a/extra",
    ] {
        srv.get(path).await.err_msg(404, not_found);
    }
    for (method, path) in [
        (Method::POST, "actions"),
        (Method::PUT, "actions"),
        (Method::DELETE, "triggers"),
        (Method::POST, "packages/p"),
        (Method::PATCH, "actions/a"),
        (Method::HEAD, "actions/a"),
        (Method::PUT, "/api/v1/namespaces"),
        (Method::POST, "/api/v1"),
        (Method::DELETE, "/"),
    ] {
        let r = srv.as_guest().send(method.clone(), path, &[], None).await;
        assert_eq!(r.status, 405, "{method} {path}: {}", r.text);
        if method != Method::HEAD {
            r.err(405);
        }
    }
}

#[tokio::test]
async fn other_namespaces_are_403() {
    let srv = TestServer::start().await;
    srv.create_namespace("alice").await;
    let forbidden =
        |what: &str| format!("The supplied authentication is not authorized to access '{what}'.");
    for (method, path, what) in [
        (Method::GET, "/api/v1/namespaces/alice/actions", "alice"),
        (Method::GET, "/api/v1/namespaces/alice/triggers", "alice"),
        (Method::GET, "/api/v1/namespaces/alice/rules", "alice"),
        (Method::GET, "/api/v1/namespaces/alice/actions/a", "alice"),
        (Method::PUT, "/api/v1/namespaces/alice/actions/a", "alice/a"),
        (
            Method::DELETE,
            "/api/v1/namespaces/alice/actions/a",
            "alice/a",
        ),
        (
            Method::PUT,
            "/api/v1/namespaces/alice/actions/p/a",
            "alice/p/a",
        ),
        (
            Method::GET,
            "/api/v1/namespaces/alice/triggers/t",
            "alice/t",
        ),
        (
            Method::PUT,
            "/api/v1/namespaces/alice/triggers/t",
            "alice/t",
        ),
        (Method::GET, "/api/v1/namespaces/alice/rules/r", "alice/r"),
        (
            Method::PUT,
            "/api/v1/namespaces/alice/packages/p",
            "alice/p",
        ),
        (
            Method::DELETE,
            "/api/v1/namespaces/alice/packages/p",
            "alice/p",
        ),
        (
            Method::DELETE,
            "/api/v1/namespaces/alice/rules/r",
            "alice/r",
        ),
        (Method::GET, "/api/v1/namespaces/alice/limits", "alice"),
    ] {
        let body = (method == Method::PUT).then(|| b"{}".to_vec());
        let r = srv.as_guest().send(method.clone(), path, &[], body).await;
        assert_eq!(r.status, 403, "{method} {path}: {}", r.text);
        r.err_msg(403, &forbidden(what));
    }
}

#[tokio::test]
async fn namespace_segment_must_be_a_valid_name() {
    let srv = TestServer::start().await;
    srv.get("/api/v1/namespaces/bad$ns/actions")
        .await
        .err_msg(400, "The namespace contains illegal characters.");
    let long = "n".repeat(257);
    srv.get(&format!("/api/v1/namespaces/{long}/actions"))
        .await
        .err_msg(400, "Namespace longer than allowed: 257 > 256.");
}

#[tokio::test]
async fn activation_routes_answer_without_activations() {
    let srv = TestServer::start().await;
    assert_eq!(srv.get("activations").await.ok(), json!([]));
    assert_eq!(
        srv.get("activations?count=true").await.ok(),
        json!({"activations": 0})
    );
    let id = "0123456789abcdef0123456789abcdef";
    for part in ["", "/result", "/logs"] {
        srv.get(&format!("activations/{id}{part}"))
            .await
            .err_msg(404, "The requested resource does not exist.");
    }
    srv.get("activations/abc")
        .await
        .err_msg(400, "Activation id length is 3 but must be 32.");
    srv.get("activations/0123456789abcdef0123456789abcdeZ")
        .await
        .err_msg(400, "The activation id is not valid.");
    srv.get("activations?count=true&docs=true")
        .await
        .err_msg(400, "The parameter 'docs' is not permitted with 'count'.");
    srv.get("activations?name=a/b/c").await.err_msg(
        400,
        "Parameter may be a 'simple' name or 'package-name/simple' name: a/b/c",
    );
    srv.get("activations?since=yesterday").await.err_msg(
        400,
        "Parameter is not a valid value for epoch seconds: yesterday",
    );
    srv.get("activations?limit=201").await.err_msg(
        400,
        "The value '201' is not in the range of 0 to 200 for activations.",
    );
    srv.get("/api/v1/namespaces/whisk.system/activations")
        .await
        .err(403);
}
