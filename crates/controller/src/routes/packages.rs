//! `/namespaces/{ns}/packages/{name}`: packages and bindings.

use axum::Json;
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use brisk_model::entity::Binding;
use brisk_model::{
    Collection, Entity, EntityName, EntityPath, Package, Parameters, SemVer, now_millis,
};
use brisk_store::EntityQuery;
use serde::Deserialize;
use serde_json::{Value, json};

use super::Req;
use super::actions::check_sizes;
use crate::Controller;
use crate::entitlement::require_owner;
use crate::error::{ApiError, ApiResult, CONFLICT_COLLECTION, EXISTS};
use crate::extract::{ListOptions, json_body};

#[derive(Debug, Default, Deserialize)]
struct PackagePut {
    #[serde(default)]
    binding: Option<Value>,
    #[serde(default)]
    parameters: Option<Parameters>,
    #[serde(default)]
    annotations: Option<Parameters>,
    #[serde(default)]
    version: Option<SemVer>,
    #[serde(default)]
    publish: Option<bool>,
}

#[derive(Debug, Deserialize)]
struct BindingPut {
    namespace: String,
    name: String,
}

pub async fn list(state: &Controller, req: &Req) -> ApiResult<Response> {
    let opts = ListOptions::parse(&req.query, "packages")?;
    let own = req.owns_namespace();
    let query = EntityQuery {
        collection: Collection::Packages,
        namespace: req.namespace.to_string(),
        package: None,
        skip: if own { opts.skip } else { 0 },
        limit: if own { opts.limit } else { 0 },
    };
    let visible = |p: &Package| own || (p.publish && p.binding.is_none());
    let packages: Vec<Package> = state
        .store
        .list(&query)
        .await?
        .into_iter()
        .filter_map(|e| match e {
            Entity::Package(p) if visible(&p) => Some(p),
            _ => None,
        })
        .collect();
    let packages: Vec<Package> = if own {
        packages
    } else {
        let it = packages.into_iter().skip(opts.skip as usize);
        it.take(opts.limit as usize).collect()
    };
    if opts.count {
        return Ok(Json(json!({"packages": packages.len()})).into_response());
    }
    let items: Vec<Value> = packages.iter().map(Package::summary_json).collect();
    Ok(Json(Value::Array(items)).into_response())
}

pub async fn handle(state: &Controller, req: &Req, name: EntityName) -> ApiResult<Response> {
    match req.method {
        Method::GET => get(state, req, &name).await,
        Method::PUT => put(state, req, &name).await,
        Method::DELETE => delete(state, req, &name).await,
        _ => Err(ApiError::MethodNotAllowed),
    }
}

/// `actions` and `feeds` of a package, as `{name, version, annotations}`.
async fn contents(state: &Controller, target: &Package) -> ApiResult<(Vec<Value>, Vec<Value>)> {
    let query = EntityQuery {
        collection: Collection::Actions,
        namespace: target.namespace.namespace.to_string(),
        package: Some(target.name.to_string()),
        skip: 0,
        limit: 0,
    };
    let mut actions = Vec::new();
    let mut feeds = Vec::new();
    for e in state.store.list(&query).await? {
        if let Entity::Action(a) = e {
            let item = json!({"name": a.name, "version": a.version, "annotations": a.annotations});
            if a.annotations.get("feed").is_some() {
                feeds.push(item.clone());
            }
            actions.push(item);
        }
    }
    Ok((actions, feeds))
}

async fn get(state: &Controller, req: &Req, name: &EntityName) -> ApiResult<Response> {
    state
        .fetch_package(&req.namespace, name)
        .await?
        .ok_or_else(ApiError::not_found)?;
    if !state
        .package_readable(&req.identity.namespace, &req.namespace, name)
        .await?
    {
        return Err(ApiError::forbidden_resource(&format!(
            "{}/{name}",
            req.namespace
        )));
    }
    let (target, params, _, addressed) = state.package_contents(&req.namespace, name).await?;
    let mut shown = addressed;
    shown.parameters = params;
    let (actions, feeds) = contents(state, &target).await?;
    let mut v = shown.to_json();
    v["actions"] = Value::Array(actions);
    v["feeds"] = Value::Array(feeds);
    Ok(Json(v).into_response())
}

/// Validates a binding target and returns it.
async fn check_binding(state: &Controller, req: &Req, b: &BindingPut) -> ApiResult<Binding> {
    let ns = if b.namespace == brisk_model::names::DEFAULT_NAMESPACE {
        req.identity.namespace.clone()
    } else {
        EntityName::namespace(&b.namespace)?
    };
    let name = EntityName::new(&b.name)?;
    let target = match state.fetch(&format!("{ns}/{name}"), false).await? {
        None => {
            return Err(ApiError::bad(
                "Binding references a package that does not exist.",
            ));
        }
        Some(s) => match s.entity {
            Entity::Package(p) => p,
            _ => {
                return Err(ApiError::Conflict(
                    "Cannot bind to a resource that is not a package.".into(),
                ));
            }
        },
    };
    if target.binding.is_some() {
        return Err(ApiError::bad("Cannot bind to another package binding."));
    }
    if ns != req.identity.namespace && !target.publish {
        return Err(ApiError::forbidden_resource(&format!("{ns}/{name}")));
    }
    Ok(Binding {
        namespace: ns,
        name,
    })
}

async fn put(state: &Controller, req: &Req, name: &EntityName) -> ApiResult<Response> {
    require_owner(req, &format!("{}/{name}", req.namespace))?;
    if name.as_str() == "default" {
        return Err(ApiError::bad("Package name 'default' is reserved."));
    }
    let overwrite = req.query.flag("overwrite", false)?;
    let body: PackagePut = json_body(&req.headers, &req.body)?.unwrap_or_default();
    check_sizes(state, body.parameters.as_ref(), body.annotations.as_ref())?;
    let binding_put: Option<BindingPut> = match &body.binding {
        None | Some(Value::Null) => None,
        Some(Value::Object(m)) if m.is_empty() => None,
        Some(v) => Some(
            serde_json::from_value(v.clone())
                .map_err(|e| ApiError::bad(format!("The request content was malformed:\n{e}")))?,
        ),
    };
    let existing = match state
        .fetch(&format!("{}/{name}", req.namespace), false)
        .await?
    {
        None => None,
        Some(s) => match s.entity {
            Entity::Package(p) => Some((p, s.rev)),
            _ => return Err(ApiError::Conflict(CONFLICT_COLLECTION.into())),
        },
    };
    if existing.is_some() && !overwrite {
        return Err(ApiError::Conflict(EXISTS.into()));
    }
    let binding = match &binding_put {
        Some(b) => Some(check_binding(state, req, b).await?),
        None => None,
    };
    let (mut pkg, rev) = match existing {
        None => (
            Package {
                namespace: EntityPath::root(req.namespace.clone()),
                name: name.clone(),
                binding,
                parameters: body.parameters.unwrap_or_default().dedup(),
                version: body.version.unwrap_or_default(),
                publish: body.publish.unwrap_or(false),
                annotations: body.annotations.unwrap_or_default().dedup(),
                updated: 0,
            },
            None,
        ),
        Some((old, rev)) => {
            if old.binding.is_none() && binding.is_some() {
                return Err(ApiError::Conflict(
                    "Resource is a package and cannot be converted into a binding.".into(),
                ));
            }
            (
                Package {
                    namespace: old.namespace.clone(),
                    name: name.clone(),
                    binding: binding.or(old.binding),
                    parameters: body
                        .parameters
                        .map(Parameters::dedup)
                        .unwrap_or(old.parameters),
                    version: body.version.unwrap_or(old.version.up_patch()),
                    publish: body.publish.unwrap_or(old.publish),
                    annotations: body
                        .annotations
                        .map(Parameters::dedup)
                        .unwrap_or(old.annotations),
                    updated: 0,
                },
                Some(rev),
            )
        }
    };
    match &pkg.binding {
        Some(b) => pkg
            .annotations
            .set("binding", serde_json::to_value(b).unwrap_or(Value::Null)),
        None => pkg.annotations.remove("binding"),
    }
    pkg.updated = now_millis();
    state.store.put(&Entity::Package(pkg.clone()), rev).await?;
    Ok(Json(pkg.to_json()).into_response())
}

async fn delete(state: &Controller, req: &Req, name: &EntityName) -> ApiResult<Response> {
    require_owner(req, &format!("{}/{name}", req.namespace))?;
    let force = req.query.flag("force", false)?;
    let (pkg, rev) = state
        .fetch_package(&req.namespace, name)
        .await?
        .ok_or_else(ApiError::not_found)?;
    if pkg.binding.is_none() {
        let query = EntityQuery {
            collection: Collection::Actions,
            namespace: req.namespace.to_string(),
            package: Some(name.to_string()),
            skip: 0,
            limit: 0,
        };
        let inside = state.store.list(&query).await?;
        if !inside.is_empty() && !force {
            return Err(ApiError::Conflict(format!(
                "Package not empty (contains {} entities). Set force param or delete package contents.",
                inside.len()
            )));
        }
        for e in inside {
            let doc_id = e.fqn().doc_id();
            if let Some(s) = state.fetch(&doc_id, false).await? {
                state.store.delete(&doc_id, s.rev).await?;
            }
        }
    }
    state
        .store
        .delete(&format!("{}/{name}", req.namespace), rev)
        .await?;
    Ok(Json(pkg.to_json()).into_response())
}
