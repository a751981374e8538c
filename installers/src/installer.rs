//! The backend trait every installer implements, and the values it passes.
//!
//! An install is split in two so that a crash leaves the host with exactly
//! the old version or exactly the new one: [`Installer::stage`] puts the new
//! version fully on disk without touching the active one, and
//! [`Installer::activate`] switches to it. [`Installer::rollback`] switches
//! back to a version that is still kept, [`Installer::uninstall`] removes
//! the package, [`Installer::check`] runs the backend's own health check and
//! [`Installer::detect`] says what is really installed.
//!
//! # The contract the agent relies on (every backend)
//! 1. `stage`, then `activate`. `stage` never changes the host outside the
//!    installer's own directories.
//! 2. If `activate` fails, the backend may have left partial changes (a
//!    half-configured dpkg package, the side effects of a failed install
//!    hook). Restore with `rollback(name, previous)` when a version was
//!    active before, or `uninstall(name)` when none was. Both are
//!    idempotent and may be retried after a crash.
//! 3. After `activate` succeeds, `detect` must report
//!    [`Detection::Installed`] with the new version; anything else is the
//!    "installed but not detected" failure.
//! 4. During probation, run [`Installer::check`] and the release's declared
//!    [`crate::HealthCheck`]s; if one fails, roll back as in 2.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::error::InstallError;
use crate::health::CheckOutcome;

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

/// The result of [`Installer::uninstall`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uninstalled {
    /// Package name.
    pub name: String,
    /// The version that was installed (or being installed) and is gone now;
    /// `None` if nothing was installed, in which case nothing was done.
    pub removed: Option<String>,
}

/// What is really installed, according to the backend's own source of
/// truth (the `current` symlink, the dpkg database).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Detection {
    /// No version is installed.
    Absent,
    /// `version` is installed and in a clean, finished state.
    Installed {
        /// The installed version.
        version: String,
    },
    /// Something is installed but not cleanly: a dpkg package that is
    /// half-configured or half-installed, or a script activation that did
    /// not finish. Needs a rollback (or uninstall) before it can be trusted.
    Unclean {
        /// The version involved, when known.
        version: Option<String>,
        /// What is wrong, for the report (e.g. `dpkg status "install ok half-configured"`).
        state: String,
    },
}

impl Detection {
    /// The version this detection names, clean or not.
    pub fn version(&self) -> Option<&str> {
        match self {
            Detection::Absent => None,
            Detection::Installed { version } => Some(version),
            Detection::Unclean { version, .. } => version.as_deref(),
        }
    }

    /// True only for a clean install of exactly `version`.
    pub fn is_installed(&self, version: &str) -> bool {
        matches!(self, Detection::Installed { version: v } if v == version)
    }
}

impl fmt::Display for Detection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Detection::Absent => f.write_str("not installed"),
            Detection::Installed { version } => write!(f, "{version} installed"),
            Detection::Unclean { version: Some(v), state } => write!(f, "{v} not cleanly installed ({state})"),
            Detection::Unclean { version: None, state } => write!(f, "not cleanly installed ({state})"),
        }
    }
}

/// An install backend: [`crate::ArchiveInstaller`],
/// [`crate::ScriptInstaller`] or [`crate::DpkgInstaller`]. Object safe: the
/// agent holds an `Arc<dyn Installer + Send + Sync>`.
///
/// All methods block (they run processes and fsync); call them from a
/// blocking thread. Implementations are not required to be safe for
/// concurrent calls on the same package: the agent runs at most one job per
/// package at a time. See the module documentation for the contract.
pub trait Installer {
    /// Puts `package` fully on disk next to the active version. Never changes
    /// which version is active. Idempotent: staging a version that is
    /// already on disk succeeds without rewriting it.
    fn stage(&self, package: &Package<'_>) -> Result<Staged, InstallError>;

    /// Makes the staged version the active one (for the archive backend, a
    /// single atomic switch; for the others, running the install step and
    /// then recording the switch). Activating the version that is already
    /// cleanly active is a no-op. On error, see the module doc, item 2.
    fn activate(&self, staged: Staged) -> Result<Activation, InstallError>;

    /// Re-activates `to_version`, which must still be kept on disk (see
    /// [`Installer::installed_versions`]), undoing what the version being
    /// rolled back from did as far as the backend can. Idempotent.
    fn rollback(&self, name: &str, to_version: &str) -> Result<Activation, InstallError>;

    /// Removes the package from the host and forgets every kept version.
    /// Idempotent: uninstalling a package that is not installed succeeds
    /// with `removed: None`.
    fn uninstall(&self, name: &str) -> Result<Uninstalled, InstallError>;

    /// Runs the backend's own health check of `version` (the script
    /// backend's `check` hook). `Ok` with `passed: false` is a failing
    /// check; `Err` means the check could not be run at all. The default has
    /// nothing to check and passes.
    fn check(&self, name: &str, version: &str) -> Result<CheckOutcome, InstallError> {
        crate::names::validate_component("package name", name)?;
        crate::names::validate_component("version", version)?;
        Ok(CheckOutcome::pass("this backend has no check of its own"))
    }

    /// What is really installed. The default derives it from
    /// [`Installer::active_version`].
    fn detect(&self, name: &str) -> Result<Detection, InstallError> {
        Ok(match self.active_version(name)? {
            Some(version) => Detection::Installed { version },
            None => Detection::Absent,
        })
    }

    /// The active version of `name`, or `None` if none was ever activated
    /// (or it was uninstalled). A backend that finds the package in an
    /// unclean state answers [`InstallError::Unclean`] rather than guess;
    /// [`Installer::detect`] gives the details.
    fn active_version(&self, name: &str) -> Result<Option<String>, InstallError>;

    /// All completely staged versions of `name` that are kept on disk,
    /// active or not, sorted by name (not by version semantics).
    fn installed_versions(&self, name: &str) -> Result<Vec<String>, InstallError>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn every_backend_fits_behind_the_agents_trait_object() {
        let backends: Vec<Arc<dyn Installer + Send + Sync>> = vec![
            Arc::new(crate::ArchiveInstaller::new("/nonexistent")),
            Arc::new(crate::ScriptInstaller::new("/nonexistent")),
            Arc::new(crate::DpkgInstaller::new("/nonexistent")),
        ];
        for backend in backends {
            assert!(matches!(backend.check("../x", "1.0"), Err(InstallError::InvalidName { .. })));
        }
    }

    #[test]
    fn detections_describe_themselves() {
        assert_eq!(Detection::Absent.to_string(), "not installed");
        let unclean = Detection::Unclean { version: Some("2.0".into()), state: "half-configured".into() };
        assert_eq!(unclean.to_string(), "2.0 not cleanly installed (half-configured)");
        assert_eq!(unclean.version(), Some("2.0"));
        assert!(!unclean.is_installed("2.0"));
        assert!(Detection::Installed { version: "2.0".into() }.is_installed("2.0"));
    }
}
