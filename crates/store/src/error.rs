/// Storage failures.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("document already exists")]
    Exists,
    #[error("concurrent modification to resource detected")]
    Conflict,
    #[error("document not found")]
    NotFound,
    #[error("namespace {0} already exists")]
    NamespaceExists(String),
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("stored document is corrupt: {0}")]
    Corrupt(#[from] serde_json::Error),
    #[error("store task failed: {0}")]
    Task(String),
    #[error("open store at {path}: {source}")]
    Open {
        path: String,
        source: rusqlite::Error,
    },
    #[error("create data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
