//! Entitlement (wire spec §4.2): owners may do anything in their namespace; everybody
//! authenticated may read and invoke the contents of published packages.

use brisk_model::EntityName;

use crate::Controller;
use crate::error::{ApiError, ApiResult};
use crate::routes::Req;

/// Writes and deletes: only the owner.
pub fn require_owner(req: &Req, resource: &str) -> ApiResult<()> {
    if req.owns_namespace() {
        Ok(())
    } else {
        Err(ApiError::forbidden_resource(resource))
    }
}

/// Reading or invoking the contents of a package (or, with `pkg = None`, the namespace root).
pub async fn require_contents_access(
    state: &Controller,
    req: &Req,
    pkg: Option<&EntityName>,
) -> ApiResult<()> {
    match pkg {
        None if req.owns_namespace() => Ok(()),
        Some(pkg)
            if state
                .package_readable(&req.identity.namespace, &req.namespace, pkg)
                .await? =>
        {
            Ok(())
        }
        Some(pkg) => Err(ApiError::forbidden_resource(&format!(
            "{}/{pkg}",
            req.namespace
        ))),
        None => Err(ApiError::forbidden_resource(req.namespace.as_str())),
    }
}
