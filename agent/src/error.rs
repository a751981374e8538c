//! The one error type of the agent library.
//!
//! Every variant carries what is needed to act on it without a log search:
//! the path, the address, the stream or the controller's own words. Nothing
//! in the library panics on bad input; it returns one of these.

use flotte_protocol::FrameError;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Why an agent operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The TUF root given at enrollment is unusable.
    #[error("TUF root {path} refused: {reason}; pass the root.json written by `flottectl trust init`")]
    TrustRoot { path: PathBuf, reason: String },

    /// A filesystem operation failed.
    #[error("{op} {path}: {source}")]
    Io { op: &'static str, path: PathBuf, source: io::Error },

    /// The state directory cannot be written (read-only file system, full
    /// disk, wrong owner); the agent cannot keep its journal and outbox.
    #[error("the state directory {path} is not writable: {source}")]
    StateDirNotWritable { path: PathBuf, source: io::Error },

    /// A service-manager command (`systemctl …`) failed.
    #[error("{command}: {reason}")]
    Service { command: String, reason: String },

    /// The config file is not valid TOML or has an unknown or mistyped key.
    #[error("config file {path}: {source}")]
    ConfigParse { path: PathBuf, source: Box<toml::de::Error> },

    /// A config key has a value that cannot be used.
    #[error("invalid {key} in the config file: {reason}")]
    ConfigValue { key: &'static str, reason: String },

    /// `log_level` is not a valid tracing filter.
    #[error("invalid log_level {value:?}: {reason}")]
    LogLevel { value: String, reason: String },

    /// A state file (journal, outbox) does not parse.
    #[error("state file {path} is corrupt: {source}")]
    StateParse { path: PathBuf, source: serde_json::Error },

    /// `enrollment.toml` does not parse.
    #[error("enrollment file {path} is corrupt: {source}")]
    EnrollmentParse { path: PathBuf, source: Box<toml::de::Error> },

    /// A value could not be serialized for writing (never expected).
    #[error("cannot encode {what}: {reason}")]
    Encode { what: &'static str, reason: String },

    /// The agent has no enrollment in its state directory.
    #[error("not enrolled: {path} does not exist; run `flotte-agent enroll` first")]
    NotEnrolled { path: PathBuf },

    /// `enroll` would overwrite an existing identity.
    #[error("already enrolled as {agent_id} ({path}); remove the state directory to enroll again")]
    AlreadyEnrolled { path: PathBuf, agent_id: String },

    /// A PEM file holds nothing usable.
    #[error("{path}: {reason}")]
    Pem { path: PathBuf, reason: String },

    /// `--controller` is not `HOST:PORT`.
    #[error("invalid controller address {value:?}: expected HOST:PORT (IPv6 as [ADDR]:PORT)")]
    ControllerAddress { value: String },

    /// The agent key pair could not be generated.
    #[error("cannot generate the agent key pair: {0}")]
    KeyGen(#[from] rcgen::Error),

    /// The enrollment request did not get an HTTP answer.
    #[error("enrollment request to {url} failed: {source}")]
    Http { url: String, source: Box<ureq::Error> },

    /// The controller refused the enrollment with an `ApiError` body.
    #[error("enrollment refused: {error}{}", hint.as_deref().map(|h| format!(" (hint: {h})")).unwrap_or_default())]
    EnrollRefused { status: u16, error: String, hint: Option<String> },

    /// The controller answered something that is neither a success nor an `ApiError`.
    #[error("unexpected answer from the controller (HTTP {status}): {detail}")]
    BadResponse { status: u16, detail: String },

    /// The TLS or QUIC client configuration could not be built.
    #[error("TLS client configuration: {reason}")]
    TlsConfig { reason: String },

    /// The controller's host name did not resolve.
    #[error("cannot resolve controller {host}: {reason}")]
    Resolve { host: String, reason: String },

    /// The TLS handshake failed on our side: the server's certificate does
    /// not chain to the CA this agent enrolled with (or does not name the
    /// controller). Either the controller was re-initialized or someone
    /// else answers at its address; the agent does not talk to it.
    #[error(
        "refusing the controller at {addr}: its certificate is not from the CA this agent enrolled with ({reason}); \
         if the controller was re-initialized, enroll this agent again"
    )]
    UntrustedController { addr: SocketAddr, reason: String },

    /// A QUIC connection could not be set up or was lost.
    #[error("connection to {addr}: {reason}")]
    Connection { addr: SocketAddr, reason: String },

    /// Reading from or writing to a QUIC stream failed.
    #[error("{stream} stream: {reason}")]
    Stream { stream: &'static str, reason: String },

    /// A frame could not be encoded or decoded.
    #[error(transparent)]
    Frame(#[from] FrameError),

    /// The controller sent `Refused` in answer to `Hello`.
    #[error("controller refused the connection: {reason}")]
    Refused { reason: String },

    /// The controller sent something out of order.
    #[error("protocol violation: expected {expected}, got {got}")]
    Unexpected { expected: &'static str, got: String },

    /// An installer backend could not be set up.
    #[error("installer setup: {reason}")]
    Installer { reason: String },

    /// A command-line argument is not acceptable.
    #[error("{reason}")]
    BadArgument { reason: String },

    /// A peer did not answer in time.
    #[error("timed out waiting for {what}")]
    Timeout { what: &'static str },
}

impl AgentError {
    /// Builds a closure that wraps an `io::Error` with the operation and
    /// path, for `map_err`.
    pub fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> AgentError {
        let path = path.into();
        move |source| AgentError::Io { op, path, source }
    }
}

impl AgentError {
    /// True when the host, not the input, is at fault and a later attempt
    /// may succeed: disk full, quota, I/O error, out of descriptors.
    pub fn is_transient(&self) -> bool {
        match self {
            AgentError::Io { source, .. } => is_transient_io(source),
            _ => false,
        }
    }
}

/// Classifies an OS error as "the host, not the input, is at fault".
pub fn is_transient_io(error: &io::Error) -> bool {
    use libc::{EDQUOT, EIO, EMFILE, ENFILE, ENOMEM, ENOSPC};
    matches!(error.raw_os_error(), Some(ENOSPC | EDQUOT | EIO | EMFILE | ENFILE | ENOMEM))
        || matches!(error.kind(), io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock)
}

/// Result alias of the agent library.
pub type Result<T, E = AgentError> = std::result::Result<T, E>;

impl AgentError {
    /// True when restarting the agent cannot help until an admin acts: a
    /// bad config file or an unwritable state directory. `main` exits with
    /// [`EXIT_NEEDS_ADMIN`] for these, which the systemd unit does not restart.
    pub fn needs_admin(&self) -> bool {
        matches!(
            self,
            AgentError::ConfigParse { .. }
                | AgentError::ConfigValue { .. }
                | AgentError::LogLevel { .. }
                | AgentError::StateDirNotWritable { .. }
        )
    }
}

/// Exit status for errors that [`AgentError::needs_admin`] (EX_CONFIG from
/// sysexits.h); `RestartPreventExitStatus=` in the unit names it.
pub const EXIT_NEEDS_ADMIN: u8 = 78;
