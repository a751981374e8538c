//! Error types of the protocol crate. Every variant says what was wrong with
//! the input; none of them is ever produced by a panic.

/// A frame could not be encoded or decoded.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    /// The length prefix announces more than the protocol allows. The frame
    /// is refused before anything is allocated for it.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
    /// The input ended inside a frame.
    #[error("truncated frame: expected {expected} bytes, got {got}")]
    Truncated { expected: usize, got: usize },
    /// The payload is not a valid message of the expected type.
    #[error("malformed {what} frame: {reason}")]
    Malformed { what: &'static str, reason: String },
    /// Bytes were left over after the message.
    #[error("malformed {what} frame: {extra} trailing bytes")]
    TrailingBytes { what: &'static str, extra: usize },
}

/// A package name or version is not acceptable.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum NameError {
    #[error("{what} is empty")]
    Empty { what: &'static str },
    #[error("{what} {value:?} is longer than {max} characters")]
    TooLong { what: &'static str, value: String, max: usize },
    #[error("{what} {value:?} contains {bad:?}; allowed are letters, digits and . _ + ~ -")]
    BadCharacter { what: &'static str, value: String, bad: char },
    #[error("{what} {value:?} must not start with '.'")]
    LeadingDot { what: &'static str, value: String },
}

/// A signed release failed verification. The release must not be used.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    /// The TUF client workflow refused the metadata (role, version, reason).
    #[error("{0}")]
    Tuf(#[from] crate::tuf::TufError),
    /// The verified targets do not list the release.
    #[error("no trusted targets role lists {target}")]
    NotInTargets { target: String },
    /// The verified targets entry does not describe an installable release.
    #[error("target {target} {reason}")]
    Target { target: String, reason: String },
    /// The agent could not run the client workflow (metadata unavailable,
    /// nothing persisted to fall back on, or its metadata store failed).
    #[error("TUF metadata unavailable: {reason}")]
    Unavailable { reason: String },
    #[error("signed release metadata is malformed: {reason}")]
    MalformedMetadata { reason: String },
    #[error("signed release metadata has an invalid name: {0}")]
    InvalidName(#[from] NameError),
}

/// A key file could not be parsed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("not a Flotte {expected} key file (first line must be {header:?})")]
    WrongHeader { expected: &'static str, header: &'static str },
    #[error("key material is not {len} hex-encoded bytes")]
    BadEncoding { len: usize },
    #[error("public key is not a valid ed25519 point")]
    InvalidPoint,
}

/// A release's health check, detection rule or backup paths are not
/// acceptable. Signed metadata with such a spec is refused as a whole.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum SpecError {
    #[error("{what} {value:?} {reason}")]
    Invalid { what: &'static str, value: String, reason: &'static str },
    #[error("{what} is longer than {max} bytes")]
    TooLong { what: &'static str, max: usize },
    #[error("more than {max} {what}")]
    TooMany { what: &'static str, max: usize },
}
