//! The controller: OpenWhisk's REST API v1 over axum — authentication, entitlement, throttles,
//! entity CRUD, invocation hand-off to the invoker, and activation queries.
//!
//! Handlers parse a request into typed values, call the layers below (store, invoker) and map
//! the outcome back. **Architecture Invariant:** every error leaves through `ApiError`, and the
//! request middleware is the only code that writes the error envelope.
#![forbid(unsafe_code)]

pub mod auth;
pub mod bootstrap;
mod entitlement;
pub mod error;
mod extract;
mod middleware;
mod resolve;
mod routes;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use brisk_model::{RuntimeManifest, SystemLimits};
use brisk_store::Store;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use auth::Authenticator;

/// Deployment-wide settings of the controller.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    pub limits: SystemLimits,
    /// Per-namespace defaults; 0 = unlimited.
    pub invocations_per_minute: u32,
    pub concurrent_invocations: u32,
    pub fires_per_minute: u32,
    /// Longest a blocking invoke waits before answering 202.
    pub blocking_timeout: Duration,
    /// `build` shown by `GET /api/v1`.
    pub build: String,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        Self {
            limits: SystemLimits::default(),
            invocations_per_minute: 0,
            concurrent_invocations: 0,
            fires_per_minute: 0,
            blocking_timeout: Duration::from_secs(60),
            build: env!("CARGO_PKG_VERSION").to_owned(),
        }
    }
}

/// Shared state of all handlers.
pub struct Controller {
    pub config: ControllerConfig,
    pub store: Arc<dyn Store>,
    pub auth: Authenticator,
    pub manifest: Arc<RuntimeManifest>,
}

impl Controller {
    pub fn new(
        config: ControllerConfig,
        store: Arc<dyn Store>,
        manifest: Arc<RuntimeManifest>,
    ) -> Arc<Self> {
        Arc::new(Self {
            auth: Authenticator::new(store.clone()),
            config,
            store,
            manifest,
        })
    }

    /// The HTTP application.
    pub fn router(self: &Arc<Self>) -> Router {
        routes::router(self.clone())
    }
}

/// Largest request the server reads (OpenWhisk: 50 MB).
pub const MAX_REQUEST_BYTES: usize = 50 * 1024 * 1024;

/// Serves `app` on `listener` until `shutdown` is cancelled, then drains open requests.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}
