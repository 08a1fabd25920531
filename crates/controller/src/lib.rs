//! The controller: OpenWhisk's REST API v1 over axum — authentication, entitlement, throttles,
//! entity CRUD, invocation hand-off to the invoker, and activation queries.
//!
//! Handlers parse a request into typed values, call the layers below (store, invoker) and map
//! the outcome back. **Architecture Invariant:** every error leaves through `ApiError`, and the
//! request middleware is the only code that writes the error envelope.
#![forbid(unsafe_code)]

mod alarms;
pub mod auth;
pub mod bootstrap;
mod cloudevent;
mod conductor;
mod entitlement;
pub mod error;
mod extract;
mod fire;
mod invocation;
mod middleware;
mod recorder;
mod resolve;
mod routes;
mod sequence;
mod throttle;
mod web;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use brisk_invoker::Invoker;
use brisk_model::{RuntimeManifest, SystemLimits};
use brisk_store::Store;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

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
    /// Runs primitive activations; `None` answers every activation with a whisk error.
    invoker: Option<Arc<Invoker>>,
    pub(crate) recorder: Arc<recorder::Recorder>,
    pub(crate) throttles: throttle::Throttles,
    /// Activations in flight, drained on shutdown.
    tasks: TaskTracker,
    /// Wakes the alarm scheduler after a schedule changed.
    alarm_wakeup: tokio::sync::Notify,
    /// Cancelled when the controller shuts down (stops background loops).
    stopping: CancellationToken,
    /// Per conductor version, the components it called last time (predictive prewarm).
    learned:
        parking_lot::Mutex<std::collections::HashMap<String, Vec<brisk_model::FullyQualifiedName>>>,
}

impl Controller {
    /// A controller without an invoker (entity API only). Must be called inside a tokio runtime.
    pub fn new(
        config: ControllerConfig,
        store: Arc<dyn Store>,
        manifest: Arc<RuntimeManifest>,
    ) -> Arc<Self> {
        Self::build(config, store, manifest, None)
    }

    /// A controller that runs activations on `invoker`.
    pub fn with_invoker(
        config: ControllerConfig,
        store: Arc<dyn Store>,
        manifest: Arc<RuntimeManifest>,
        invoker: Arc<Invoker>,
    ) -> Arc<Self> {
        Self::build(config, store, manifest, Some(invoker))
    }

    fn build(
        config: ControllerConfig,
        store: Arc<dyn Store>,
        manifest: Arc<RuntimeManifest>,
        invoker: Option<Arc<Invoker>>,
    ) -> Arc<Self> {
        let controller = Arc::new(Self {
            auth: Authenticator::new(store.clone()),
            recorder: recorder::Recorder::start(store.clone()),
            config,
            store,
            manifest,
            invoker,
            throttles: throttle::Throttles::default(),
            tasks: TaskTracker::new(),
            alarm_wakeup: tokio::sync::Notify::new(),
            stopping: CancellationToken::new(),
            learned: parking_lot::Mutex::new(std::collections::HashMap::new()),
        });
        tokio::spawn(alarms::run_scheduler(Arc::downgrade(&controller)));
        controller
    }

    /// Remembers the components a composition called (bounded: at most 10 000 compositions).
    pub(crate) fn learn_composition(
        &self,
        key: String,
        components: Vec<brisk_model::FullyQualifiedName>,
    ) {
        let mut learned = self.learned.lock();
        if learned.len() >= 10_000 && !learned.contains_key(&key) {
            learned.clear();
        }
        learned.insert(key, components);
    }

    /// The components a composition called on its previous run.
    pub(crate) fn learned_composition(&self, key: &str) -> Vec<brisk_model::FullyQualifiedName> {
        self.learned.lock().get(key).cloned().unwrap_or_default()
    }

    /// Stops accepting work, lets activations in flight finish for up to `grace`, then stops the
    /// invoker (whose remaining activations end as whisk errors) and writes every record.
    pub async fn shutdown(&self, grace: Duration) {
        self.stopping.cancel();
        self.tasks.close();
        if tokio::time::timeout(grace, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                in_flight = self.tasks.len(),
                "grace period over; stopping activations"
            );
        }
        if let Some(invoker) = &self.invoker {
            invoker.shutdown().await;
        }
        self.tasks.wait().await;
        self.recorder.shutdown().await;
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
