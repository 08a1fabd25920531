//! `POST /namespaces/{ns}/actions/[{pkg}/]{name}`: invoking an action (wire spec §1.3, §3).

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use brisk_model::{Activation, ActivationId, FullyQualifiedName, StatusCode as Outcome};
use serde_json::{Map, Value, json};

use super::Req;
use crate::Controller;
use crate::entitlement::require_contents_access;
use crate::error::{ApiError, ApiResult};
use crate::extract::json_body;
use crate::invocation::Invocation;
use crate::middleware::ACTIVATION_ID;

/// Longest wait a client may ask for with `?timeout=`.
const MAX_WAIT_MS: u64 = 60_000;

pub async fn invoke(
    state: &Arc<Controller>,
    req: &Req,
    fqn: &FullyQualifiedName,
) -> ApiResult<Response> {
    require_contents_access(state, req, fqn.package()).await?;
    let blocking = req.query.flag("blocking", false)?;
    let result_only = req.query.flag("result", false)?;
    let wait = match req.query.get("timeout") {
        None => state.config.blocking_timeout,
        Some(t) => match t.parse::<u64>() {
            Ok(ms) if (1..=MAX_WAIT_MS).contains(&ms) => {
                Duration::from_millis(ms).min(state.config.blocking_timeout)
            }
            _ => {
                return Err(ApiError::bad(
                    "Timeout must be number of milliseconds up to 60000.",
                ));
            }
        },
    };
    let max = state.config.limits.payload_size;
    if req.body.len() > max {
        return Err(ApiError::TooLarge(format!(
            "Request larger than allowed: {} > {max} bytes.",
            req.body.len()
        )));
    }
    let payload: Map<String, Value> = match json_body::<Value>(&req.headers, &req.body)? {
        None => Map::new(),
        Some(Value::Object(m)) => m,
        Some(_) => {
            return Err(ApiError::bad(
                "The request content was malformed:\nexpected a JSON object",
            ));
        }
    };
    let resolved = state.resolve_action(fqn).await?;
    let invocation = Invocation::prepare(state, &req.identity, resolved, payload, &req.tid)?;
    let id = invocation.activation_id;
    if !blocking {
        state.launch(invocation);
        return Ok(accepted(id));
    }
    // Run on this request's task; past the wait, the activation goes on in a task of its own
    // and its record appears later.
    match tokio::time::timeout(wait, state.start(invocation)).await {
        Ok(activation) => Ok(completed(&activation, result_only)),
        Err(_) => Ok(accepted(id)),
    }
}

fn with_activation_header(mut res: Response, id: &ActivationId) -> Response {
    if let Ok(v) = HeaderValue::from_str(id.as_str()) {
        res.headers_mut().insert(ACTIVATION_ID, v);
    }
    res
}

pub fn accepted(id: ActivationId) -> Response {
    let res = (StatusCode::ACCEPTED, Json(json!({"activationId": id}))).into_response();
    with_activation_header(res, &id)
}

/// A finished blocking invoke: 200 / 502 / 500 by outcome; an array result is returned as is.
pub fn completed(a: &Activation, result_only: bool) -> Response {
    let status = match a.response.status_code {
        Outcome::Success => StatusCode::OK,
        Outcome::ApplicationError | Outcome::DeveloperError => StatusCode::BAD_GATEWAY,
        Outcome::WhiskError => StatusCode::INTERNAL_SERVER_ERROR,
    };
    // Serialized where it lies: a result is not copied for its response.
    let empty = Value::Object(Map::new());
    let result = a.response.result.as_ref().unwrap_or(&empty);
    let res = if result.is_array() || result_only {
        (status, Json(result)).into_response()
    } else {
        (status, Json(a.to_api_json())).into_response()
    };
    with_activation_header(res, &a.activation_id)
}
