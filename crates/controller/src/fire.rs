//! Firing a trigger (wire spec §1.4): every active rule's action is invoked non-blocking with
//! the trigger's parameters under the event payload; the fire itself is recorded as a trigger
//! activation whose logs list one outcome per rule.

use std::sync::Arc;

use axum::http::HeaderMap;
use brisk_model::entity::RuleStatus;
use brisk_model::{
    Activation, ActivationId, ActivationResponse, FullyQualifiedName, Identity, Parameters,
    Trigger, now_millis,
};
use serde_json::{Map, Value, json};

use crate::Controller;
use crate::error::ApiError;
use crate::invocation::Invocation;

/// What a fire did: `None` when no rule was active (nothing happens, nothing is recorded).
pub async fn fire(
    state: &Arc<Controller>,
    identity: &Arc<Identity>,
    trigger: &Trigger,
    payload: Map<String, Value>,
    headers: Option<&HeaderMap>,
    tid: &str,
) -> Option<ActivationId> {
    let links = trigger.rules.as_ref()?;
    if !links.values().any(|l| l.status == RuleStatus::Active) {
        return None;
    }
    let id = ActivationId::generate();
    let start = now_millis();
    let mut args = trigger.parameters.to_object();
    if let Some(h) = headers {
        args.insert("__ow_headers".into(), forwarded_headers(h));
    }
    for (k, v) in &payload {
        args.insert(k.clone(), v.clone());
    }
    let mut logs = Vec::with_capacity(links.len());
    for (rule, link) in links {
        let action = link.action.doc_id();
        let entry = if link.status != RuleStatus::Active {
            json!({"statusCode": 1, "success": false, "rule": rule, "action": action,
                   "error": format!("Rule '{rule}' is inactive, action '{action}' was not activated.")})
        } else {
            match start_rule(state, identity, &link.action, &args, id, tid).await {
                Ok(aid) => json!({"statusCode": 0, "success": true, "activationId": aid,
                                  "rule": rule, "action": action}),
                Err(e) => {
                    let code = if e.status().is_server_error() { 3 } else { 1 };
                    json!({"statusCode": code, "success": false, "error": e.to_string(),
                           "rule": rule, "action": action})
                }
            }
        };
        logs.push(entry.to_string());
    }
    let record = Activation {
        namespace: identity.namespace.to_string(),
        name: trigger.name.to_string(),
        subject: identity.subject.clone(),
        activation_id: id,
        start,
        end: 0,
        duration: None,
        cause: None,
        response: ActivationResponse::success(Value::Object(payload)),
        logs,
        version: trigger.version,
        publish: trigger.publish,
        annotations: Parameters::new(),
    };
    if identity.limits.store_activations != Some(false) {
        state.record(std::sync::Arc::new(record)).await;
    }
    Some(id)
}

/// Starts one rule's action as a normal, throttled, non-blocking invoke.
async fn start_rule(
    state: &Arc<Controller>,
    identity: &Arc<Identity>,
    action: &FullyQualifiedName,
    args: &Map<String, Value>,
    cause: ActivationId,
    tid: &str,
) -> Result<ActivationId, ApiError> {
    if !state.action_usable(&identity.namespace, action).await? {
        return Err(ApiError::forbidden_resource(&action.path.to_string()));
    }
    let resolved = state.resolve_action(action).await?;
    let mut inv = Invocation::prepare(state, identity, resolved, args.clone(), tid)?;
    inv.caused_by = Some((cause, "trigger"));
    let id = inv.activation_id;
    state.launch(inv);
    Ok(id)
}

/// Request headers, lower-cased, for `__ow_headers` — without the caller's credentials.
fn forwarded_headers(h: &HeaderMap) -> Value {
    let mut m = Map::new();
    for (k, v) in h {
        let name = k.as_str();
        if name == "authorization" || name == "timeout-access" {
            continue;
        }
        if let Ok(v) = v.to_str() {
            m.insert(name.to_owned(), Value::from(v));
        }
    }
    Value::Object(m)
}
