//! The error type of TUF verification. Every variant names the role (and,
//! once the metadata could be read, its version) and the reason, so a
//! refusal can be understood from the message alone. Rejected metadata never
//! changes the trusted state.

/// Why metadata, a target or a request was refused.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum TufError {
    /// The input is larger than the limit for its role (endless data).
    #[error("{role} metadata of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { role: String, len: usize, max: usize },

    /// The bytes are not metadata of the expected shape.
    #[error("{role} metadata is malformed: {reason}")]
    Malformed { role: String, reason: String },

    /// The `_type` field names another role than the one expected.
    #[error("expected {expected} metadata, got {found:?}")]
    WrongType { expected: String, found: String },

    /// The metadata's major specification version is not 1.
    #[error("{role} v{version}: unsupported spec_version {spec_version:?} (only 1.x is supported)")]
    UnsupportedSpecVersion { role: String, version: u64, spec_version: String },

    /// Fewer distinct trusted keys than the threshold signed the metadata.
    /// `details` says, key by key, why a signature did not count.
    #[error(
        "{role} v{version}: {valid} of the required {threshold} signatures by distinct trusted keys verify ({details})"
    )]
    Threshold { role: String, version: u64, valid: usize, threshold: u64, details: String },

    /// A new root is not the next version in the chain.
    #[error("root v{found} offered where v{expected} (trusted root + 1) was expected")]
    RootVersion { expected: u64, found: u64 },

    /// A role's version went backwards (rollback attack).
    #[error("{role} v{new} is older than the trusted v{trusted} (rollback)")]
    Rollback { role: String, trusted: u64, new: u64 },

    /// The same timestamp version was served again: nothing new to trust.
    /// The trusted timestamp stays; callers usually treat this as success.
    #[error("timestamp v{version} is the version already trusted")]
    EqualTimestamp { version: u64 },

    /// A newer timestamp or snapshot lists an older version of a metadata
    /// file than the trusted one did (rollback).
    #[error("{listed_by}: {file} v{new} is older than the trusted v{trusted} (rollback)")]
    MetaRollback { listed_by: String, file: String, trusted: u64, new: u64 },

    /// A newer snapshot no longer lists a file the trusted snapshot listed,
    /// or the snapshot has no entry for a role that must be fetched.
    #[error("{listed_by} has no entry for {file}")]
    MetaMissing { listed_by: String, file: String },

    /// Metadata is past its expiry time (freeze attack).
    #[error("{role} v{version} expired at {expires}")]
    Expired { role: String, version: u64, expires: String },

    /// The version disagrees with what the referring role says
    /// (mix-and-match): timestamp→snapshot or snapshot→targets.
    #[error("{role} v{found} does not match v{expected} listed by {listed_by} (mix-and-match)")]
    VersionMismatch { role: String, expected: u64, found: u64, listed_by: String },

    /// The bytes are not as long as the signed length says.
    #[error("{what}: length {found} does not match the signed length {expected}")]
    LengthMismatch { what: String, expected: u64, found: u64 },

    /// The bytes do not hash to the signed hash.
    #[error("{what}: {algorithm} {found} does not match the signed {expected}")]
    HashMismatch { what: String, algorithm: String, expected: String, found: String },

    /// A signed hash uses an algorithm Flotte does not implement; the
    /// file cannot be checked, so it is refused.
    #[error("{what}: unsupported hash algorithm {algorithm:?}")]
    UnsupportedHash { what: String, algorithm: String },

    /// A target name is unsafe to use as a path or URL.
    #[error("target name {name:?} refused: {reason}")]
    TargetName { name: String, reason: &'static str },

    /// A role was asked for that its supposed delegator does not delegate.
    #[error("{parent} does not delegate to {role}")]
    NotDelegated { role: String, parent: String },

    /// An update was requested out of the workflow's order
    /// (root → timestamp → snapshot → targets → delegations).
    #[error("cannot update {role}: {reason}")]
    Order { role: String, reason: &'static str },
}

/// Results of this module.
pub type Result<T, E = TufError> = std::result::Result<T, E>;

impl TufError {
    pub(crate) fn malformed(role: &str, reason: impl Into<String>) -> Self {
        TufError::Malformed { role: role.to_string(), reason: reason.into() }
    }
}
