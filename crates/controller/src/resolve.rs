//! Looking entities up: collection checks, packages and bindings, actions through bindings.

use brisk_model::{
    Action, Entity, EntityName, EntityPath, FullyQualifiedName, Package, Parameters,
};
use brisk_store::{Fetched, Stored};

use crate::Controller;
use crate::error::{ApiError, ApiResult, CONFLICT_COLLECTION};

/// An action as addressed by a client, resolved through any binding.
#[derive(Debug, Clone)]
pub struct ResolvedAction {
    /// Shared with the invoker's job without copying the code.
    pub action: std::sync::Arc<Action>,
    pub rev: u64,
    /// `ns/binding` when addressed through a binding.
    pub binding: Option<String>,
    /// Package parameters, overlaid by binding parameters (action parameters not included).
    pub package_params: Parameters,
}

impl ResolvedAction {
    /// package < binding < action.
    pub fn merged_params(&self) -> Parameters {
        let mut p = self.package_params.clone();
        p.merge(&self.action.parameters);
        p
    }
}

impl Controller {
    pub async fn fetch(&self, doc_id: &str, with_code: bool) -> ApiResult<Option<Stored>> {
        Ok(self.store.get(doc_id, with_code).await?)
    }

    /// Fetches a package by `ns/name`; `None` if absent, 409 if the name is another kind.
    pub async fn fetch_package(
        &self,
        ns: &EntityName,
        name: &EntityName,
    ) -> ApiResult<Option<(Package, u64)>> {
        match self.fetch(&format!("{ns}/{name}"), false).await? {
            None => Ok(None),
            Some(Stored {
                entity: Entity::Package(p),
                rev,
            }) => Ok(Some((p, rev))),
            Some(_) => Err(ApiError::Conflict(CONFLICT_COLLECTION.into())),
        }
    }

    /// The package whose contents `ns/pkg` addresses: itself, or the package a binding points to,
    /// with the merged package parameters and the binding name.
    pub async fn package_contents(
        &self,
        ns: &EntityName,
        pkg: &EntityName,
    ) -> ApiResult<(Package, Parameters, Option<String>, Package)> {
        let (addressed, _) = self
            .fetch_package(ns, pkg)
            .await?
            .ok_or_else(ApiError::not_found)?;
        match &addressed.binding {
            None => Ok((
                addressed.clone(),
                addressed.parameters.clone(),
                None,
                addressed,
            )),
            Some(b) => {
                let (target, _) = self
                    .fetch_package(&b.namespace, &b.name)
                    .await?
                    .ok_or_else(ApiError::not_found)?;
                if target.binding.is_some() {
                    return Err(ApiError::Unprocessable(
                        "The binding refers to another binding.".into(),
                    ));
                }
                let mut params = target.parameters.clone();
                params.merge(&addressed.parameters);
                Ok((target, params, Some(format!("{ns}/{pkg}")), addressed))
            }
        }
    }

    /// Resolves an action through packages and bindings. 404 when anything on the way is missing.
    /// The action comes with its code, shared with the entity cache (never copied).
    pub async fn resolve_action(&self, fqn: &FullyQualifiedName) -> ApiResult<ResolvedAction> {
        let (doc_id, package_params, binding) = match fqn.package() {
            None => (fqn.doc_id(), Parameters::new(), None),
            Some(pkg) => {
                let (target, params, binding, _) =
                    self.package_contents(fqn.namespace(), pkg).await?;
                let real = FullyQualifiedName::new(target.contents_path(), fqn.name.clone());
                (real.doc_id(), params, binding)
            }
        };
        match self.store.get_shared(&doc_id).await? {
            Some(Fetched::Action { action, rev }) => Ok(ResolvedAction {
                action,
                rev,
                binding,
                package_params,
            }),
            Some(_) if fqn.package().is_none() => {
                Err(ApiError::Conflict(CONFLICT_COLLECTION.into()))
            }
            _ => Err(ApiError::not_found()),
        }
    }

    /// Whether `identity_ns` may read the contents of package `ns/pkg`: a package if owned or
    /// published; a binding only by its owner, and only while the bound package is readable.
    /// A missing package counts as readable for its owner (who then gets a 404).
    pub async fn package_readable(
        &self,
        identity_ns: &EntityName,
        ns: &EntityName,
        pkg: &EntityName,
    ) -> ApiResult<bool> {
        let own = identity_ns == ns;
        let p = match self.fetch_package(ns, pkg).await {
            Ok(Some((p, _))) => p,
            _ => return Ok(own),
        };
        Ok(match &p.binding {
            None => own || p.publish,
            Some(_) if !own => false,
            Some(b) if &b.namespace == identity_ns => true,
            Some(b) => matches!(
                self.fetch_package(&b.namespace, &b.name).await,
                Ok(Some((t, _))) if t.publish && t.binding.is_none()
            ),
        })
    }
}

impl Controller {
    /// Whether `identity_ns` may read and invoke the action `fqn`: its own root actions, or
    /// actions of a package it may read (see [`Controller::package_readable`]).
    pub async fn action_usable(
        &self,
        identity_ns: &EntityName,
        fqn: &FullyQualifiedName,
    ) -> ApiResult<bool> {
        match fqn.package() {
            Some(p) => self.package_readable(identity_ns, fqn.namespace(), p).await,
            None => Ok(fqn.namespace() == identity_ns),
        }
    }
}

/// `ns/pkg` as a path.
pub fn package_path(ns: &EntityName, pkg: &EntityName) -> EntityPath {
    EntityPath::in_package(ns.clone(), pkg.clone())
}
