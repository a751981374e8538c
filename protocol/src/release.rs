//! Release metadata: what a signature vouches for.
//!
//! A release is one version of one package. Its metadata names the exact
//! bytes (sha256 and size) and how they are installed. The agent acts only on
//! metadata that came out of [`crate::signing::ReleaseVerifier::verify`].

use crate::digest::Sha256Digest;
use crate::error::NameError;
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
}

impl fmt::Display for InstallerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InstallerKind::Archive => f.write_str("archive"),
        }
    }
}

impl std::str::FromStr for InstallerKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "archive" => Ok(InstallerKind::Archive),
            other => Err(format!("unknown installer kind {other:?}; known kinds: archive")),
        }
    }
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
}

impl ReleaseMetadata {
    /// `name@version`, the way admins type it.
    pub fn label(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }

    /// Checks the name and version rules.
    pub fn validate(&self) -> Result<(), NameError> {
        validate_name("package name", &self.name)?;
        validate_name("version", &self.version)
    }
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
}
