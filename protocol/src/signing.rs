//! Release keys and what an assignment says about a release.
//!
//! - [`SecretKey`] / [`PublicKey`]: the ed25519 key files `flottectl trust`
//!   writes for the offline TUF roles (root, targets, delegated roles); they
//!   are turned into `tuf::repo::Ed25519Signer`s for signing.
//! - [`ReleaseRef`]: the release an assignment names, an unverified claim.
//! - [`VerifiedRelease`]: release metadata that came out of a verified TUF
//!   targets entry; nothing else can construct one.

use crate::error::KeyError;
use crate::release::ReleaseMetadata;
use ed25519_dalek::{SigningKey, VerifyingKey};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

const SECRET_HEADER: &str = "flotte-ed25519-secret-key";
const PUBLIC_HEADER: &str = "flotte-ed25519-public-key";

/// An ed25519 public key that releases can be verified against.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    /// The 32 public bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        self.0.as_bytes()
    }

    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, KeyError> {
        VerifyingKey::from_bytes(bytes).map(PublicKey).map_err(|_| KeyError::InvalidPoint)
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0.as_bytes())
    }

    /// The text form written by `flottectl keys generate` (`*.pub`).
    pub fn to_file_contents(&self) -> String {
        format!("{PUBLIC_HEADER}\n{}\n", self.to_hex())
    }

    pub fn from_file_contents(text: &str) -> Result<Self, KeyError> {
        let bytes = parse_key_file(text, PUBLIC_HEADER, "public")?;
        Self::from_bytes(&bytes)
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.to_hex())
    }
}

impl Serialize for PublicKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() { s.serialize_str(&self.to_hex()) } else { self.0.as_bytes().serialize(s) }
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let bytes: [u8; 32] = if d.is_human_readable() {
            let s = String::deserialize(d)?;
            hex::decode(&s)
                .ok()
                .and_then(|v| v.try_into().ok())
                .ok_or_else(|| serde::de::Error::custom("public key must be 64 hex digits"))?
        } else {
            <[u8; 32]>::deserialize(d)?
        };
        PublicKey::from_bytes(&bytes).map_err(serde::de::Error::custom)
    }
}

/// An ed25519 signing key of an offline TUF role. Held by admins (or a CI
/// pipeline), never by the controller.
pub struct SecretKey(SigningKey);

impl SecretKey {
    /// Builds a key from 32 secret bytes; the caller supplies the randomness,
    /// because this crate has none.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        SecretKey(SigningKey::from_bytes(&seed))
    }

    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    /// The text form written by `flottectl keys generate` (mode 0600).
    pub fn to_file_contents(&self) -> String {
        format!("{SECRET_HEADER}\n{}\n", hex::encode(self.0.to_bytes()))
    }

    pub fn from_file_contents(text: &str) -> Result<Self, KeyError> {
        parse_key_file(text, SECRET_HEADER, "secret").map(Self::from_seed)
    }

    /// The 32 secret bytes, for a TUF signer.
    pub fn seed(&self) -> [u8; 32] {
        self.0.to_bytes()
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey(public {})", self.public_key().to_hex())
    }
}

fn parse_key_file(text: &str, header: &'static str, expected: &'static str) -> Result<[u8; 32], KeyError> {
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    if lines.next() != Some(header) {
        return Err(KeyError::WrongHeader { expected, header });
    }
    lines
        .next()
        .and_then(|l| hex::decode(l).ok())
        .and_then(|v| v.try_into().ok())
        .ok_or(KeyError::BadEncoding { len: 32 })
}

/// Names the release an assignment asks for. It is only a claim: the agent
/// finds the release's metadata in the TUF targets it verified itself, and
/// uses this name for nothing but that look-up and its failure report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseRef {
    pub name: String,
    pub version: String,
}

impl ReleaseRef {
    /// `name@version`.
    pub fn label(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }
}

/// Metadata that passed verification. Only
/// [`crate::tuf::release::verified_release`] makes one, so a function that
/// takes it cannot be handed unverified metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedRelease {
    /// Boxed: the value travels in events and results, and is big.
    metadata: Box<ReleaseMetadata>,
    role: String,
    rollback_up_to: Option<String>,
}

impl VerifiedRelease {
    pub(crate) fn new(metadata: ReleaseMetadata, role: String, rollback_up_to: Option<String>) -> Self {
        VerifiedRelease { metadata: Box::new(metadata), role, rollback_up_to }
    }

    pub fn metadata(&self) -> &ReleaseMetadata {
        &self.metadata
    }

    /// The TUF targets role whose signatures vouched for the release.
    pub fn role(&self) -> &str {
        &self.role
    }

    /// The signed rollback authorisation: the newest active version this
    /// release may replace, if it may replace newer versions at all.
    pub fn rollback_up_to(&self) -> Option<&str> {
        self.rollback_up_to.as_deref()
    }

    /// Whether this release may replace `active` on a host (see
    /// [`crate::version::check_downgrade`]).
    pub fn may_replace(&self, active: &str) -> Result<(), crate::version::DowngradeError> {
        crate::version::check_downgrade(&self.metadata.name, &self.metadata.version, active, self.rollback_up_to())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> SecretKey {
        SecretKey::from_seed([seed; 32])
    }

    #[test]
    fn key_files_round_trip_and_wrong_kinds_are_named() {
        let k = key(3);
        let back = SecretKey::from_file_contents(&k.to_file_contents()).unwrap();
        assert_eq!(back.public_key(), k.public_key());
        assert_eq!(back.seed(), [3; 32]);
        let public = PublicKey::from_file_contents(&k.public_key().to_file_contents()).unwrap();
        assert_eq!(public, k.public_key());
        assert!(matches!(
            SecretKey::from_file_contents(&k.public_key().to_file_contents()),
            Err(KeyError::WrongHeader { expected: "secret", .. })
        ));
    }
}
