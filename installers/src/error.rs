//! The one error type of this crate.
//!
//! Every variant carries the context needed to act on it without a log
//! search: the path, the archive entry, or the limit that was hit. Whether a
//! failure is worth retrying is answered by [`InstallError::is_transient`],
//! so callers never have to match on `io::ErrorKind` themselves.

use std::io;
use std::path::PathBuf;

/// Why an install step failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InstallError {
    /// A package name or version is not a single safe path component.
    #[error("invalid {what} {value:?}: {reason}")]
    InvalidName {
        /// Which field was rejected, e.g. `"package name"` or `"version"`.
        what: &'static str,
        /// The rejected value, verbatim.
        value: String,
        /// The rule it broke.
        reason: &'static str,
    },

    /// The artifact is not in a format this backend extracts.
    #[error(
        "unsupported package format ({detected}) in {path}: only tar and tar.gz are supported; \
         zstd and zip support comes later"
    )]
    UnsupportedFormat {
        /// The artifact that was inspected.
        path: PathBuf,
        /// What the magic bytes say it is, e.g. `"zstd"`, `"zip"` or `"unknown"`.
        detected: &'static str,
    },

    /// A filesystem operation on the install tree failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done, e.g. `"create file"`.
        op: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },

    /// Reading, decompressing or parsing the artifact failed (truncated,
    /// corrupt, or a read error from the disk holding it).
    #[error("reading archive {path}: {source}")]
    ArchiveRead {
        /// The artifact being read.
        path: PathBuf,
        /// The underlying error from the file, the decompressor or the tar parser.
        source: io::Error,
    },

    /// An archive entry breaks an extraction rule (path traversal, absolute
    /// path, escaping link, device node, duplicate, ...). Nothing outside the
    /// staging directory was written.
    #[error("unsafe archive entry {entry:?}: {reason}")]
    UnsafeEntry {
        /// The entry's path as stored in the archive (lossy UTF-8, truncated if huge).
        entry: String,
        /// The rule it broke.
        reason: String,
    },

    /// The archive has more entries than [`crate::ArchiveLimits::max_entries`].
    #[error("archive has more than {limit} entries")]
    TooManyEntries {
        /// The configured limit.
        limit: u64,
    },

    /// The archive unpacks to more bytes than
    /// [`crate::ArchiveLimits::max_unpacked_bytes`].
    #[error("archive unpacks to more than {limit_bytes} bytes")]
    TooLarge {
        /// The configured limit.
        limit_bytes: u64,
    },

    /// `activate` was given a [`crate::Staged`] whose version is not (or no
    /// longer) staged by this installer.
    #[error("{name} {version} is not staged")]
    NotStaged {
        /// Package name.
        name: String,
        /// Version that was expected on disk.
        version: String,
    },

    /// `rollback` was asked for a version that is not kept on disk.
    #[error("no kept version {version} of {name} to roll back to")]
    NoPreviousVersion {
        /// Package name.
        name: String,
        /// The requested rollback target.
        version: String,
    },

    /// The package has never been installed by this installer.
    #[error("package {name} is not installed")]
    NotInstalled {
        /// Package name.
        name: String,
    },

    /// The install tree is not in a shape this crate ever leaves it in
    /// (e.g. `current` is not a symlink to a version directory).
    #[error("inconsistent install state at {path}: {reason}")]
    CorruptState {
        /// The offending path.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

impl InstallError {
    /// True when retrying the same step later could succeed: only I/O
    /// errors caused by the host's condition (disk full, quota, EIO, out of
    /// file descriptors or memory, interrupted). Everything about the
    /// package itself — unsafe entries, limits, bad names, unsupported
    /// formats, corrupt archives — is permanent.
    pub fn is_transient(&self) -> bool {
        match self {
            InstallError::Io { source, .. } | InstallError::ArchiveRead { source, .. } => is_transient_io(source),
            _ => false,
        }
    }
}

/// Classifies an OS error as "the host, not the package, is at fault".
fn is_transient_io(error: &io::Error) -> bool {
    if let Some(code) = error.raw_os_error() {
        return matches!(
            code,
            libc::ENOSPC
                | libc::EDQUOT
                | libc::EIO
                | libc::EINTR
                | libc::EAGAIN
                | libc::ENOMEM
                | libc::EMFILE
                | libc::ENFILE
                | libc::EBUSY
        );
    }
    matches!(error.kind(), io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock)
}

/// Builds a closure that wraps an `io::Error` with the operation and path,
/// for use with `map_err`.
pub(crate) fn io_err(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> InstallError {
    let path = path.into();
    move |source| InstallError::Io { op, path, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io(code: i32) -> InstallError {
        InstallError::Io { op: "write", path: PathBuf::from("/x"), source: io::Error::from_raw_os_error(code) }
    }

    #[test]
    fn disk_full_and_eio_are_transient() {
        assert!(io(libc::ENOSPC).is_transient());
        assert!(io(libc::EIO).is_transient());
        assert!(io(libc::EDQUOT).is_transient());
    }

    #[test]
    fn permission_and_existence_errors_are_permanent() {
        assert!(!io(libc::EACCES).is_transient());
        assert!(!io(libc::EEXIST).is_transient());
        assert!(!io(libc::ENAMETOOLONG).is_transient());
    }

    #[test]
    fn a_corrupt_archive_is_permanent_but_a_disk_read_error_is_not() {
        let corrupt = InstallError::ArchiveRead {
            path: PathBuf::from("/a.tar.gz"),
            source: io::Error::new(io::ErrorKind::InvalidData, "corrupt deflate stream"),
        };
        assert!(!corrupt.is_transient());
        let eio = InstallError::ArchiveRead {
            path: PathBuf::from("/a.tar.gz"),
            source: io::Error::from_raw_os_error(libc::EIO),
        };
        assert!(eio.is_transient());
    }

    #[test]
    fn unsafe_archives_and_limits_are_permanent() {
        let unsafe_entry =
            InstallError::UnsafeEntry { entry: "../evil".into(), reason: "parent directory component".into() };
        assert!(!unsafe_entry.is_transient());
        assert!(!InstallError::TooLarge { limit_bytes: 1 }.is_transient());
        assert!(!InstallError::TooManyEntries { limit: 1 }.is_transient());
    }

    #[test]
    fn messages_carry_their_context() {
        let e = InstallError::UnsafeEntry { entry: "../evil".into(), reason: "parent directory component".into() };
        assert_eq!(e.to_string(), "unsafe archive entry \"../evil\": parent directory component");
        assert_eq!(InstallError::TooLarge { limit_bytes: 42 }.to_string(), "archive unpacks to more than 42 bytes");
    }
}
