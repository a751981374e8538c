//! The controller's data directory and its layout:
//!
//! ```text
//! DATA/controller.toml   configuration
//! DATA/controller.db     SQLite: agents, tokens, TUF metadata, releases, assignments, reports
//! DATA/ca.crt, ca.key    the controller's own CA (key 0600)
//! DATA/server.crt, .key  the TLS server certificate for QUIC and HTTPS
//! DATA/content/          package content by sha256
//! DATA/quic-reset.key    QUIC stateless-reset secret (0600), stable across restarts
//! DATA/tuf-timestamp.key, tuf-snapshot.key  the online TUF keys (0600)
//! ```
//!
//! The offline TUF keys (root, targets, delegated roles) are *not* here: a
//! stolen data directory can re-sign snapshot and timestamp, but not a
//! targets entry agents accept.
//!
//! Files are written with write-temp → fsync → rename → fsync(dir).

use crate::error::ControllerError;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Paths inside one data directory.
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        DataDir { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn config(&self) -> PathBuf {
        self.root.join("controller.toml")
    }
    pub fn database(&self) -> PathBuf {
        self.root.join("controller.db")
    }
    pub fn ca_cert(&self) -> PathBuf {
        self.root.join("ca.crt")
    }
    pub fn ca_key(&self) -> PathBuf {
        self.root.join("ca.key")
    }
    pub fn server_cert(&self) -> PathBuf {
        self.root.join("server.crt")
    }
    pub fn server_key(&self) -> PathBuf {
        self.root.join("server.key")
    }
    pub fn content(&self) -> PathBuf {
        self.root.join("content")
    }

    /// The QUIC stateless-reset secret, created on first use (0600).
    pub fn reset_key(&self) -> Result<[u8; 32], ControllerError> {
        let path = self.root.join("quic-reset.key");
        match fs::read(&path) {
            Ok(bytes) => {
                bytes.try_into().map_err(|_| ControllerError::Corrupt(format!("{} is not 32 bytes", path.display())))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = crate::secrets::random_seed();
                write_atomic(&path, &key, 0o600)?;
                Ok(key)
            }
            Err(e) => Err(ControllerError::Io { context: "cannot read", path, source: e }),
        }
    }

    /// Creates the directory (0700) for `init`; refuses one that already
    /// holds a controller.
    pub fn create(&self) -> Result<(), ControllerError> {
        if self.config().exists() {
            return Err(ControllerError::AlreadyInitialized { path: self.root.clone(), found: self.config() });
        }
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.root)
            .map_err(ControllerError::io("cannot create data directory", &self.root))?;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(self.content())
            .map_err(ControllerError::io("cannot create content directory", self.content()))
    }

    /// Checks that `init` ran here.
    /// (A directory whose config is kept elsewhere, `init --config`, has no
    /// `controller.toml`; its server certificate marks it instead.)
    pub fn ensure_initialized(&self) -> Result<(), ControllerError> {
        if self.config().is_file() || self.server_cert().is_file() {
            Ok(())
        } else {
            Err(ControllerError::NotInitialized { path: self.root.clone() })
        }
    }
}

/// The directory a path lives in; a bare file name lives in `.`.
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Writes `bytes` to `path` durably and atomically, creating the file with
/// `mode` (so a secret is never readable by others, not even briefly).
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), ControllerError> {
    let dir = parent_dir(path);
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = fs::OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        fs::File::open(dir)?.sync_all()
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&tmp);
        ControllerError::Io { context: "cannot write", path: path.to_path_buf(), source: e }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn atomic_writes_create_files_with_the_requested_mode() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("secret");
        write_atomic(&p, b"k", 0o600).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"k");
        assert_eq!(fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        write_atomic(&p, b"k2", 0o600).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"k2");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "no temp file left behind");
    }

    #[test]
    fn a_bare_file_name_lives_in_the_current_directory() {
        assert_eq!(parent_dir(Path::new("ctl.toml")), Path::new("."));
        assert_eq!(parent_dir(Path::new("/etc/flotte/ctl.toml")), Path::new("/etc/flotte"));
        assert_eq!(parent_dir(Path::new("a/b")), Path::new("a"));
    }

    #[test]
    fn init_refuses_an_initialized_directory() {
        let dir = tempfile::tempdir().unwrap();
        let d = DataDir::new(dir.path().join("data"));
        d.create().unwrap();
        fs::write(d.config(), "x").unwrap();
        assert!(matches!(d.create(), Err(ControllerError::AlreadyInitialized { .. })));
    }
}
