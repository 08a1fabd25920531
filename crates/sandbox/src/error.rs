//! The sandbox backend's error type.

use std::path::PathBuf;

/// What can go wrong while preparing or driving sandboxes (host side).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what} {path}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no usable cgroup hierarchy: {0}")]
    NoCgroups(String),
    #[error("create network namespace")]
    Netns(#[source] std::io::Error),
    #[error("network policy egress unavailable: {0}")]
    Egress(String),
    #[error("path {0} is not valid UTF-8")]
    NonUtf8Path(PathBuf),
    #[error("invalid sandbox configuration: {0}")]
    Config(String),
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

impl From<Error> for brisk_invoker::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Io { what, path, source } => brisk_invoker::Error::Io { what, path, source },
            other => brisk_invoker::Error::Task(format!("sandbox: {other}")),
        }
    }
}
