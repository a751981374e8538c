//! The client's trusted TUF metadata on disk: one directory, one file per
//! role, in python-tuf's layout (`root.json`, `timestamp.json`,
//! `snapshot.json`, `targets.json`, and `<role>.json` for delegated roles
//! with the name percent-encoded into a single path component).
//!
//! Guarantees:
//! - Every write goes through [`crate::durable::write`]: at every instant a
//!   file holds its old or its complete new contents, and it is on disk
//!   when `save` returns.
//! - Reads are capped at the role's size limit, so a corrupted or planted
//!   file cannot exhaust memory.
//! - Nothing here decides trust: the bytes are re-verified by
//!   `flotte_protocol::tuf::TrustedMetadataSet` each time they are loaded.

use crate::durable;
use crate::error::{AgentError, Result};
use flotte_protocol::tuf::{self, path::quote};
use std::fs::File;
use std::io::{self, Read as _};
use std::path::{Path, PathBuf};

/// The metadata directory of one TUF client.
#[derive(Debug, Clone)]
pub struct TufStore {
    dir: PathBuf,
}

impl TufStore {
    /// Opens `dir`, creating it (0700) if needed.
    pub fn open(dir: &Path) -> Result<Self> {
        durable::create_dir(dir)?;
        Ok(TufStore { dir: dir.to_path_buf() })
    }

    /// The file that holds `role`'s metadata.
    pub fn path(&self, role: &str) -> PathBuf {
        self.dir.join(format!("{}.json", quote(role, "")))
    }

    /// The persisted bytes of `role`, or `None` if there are none.
    pub fn load(&self, role: &str) -> Result<Option<Vec<u8>>> {
        let path = self.path(role);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(AgentError::Io { op: "open", path, source: e }),
        };
        let max = max_len(role);
        let mut bytes = Vec::new();
        file.take(max as u64 + 1).read_to_end(&mut bytes).map_err(AgentError::io("read", &path))?;
        if bytes.len() > max {
            let source = io::Error::new(io::ErrorKind::InvalidData, format!("larger than the {max}-byte limit"));
            return Err(AgentError::Io { op: "read", path, source });
        }
        Ok(Some(bytes))
    }

    /// Replaces `role`'s metadata durably.
    pub fn save(&self, role: &str, bytes: &[u8]) -> Result<()> {
        durable::write(&self.path(role), bytes, durable::STATE)
    }

    /// Forgets `role`'s metadata durably (missing is fine).
    pub fn remove(&self, role: &str) -> Result<()> {
        durable::remove(&self.path(role))
    }
}

/// The size limit of `role`'s metadata.
pub fn max_len(role: &str) -> usize {
    match role {
        tuf::ROOT => tuf::MAX_ROOT_LEN,
        tuf::TIMESTAMP => tuf::MAX_TIMESTAMP_LEN,
        tuf::SNAPSHOT => tuf::MAX_SNAPSHOT_LEN,
        _ => tuf::MAX_TARGETS_LEN,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_map_to_single_file_names_and_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = TufStore::open(&dir.path().join("meta")).unwrap();
        assert_eq!(store.path("../team/x").file_name().unwrap(), "..%2Fteam%2Fx.json");
        assert_eq!(store.load("timestamp").unwrap(), None);
        store.save("timestamp", b"{}").unwrap();
        assert_eq!(store.load("timestamp").unwrap().as_deref(), Some(&b"{}"[..]));
        store.remove("timestamp").unwrap();
        assert_eq!(store.load("timestamp").unwrap(), None);
    }

    #[test]
    fn oversized_files_are_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let store = TufStore::open(dir.path()).unwrap();
        std::fs::write(store.path("timestamp"), vec![b' '; tuf::MAX_TIMESTAMP_LEN + 1]).unwrap();
        assert!(store.load("timestamp").is_err());
    }
}
