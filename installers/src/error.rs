//! The one error type of this crate.
//!
//! Every variant carries the context needed to act on it without a log
//! search: the path, the archive entry, or the limit that was hit. Whether a
//! failure is worth retrying is answered by [`InstallError::is_transient`],
//! so callers never have to match on `io::ErrorKind` themselves.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use crate::installer::Detection;
use crate::process::HookOutput;
use crate::script::Hook;

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

    /// A script package does not have the shape the script backend needs
    /// (a required hook is missing or not executable).
    #[error("{name} {version} is not a valid script package: {reason}")]
    InvalidPackage {
        /// Package name.
        name: String,
        /// Package version.
        version: String,
        /// What is missing or wrong.
        reason: String,
    },

    /// A hook exited with a non-zero status or was killed by a signal.
    #[error("{hook} hook of {name} {version} failed: {output}{}", tail_suffix(.output))]
    HookFailed {
        /// Package name.
        name: String,
        /// The version whose hook ran.
        version: String,
        /// Which hook.
        hook: Hook,
        /// Exit status, duration and output tail (boxed: keeps the error small).
        output: Box<HookOutput>,
    },

    /// A hook ran longer than its timeout; its whole process group was
    /// killed.
    #[error("{hook} hook of {name} {version} timed out after {timeout:?} and was killed{}", tail_suffix(.output))]
    HookTimedOut {
        /// Package name.
        name: String,
        /// The version whose hook ran.
        version: String,
        /// Which hook.
        hook: Hook,
        /// The configured timeout.
        timeout: Duration,
        /// Duration and output tail up to the kill (boxed: keeps the error small).
        output: Box<HookOutput>,
    },

    /// An earlier activation of another version never finished (the agent
    /// crashed during its install hook, or its rollback hook failed): roll
    /// back first.
    #[error("an activation of {name} {version} did not finish; roll back before installing another version")]
    ActivationPending {
        /// Package name.
        name: String,
        /// The version whose activation did not finish.
        version: String,
    },

    /// `dpkg`, `dpkg-query` or `dpkg-deb` failed.
    #[error("dpkg {op} of {name} failed: {output}{}", tail_suffix(.output))]
    Dpkg {
        /// What was being done: `"install"`, `"rollback"`, `"purge"`,
        /// `"query"`, `"read control fields"`.
        op: &'static str,
        /// Package name.
        name: String,
        /// Exit status, duration and output tail (boxed: keeps the error small).
        output: Box<HookOutput>,
    },

    /// A `.deb`'s control field does not match the release it was
    /// published as.
    #[error("{path}: control field {field} is {found:?}, but the release says {expected:?}")]
    DebMismatch {
        /// The (cached) `.deb`.
        path: PathBuf,
        /// `"Package"` or `"Version"`.
        field: &'static str,
        /// The release's name or version.
        expected: String,
        /// What the control file says.
        found: String,
    },

    /// Installing would replace a version that could not be rolled back to,
    /// because no `.deb` of it is cached. Nothing was changed.
    #[error(
        "refusing to replace {name} {installed}: no cached .deb at {expected} to roll back to \
         (install {installed} through Flotte first, or allow installs without a rollback target)"
    )]
    NoRollbackTarget {
        /// Package name.
        name: String,
        /// The version installed now.
        installed: String,
        /// Where its `.deb` would have to be.
        expected: PathBuf,
    },

    /// After an install, rollback or uninstall, the backend's own detection
    /// does not report the expected result.
    #[error("{name}: expected {expected} after {op}, but detection says {detected}")]
    NotDetected {
        /// Package name.
        name: String,
        /// `"install"`, `"rollback"` or `"uninstall"`.
        op: &'static str,
        /// What should have been detected (boxed: keeps the error small).
        expected: Box<Detection>,
        /// What was detected.
        detected: Box<Detection>,
    },

    /// The package is installed, but not cleanly (see
    /// [`Detection::Unclean`]), so there is no trustworthy active version.
    #[error("{name} is not cleanly installed{}: {state}", version.as_deref().map(|v| format!(" ({v})")).unwrap_or_default())]
    Unclean {
        /// Package name.
        name: String,
        /// The version involved, when known.
        version: Option<String>,
        /// What is wrong.
        state: String,
    },

    /// A declared backup path is unacceptable (relative, `..`, `/`,
    /// nested in another declared path, ...). Nothing was copied.
    #[error("backup path {path}: {reason}")]
    InvalidBackupPath {
        /// The declared path.
        path: PathBuf,
        /// The rule it broke.
        reason: &'static str,
    },

    /// Copying into or out of a backup failed.
    #[error("backup: {op} {path}: {source}")]
    BackupFailed {
        /// What was being done, e.g. `"copy"` or `"restore"`.
        op: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },

    /// A health check declaration cannot be run (e.g. an HTTP check of a
    /// non-loopback host).
    #[error("invalid health check: {reason}")]
    InvalidHealthCheck {
        /// The rule it broke.
        reason: String,
    },
}

impl InstallError {
    /// True when retrying the same step later could succeed: only I/O
    /// errors caused by the host's condition (disk full, quota, EIO, out of
    /// file descriptors or memory, interrupted). Everything about the
    /// package itself — unsafe entries, limits, bad names, unsupported
    /// formats, corrupt archives — is permanent.
    ///
    /// Hooks that fail or time out are permanent (the package is at fault).
    /// A dpkg failure is transient only when dpkg says its database is
    /// locked by another process (apt, unattended-upgrades) or the disk is
    /// full; dpkg runs with `LANG=C`, so these messages are stable.
    pub fn is_transient(&self) -> bool {
        match self {
            InstallError::Io { source, .. }
            | InstallError::ArchiveRead { source, .. }
            | InstallError::BackupFailed { source, .. } => is_transient_io(source),
            InstallError::Dpkg { output, .. } => {
                !output.timed_out
                    && (output.tail.contains("locked by another process")
                        || output.tail.contains("No space left on device"))
            }
            _ => false,
        }
    }

    /// The output of the hook or dpkg run this error is about, if any (for
    /// the report's log tail).
    pub fn output(&self) -> Option<&HookOutput> {
        match self {
            InstallError::HookFailed { output, .. }
            | InstallError::HookTimedOut { output, .. }
            | InstallError::Dpkg { output, .. } => Some(output),
            _ => None,
        }
    }
}

/// "; output tail:\n<tail>", or nothing when there was no output.
fn tail_suffix(output: &HookOutput) -> String {
    if output.tail.trim().is_empty() { String::new() } else { format!("; output tail:\n{}", output.tail) }
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
                | libc::ETXTBSY
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

    fn output(tail: &str) -> HookOutput {
        HookOutput { exit: Some(1), tail: tail.into(), timed_out: false, duration: Duration::from_millis(20) }
    }

    #[test]
    fn failing_hooks_are_permanent_and_carry_their_tail() {
        let e = InstallError::HookFailed {
            name: "app".into(),
            version: "2.0".into(),
            hook: Hook::Install,
            output: Box::new(output("cannot write /opt/app\n")),
        };
        assert!(!e.is_transient());
        assert_eq!(
            e.to_string(),
            "install hook of app 2.0 failed: exited with status 1 after 0.02s; output tail:\ncannot write /opt/app\n"
        );
        assert_eq!(e.output().unwrap().tail, "cannot write /opt/app\n");
        let timed_out = InstallError::HookTimedOut {
            name: "app".into(),
            version: "2.0".into(),
            hook: Hook::Check,
            timeout: Duration::from_secs(1),
            output: Box::new(HookOutput {
                exit: None,
                tail: String::new(),
                timed_out: true,
                duration: Duration::from_secs(1),
            }),
        };
        assert!(!timed_out.is_transient());
        assert_eq!(timed_out.to_string(), "check hook of app 2.0 timed out after 1s and was killed");
    }

    #[test]
    fn dpkg_is_transient_only_when_locked_or_out_of_space() {
        let dpkg =
            |tail: &str| InstallError::Dpkg { op: "install", name: "app".into(), output: Box::new(output(tail)) };
        assert!(dpkg("dpkg: error: dpkg frontend lock was locked by another process with pid 7\n").is_transient());
        assert!(dpkg("dpkg: error: cannot copy extracted data: No space left on device\n").is_transient());
        assert!(!dpkg("subprocess installed post-installation script returned error exit status 1\n").is_transient());
    }

    #[test]
    fn a_full_disk_during_backup_is_transient() {
        let e = InstallError::BackupFailed {
            op: "copy",
            path: PathBuf::from("/etc/app"),
            source: io::Error::from_raw_os_error(libc::ENOSPC),
        };
        assert!(e.is_transient());
        assert!(!InstallError::InvalidBackupPath { path: "/".into(), reason: "is the root" }.is_transient());
    }

    #[test]
    fn messages_carry_their_context() {
        let e = InstallError::UnsafeEntry { entry: "../evil".into(), reason: "parent directory component".into() };
        assert_eq!(e.to_string(), "unsafe archive entry \"../evil\": parent directory component");
        assert_eq!(InstallError::TooLarge { limit_bytes: 42 }.to_string(), "archive unpacks to more than 42 bytes");
    }
}
