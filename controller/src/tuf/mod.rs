//! The controller's side of The Update Framework: it is the repository.
//!
//! - [`policy`]: when the online roles (snapshot, timestamp) are re-signed;
//!   a pure function of the stored state and `now`.
//! - [`online`]: the online keys in the data directory.
//! - [`repository`]: accepting root and targets uploads (verified before
//!   they are stored), serving metadata files, re-signing.

pub mod online;
pub mod policy;
pub mod repository;
