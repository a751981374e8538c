//! Flotte installer backends: put a verified package on disk, switch to it
//! atomically, and switch back.
//!
//! # Layout
//! - [`installer`] — the [`Installer`] trait every backend implements, and
//!   the values it passes: [`Package`], [`Staged`], [`Activation`].
//! - [`archive`] — [`ArchiveInstaller`]: tar / tar.gz packages unpacked into
//!   `<root>/packages/<name>/<version>/` and switched with a `current`
//!   symlink. Its submodules detect the format, normalize entry paths,
//!   enforce [`ArchiveLimits`], extract with every hardening rule spelled
//!   out, and pick old versions to prune.
//! - [`names`] — [`validate_component`]: names and versions are single safe
//!   path components.
//! - [`error`] — [`InstallError`], the one error type, with
//!   [`InstallError::is_transient`] to decide on retries.
//! - `fsutil` (private) — fsync of directories and the atomic symlink swap.
//!
//! # Invariants
//! - Installers never fetch or verify: they receive bytes the agent has
//!   already checked, and open the artifact exactly once.
//! - Only the agent runs installers; this crate knows nothing about the
//!   network, the protocol or the clock of the rollout.
//! - Nothing outside a fresh staging directory is written while extracting,
//!   and the active version is only ever changed by one `rename`.
//! - No panics on bad input: every archive or filesystem surprise is an
//!   [`InstallError`].

pub mod archive;
pub mod error;
pub mod installer;
pub mod names;

mod fsutil;
#[cfg(test)]
mod test_support;

pub use archive::{ArchiveInstaller, ArchiveLimits};
pub use error::InstallError;
pub use installer::{Activation, Installer, Package, Staged};
pub use names::validate_component;
