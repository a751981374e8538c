//! Signing and verifying releases with ed25519.
//!
//! The signature covers the exact encoded metadata bytes, prefixed with a
//! domain separator, and the verifier decodes the metadata only *after* a
//! trusted signature checked out: the agent acts on exactly the bytes that
//! were signed. Verification uses `verify_strict`, which refuses weak keys and
//! malleable signatures.
//!
//! The agent depends only on the [`ReleaseVerifier`] trait. Today
//! [`TrustedKeys`] implements it (any one trusted key suffices); the TUF roles
//! of a later issue slot in as a second implementation.

use crate::digest::Sha256Digest;
use crate::error::{KeyError, VerifyError};
use crate::frame::decode_exact;
use crate::ids::Timestamp;
use crate::release::ReleaseMetadata;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt;

/// Prefix of every signed message, so a release signature can never be
/// replayed as a signature over anything else.
const RELEASE_DOMAIN: &[u8] = b"flotte-release-v1\0";
const SECRET_HEADER: &str = "flotte-ed25519-secret-key";
const PUBLIC_HEADER: &str = "flotte-ed25519-public-key";

/// Identifies a public key: the SHA-256 of its 32 bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KeyId(pub Sha256Digest);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.to_hex())
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", &self.0.to_hex()[..16])
    }
}

/// An ed25519 public key that releases can be verified against.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    pub fn key_id(&self) -> KeyId {
        KeyId(Sha256Digest::of(self.0.as_bytes()))
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

/// An ed25519 signing key. Held by admins (or a CI pipeline), never by the
/// controller by default.
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

    /// Signs `metadata`, producing the form that travels to agents.
    pub fn sign_release(&self, metadata: &ReleaseMetadata) -> SignedRelease {
        let bytes = postcard::to_stdvec(metadata).unwrap_or_default();
        let signature = self.0.sign(&signed_message(&bytes));
        SignedRelease {
            metadata: bytes,
            signatures: vec![ReleaseSignature { key_id: self.public_key().key_id(), signature: signature.to_bytes() }],
        }
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

fn signed_message(metadata: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(RELEASE_DOMAIN.len() + metadata.len());
    m.extend_from_slice(RELEASE_DOMAIN);
    m.extend_from_slice(metadata);
    m
}

/// One signature over a release's metadata bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseSignature {
    pub key_id: KeyId,
    #[serde(with = "signature_bytes")]
    pub signature: [u8; 64],
}

/// Release metadata as it travels: the exact signed bytes plus signatures.
/// Nothing may read `metadata` except through a [`ReleaseVerifier`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedRelease {
    /// postcard-encoded [`ReleaseMetadata`], exactly as signed.
    pub metadata: Vec<u8>,
    pub signatures: Vec<ReleaseSignature>,
}

/// Metadata that passed verification. Only a [`ReleaseVerifier`] can make
/// one, so a function that takes it cannot be handed unverified metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedRelease {
    metadata: ReleaseMetadata,
    signed_by: KeyId,
}

impl VerifiedRelease {
    pub fn metadata(&self) -> &ReleaseMetadata {
        &self.metadata
    }

    /// The trusted key whose signature was accepted.
    pub fn signed_by(&self) -> KeyId {
        self.signed_by
    }
}

/// Decides whether a signed release may be acted on. `now` is passed in so
/// that implementations with expiry (TUF) stay free of the clock.
pub trait ReleaseVerifier: Send + Sync {
    fn verify(&self, release: &SignedRelease, now: Timestamp) -> Result<VerifiedRelease, VerifyError>;
}

/// A set of trusted ed25519 keys; a release signed by any one of them is
/// accepted. Given to each agent at enrollment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustedKeys {
    keys: BTreeMap<KeyId, PublicKey>,
}

impl TrustedKeys {
    pub fn new(keys: impl IntoIterator<Item = PublicKey>) -> Self {
        TrustedKeys { keys: keys.into_iter().map(|k| (k.key_id(), k)).collect() }
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn keys(&self) -> impl Iterator<Item = &PublicKey> {
        self.keys.values()
    }
}

impl ReleaseVerifier for TrustedKeys {
    fn verify(&self, release: &SignedRelease, _now: Timestamp) -> Result<VerifiedRelease, VerifyError> {
        let first = release.signatures.first().ok_or(VerifyError::Unsigned)?;
        let message = signed_message(&release.metadata);
        let mut accepted = None;
        for sig in &release.signatures {
            let Some(key) = self.keys.get(&sig.key_id) else { continue };
            let signature = ed25519_dalek::Signature::from_bytes(&sig.signature);
            // A bad signature under a trusted key is an attack or corruption:
            // refuse the whole release rather than looking for another one.
            key.0.verify_strict(&message, &signature).map_err(|_| VerifyError::BadSignature { key_id: sig.key_id })?;
            accepted.get_or_insert(sig.key_id);
        }
        let signed_by = accepted.ok_or(VerifyError::UnknownKey { key_id: first.key_id })?;
        let metadata: ReleaseMetadata = decode_exact("release metadata", &release.metadata)
            .map_err(|e| VerifyError::MalformedMetadata { reason: e.to_string() })?;
        metadata.validate()?;
        Ok(VerifiedRelease { metadata, signed_by })
    }
}

mod signature_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(sig: &[u8; 64], s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() { s.serialize_str(&hex::encode(sig)) } else { s.serialize_bytes(sig) }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 64], D::Error> {
        let bytes = if d.is_human_readable() {
            hex::decode(String::deserialize(d)?).map_err(serde::de::Error::custom)?
        } else {
            <Vec<u8>>::deserialize(d)?
        };
        bytes.try_into().map_err(|_| serde::de::Error::custom("signature must be 64 bytes"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::release::InstallerKind;

    fn key(seed: u8) -> SecretKey {
        SecretKey::from_seed([seed; 32])
    }

    fn metadata() -> ReleaseMetadata {
        ReleaseMetadata {
            name: "app".into(),
            version: "1.2.0".into(),
            sha256: Sha256Digest::of(b"content"),
            size: 7,
            installer: InstallerKind::Archive,
            created_at: Timestamp::from_unix_millis(1),
            health: None,
            detect: None,
            backup_paths: vec![],
        }
    }

    #[test]
    fn a_release_signed_by_a_trusted_key_verifies_to_its_metadata() {
        let k = key(1);
        let verified =
            TrustedKeys::new([k.public_key()]).verify(&k.sign_release(&metadata()), Timestamp::EPOCH).unwrap();
        assert_eq!(verified.metadata(), &metadata());
        assert_eq!(verified.signed_by(), k.public_key().key_id());
    }

    #[test]
    fn flipping_any_metadata_byte_breaks_the_signature() {
        let k = key(1);
        let trusted = TrustedKeys::new([k.public_key()]);
        let signed = k.sign_release(&metadata());
        for i in 0..signed.metadata.len() {
            let mut tampered = signed.clone();
            tampered.metadata[i] ^= 0x01;
            assert_eq!(
                trusted.verify(&tampered, Timestamp::EPOCH),
                Err(VerifyError::BadSignature { key_id: k.public_key().key_id() }),
                "byte {i}"
            );
        }
    }

    #[test]
    fn a_signature_by_an_unknown_key_is_refused_by_name() {
        let stranger = key(2);
        let err = TrustedKeys::new([key(1).public_key()]).verify(&stranger.sign_release(&metadata()), Timestamp::EPOCH);
        assert_eq!(err, Err(VerifyError::UnknownKey { key_id: stranger.public_key().key_id() }));
    }

    #[test]
    fn an_unsigned_release_is_refused() {
        let mut signed = key(1).sign_release(&metadata());
        signed.signatures.clear();
        assert_eq!(
            TrustedKeys::new([key(1).public_key()]).verify(&signed, Timestamp::EPOCH),
            Err(VerifyError::Unsigned)
        );
    }

    #[test]
    fn a_key_id_swapped_onto_a_foreign_signature_is_a_bad_signature() {
        let trusted = key(1);
        let mut signed = key(2).sign_release(&metadata());
        signed.signatures[0].key_id = trusted.public_key().key_id();
        assert!(matches!(
            TrustedKeys::new([trusted.public_key()]).verify(&signed, Timestamp::EPOCH),
            Err(VerifyError::BadSignature { .. })
        ));
    }

    #[test]
    fn signed_metadata_with_a_traversal_name_is_refused_after_the_signature() {
        let k = key(1);
        let mut m = metadata();
        m.name = "../etc".into();
        assert!(matches!(
            TrustedKeys::new([k.public_key()]).verify(&k.sign_release(&m), Timestamp::EPOCH),
            Err(VerifyError::InvalidName(_))
        ));
    }

    #[test]
    fn key_files_round_trip_and_wrong_kinds_are_named() {
        let k = key(3);
        let back = SecretKey::from_file_contents(&k.to_file_contents()).unwrap();
        assert_eq!(back.public_key(), k.public_key());
        let public = PublicKey::from_file_contents(&k.public_key().to_file_contents()).unwrap();
        assert_eq!(public, k.public_key());
        assert!(matches!(
            SecretKey::from_file_contents(&k.public_key().to_file_contents()),
            Err(KeyError::WrongHeader { expected: "secret", .. })
        ));
    }
}
