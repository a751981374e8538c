//! The backend trait every installer implements, and the values it passes.
//!
//! An install is split in two so that a crash leaves the host with exactly
//! the old version or exactly the new one: [`Installer::stage`] puts the new
//! version fully on disk without touching the active one, and
//! [`Installer::activate`] switches to it atomically. [`Installer::rollback`]
//! switches back to a version that is still kept.

use std::path::{Path, PathBuf};

use crate::error::InstallError;

/// A package the agent has already verified (hash + signature).
/// Installers never see unverified bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Package<'a> {
    /// Package name; must pass [`crate::validate_component`].
    pub name: &'a str,
    /// Version string; must pass [`crate::validate_component`].
    pub version: &'a str,
    /// The verified artifact on local disk. Backends open it once and read
    /// exactly those bytes.
    pub artifact: &'a Path,
}

/// Proof that [`Installer::stage`] completed: the version is fully on disk
/// but not active.
///
/// The location is private so that a `Staged` cannot be pointed somewhere
/// else after the fact; `activate` re-checks it against its own layout, so
/// editing `name` or `version` yields [`InstallError::NotStaged`] or
/// [`InstallError::InvalidName`], never a switch to an unstaged tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Staged {
    /// Package name.
    pub name: String,
    /// The staged version.
    pub version: String,
    /// Where the backend put the staged version (a directory for the archive
    /// backend). Lets `activate` verify that the proof is its own.
    location: PathBuf,
}

impl Staged {
    /// Creates the proof for a version that `location` holds. Meant for
    /// [`Installer`] implementations (including test doubles); constructing
    /// one stages nothing.
    pub fn new(name: impl Into<String>, version: impl Into<String>, location: PathBuf) -> Self {
        Staged { name: name.into(), version: version.into(), location }
    }

    /// Where the backend put the staged version.
    pub fn location(&self) -> &Path {
        &self.location
    }
}

/// The outcome of a successful switch (activate or rollback).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activation {
    /// Package name.
    pub name: String,
    /// The version that was active before the switch, if any. Equal to
    /// `active` when the version was already active (the switch is then a
    /// no-op).
    pub previous: Option<String>,
    /// The version that is active now.
    pub active: String,
}

/// An install backend (archive today; script and dpkg later).
///
/// Implementations are not required to be safe for concurrent calls on the
/// same package: the agent runs at most one job per package at a time.
pub trait Installer {
    /// Puts `package` fully on disk next to the active version. Never changes
    /// which version is active. Idempotent: staging a version that is
    /// already on disk succeeds without rewriting it.
    fn stage(&self, package: &Package<'_>) -> Result<Staged, InstallError>;

    /// Atomically makes the staged version the active one.
    fn activate(&self, staged: Staged) -> Result<Activation, InstallError>;

    /// Atomically re-activates `to_version`, which must still be kept on disk.
    fn rollback(&self, name: &str, to_version: &str) -> Result<Activation, InstallError>;

    /// The active version of `name`, or `None` if none was ever activated.
    fn active_version(&self, name: &str) -> Result<Option<String>, InstallError>;

    /// All completely staged versions of `name` that are kept on disk,
    /// active or not, sorted by name (not by version semantics).
    fn installed_versions(&self, name: &str) -> Result<Vec<String>, InstallError>;
}
