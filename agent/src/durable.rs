//! Crash-safe filesystem writes; every file the agent keeps goes through here.
//!
//! Guarantees:
//! - [`write`] leaves `path` holding either its old contents or the complete
//!   new contents at every instant, and the new contents are on disk when it
//!   returns: write a temporary file in the same directory → fsync it →
//!   rename it over `path` → fsync the directory.
//! - The temporary file is created with its final `mode` (`O_CREAT|O_EXCL`),
//!   so a secret is never readable by others, not even for a moment; nothing
//!   is `chmod`ed afterwards.
//! - [`remove`] and [`create_dir`] are on disk when they return.

use crate::error::{AgentError, Result};
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// Mode of files that only the agent may read (the private key).
pub const PRIVATE: u32 = 0o600;
/// Mode of the agent's other state files.
pub const STATE: u32 = 0o644;

/// Atomically replaces `path` with `bytes`, created with `mode`.
pub fn write(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let dir = parent(path);
    let name = path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", unique_suffix()));
    let written = write_new(&tmp, bytes, mode)
        .and_then(|()| fs::rename(&tmp, path).map_err(AgentError::io("rename temporary file over", path)));
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    fsync_dir(dir)
}

/// Removes `path` durably; a missing file is not an error.
pub fn remove(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => fsync_dir(parent(path)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(AgentError::Io { op: "remove", path: path.to_path_buf(), source: e }),
    }
}

/// Creates `dir` and any missing parents with mode 0700; an existing
/// directory is left as it is.
pub fn create_dir(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(AgentError::io("create directory", dir))?;
    fsync_dir(parent(dir))
}

/// Flushes a directory's entries (creations, renames, removals) to disk.
pub fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(AgentError::io("fsync directory", dir))
}

/// Reads `path`, or `None` if it does not exist.
pub fn read_optional(path: &Path) -> Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(AgentError::Io { op: "read", path: path.to_path_buf(), source: e }),
    }
}

fn write_new(tmp: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(tmp)
        .map_err(AgentError::io("create temporary file", tmp))?;
    file.write_all(bytes).map_err(AgentError::io("write", tmp))?;
    file.sync_all().map_err(AgentError::io("fsync", tmp))
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// pid + per-process counter: unique among live writers of one directory.
fn unique_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    format!("{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn mode_of(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn write_replaces_contents_and_leaves_no_temporary_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        write(&path, b"one", STATE).unwrap();
        write(&path, b"two", STATE).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec!["state.json"]);
    }

    #[test]
    fn a_private_file_is_0600_and_stays_so_when_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("agent.key");
        write(&key, b"secret", PRIVATE).unwrap();
        assert_eq!(mode_of(&key), 0o600);
        write(&key, b"secret 2", PRIVATE).unwrap();
        assert_eq!(mode_of(&key), 0o600);
        assert_eq!(fs::read(&key).unwrap(), b"secret 2");
    }

    #[test]
    fn a_failed_write_names_the_path_and_keeps_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing-dir").join("x");
        let err = write(&path, b"x", STATE).unwrap_err().to_string();
        assert!(err.contains("missing-dir"), "{err}");
    }

    #[test]
    fn remove_and_create_dir_are_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("a/b");
        create_dir(&sub).unwrap();
        create_dir(&sub).unwrap();
        assert_eq!(mode_of(&sub), 0o700);
        let f = sub.join("f");
        write(&f, b"", STATE).unwrap();
        remove(&f).unwrap();
        remove(&f).unwrap();
        assert_eq!(read_optional(&f).unwrap(), None);
    }
}
