//! The `flottectl` commands as library functions, so the binary stays a thin
//! argument parser and tests can call the same code.
//!
//! - [`profile`]: where flottectl finds the controller URL, token and CA.
//! - [`keys`]: generating ed25519 key files (root, targets, delegated roles).
//! - [`trust`]: the offline TUF roles: `trust init|rotate|delegate` and signing releases into targets.
//! - [`package`]: hashing, signing, uploading and publishing a package.
//! - [`sample`]: a small sample archive package for the lab and tests.
//! - [`output`]: human-readable tables, sizes and times.
//! - [`rollout`]: creating, following and steering rollouts.
//! - [`agents`]: finding one agent and rendering inventories.

pub mod agents;
pub mod keys;
pub mod output;
pub mod package;
pub mod profile;
pub mod rollout;
pub mod sample;
pub mod trust;
