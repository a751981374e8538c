//! Flotte's wire protocol: the messages that cross a process boundary, their
//! framing, the release metadata format, and signing and verification.
//!
//! This crate does no IO. It knows nothing about tokio, sockets, files or the
//! clock: every function takes bytes or values in and gives values out, so the
//! same code runs in the agent, the controller, the simulator and fuzzers.
//!
//! # Layout
//! - [`ids`]: identifiers and scalar types (`AgentId`, `AssignmentId`, `Timestamp`).
//! - [`digest`]: SHA-256 digests and an incremental content hasher.
//! - [`release`]: release metadata (name, version, sha256, size, installer kind)
//!   and the rules for package names and versions.
//! - [`signing`]: ed25519 key files, the release an assignment names, and
//!   [`VerifiedRelease`], which only TUF verification produces.
//! - [`messages`]: every message on a control or content stream.
//! - [`frame`]: length-prefixed frames with a hard size limit.
//! - [`api`]: resources of the controller's HTTPS/JSON API (enrollment, admin).
//! - [`tuf`]: The Update Framework: metadata verification (client workflow) and signing.
//! - [`version`]: the order of release versions (Debian's) and the downgrade rule.
//! - [`window`]: maintenance windows (days and hours at a UTC offset).
//! - [`error`]: the error enums of this crate.

pub mod api;
pub mod digest;
pub mod error;
pub mod frame;
pub mod ids;
pub mod messages;
pub mod release;
pub mod signing;
pub mod tuf;
pub mod version;
pub mod window;

pub use digest::{ContentHasher, Sha256Digest};
pub use error::{FrameError, KeyError, NameError, SpecError, VerifyError};
pub use ids::{AgentId, AssignmentId, Timestamp};
pub use release::{DetectRule, HealthCheck, HealthSpec, InstallerKind, ReleaseMetadata};
pub use signing::{PublicKey, ReleaseRef, SecretKey, VerifiedRelease};

/// The ALPN protocol id both QUIC peers must offer. A peer that does not
/// speak it fails the TLS handshake.
pub const ALPN: &[u8] = b"flotte/1";

/// The newest protocol version this build speaks, exchanged in
/// `Hello`/`Welcome` at the start of every connection. Version 2 made
/// request streams start with a `StreamRequest` (content or TUF metadata);
/// version 3 added pull offers ([`messages::OFFERS_SINCE`]).
pub const PROTOCOL_VERSION: u16 = 3;

/// The oldest protocol version this build still speaks: releases are
/// verified through TUF since version 2, so version 1 peers are refused.
pub const MIN_PROTOCOL_VERSION: u16 = 2;

/// The version two peers speak: the newest both know, or `None` if their
/// ranges do not overlap.
pub fn negotiate(peer_min: u16, peer_max: u16) -> Option<u16> {
    let version = peer_max.min(PROTOCOL_VERSION);
    (version >= peer_min.max(MIN_PROTOCOL_VERSION)).then_some(version)
}
