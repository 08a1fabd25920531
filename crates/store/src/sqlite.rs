//! The embedded backend: one SQLite file in WAL mode, one writer connection and a few readers,
//! every call run on tokio's blocking pool so async threads never wait on disk.

mod activations;
mod alarms;
mod auth;
mod entities;
mod schema;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;
use rusqlite::Connection;

use crate::error::{Error, Result};

const READERS: usize = 4;

/// SQLite-backed implementation of every store trait.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
}

fn open_conn(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path).map_err(|source| Error::Open {
        path: path.display().to_string(),
        source,
    })?;
    conn.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON; \
         PRAGMA busy_timeout=5000; PRAGMA wal_autocheckpoint=8192; PRAGMA cache_size=-16384;",
    )?;
    Ok(conn)
}

impl SqliteStore {
    /// Opens (creating if needed) `<data_dir>/brisk.db` and applies pending migrations.
    pub fn open(data_dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(data_dir).map_err(|source| Error::DataDir {
            path: data_dir.display().to_string(),
            source,
        })?;
        let path = data_dir.join("brisk.db");
        let mut writer = open_conn(&path)?;
        schema::migrate(&mut writer)?;
        let readers = (0..READERS)
            .map(|_| open_conn(&path).map(Mutex::new))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            inner: Arc::new(Inner {
                path,
                writer: Mutex::new(writer),
                readers,
                next_reader: AtomicUsize::new(0),
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `f` on the writer connection on the blocking pool.
    async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || f(&mut inner.writer.lock()))
            .await
            .map_err(|e| Error::Task(e.to_string()))?
    }

    /// Runs `f` on a reader connection on the blocking pool.
    async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let i = inner.next_reader.fetch_add(1, Ordering::Relaxed) % inner.readers.len();
            f(&inner.readers[i].lock())
        })
        .await
        .map_err(|e| Error::Task(e.to_string()))?
    }
}
