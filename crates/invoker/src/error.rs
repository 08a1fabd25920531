//! The invoker's error type.

use std::path::PathBuf;

/// Everything that can go wrong inside the invoker. Outcomes of user code (init failures,
/// crashes, bad results) are not errors: they become activation records.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{kind} runtime unavailable: {reason}")]
    RuntimeUnavailable { kind: String, reason: String },
    #[error("spawn container process for {kind}")]
    Spawn {
        kind: String,
        #[source]
        source: std::io::Error,
    },
    #[error("socket path {0} is too long for a unix socket")]
    SocketPathTooLong(PathBuf),
    #[error("{what} {path}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("container {0} exited before it was ready")]
    ExitedBeforeReady(String),
    #[error("container {0} was not ready in time")]
    NotReady(String),
    #[error("connect to container {container}")]
    Connect {
        container: String,
        #[source]
        source: std::io::Error,
    },
    #[error("exchange with container {container} failed")]
    Exchange {
        container: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the action code is not a valid zip archive: {0}")]
    BadZip(String),
    #[error("the action code is not valid base64")]
    BadBase64,
    #[error("signal container {container}")]
    Signal {
        container: String,
        #[source]
        source: nix::Error,
    },
    #[error("the invoker is shutting down")]
    ShuttingDown,
    #[error("background task failed: {0}")]
    Task(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            what,
            path: path.into(),
            source,
        }
    }
}
