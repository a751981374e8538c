//! The layout of the agent's state directory, in one place.
//!
//! ```text
//! DIR/
//!   identity/agent.key     ECDSA P-256 private key, PEM, mode 0600
//!   identity/agent.crt     client certificate issued at enrollment
//!   identity/ca.crt        the controller CA, the only trust anchor
//!   enrollment.toml        agent id, controller host, QUIC port
//!   tuf/                   trusted TUF metadata (root pinned at enrollment,
//!                          then timestamp, snapshot, targets, delegated roles)
//!   outbox.json            unacknowledged reports and the next sequence number
//!   jobs/<id>.json         one journal record per assignment
//!   downloads/<sha256>.part  content being fetched
//!   backups/<name>/<version>-<n>/  paths saved before installing <version>,
//!                          until its job ends (kept after a failed rollback)
//!   quarantine/<name>.json packages refused until an admin clears them
//! ```
//!
//! Nothing else in the agent builds a path inside the state directory.
//! [`StateDir::check_writable`] is the start-up check that the directory
//! can take the durable writes every state change needs.

use crate::error::{AgentError, Result};
use flotte_protocol::{AssignmentId, Sha256Digest};
use std::path::{Path, PathBuf};

/// Default state directory.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/flotte-agent";

/// Names every file the agent keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        StateDir { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Creates, syncs and removes a probe file, so that a read-only or
    /// full state directory stops the agent at start with a clear error
    /// instead of failing the first install halfway.
    pub fn check_writable(&self) -> Result<()> {
        let probe = self.root.join(".write-probe");
        let not_writable = |source| AgentError::StateDirNotWritable { path: self.root.clone(), source };
        let file = std::fs::File::create(&probe).map_err(not_writable)?;
        file.sync_all().map_err(not_writable)?;
        std::fs::remove_file(&probe).map_err(not_writable)
    }

    pub fn identity_dir(&self) -> PathBuf {
        self.root.join("identity")
    }

    pub fn agent_key(&self) -> PathBuf {
        self.identity_dir().join("agent.key")
    }

    pub fn agent_cert(&self) -> PathBuf {
        self.identity_dir().join("agent.crt")
    }

    pub fn ca_cert(&self) -> PathBuf {
        self.identity_dir().join("ca.crt")
    }

    pub fn enrollment(&self) -> PathBuf {
        self.root.join("enrollment.toml")
    }

    /// The trusted TUF metadata (`tuf_store::TufStore`).
    pub fn tuf_dir(&self) -> PathBuf {
        self.root.join("tuf")
    }

    pub fn outbox(&self) -> PathBuf {
        self.root.join("outbox.json")
    }

    /// The pull catalog ([`crate::catalog`]).
    pub fn catalog(&self) -> PathBuf {
        self.root.join("catalog.json")
    }

    pub fn jobs_dir(&self) -> PathBuf {
        self.root.join("jobs")
    }

    pub fn job(&self, id: AssignmentId) -> PathBuf {
        self.jobs_dir().join(format!("{id}.json"))
    }

    pub fn downloads_dir(&self) -> PathBuf {
        self.root.join("downloads")
    }

    /// Root of the backup store (`flotte_installers::Backups` adds
    /// `backups/` under it).
    pub fn backups_root(&self) -> &Path {
        &self.root
    }

    pub fn quarantine_dir(&self) -> PathBuf {
        self.root.join("quarantine")
    }

    /// Where the content with `digest` is downloaded to (and installed from).
    pub fn download(&self, digest: &Sha256Digest) -> PathBuf {
        self.downloads_dir().join(format!("{}.part", digest.to_hex()))
    }
}
