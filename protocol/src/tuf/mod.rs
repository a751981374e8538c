//! The Update Framework (specification 1.0.x): metadata verification for the
//! client and metadata signing for the repository, interoperable with
//! python-tuf. No IO and no clock: bytes and `now` go in.
//!
//! # Layout
//! - [`canonical`]: canonical JSON, the bytes every signature covers.
//! - [`keys`]: ed25519, ECDSA P-256 and RSA (PSS, PKCS#1 v1.5) public keys.
//! - [`metadata`]: the roles' JSON format, parsed with size limits.
//! - [`verify`]: threshold checks counting distinct keys.
//! - [`trusted`]: [`TrustedMetadataSet`], the client workflow.
//! - [`path`]: target name safety, delegation patterns, file name encoding.
//! - [`hashing`]: length and hash checks, whole or streamed.
//! - [`expiry`]: the `expires` timestamp format.
//! - [`repo`]: building and signing metadata (ed25519).
//! - [`release`]: Flotte releases as targets entries (`custom` fields).
//! - [`error`]: the error type, [`TufError`].
//!
//! # Guarantees
//! - Nothing is trusted that did not pass every check of the client
//!   workflow; a refused file leaves the trusted state unchanged.
//! - Every input is bounded: the `MAX_*_LEN` limits apply before parsing.
//! - No function panics on bad input.

pub mod canonical;
pub mod error;
pub mod expiry;
pub mod hashing;
pub mod keys;
pub mod metadata;
pub mod path;
pub mod release;
pub mod repo;
pub mod trusted;
pub mod verify;

#[cfg(test)]
mod tests;

pub use error::TufError;
pub use metadata::{MetaFile, TargetFile};
pub use trusted::{TargetLookup, TimestampUpdate, TrustedMetadataSet};

/// Name of the root role.
pub const ROOT: &str = "root";
/// Name of the timestamp role.
pub const TIMESTAMP: &str = "timestamp";
/// Name of the snapshot role.
pub const SNAPSHOT: &str = "snapshot";
/// Name of the top-level targets role.
pub const TARGETS: &str = "targets";

/// Largest root file accepted (python-tuf's default).
pub const MAX_ROOT_LEN: usize = 512_000;
/// Largest timestamp file accepted (python-tuf's default).
pub const MAX_TIMESTAMP_LEN: usize = 16_384;
/// Largest snapshot file accepted (python-tuf's default).
pub const MAX_SNAPSHOT_LEN: usize = 2_000_000;
/// Largest targets (or delegated targets) file accepted (python-tuf's default).
pub const MAX_TARGETS_LEN: usize = 5_000_000;
/// Most root versions a client walks through in one update.
pub const MAX_ROOT_ROTATIONS: u64 = 256;
/// Most delegated roles one target search visits (beyond the top-level one).
pub const MAX_DELEGATIONS: usize = 32;
