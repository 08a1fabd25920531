//! What the controller hands the invoker, the JSON sent to the proxy for it, and the
//! activation record built from the outcome (wire spec §2.6, §3, §8).

use std::fmt;
use std::sync::Arc;

use brisk_model::params::KeyValue;
use brisk_model::{
    Action, Activation, ActivationId, ActivationResponse, Identity, Parameters, QualifiedName,
    StatusCode,
};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::client::ProxyResponse;

/// Largest result accepted from an action (namespace `maxPayloadSize`).
pub const MAX_RESULT: usize = 1024 * 1024;

/// One activation to run.
#[derive(Debug, Clone)]
pub struct Job {
    pub activation_id: ActivationId,
    pub transaction_id: String,
    /// Resolved action; its `namespace`/`name` are the real path (binding resolved).
    pub action: Arc<Action>,
    /// `ns/binding` when invoked through a binding.
    pub binding: Option<String>,
    pub identity: Arc<Identity>,
    /// Merged arguments (object, or array from sequences) including init parameters.
    pub args: Value,
    pub cause: Option<ActivationId>,
    pub caused_by_sequence: bool,
    /// Epoch ms when the controller received the request.
    pub received_at_ms: u64,
    /// Actions to prepare containers for once this activation has its container (the later
    /// steps of a composition); see [`crate::Invoker::prepare`].
    pub prepare_next: Vec<Job>,
}

impl Job {
    /// OpenWhisk's rule: the key is passed when `provide-api-key` is truthy or absent.
    pub fn provides_api_key(&self) -> bool {
        let a = &self.action.annotations;
        a.get("provide-api-key").is_none() || a.is_truthy("provide-api-key")
    }

    fn action_name(&self) -> String {
        self.action.qualified_name().to_string()
    }

    fn init_keys(&self) -> Vec<&str> {
        self.action.parameters.init_keys().collect()
    }
}

/// Env values are strings: null → "", strings as they are, anything else as JSON text.
fn env_string(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Code as the proxy receives it.
pub enum CodeRef<'a> {
    Inline { code: &'a str, binary: bool },
    Dir(&'a str),
    None,
}

/// Body of `POST /init`.
pub fn init_body(job: &Job, code: CodeRef<'_>, deadline_ms: u64, concurrent: bool) -> Vec<u8> {
    let mut env = Map::new();
    if let Value::Object(args) = &job.args {
        for k in job.init_keys() {
            if let Some(v) = args.get(k) {
                env.insert(k.to_owned(), Value::String(env_string(v)));
            }
        }
    }
    if job.provides_api_key() {
        env.insert(
            "__OW_API_KEY".into(),
            Value::String(job.identity.authkey.to_string()),
        );
    }
    let ctx = [
        ("__OW_NAMESPACE", job.identity.namespace.to_string()),
        ("__OW_ACTION_NAME", job.action_name()),
        ("__OW_ACTION_VERSION", job.action.version.to_string()),
        ("__OW_ACTIVATION_ID", job.activation_id.to_string()),
        ("__OW_TRANSACTION_ID", job.transaction_id.clone()),
        ("__OW_DEADLINE", deadline_ms.to_string()),
    ];
    for (k, v) in ctx {
        env.insert(k.into(), Value::String(v));
    }
    if concurrent {
        env.insert("__OW_ALLOW_CONCURRENT".into(), Value::from("true"));
    }
    let mut value = Map::new();
    value.insert("name".into(), Value::from(job.action.name.as_str()));
    value.insert(
        "main".into(),
        Value::from(job.action.exec.main().unwrap_or("main")),
    );
    match code {
        CodeRef::Inline { code, binary } => {
            value.insert("binary".into(), Value::Bool(binary));
            value.insert("code".into(), Value::from(code));
        }
        CodeRef::Dir(dir) => {
            value.insert("binary".into(), Value::Bool(true));
            value.insert("codeDir".into(), Value::from(dir));
        }
        CodeRef::None => {
            value.insert("binary".into(), Value::Bool(false));
        }
    }
    value.insert("env".into(), Value::Object(env));
    let mut body = Map::new();
    body.insert("value".into(), Value::Object(value));
    serde_json::to_vec(&body).unwrap_or_default()
}

#[derive(Serialize)]
struct RunBody<'a> {
    value: &'a Value,
    namespace: &'a str,
    action_name: Shown<QualifiedName<'a>>,
    action_version: Shown<&'a brisk_model::SemVer>,
    activation_id: &'a str,
    transaction_id: &'a str,
    deadline: Shown<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    api_key: Option<Shown<&'a brisk_model::AuthKey>>,
}

/// Serializes a value as the string its `Display` writes, without building that string first:
/// the run body is on every invoke's path.
struct Shown<T>(T);

impl<T: fmt::Display> Serialize for Shown<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

/// Body of `POST /run`: the arguments without init parameters.
pub fn run_body(job: &Job, deadline_ms: u64) -> Vec<u8> {
    let init_keys = job.init_keys();
    let stripped;
    let value = match &job.args {
        Value::Object(m) if init_keys.iter().any(|k| m.contains_key(*k)) => {
            let mut m = m.clone();
            for k in init_keys {
                m.remove(k);
            }
            stripped = Value::Object(m);
            &stripped
        }
        Value::Null => &Value::Null,
        v => v,
    };
    let empty = Value::Object(Map::new());
    let value = if value.is_null() { &empty } else { value };
    let body = RunBody {
        value,
        namespace: job.identity.namespace.as_str(),
        action_name: Shown(job.action.qualified_name()),
        action_version: Shown(&job.action.version),
        activation_id: job.activation_id.as_str(),
        transaction_id: &job.transaction_id,
        deadline: Shown(deadline_ms),
        api_key: job
            .provides_api_key()
            .then_some(Shown(&job.identity.authkey)),
    };
    let mut out = Vec::with_capacity(384);
    serde_json::to_writer(&mut out, &body)
        .map(|()| out)
        .unwrap_or_default()
}

/// The `error` field of a JSON object body, if any.
fn error_field(body: &[u8]) -> Option<Value> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(mut m)) => m.remove("error"),
        _ => None,
    }
}

/// `Ok` when `/init` succeeded, else the developer error it amounts to.
pub fn classify_init(resp: &ProxyResponse) -> Result<(), ActivationResponse> {
    if resp.status == 200 {
        return Ok(());
    }
    let err = error_field(&resp.body).unwrap_or_else(|| {
        Value::String(format!(
            "The action failed during initialization: {}",
            String::from_utf8_lossy(&resp.body)
        ))
    });
    Err(ActivationResponse::error(StatusCode::DeveloperError, err))
}

/// Maps a `/run` reply to the activation's response (wire spec §3 item 5).
pub fn classify_run(resp: &ProxyResponse) -> ActivationResponse {
    if resp.truncated() {
        return ActivationResponse::error(
            StatusCode::ApplicationError,
            format!(
                "The action produced a response that exceeded the allowed length: {} > {} bytes. The truncated response was: {}",
                resp.len,
                MAX_RESULT,
                String::from_utf8_lossy(&resp.body)
            ),
        );
    }
    let parsed = serde_json::from_slice::<Value>(&resp.body).ok();
    let mut out = match (resp.status, parsed) {
        (200, Some(Value::Object(mut m))) => match m.remove("error") {
            Some(e) => ActivationResponse::error(StatusCode::ApplicationError, e),
            None => ActivationResponse::success(Value::Object(m)),
        },
        (200, Some(v @ Value::Array(_))) => ActivationResponse::success(v),
        (s, Some(Value::Object(mut m))) if s != 200 && m.contains_key("error") => {
            ActivationResponse::error(
                StatusCode::DeveloperError,
                m.remove("error").unwrap_or(Value::Null),
            )
        }
        _ => ActivationResponse::error(
            StatusCode::DeveloperError,
            format!(
                "The action did not produce a valid JSON or JSON Array response: {}",
                String::from_utf8_lossy(&resp.body)
            ),
        ),
    };
    out.size = Some(resp.len);
    out
}

pub fn timeout_message(timeout_ms: u64, during_init: bool) -> String {
    if during_init {
        format!(
            "The action exceeded its time limits of {timeout_ms} milliseconds during initialization."
        )
    } else {
        format!("The action exceeded its time limits of {timeout_ms} milliseconds.")
    }
}

/// Timings and flags of one run.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunFacts {
    pub start_ms: u64,
    pub end_ms: u64,
    pub init_time_ms: Option<u64>,
    pub timeout: bool,
}

/// The activation record (wire spec §2.6).
pub fn build_activation(
    job: &Job,
    response: ActivationResponse,
    logs: Vec<String>,
    facts: RunFacts,
) -> Activation {
    let a = &job.action;
    let mut ann = Vec::with_capacity(8);
    let mut add = |k: &str, v: Value| {
        ann.push(KeyValue {
            key: k.to_owned(),
            value: v,
            init: None,
        })
    };
    add("path", Value::from(a.doc_id()));
    add(
        "waitTime",
        Value::from(facts.start_ms.saturating_sub(job.received_at_ms)),
    );
    add("kind", Value::from(a.exec.kind()));
    add("timeout", Value::Bool(facts.timeout));
    add(
        "limits",
        serde_json::to_value(a.limits).unwrap_or(Value::Null),
    );
    if let Some(t) = facts.init_time_ms {
        add("initTime", Value::from(t));
    }
    if job.caused_by_sequence {
        add("causedBy", Value::from("sequence"));
    }
    if let Some(b) = &job.binding {
        add("binding", Value::from(b.as_str()));
    }
    Activation {
        namespace: job.identity.namespace.to_string(),
        name: a.name.to_string(),
        subject: job.identity.subject.clone(),
        activation_id: job.activation_id,
        start: facts.start_ms,
        end: facts.end_ms,
        duration: Some(facts.end_ms.saturating_sub(facts.start_ms)),
        cause: job.cause,
        response,
        logs,
        version: a.version,
        publish: a.publish,
        annotations: Parameters(ann),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use brisk_model::{AuthKey, EntityName, EntityPath, Exec, SemVer, UserLimits};
    use serde_json::json;

    fn resp(status: u16, body: &str) -> ProxyResponse {
        ProxyResponse {
            status,
            body: bytes::Bytes::copy_from_slice(body.as_bytes()),
            len: body.len(),
            quiet: false,
        }
    }

    fn check(status: u16, body: &str, code: StatusCode, result: Value) {
        let r = classify_run(&resp(status, body));
        assert_eq!(
            (r.status_code, r.result),
            (code, Some(result)),
            "{status} {body}"
        );
    }

    #[test]
    fn run_replies_map_to_statuses() {
        use StatusCode::*;
        check(200, r#"{"a":1}"#, Success, json!({"a": 1}));
        check(200, "[1]", Success, json!([1]));
        check(
            200,
            r#"{"error":"x","b":2}"#,
            ApplicationError,
            json!({"error": "x"}),
        );
        check(
            502,
            r#"{"error":"boom"}"#,
            DeveloperError,
            json!({"error": "boom"}),
        );
        let invalid = |b: &str| json!({"error": format!("The action did not produce a valid JSON or JSON Array response: {b}")});
        check(200, "42", DeveloperError, invalid("42"));
        check(200, "not json", DeveloperError, invalid("not json"));
        check(500, r#"{"x":1}"#, DeveloperError, invalid(r#"{"x":1}"#));
        let big = ProxyResponse {
            status: 200,
            body: bytes::Bytes::from_static(b"{\"s\":\"xx"),
            len: 2_000_000,
            quiet: false,
        };
        let r = classify_run(&big);
        assert_eq!(r.status_code, ApplicationError);
        assert_eq!(
            r.result,
            Some(
                json!({"error": "The action produced a response that exceeded the allowed length: 2000000 > 1048576 bytes. The truncated response was: {\"s\":\"xx"})
            )
        );
    }

    #[test]
    fn init_replies_map_to_developer_errors() {
        assert!(classify_init(&resp(200, r#"{"ok":true}"#)).is_ok());
        let e = classify_init(&resp(502, r#"{"error":"bad code"}"#)).unwrap_err();
        assert_eq!(e.result, Some(json!({"error": "bad code"})));
        let e = classify_init(&resp(500, "oops")).unwrap_err();
        assert_eq!(
            e.result,
            Some(json!({"error": "The action failed during initialization: oops"}))
        );
    }

    fn test_job(args: Value) -> Job {
        let mut params = Parameters::new();
        params.0.push(KeyValue {
            key: "secret".into(),
            value: json!(null),
            init: Some(true),
        });
        Job {
            activation_id: ActivationId::generate(),
            transaction_id: "t".into(),
            action: Arc::new(Action {
                namespace: EntityPath::root(EntityName::new("ns").unwrap()),
                name: EntityName::new("a").unwrap(),
                exec: Exec::Code {
                    kind: "nodejs:20".into(),
                    code: "x".into(),
                    binary: false,
                    main: Some("run".into()),
                },
                parameters: params,
                limits: brisk_model::SystemLimits::default().default_action_limits(),
                version: SemVer::INITIAL,
                publish: false,
                annotations: Parameters::new(),
                updated: 0,
            }),
            binding: None,
            identity: std::sync::Arc::new(Identity {
                subject: "s".into(),
                namespace: EntityName::new("caller").unwrap(),
                uuid: "u".into(),
                authkey: AuthKey::parse("u:k").unwrap(),
                limits: UserLimits::default(),
            }),
            args,
            cause: None,
            caused_by_sequence: false,
            received_at_ms: 0,
            prepare_next: Vec::new(),
        }
    }

    #[test]
    fn bodies_split_init_params_from_run_arguments() {
        let j = test_job(json!({"secret": null, "x": 1}));
        let init: Value =
            serde_json::from_slice(&init_body(&j, CodeRef::Dir("/d"), 99, true)).unwrap();
        let v = &init["value"];
        assert_eq!(v["main"], json!("run"));
        assert_eq!(v["codeDir"], json!("/d"));
        assert_eq!(v["binary"], json!(true));
        assert_eq!(v["env"]["secret"], json!(""));
        assert_eq!(v["env"]["__OW_API_KEY"], json!("u:k"));
        assert_eq!(v["env"]["__OW_NAMESPACE"], json!("caller"));
        assert_eq!(v["env"]["__OW_ACTION_NAME"], json!("/ns/a"));
        assert_eq!(v["env"]["__OW_DEADLINE"], json!("99"));
        assert_eq!(v["env"]["__OW_ALLOW_CONCURRENT"], json!("true"));
        let run: Value = serde_json::from_slice(&run_body(&j, 123)).unwrap();
        assert_eq!(run["value"], json!({"x": 1}));
        assert_eq!(run["deadline"], json!("123"));
        assert_eq!(run["api_key"], json!("u:k"));
        assert_eq!(run["action_name"], json!("/ns/a"));
        let arr = test_job(json!([1, 2]));
        let run: Value = serde_json::from_slice(&run_body(&arr, 1)).unwrap();
        assert_eq!(run["value"], json!([1, 2]));
    }

    #[test]
    fn a_packaged_actions_names_in_the_run_body_and_record() {
        let mut j = test_job(json!({}));
        let mut action = (*j.action).clone();
        action.namespace = EntityPath::in_package(
            EntityName::new("ns").unwrap(),
            EntityName::new("pkg").unwrap(),
        );
        action.version = SemVer::INITIAL.up_patch();
        action.annotations.0.push(KeyValue {
            key: "provide-api-key".into(),
            value: json!(false),
            init: None,
        });
        j.action = Arc::new(action);
        let run: Value = serde_json::from_slice(&run_body(&j, 5)).unwrap();
        assert_eq!(run["action_name"], json!("/ns/pkg/a"));
        assert_eq!(run["action_name"], json!(j.action.fqn().to_string()));
        assert_eq!(run["action_version"], json!("0.0.2"));
        assert_eq!(run["activation_id"], json!(j.activation_id.as_str()));
        assert!(run.get("api_key").is_none(), "{run}");
        let facts = RunFacts {
            start_ms: 10,
            end_ms: 12,
            init_time_ms: None,
            timeout: false,
        };
        let rec = build_activation(
            &j,
            ActivationResponse::success(json!({})),
            Vec::new(),
            facts,
        );
        assert_eq!(rec.annotations.get("path"), Some(&json!("ns/pkg/a")));
        assert_eq!(rec.filter_name(), "pkg/a");
    }

    #[test]
    fn env_values_are_strings() {
        assert_eq!(env_string(&json!(null)), "");
        assert_eq!(env_string(&json!("s")), "s");
        assert_eq!(env_string(&json!(true)), "true");
        assert_eq!(env_string(&json!({"a": [1]})), r#"{"a":[1]}"#);
    }
}
