//! What `flotte` and the agent say to each other on the local socket.
//!
//! A frame is a 4-byte big-endian length, then that many bytes of JSON.
//! JSON (not postcard) because the socket is a local, user-facing API that
//! scripts may speak too. One request per connection, one answer.
//!
//! Guarantees: [`decode_len`] refuses a length above [`MAX_FRAME`] before
//! anything is allocated, and unknown request kinds or fields are refused
//! with an error answer, never a panic.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest frame either side accepts: a request is tiny; a catalog listing
/// with release notes of [`flotte_protocol::messages::MAX_OFFER_NOTES`]
/// bytes each fits many times over.
pub const MAX_FRAME: usize = 1 << 20;

/// Largest request the agent accepts; requests are a verb and a name.
pub const MAX_REQUEST: usize = 4096;

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("frame of {len} bytes is larger than the limit of {limit} bytes")]
    TooLarge { len: usize, limit: usize },
    #[error("malformed message: {0}")]
    Json(#[from] serde_json::Error),
    #[error("socket error: {0}")]
    Io(#[from] std::io::Error),
}

/// What a caller asks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Available and installed software.
    List,
    /// Running and recent installs, deadlines, notices.
    Status,
    /// Install the offered release of package `name`.
    Install { name: String },
    /// Uninstall package `name` (only software installed by pull).
    Remove { name: String },
    /// Where one install stands.
    Job { assignment: u64 },
    /// Postpone the required install of `name` (a deferral).
    Defer { name: String },
}

impl Request {
    /// Whether the request changes the host (and so needs the policy's
    /// permission rather than only a connection).
    pub fn changes_host(&self) -> bool {
        matches!(self, Request::Install { .. } | Request::Remove { .. } | Request::Defer { .. })
    }
}

/// The agent's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "answer", rename_all = "snake_case")]
pub enum Answer {
    List(Listing),
    Status(Status),
    /// An install started (or was already under way): follow it with `Job`.
    Started(JobView),
    Job(JobView),
    Removed {
        name: String,
        version: Option<String>,
    },
    /// The required install waits until `until` (RFC 3339).
    Deferred {
        name: String,
        until: String,
        remaining: u32,
    },
    Error {
        code: ErrorCode,
        message: String,
    },
}

/// What went wrong, for exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request could not be understood.
    BadRequest,
    /// The pull policy does not let this caller do that.
    Forbidden,
    /// No such offer, package or install.
    NotFound,
    /// Something else is under way for that package.
    Busy,
    /// The agent failed to carry it out.
    Internal,
}

/// `flotte list`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listing {
    pub available: Vec<Available>,
    pub installed: Vec<Installed>,
}

/// A release offered to this host's users.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Available {
    pub name: String,
    pub version: String,
    /// What the admin says about it (release notes).
    pub notes: Option<String>,
    /// RFC 3339; after it, the agent installs the release by itself.
    pub deadline: Option<String>,
    /// RFC 3339; when the deadline install is due (the window's next opening).
    pub install_due: Option<String>,
}

/// A package installed on this host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Installed {
    pub name: String,
    pub version: String,
    /// Installed by a user from the catalog (so `flotte remove` applies).
    pub pulled: bool,
}

/// `flotte status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// Whether the agent is connected to its controller now.
    pub connected: bool,
    /// Installs under way, and recent ones.
    pub jobs: Vec<JobView>,
    /// Things a user should know: upcoming required installs.
    pub notices: Vec<String>,
}

/// One install as the socket shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobView {
    pub assignment: u64,
    pub name: String,
    pub version: String,
    /// The job's state: `received`, `downloading`, `succeeded`, `failed`…
    pub state: String,
    pub finished: bool,
    pub succeeded: bool,
    /// Why it failed, what it waits for, or why its download is retried.
    pub message: Option<String>,
}

/// The length a frame header announces, or an error above `limit`.
pub fn decode_len(header: [u8; 4], limit: usize) -> Result<usize, WireError> {
    let len = u32::from_be_bytes(header) as usize;
    if len > limit {
        return Err(WireError::TooLarge { len, limit });
    }
    Ok(len)
}

/// One frame: header and JSON body.
pub fn encode<T: Serialize>(message: &T) -> Result<Vec<u8>, WireError> {
    let body = serde_json::to_vec(message)?;
    if body.len() > MAX_FRAME {
        return Err(WireError::TooLarge { len: body.len(), limit: MAX_FRAME });
    }
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(&body);
    Ok(frame)
}

/// Reads one frame of at most `limit` bytes and decodes it.
pub async fn read<T: DeserializeOwned>(io: &mut (impl AsyncRead + Unpin), limit: usize) -> Result<T, WireError> {
    let mut header = [0u8; 4];
    io.read_exact(&mut header).await?;
    let len = decode_len(header, limit)?;
    let mut body = vec![0u8; len];
    io.read_exact(&mut body).await?;
    Ok(serde_json::from_slice(&body)?)
}

/// Writes one frame.
pub async fn write<T: Serialize>(io: &mut (impl AsyncWrite + Unpin), message: &T) -> Result<(), WireError> {
    io.write_all(&encode(message)?).await?;
    io.flush().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_tagged_json() {
        let install = Request::Install { name: "hello".into() };
        assert_eq!(serde_json::to_string(&install).unwrap(), r#"{"request":"install","name":"hello"}"#);
        assert_eq!(serde_json::from_str::<Request>(r#"{"request":"list"}"#).unwrap(), Request::List);
        assert!(install.changes_host());
        assert!(!Request::List.changes_host() && !Request::Status.changes_host());
    }

    #[test]
    fn unknown_or_malformed_requests_are_errors_not_panics() {
        for bad in
            [r#"{"request":"format_disk"}"#, r#"{"request":"install"}"#, r#"{"request":"install","name":1}"#, "[", ""]
        {
            assert!(serde_json::from_str::<Request>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_length_above_the_limit_is_refused_before_reading_the_body() {
        assert_eq!(decode_len(100u32.to_be_bytes(), MAX_REQUEST).unwrap(), 100);
        assert_eq!(decode_len((MAX_REQUEST as u32).to_be_bytes(), MAX_REQUEST).unwrap(), MAX_REQUEST);
        let err = decode_len((MAX_REQUEST as u32 + 1).to_be_bytes(), MAX_REQUEST).unwrap_err();
        assert!(matches!(err, WireError::TooLarge { len: 4097, limit: 4096 }), "{err}");
        assert!(decode_len(u32::MAX.to_be_bytes(), MAX_FRAME).is_err());
    }

    #[tokio::test]
    async fn frames_round_trip_and_an_oversized_one_is_not_read() {
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        write(&mut a, &Request::Remove { name: "x".into() }).await.unwrap();
        assert_eq!(read::<Request>(&mut b, MAX_REQUEST).await.unwrap(), Request::Remove { name: "x".into() });
        // A 4 GiB announcement with no body: refused at once, not awaited.
        tokio::io::AsyncWriteExt::write_all(&mut a, &u32::MAX.to_be_bytes()).await.unwrap();
        assert!(matches!(read::<Request>(&mut b, MAX_REQUEST).await, Err(WireError::TooLarge { .. })));
    }
}
