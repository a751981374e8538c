//! Release metadata: what a signature vouches for.
//!
//! A release is one version of one package. Its metadata names the exact
//! bytes (sha256 and size), how they are installed, how the agent tells that
//! the install worked (detection rule, health check and probation) and which
//! host paths it saves before installing and restores on rollback. All of
//! it is inside the signed bytes, so a controller cannot weaken a health
//! check or add a backup path. The agent acts only on metadata that came out
//! of [`crate::signing::ReleaseVerifier::verify`] and passed
//! [`ReleaseMetadata::validate_spec`].
//!
//! Paths in a [`HealthCheck`] or [`DetectRule`] that are relative are
//! resolved by the agent against the active version's directory (for the
//! archive installer `<root>/packages/<name>/current`); commands run there.

use crate::digest::Sha256Digest;
use crate::error::{NameError, SpecError};
use crate::ids::Timestamp;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Longest accepted package name or version.
pub const MAX_NAME_LEN: usize = 128;

/// How a release's content is installed. Each kind maps to one backend in
/// `flotte-installers`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InstallerKind {
    /// A tar archive (optionally compressed), extracted side by side and
    /// activated with an atomic `current` symlink switch.
    Archive,
    /// An archive that ships `install`, `uninstall`, `check` and optional
    /// `rollback` hooks, run with a timeout in a clean environment.
    Script,
    /// A Debian package installed with `dpkg`; rolled back by reinstalling
    /// the cached previous `.deb`.
    Dpkg,
}

impl InstallerKind {
    /// Every kind, in the order `--help` lists them.
    pub const ALL: [InstallerKind; 3] = [InstallerKind::Archive, InstallerKind::Script, InstallerKind::Dpkg];

    /// The lowercase name used on the command line, in JSON and in the store.
    pub fn as_str(self) -> &'static str {
        match self {
            InstallerKind::Archive => "archive",
            InstallerKind::Script => "script",
            InstallerKind::Dpkg => "dpkg",
        }
    }
}

impl fmt::Display for InstallerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for InstallerKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        InstallerKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown installer kind {s:?}; known kinds: archive, script, dpkg"))
    }
}

/// Longest probation a release may ask for (one day).
pub const MAX_PROBATION_SECS: u32 = 86_400;
/// Most backup paths one release may declare.
pub const MAX_BACKUP_PATHS: usize = 64;
/// Longest path, URL or command argument in a spec, in bytes.
pub const MAX_SPEC_STRING: usize = 4096;
/// Most arguments of a health-check command.
pub const MAX_COMMAND_ARGS: usize = 64;

/// What the agent runs to decide that the active version works.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthCheck {
    /// Run `argv` (no shell) in the active version's directory; healthy if
    /// it exits with `expect_exit` before the timeout.
    Command { argv: Vec<String>, expect_exit: i32 },
    /// Something accepts TCP connections on `127.0.0.1:port`.
    Tcp { port: u16 },
    /// `path` exists.
    FileExists { path: String },
    /// `GET url` answers 2xx. Only `http://` URLs on `localhost`,
    /// `127.0.0.1` or `[::1]` are accepted: a health check never leaves the host.
    Http { url: String },
}

/// A release's health check and how long it must keep passing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthSpec {
    pub check: HealthCheck,
    /// After activation the check must keep passing for this long before the
    /// install is committed; 0 means one passing run is enough.
    pub probation_secs: u32,
    /// Seconds between runs during probation; 0 picks a default.
    pub interval_secs: u32,
    /// Longest one run may take; 0 picks a default.
    pub timeout_secs: u32,
}

/// How the agent tells that a version is really installed, checked right
/// after the switch and before the health check. A failure is its own
/// outcome ("installed but not detected"), and rolls back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DetectRule {
    /// `path` exists.
    FileExists { path: String },
    /// `path` holds `content`, ignoring surrounding whitespace (a VERSION file).
    FileContent { path: String, content: String },
}

/// The signed description of one release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseMetadata {
    /// Package name; a safe single path component (see [`validate_name`]).
    pub name: String,
    /// Version string; same character rules as the name.
    pub version: String,
    /// Digest of the exact content bytes.
    pub sha256: Sha256Digest,
    /// Exact content length. Downloads stop here: a server that sends more
    /// is not believed.
    pub size: u64,
    pub installer: InstallerKind,
    /// When the release was signed.
    pub created_at: Timestamp,
    /// Run after activation; a failure rolls the host back. `None`: the
    /// install is committed once it is detected.
    pub health: Option<HealthSpec>,
    /// The release-specific detection rule, on top of the installer's own
    /// "is this version active" check.
    pub detect: Option<DetectRule>,
    /// Absolute host paths (configuration, data) saved before the install
    /// and restored on rollback.
    pub backup_paths: Vec<String>,
}

impl ReleaseMetadata {
    /// The release `name@version` of content `sha256` (`size` bytes),
    /// installed by `installer`, signed at `created_at`, with no health
    /// check, detection rule or backup paths: set those fields after, or
    /// with `..ReleaseMetadata::new(…)`. Checks nothing; see
    /// [`ReleaseMetadata::validate`] and [`ReleaseMetadata::validate_spec`].
    pub fn new(
        name: impl Into<String>,
        version: impl Into<String>,
        sha256: Sha256Digest,
        size: u64,
        installer: InstallerKind,
        created_at: Timestamp,
    ) -> ReleaseMetadata {
        ReleaseMetadata {
            name: name.into(),
            version: version.into(),
            sha256,
            size,
            installer,
            created_at,
            health: None,
            detect: None,
            backup_paths: Vec::new(),
        }
    }

    /// `name@version`, the way admins type it.
    pub fn label(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }

    /// Checks the name and version rules.
    pub fn validate(&self) -> Result<(), NameError> {
        validate_name("package name", &self.name)?;
        validate_name("version", &self.version)
    }

    /// Checks the health check, detection rule and backup paths: bounded
    /// sizes, no empty command, no `..` or relative backup path, no health
    /// URL that leaves the host. Signed metadata that fails this must not be
    /// acted on.
    pub fn validate_spec(&self) -> Result<(), SpecError> {
        if let Some(health) = &self.health {
            health.validate()?;
        }
        if let Some(detect) = &self.detect {
            match detect {
                DetectRule::FileExists { path } => check_path("detect path", path)?,
                DetectRule::FileContent { path, content } => {
                    check_path("detect path", path)?;
                    check_len("detect content", content)?;
                }
            }
        }
        if self.backup_paths.len() > MAX_BACKUP_PATHS {
            return Err(SpecError::TooMany { what: "backup paths", max: MAX_BACKUP_PATHS });
        }
        for path in &self.backup_paths {
            check_path("backup path", path)?;
            if !path.starts_with('/') || path == "/" {
                return Err(SpecError::Invalid {
                    what: "backup path",
                    value: path.clone(),
                    reason: "must be an absolute path below /",
                });
            }
        }
        Ok(())
    }
}

impl HealthSpec {
    /// See [`ReleaseMetadata::validate_spec`].
    pub fn validate(&self) -> Result<(), SpecError> {
        if self.probation_secs > MAX_PROBATION_SECS {
            return Err(SpecError::Invalid {
                what: "probation",
                value: format!("{}s", self.probation_secs),
                reason: "longer than one day",
            });
        }
        match &self.check {
            HealthCheck::Command { argv, .. } => {
                if argv.first().is_none_or(|a| a.is_empty()) {
                    return Err(SpecError::Invalid {
                        what: "health command",
                        value: String::new(),
                        reason: "is empty",
                    });
                }
                if argv.len() > MAX_COMMAND_ARGS {
                    return Err(SpecError::TooMany { what: "health command arguments", max: MAX_COMMAND_ARGS });
                }
                for arg in argv {
                    check_len("health command argument", arg)?;
                    check_nul("health command argument", arg)?;
                }
            }
            HealthCheck::Tcp { port: 0 } => {
                return Err(SpecError::Invalid { what: "health port", value: "0".into(), reason: "is not a port" });
            }
            HealthCheck::Tcp { .. } => {}
            HealthCheck::FileExists { path } => check_path("health file", path)?,
            HealthCheck::Http { url } => check_local_url(url)?,
        }
        Ok(())
    }
}

fn check_len(what: &'static str, value: &str) -> Result<(), SpecError> {
    if value.len() > MAX_SPEC_STRING {
        return Err(SpecError::TooLong { what, max: MAX_SPEC_STRING });
    }
    Ok(())
}

fn check_nul(what: &'static str, value: &str) -> Result<(), SpecError> {
    if value.contains('\0') {
        return Err(SpecError::Invalid { what, value: value.replace('\0', "\\0"), reason: "contains a NUL byte" });
    }
    Ok(())
}

/// A non-empty path without NUL bytes and without `..` components.
fn check_path(what: &'static str, path: &str) -> Result<(), SpecError> {
    check_len(what, path)?;
    check_nul(what, path)?;
    if path.is_empty() {
        return Err(SpecError::Invalid { what, value: String::new(), reason: "is empty" });
    }
    if path.split('/').any(|c| c == "..") {
        return Err(SpecError::Invalid { what, value: path.to_string(), reason: "contains a '..' component" });
    }
    Ok(())
}

/// `http://localhost[:port]/…`, `http://127.0.0.1…` or `http://[::1]…`.
fn check_local_url(url: &str) -> Result<(), SpecError> {
    check_len("health URL", url)?;
    let bad = |reason| Err(SpecError::Invalid { what: "health URL", value: url.to_string(), reason });
    let Some(rest) = url.strip_prefix("http://") else { return bad("must start with http://") };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return bad("must not carry credentials");
    }
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    };
    if !matches!(host, "localhost" | "127.0.0.1" | "::1") {
        return bad("must be on localhost, 127.0.0.1 or [::1]");
    }
    Ok(())
}

/// Package names and versions become directory names on every agent, so
/// they must be one safe path component: 1..=128 characters of
/// `[A-Za-z0-9._+~-]`, not starting with a dot.
pub fn validate_name(what: &'static str, value: &str) -> Result<(), NameError> {
    if value.is_empty() {
        return Err(NameError::Empty { what });
    }
    if value.chars().count() > MAX_NAME_LEN {
        return Err(NameError::TooLong { what, value: value.chars().take(MAX_NAME_LEN).collect(), max: MAX_NAME_LEN });
    }
    if let Some(bad) = value.chars().find(|c| !(c.is_ascii_alphanumeric() || "._+~-".contains(*c))) {
        return Err(NameError::BadCharacter { what, value: value.to_string(), bad });
    }
    if value.starts_with('.') {
        return Err(NameError::LeadingDot { what, value: value.to_string() });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_names_and_versions_are_accepted() {
        for ok in ["app", "libfoo-dev", "1.2.0", "2.0.0-rc.1", "1.0+build.5", "1:2.3~beta"] {
            let ok = ok.replace(':', "_");
            assert_eq!(validate_name("version", &ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn names_that_could_escape_a_directory_are_refused() {
        for bad in ["", ".", "..", "../x", "a/b", ".hidden", "a\\b", "a b", "ü"] {
            assert!(validate_name("package name", bad).is_err(), "{bad:?} accepted");
        }
        assert!(matches!(validate_name("version", &"1".repeat(129)), Err(NameError::TooLong { .. })));
    }

    fn metadata() -> ReleaseMetadata {
        ReleaseMetadata::new("app", "1.0", crate::Sha256Digest::of(b"x"), 1, InstallerKind::Archive, Timestamp::EPOCH)
    }

    fn with_check(check: HealthCheck) -> ReleaseMetadata {
        ReleaseMetadata {
            health: Some(HealthSpec { check, probation_secs: 30, interval_secs: 0, timeout_secs: 0 }),
            ..metadata()
        }
    }

    #[test]
    fn installer_kinds_parse_and_print_as_their_names() {
        for kind in InstallerKind::ALL {
            assert_eq!(kind.to_string().parse::<InstallerKind>(), Ok(kind));
        }
        assert!("rpm".parse::<InstallerKind>().unwrap_err().contains("archive, script, dpkg"));
    }

    #[test]
    fn sensible_specs_are_accepted() {
        let checks = [
            HealthCheck::Command { argv: vec!["bin/hello".into(), "--check".into()], expect_exit: 0 },
            HealthCheck::Tcp { port: 8080 },
            HealthCheck::FileExists { path: "run/ready".into() },
            HealthCheck::Http { url: "http://localhost:8080/healthz".into() },
            HealthCheck::Http { url: "http://127.0.0.1/".into() },
            HealthCheck::Http { url: "http://[::1]:9/x".into() },
        ];
        for check in checks {
            assert_eq!(with_check(check.clone()).validate_spec(), Ok(()), "{check:?}");
        }
        let m = ReleaseMetadata {
            detect: Some(DetectRule::FileContent { path: "VERSION".into(), content: "1.0".into() }),
            backup_paths: vec!["/etc/app".into(), "/var/lib/app/db".into()],
            ..metadata()
        };
        assert_eq!(m.validate_spec(), Ok(()));
    }

    #[test]
    fn specs_that_could_leave_the_host_or_the_tree_are_refused() {
        let refused = [
            with_check(HealthCheck::Http { url: "http://example.org/".into() }),
            with_check(HealthCheck::Http { url: "http://localhost@evil.org/".into() }),
            with_check(HealthCheck::Http { url: "https://localhost/".into() }),
            with_check(HealthCheck::Http { url: "http://127.0.0.1.evil.org/".into() }),
            with_check(HealthCheck::Command { argv: vec![], expect_exit: 0 }),
            with_check(HealthCheck::Command { argv: vec!["a\0b".into()], expect_exit: 0 }),
            with_check(HealthCheck::Tcp { port: 0 }),
            with_check(HealthCheck::FileExists { path: "../../etc/shadow".into() }),
            ReleaseMetadata { backup_paths: vec!["relative/path".into()], ..metadata() },
            ReleaseMetadata { backup_paths: vec!["/".into()], ..metadata() },
            ReleaseMetadata { backup_paths: vec!["/etc/../root".into()], ..metadata() },
            ReleaseMetadata { backup_paths: vec!["/x".into(); MAX_BACKUP_PATHS + 1], ..metadata() },
            ReleaseMetadata { detect: Some(DetectRule::FileExists { path: String::new() }), ..metadata() },
        ];
        for m in refused {
            assert!(m.validate_spec().is_err(), "{:?} {:?} {:?}", m.health, m.backup_paths, m.detect);
        }
        let mut long = with_check(HealthCheck::Tcp { port: 1 });
        long.health.as_mut().unwrap().probation_secs = MAX_PROBATION_SECS + 1;
        assert!(long.validate_spec().unwrap_err().to_string().contains("one day"));
    }

    #[test]
    fn the_spec_is_inside_the_signed_bytes() {
        let plain = postcard::to_stdvec(&metadata()).unwrap();
        let checked = postcard::to_stdvec(&with_check(HealthCheck::Tcp { port: 80 })).unwrap();
        assert_ne!(plain, checked);
        let back: ReleaseMetadata = postcard::from_bytes(&checked).unwrap();
        assert_eq!(back, with_check(HealthCheck::Tcp { port: 80 }));
    }
}
