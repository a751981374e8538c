//! The controller library's error type. Variants carry the path, key or
//! value they are about, so a message names the problem.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error("{context} {path}: {source}")]
    Io { context: &'static str, path: PathBuf, source: std::io::Error },
    #[error(
        "data directory {path} is already initialized (found {found}); use it with `flotte-controller run`, or pick an empty directory"
    )]
    AlreadyInitialized { path: PathBuf, found: PathBuf },
    #[error("data directory {path} is not initialized; run `flotte-controller init --data-dir {path}` first")]
    NotInitialized { path: PathBuf },
    #[error("config {path}: {message}")]
    Config { path: PathBuf, message: String },
    #[error("certificate error: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("TLS configuration error: {0}")]
    Tls(#[from] rustls::Error),
    #[error("database error: {0}")]
    Database(#[from] rusqlite::Error),
    #[error("database migration failed: {0}")]
    Migration(#[from] rusqlite_migration::Error),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("{0}")]
    Other(String),
}

impl ControllerError {
    pub fn io(context: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| ControllerError::Io { context, path, source }
    }
}
