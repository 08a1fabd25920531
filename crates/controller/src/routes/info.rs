//! Unauthenticated info routes, the namespace list and limits.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::resolve_namespace;
use crate::Controller;
use crate::error::{ApiError, ApiResult};

const MB: u64 = 1024 * 1024;

pub async fn ping() -> &'static str {
    "pong"
}

pub async fn root(State(state): State<Arc<Controller>>) -> Json<Value> {
    let l = &state.config.limits;
    let c = &state.config;
    Json(json!({
        "description": "OpenWhisk",
        "support": {"github": "https://github.com/apache/openwhisk/issues", "slack": "http://slack.openwhisk.org"},
        "api_paths": ["/api/v1"],
        "limits": {
            "actions_per_minute": c.invocations_per_minute,
            "triggers_per_minute": c.fires_per_minute,
            "concurrent_actions": c.concurrent_invocations,
            "sequence_length": l.sequence_max_length,
            "default_min_action_duration": l.timeout.min,
            "default_max_action_duration": l.timeout.max,
            "default_min_action_memory": l.memory.min * MB,
            "default_max_action_memory": l.memory.max * MB,
            "default_min_action_logs": l.logs.min * MB,
            "default_max_action_logs": l.logs.max * MB,
            "min_action_duration": l.timeout.min,
            "max_action_duration": l.timeout.max,
            "min_action_memory": l.memory.min * MB,
            "max_action_memory": l.memory.max * MB,
            "min_action_logs": l.logs.min * MB,
            "max_action_logs": l.logs.max * MB,
        },
        "runtimes": state.manifest.to_info_json(),
    }))
}

pub async fn api(State(state): State<Arc<Controller>>) -> Json<Value> {
    Json(json!({
        "description": "OpenWhisk API",
        "api_version": "1.0.0",
        "api_version_path": "v1",
        "build": state.config.build,
        "buildno": state.config.build,
        "swagger_paths": {"ui": "/docs", "api-docs": "/api-docs"},
    }))
}

pub async fn namespaces(State(state): State<Arc<Controller>>, headers: HeaderMap) -> Response {
    match state.auth.authenticate(&headers).await {
        Ok(id) => Json(json!([id.namespace])).into_response(),
        Err(e) => e.into_response(),
    }
}

pub async fn limits(
    State(state): State<Arc<Controller>>,
    Path(ns): Path<String>,
    headers: HeaderMap,
) -> Response {
    let r: ApiResult<Value> = async {
        let id = state.auth.authenticate(&headers).await?;
        let ns = resolve_namespace(&ns, &id)?;
        if ns != id.namespace {
            return Err(ApiError::forbidden_resource(ns.as_str()));
        }
        let l = &state.config.limits;
        let c = &state.config;
        let u = &id.limits;
        let mut out = json!({
            "invocationsPerMinute": u.invocations_per_minute.unwrap_or(c.invocations_per_minute),
            "concurrentInvocations": u.concurrent_invocations.unwrap_or(c.concurrent_invocations),
            "firesPerMinute": u.fires_per_minute.unwrap_or(c.fires_per_minute),
            "minActionMemory": l.memory.min, "maxActionMemory": l.memory.max,
            "minActionLogs": l.logs.min, "maxActionLogs": l.logs.max,
            "minActionTimeout": l.timeout.min, "maxActionTimeout": l.timeout.max,
            "minActionConcurrency": l.concurrency.min, "maxActionConcurrency": l.concurrency.max,
            "maxParameterSize": format!("{} MB", l.parameter_size / (1024 * 1024)),
            "maxActionInstances": u.concurrent_invocations.unwrap_or(c.concurrent_invocations),
        });
        if let Some(k) = &u.allowed_kinds {
            out["allowedKinds"] = json!(k);
        }
        if let Some(s) = u.store_activations {
            out["storeActivations"] = json!(s);
        }
        Ok(out)
    }
    .await;
    match r {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}
