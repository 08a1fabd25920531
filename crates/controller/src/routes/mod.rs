//! One module per REST resource; this file wires them into the router.

mod actions;
mod activations;
mod info;
mod invoke;
mod packages;
mod rules;
mod triggers;

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::http::{HeaderMap, Method};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use brisk_model::{EntityName, Identity};

use crate::Controller;
use crate::error::{ApiError, ApiResult};
use crate::extract::QueryMap;
use crate::middleware;

pub fn router(state: Arc<Controller>) -> Router {
    Router::new()
        .route("/", get(info::root))
        .route("/ping", get(info::ping))
        .route("/api/v1", get(info::api))
        .route("/api/v1/", get(info::api))
        .route("/api/v1/namespaces", get(info::namespaces))
        .route("/api/v1/namespaces/", get(info::namespaces))
        .route("/api/v1/namespaces/{ns}/limits", get(info::limits))
        .route("/api/v1/namespaces/{ns}/{collection}", any(collection))
        .route("/api/v1/namespaces/{ns}/{collection}/", any(collection))
        .route("/api/v1/namespaces/{ns}/{collection}/{*rest}", any(entity))
        .route("/api/v1/web/{ns}/{*rest}", any(crate::web::handle))
        .fallback(not_found)
        .layer(axum::middleware::from_fn(middleware::api))
        .layer(DefaultBodyLimit::max(crate::MAX_REQUEST_BYTES))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::not_found()
}

/// Everything a resource handler needs from the request.
pub struct Req {
    pub method: Method,
    pub headers: HeaderMap,
    pub query: QueryMap,
    pub body: Bytes,
    pub identity: Arc<Identity>,
    /// The namespace in the path, `_` resolved.
    pub namespace: EntityName,
    pub tid: String,
}

impl Req {
    pub fn owns_namespace(&self) -> bool {
        self.namespace == self.identity.namespace
    }
}

/// A page of one collection, or with `count` its size: what every list route answers.
pub async fn list_entities(
    state: &Controller,
    query: brisk_store::EntityQuery,
    count: bool,
) -> ApiResult<Response> {
    use axum::Json;
    let name = query.collection.as_str();
    if count {
        let n = state.store.count(&query).await?;
        return Ok(Json(serde_json::json!({ name: n })).into_response());
    }
    let items: Vec<serde_json::Value> = state
        .store
        .list(&query)
        .await?
        .iter()
        .filter(|e| e.collection() == query.collection)
        .map(brisk_model::Entity::summary_json)
        .collect();
    Ok(Json(serde_json::Value::Array(items)).into_response())
}

/// Resolves the `{ns}` path segment: `_` is the caller's own namespace.
pub fn resolve_namespace(segment: &str, identity: &Identity) -> ApiResult<EntityName> {
    if segment == brisk_model::names::DEFAULT_NAMESPACE {
        return Ok(identity.namespace.clone());
    }
    Ok(EntityName::namespace(segment)?)
}

async fn build_req(
    state: &Controller,
    method: Method,
    headers: HeaderMap,
    raw_query: Option<String>,
    body: Bytes,
    ns: &str,
    tid: String,
) -> ApiResult<Req> {
    let identity = state.auth.authenticate(&headers).await?;
    let namespace = resolve_namespace(ns, &identity)?;
    Ok(Req {
        method,
        query: QueryMap::parse(raw_query.as_deref()),
        headers,
        body,
        identity,
        namespace,
        tid,
    })
}

#[allow(clippy::too_many_arguments)]
async fn collection(
    State(state): State<Arc<Controller>>,
    Path((ns, coll)): Path<(String, String)>,
    method: Method,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    axum::Extension(tid): axum::Extension<middleware::TransactionId>,
    body: Bytes,
) -> Response {
    let r = async {
        let req = build_req(&state, method, headers, q, body, &ns, tid.0).await?;
        if req.method != Method::GET {
            return Err(ApiError::MethodNotAllowed);
        }
        match coll.as_str() {
            "actions" => actions::list(&state, &req, None).await,
            "packages" => packages::list(&state, &req).await,
            "triggers" => triggers::list(&state, &req).await,
            "rules" => rules::list(&state, &req).await,
            "activations" => activations::list(&state, &req).await,
            _ => Err(ApiError::not_found()),
        }
    }
    .await;
    r.into_response()
}

#[allow(clippy::too_many_arguments)]
async fn entity(
    State(state): State<Arc<Controller>>,
    Path((ns, coll, rest)): Path<(String, String, String)>,
    method: Method,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    axum::Extension(tid): axum::Extension<middleware::TransactionId>,
    body: Bytes,
) -> Response {
    let r = async {
        if !matches!(
            coll.as_str(),
            "actions" | "packages" | "triggers" | "rules" | "activations"
        ) {
            return Err(ApiError::not_found());
        }
        let req = build_req(&state, method, headers, q, body, &ns, tid.0).await?;
        let segs: Vec<&str> = rest.split('/').collect();
        match coll.as_str() {
            "actions" => match segs.as_slice() {
                [pkg, ""] if req.method == Method::GET => {
                    let pkg = EntityName::new(pkg)?;
                    actions::list(&state, &req, Some(pkg)).await
                }
                [name] => actions::handle(&state, &req, None, EntityName::new(name)?).await,
                [pkg, name] => {
                    let (pkg, name) = (EntityName::new(pkg)?, EntityName::new(name)?);
                    actions::handle(&state, &req, Some(pkg), name).await
                }
                _ => Err(ApiError::not_found()),
            },
            "activations" => match segs.as_slice() {
                [id] => activations::get(&state, &req, id, None).await,
                [id, part @ ("result" | "logs")] => {
                    activations::get(&state, &req, id, Some(part)).await
                }
                _ => Err(ApiError::not_found()),
            },
            other => {
                let [name] = segs.as_slice() else {
                    return Err(ApiError::not_found());
                };
                let name = EntityName::new(name)?;
                match other {
                    "packages" => packages::handle(&state, &req, name).await,
                    "triggers" => triggers::handle(&state, &req, name).await,
                    _ => rules::handle(&state, &req, name).await,
                }
            }
        }
    }
    .await;
    r.into_response()
}
