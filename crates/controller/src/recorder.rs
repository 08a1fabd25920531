//! Activation records leave the hot path here: finished records go into a bounded channel and a
//! single task writes them to the store in batches (one transaction per batch, no per-record
//! fsync). Until a record is written, it is served from memory, so a client that fetches an
//! activation right after a blocking invoke always finds it.

use foldhash::HashMap;
use std::sync::Arc;
use std::time::Duration;

use brisk_model::{Activation, ActivationId};
use brisk_store::Store;
use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

const BATCH: usize = 1024;
const CHANNEL: usize = 16_384;
/// How long the writer lingers for more records before writing a partial batch.
const LINGER: Duration = Duration::from_millis(10);

pub struct Recorder {
    tx: Mutex<Option<mpsc::Sender<Arc<Activation>>>>,
    pending: Pending,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Recorder {
    pub fn start(store: Arc<dyn Store>) -> Arc<Self> {
        let (tx, rx) = mpsc::channel(CHANNEL);
        let pending = Arc::new(Mutex::new(HashMap::default()));
        let task = tokio::spawn(write_loop(store, rx, pending.clone()));
        Arc::new(Self {
            tx: Mutex::new(Some(tx)),
            pending,
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
        let mut p = pending.lock();
        for a in batch.drain(..) {
            p.remove(&a.activation_id);
        }
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
