//! Activation records leave the hot path here: finished records go into a bounded channel and a
//! single task writes them to the store in batches (one transaction per batch, no per-record
//! fsync). Until a record is written, it is served from memory, so a client that fetches an
//! activation right after a blocking invoke always finds it; a listing waits for the namespace's
//! queued records to be written ([`Recorder::settled`]), so it finds it too.

use foldhash::HashMap;
use std::sync::Arc;
use std::time::Duration;

use brisk_model::{Activation, ActivationId};
use brisk_store::Store;
use parking_lot::Mutex;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;

const BATCH: usize = 1024;
const CHANNEL: usize = 16_384;
/// How long the writer lingers for more records before writing a partial batch.
const LINGER: Duration = Duration::from_millis(10);
/// Longest a listing waits for queued records (should the store be failing).
const SETTLE_WAIT: Duration = Duration::from_secs(2);

pub struct Recorder {
    tx: Mutex<Option<mpsc::Sender<Arc<Activation>>>>,
    pending: Pending,
    /// Signalled after every written batch.
    written: Arc<Notify>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Recorder {
    pub fn start(store: Arc<dyn Store>) -> Arc<Self> {
        let (tx, rx) = mpsc::channel(CHANNEL);
        let pending = Arc::new(Mutex::new(HashMap::default()));
        let written = Arc::new(Notify::new());
        let task = tokio::spawn(write_loop(store, rx, pending.clone(), written.clone()));
        Arc::new(Self {
            tx: Mutex::new(Some(tx)),
            pending,
            written,
            task: Mutex::new(Some(task)),
        })
    }

    /// Queues a record for writing. Waits only when the channel is full (back-pressure). The
    /// record is shared, not copied, with the pending map and the writer.
    pub async fn record(&self, activation: Arc<Activation>) {
        self.pending
            .lock()
            .insert(activation.activation_id, activation.clone());
        let tx = self.tx.lock().clone();
        match tx {
            Some(tx) => {
                if tx.send(activation).await.is_err() {
                    tracing::error!("activation writer is gone; record kept in memory only");
                }
            }
            None => tracing::error!("activation recorded after shutdown; kept in memory only"),
        }
    }

    /// A record of `namespace` that is not yet written.
    pub fn pending(&self, namespace: &str, id: &ActivationId) -> Option<Arc<Activation>> {
        self.pending
            .lock()
            .get(id)
            .filter(|a| a.namespace == namespace)
            .cloned()
    }

    /// Waits (at most [`SETTLE_WAIT`]) until no record of `namespace` is queued any more: what
    /// the store lists from then on includes every activation of the namespace that finished
    /// before the call. Returns at once when none is queued.
    pub async fn settled(&self, namespace: &str) {
        let deadline = tokio::time::Instant::now() + SETTLE_WAIT;
        loop {
            let written = self.written.notified();
            tokio::pin!(written);
            // Registered before the check, so a batch written in between still wakes us.
            written.as_mut().enable();
            if !self
                .pending
                .lock()
                .values()
                .any(|a| a.namespace == namespace)
            {
                return;
            }
            if tokio::time::timeout_at(deadline, written).await.is_err() {
                return;
            }
        }
    }

    /// Writes everything queued and stops the writer.
    pub async fn shutdown(&self) {
        self.tx.lock().take();
        let task = self.task.lock().take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

/// Records queued but not yet written, by id (ids are unique across namespaces).
type Pending = Arc<Mutex<HashMap<ActivationId, Arc<Activation>>>>;

async fn write_loop(
    store: Arc<dyn Store>,
    mut rx: mpsc::Receiver<Arc<Activation>>,
    pending: Pending,
    written: Arc<Notify>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    // Wait for a first record, linger for more, then take everything queued at once: one
    // wake-up and one transaction per batch rather than per record.
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        if batch.len() < BATCH && !rx.is_closed() {
            tokio::time::sleep(LINGER).await;
            let room = BATCH - batch.len();
            if room > 0 && !rx.is_empty() {
                rx.recv_many(&mut batch, room).await;
            }
        }
        write(&store, &batch).await;
        {
            let mut p = pending.lock();
            for a in batch.drain(..) {
                p.remove(&a.activation_id);
            }
        }
        written.notify_waiters();
    }
}

/// Writes a batch, retrying a few times: a record is never dropped on a transient failure.
async fn write(store: &Arc<dyn Store>, batch: &[Arc<Activation>]) {
    let mut delay = Duration::from_millis(10);
    for attempt in 1..=5 {
        match store.store_batch(batch).await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(error = %e, attempt, records = batch.len(), "writing activations failed");
                tokio::time::sleep(delay).await;
                delay *= 4;
            }
        }
    }
    tracing::error!(
        records = batch.len(),
        "activations could not be written; giving up"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use brisk_model::{ActivationResponse, Parameters, SemVer};
    use brisk_store::{ActivationQuery, SqliteStore};

    fn record(namespace: &str, start: u64) -> Arc<Activation> {
        Arc::new(Activation {
            namespace: namespace.into(),
            name: "a".into(),
            subject: namespace.into(),
            activation_id: ActivationId::generate(),
            start,
            end: start,
            duration: Some(0),
            cause: None,
            response: ActivationResponse::success(serde_json::json!({})),
            logs: Vec::new(),
            version: SemVer::default(),
            publish: false,
            annotations: Parameters::new(),
        })
    }

    fn query(namespace: &str) -> ActivationQuery {
        ActivationQuery {
            namespace: namespace.into(),
            name: None,
            since: None,
            upto: None,
            skip: 0,
            limit: 100,
        }
    }

    #[tokio::test]
    async fn a_listing_after_settling_sees_every_queued_record() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).unwrap());
        let recorder = Recorder::start(store.clone());
        for start in 1..=3 {
            recorder.record(record("ns", start)).await;
        }
        // Nothing of another namespace is queued: no wait.
        recorder.settled("other").await;
        recorder.settled("ns").await;
        assert_eq!(store.list_activations(&query("ns")).await.unwrap().len(), 3);
        recorder.shutdown().await;
    }
}
