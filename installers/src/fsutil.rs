//! Small durable-filesystem primitives shared by the backends.
//!
//! Guarantees: [`replace_symlink`] leaves `link` pointing at either the old or
//! the new target at every instant, and the switch is on disk when it returns
//! (the directory is fsynced). [`unique_suffix`] never repeats within a
//! process and is unlikely to repeat across processes.

use std::fs::{self, File};
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::warn;

use crate::error::{InstallError, io_err};

/// Flushes a directory's entries (creations, renames, removals) to disk.
pub(crate) fn fsync_dir(dir: &Path) -> Result<(), InstallError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_err("fsync directory", dir))
}

/// A suffix for temporary names: pid, a per-process counter and the clock,
/// so that neither two threads nor a restarted process (pid reuse) collide.
pub(crate) fn unique_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{}-{n}-{nanos}", std::process::id())
}

/// Atomically points `dir/link_name` at `target` (a relative symlink):
/// creates `dir/.<link_name>.tmp-<unique>`, renames it over the link, then
/// fsyncs `dir`. On failure the temporary link is removed and the old link
/// is untouched.
pub(crate) fn replace_symlink(dir: &Path, link_name: &str, target: &str) -> Result<(), InstallError> {
    let tmp = dir.join(format!(".{link_name}.tmp-{}", unique_suffix()));
    std::os::unix::fs::symlink(target, &tmp).map_err(io_err("create symlink", &tmp))?;
    let link = dir.join(link_name);
    if let Err(source) = fs::rename(&tmp, &link) {
        let _ = fs::remove_file(&tmp);
        return Err(InstallError::Io { op: "rename symlink over", path: link, source });
    }
    fsync_dir(dir)
}

/// Creates `dir` if missing and, if it was created, fsyncs its parent so
/// the new entry survives a crash.
pub(crate) fn create_dir_durably(dir: &Path) -> Result<(), InstallError> {
    match fs::create_dir(dir) {
        Ok(()) => match dir.parent() {
            Some(parent) => fsync_dir(parent),
            None => Ok(()),
        },
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            // The root itself is missing: create the chain, then retry.
            fs::create_dir_all(dir).map_err(io_err("create directory", dir))?;
            match dir.parent() {
                Some(parent) => fsync_dir(parent),
                None => Ok(()),
            }
        }
        Err(e) => Err(io_err("create directory", dir)(e)),
    }
}

/// Best-effort removal of a file, link or directory tree (never follows a
/// symlink).
pub(crate) fn remove_tree(path: &Path) {
    let result = match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    };
    if let Err(e) = result {
        warn!(path = %path.display(), error = %e, "could not remove");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_suffixes_do_not_repeat() {
        let a = unique_suffix();
        let b = unique_suffix();
        assert_ne!(a, b);
    }

    #[test]
    fn replace_symlink_creates_then_repoints_without_leftovers() {
        let tmp = tempfile::tempdir().unwrap();
        replace_symlink(tmp.path(), "current", "1.0").unwrap();
        assert_eq!(fs::read_link(tmp.path().join("current")).unwrap(), Path::new("1.0"));
        replace_symlink(tmp.path(), "current", "2.0").unwrap();
        assert_eq!(fs::read_link(tmp.path().join("current")).unwrap(), Path::new("2.0"));
        let names: Vec<_> = fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec!["current"]);
    }
}
