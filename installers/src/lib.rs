//! Flotte installer backends: put a verified package on disk, activate it,
//! check it, and switch back or remove it.
//!
//! # Layout
//! - [`installer`] — the [`Installer`] trait every backend implements
//!   (stage / activate / check / rollback / uninstall / detect), the
//!   contract the agent relies on, and the values it passes: [`Package`],
//!   [`Staged`], [`Activation`], [`Detection`], [`Uninstalled`].
//! - [`archive`] — [`ArchiveInstaller`]: tar / tar.gz packages unpacked into
//!   `<root>/packages/<name>/<version>/` and switched with a `current`
//!   symlink. Its submodules detect the format, normalize entry paths,
//!   enforce [`ArchiveLimits`], extract with every hardening rule spelled
//!   out, and pick old versions to prune.
//! - [`script`] — [`ScriptInstaller`]: archive packages that ship
//!   `install` / `uninstall` / `check` / `rollback` [`Hook`]s, run with a
//!   clean environment and a timeout.
//! - [`dpkg`] — [`DpkgInstaller`]: real `.deb` files installed with `dpkg`,
//!   each cached so it can be the rollback target later.
//! - [`health`] — [`HealthCheck`]: the generic checks a release declares
//!   (command, TCP port, file, HTTP on localhost), giving a [`CheckOutcome`].
//! - [`backup`] — [`Backups`]: copies of declared configuration and data
//!   paths, taken before install and restored on rollback.
//! - [`process`] — running hooks, `dpkg` and check commands with a timeout
//!   and process-group kill; [`HookOutput`] keeps the output tail.
//! - [`names`] — [`validate_component`]: names and versions are single safe
//!   path components.
//! - [`error`] — [`InstallError`], the one error type, with
//!   [`InstallError::is_transient`] to decide on retries.
//! - `fsutil` (private) — fsync of directories, the atomic symlink swap,
//!   durable directory creation.
//!
//! # Invariants
//! - Installers never fetch or verify: they receive bytes the agent has
//!   already checked, and open the artifact exactly once (the dpkg backend
//!   copies it into its cache and only ever uses that copy).
//! - Only the agent runs installers; this crate knows nothing about the
//!   network, the protocol or the clock of the rollout, and has no serde
//!   types (wire formats live in `protocol`).
//! - Nothing outside a fresh staging directory is written while extracting,
//!   and the archive and script backends change the active version only by
//!   one `rename` of the `current` symlink.
//! - Every child process (hook, dpkg, check command) runs with a clean
//!   environment, stdin `/dev/null` and a timeout that kills its whole
//!   process group.
//! - No panics on bad input: every archive, package, hook or filesystem
//!   surprise is an [`InstallError`] (or a failing [`CheckOutcome`]).

pub mod archive;
pub mod backup;
pub mod dpkg;
pub mod error;
pub mod health;
pub mod installer;
pub mod names;
pub mod process;
pub mod script;

mod fsutil;
#[cfg(test)]
mod test_support;

pub use archive::{ArchiveInstaller, ArchiveLimits};
pub use backup::{Backup, BackupEntry, Backups, validate_backup_path};
pub use dpkg::DpkgInstaller;
pub use error::InstallError;
pub use health::{CheckOutcome, HealthCheck};
pub use installer::{Activation, Detection, Installer, Package, Staged, Uninstalled};
pub use names::validate_component;
pub use process::HookOutput;
pub use script::{Hook, ScriptInstaller};
