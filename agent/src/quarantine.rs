//! Packages this agent refuses to touch until an admin says otherwise
//! (`quarantine/<name>.json`).
//!
//! A package is quarantined when a rollback failed: the host is in a state
//! nobody vouches for, so further pushes of that package are refused (as a
//! preflight failure) until `flotte-agent quarantine clear NAME`.
//!
//! Guarantees: an entry is on disk before [`Quarantine::add`] returns; the
//! running agent reads entries at the moment it looks a package up, so a
//! `clear` takes effect without a restart; names that are not valid package
//! names are refused, so no path outside the directory is ever built.

use crate::durable;
use crate::error::{AgentError, Result};
use crate::state_dir::StateDir;
use flotte_protocol::release::validate_name;
use flotte_protocol::{AssignmentId, Timestamp};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Why and since when a package is quarantined.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub package: String,
    /// The assignment whose rollback failed.
    pub assignment: AssignmentId,
    pub since: Timestamp,
    pub reason: String,
}

/// The quarantine directory.
#[derive(Debug, Clone)]
pub struct Quarantine {
    dir: PathBuf,
}

impl Quarantine {
    pub fn new(state: &StateDir) -> Self {
        Quarantine { dir: state.quarantine_dir() }
    }

    /// The entry of `package`, if quarantined. A corrupt entry still
    /// quarantines (its text becomes the reason).
    pub fn get(&self, package: &str) -> Result<Option<Entry>> {
        let path = self.path(package)?;
        let Some(bytes) = durable::read_optional(&path)? else { return Ok(None) };
        Ok(Some(serde_json::from_slice(&bytes).unwrap_or_else(|e| Entry {
            package: package.to_string(),
            assignment: AssignmentId(0),
            since: Timestamp::EPOCH,
            reason: format!("unreadable quarantine entry {}: {e}", path.display()),
        })))
    }

    /// Quarantines a package (replacing an older entry).
    pub fn add(&self, entry: &Entry) -> Result<()> {
        let path = self.path(&entry.package)?;
        durable::create_dir(&self.dir)?;
        let bytes = serde_json::to_vec_pretty(entry)
            .map_err(|e| AgentError::Encode { what: "quarantine entry", reason: e.to_string() })?;
        durable::write(&path, &bytes, durable::STATE)
    }

    /// Lifts the quarantine of `package`; `false` if it was not quarantined.
    pub fn clear(&self, package: &str) -> Result<bool> {
        let path = self.path(package)?;
        let existed = path.exists();
        durable::remove(&path)?;
        Ok(existed)
    }

    /// Every quarantined package, by name.
    pub fn list(&self) -> Result<Vec<Entry>> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(AgentError::Io { op: "read directory", path: self.dir.clone(), source: e }),
        };
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter_map(|n| n.strip_suffix(".json").map(str::to_string))
            .filter(|n| validate_name("package name", n).is_ok())
            .collect();
        names.sort();
        Ok(names.iter().filter_map(|n| self.get(n).ok().flatten()).collect())
    }

    fn path(&self, package: &str) -> Result<PathBuf> {
        validate_name("package name", package).map_err(|e| AgentError::BadArgument { reason: e.to_string() })?;
        Ok(self.dir.join(format!("{package}.json")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_added_read_listed_and_cleared() {
        let dir = tempfile::tempdir().unwrap();
        let q = Quarantine::new(&StateDir::new(dir.path()));
        assert_eq!(q.get("app").unwrap(), None);
        assert_eq!(q.list().unwrap(), vec![]);
        let entry = Entry {
            package: "app".into(),
            assignment: AssignmentId(3),
            since: Timestamp::from_unix_millis(9),
            reason: "rolling back to 1.0 failed".into(),
        };
        q.add(&entry).unwrap();
        assert_eq!(q.get("app").unwrap(), Some(entry.clone()));
        assert_eq!(q.list().unwrap(), vec![entry]);
        assert!(q.clear("app").unwrap());
        assert!(!q.clear("app").unwrap());
        assert_eq!(q.get("app").unwrap(), None);
    }

    #[test]
    fn names_that_are_not_package_names_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let q = Quarantine::new(&StateDir::new(dir.path()));
        for bad in ["../outbox", "", ".x", "a/b"] {
            assert!(q.clear(bad).is_err(), "{bad}");
            assert!(q.get(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_corrupt_entry_still_quarantines() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        std::fs::create_dir_all(state.quarantine_dir()).unwrap();
        std::fs::write(state.quarantine_dir().join("app.json"), "{").unwrap();
        let entry = Quarantine::new(&state).get("app").unwrap().unwrap();
        assert!(entry.reason.contains("unreadable"), "{}", entry.reason);
    }
}
