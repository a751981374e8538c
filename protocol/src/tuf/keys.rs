//! Public keys as TUF metadata lists them, and signature verification.
//!
//! Supported (`keytype` / `scheme`):
//! - `ed25519` / `ed25519`: hex public key, `verify_strict` (no weak keys, no
//!   malleable signatures).
//! - `ecdsa` (or the older `ecdsa-sha2-nistp256`) / `ecdsa-sha2-nistp256`:
//!   PEM SubjectPublicKeyInfo, DER signatures over SHA-256, as
//!   securesystemslib produces them.
//! - `rsa` / `rsassa-pss-sha256` and `rsa` / `rsa-pkcs1v15-sha256`: PEM
//!   SubjectPublicKeyInfo (or PKCS#1), at least 2048 bits. PSS accepts the
//!   salt lengths real signers use: the digest length (securesystemslib,
//!   go-tuf) and the maximum (`PSS.MAX_LENGTH`).
//!
//! Anything else — an unknown key type or scheme, key material that does not
//! decode — still parses, as a [`Key`] that refuses every signature with a
//! reason. Such a key never counts toward a threshold, and a metadata file
//! that merely lists one (for another role, or for a future client) stays
//! usable.
//!
//! [`Key::identity`] is the key material itself: thresholds count distinct
//! identities, never key ids, which a repository chooses and could repeat.

use crate::tuf::canonical;
use p256::pkcs8::DecodePublicKey as _;
use rsa::pkcs1::DecodeRsaPublicKey as _;
use rsa::traits::PublicKeyParts as _;
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};

/// Smallest RSA modulus accepted, in bits.
const MIN_RSA_BITS: usize = 2048;
/// Length of a SHA-256 digest, the PSS salt length most signers use.
const SHA256_LEN: usize = 32;

/// One public key of a `keys` map.
#[derive(Clone, Debug)]
pub struct Key {
    keytype: String,
    scheme: String,
    kind: Kind,
}

#[derive(Clone, Debug)]
enum Kind {
    Ed25519(ed25519_dalek::VerifyingKey),
    EcdsaP256(p256::ecdsa::VerifyingKey),
    Rsa {
        key: rsa::RsaPublicKey,
        pss: bool,
    },
    /// Never verifies anything; the string says why.
    Refused(String),
}

impl Key {
    /// Reads a key object (`{"keytype", "scheme", "keyval": {"public"}}`).
    /// Errs only when the object does not have that shape; a key Flotte
    /// cannot use becomes a refusing key instead.
    pub fn from_json(value: &Value) -> Result<Key, String> {
        let obj = value.as_object().ok_or("a key is not a JSON object")?;
        let keytype = str_field(obj, "keytype")?;
        let scheme = str_field(obj, "scheme")?;
        let public = obj
            .get("keyval")
            .and_then(Value::as_object)
            .and_then(|kv| kv.get("public"))
            .and_then(Value::as_str)
            .ok_or("a key has no keyval.public string")?;
        let kind = match decode(&keytype, &scheme, public) {
            Ok(kind) => kind,
            Err(reason) => Kind::Refused(reason),
        };
        Ok(Key { keytype, scheme, kind })
    }

    /// `keytype` as written.
    pub fn keytype(&self) -> &str {
        &self.keytype
    }

    /// `scheme` as written.
    pub fn scheme(&self) -> &str {
        &self.scheme
    }

    /// Whether this key can verify signatures at all.
    pub fn is_supported(&self) -> bool {
        !matches!(self.kind, Kind::Refused(_))
    }

    /// The key material, algorithm-tagged; `None` for a refused key. Two
    /// entries with the same identity are the same key, whatever their ids.
    pub fn identity(&self) -> Option<Vec<u8>> {
        let (tag, bytes): (&[u8], Vec<u8>) = match &self.kind {
            Kind::Ed25519(k) => (b"ed25519:", k.as_bytes().to_vec()),
            Kind::EcdsaP256(k) => (b"ecdsa-p256:", k.to_encoded_point(false).as_bytes().to_vec()),
            Kind::Rsa { key, .. } => {
                let mut v = key.n().to_bytes_be();
                v.push(b':');
                v.extend_from_slice(&key.e().to_bytes_be());
                (b"rsa:", v)
            }
            Kind::Refused(_) => return None,
        };
        Some([tag, &bytes].concat())
    }

    /// Checks `sig` (raw bytes, already hex-decoded) over `msg`.
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> Result<(), String> {
        const BAD: &str = "signature does not verify";
        match &self.kind {
            Kind::Refused(reason) => Err(reason.clone()),
            Kind::Ed25519(key) => {
                let sig = ed25519_dalek::Signature::from_slice(sig).map_err(|_| "not a 64-byte ed25519 signature")?;
                key.verify_strict(msg, &sig).map_err(|_| BAD.to_string())
            }
            Kind::EcdsaP256(key) => {
                use p256::ecdsa::signature::Verifier as _;
                let sig = p256::ecdsa::Signature::from_der(sig).map_err(|_| "not a DER ECDSA P-256 signature")?;
                key.verify(msg, &sig).map_err(|_| BAD.to_string())
            }
            Kind::Rsa { key, pss } => {
                let hashed = Sha256::digest(msg);
                if *pss {
                    let em_len = (key.n().bits() - 1).div_ceil(8);
                    let max_salt = em_len.saturating_sub(SHA256_LEN + 2);
                    for salt in [SHA256_LEN, max_salt] {
                        if key.verify(rsa::Pss::new_with_salt::<Sha256>(salt), &hashed, sig).is_ok() {
                            return Ok(());
                        }
                    }
                    Err(BAD.to_string())
                } else {
                    key.verify(rsa::Pkcs1v15Sign::new::<Sha256>(), &hashed, sig).map_err(|_| BAD.to_string())
                }
            }
        }
    }
}

/// The key id securesystemslib computes: the SHA-256 (hex) of the canonical
/// JSON of `{"keytype", "scheme", "keyval"}`. Only the repository side uses
/// it; a client accepts whatever ids the metadata assigns.
pub fn default_keyid(keytype: &str, scheme: &str, public: &str) -> String {
    let value = serde_json::json!({"keytype": keytype, "scheme": scheme, "keyval": {"public": public}});
    // Strings only: canonical encoding cannot fail.
    let bytes = canonical::encode(&value).unwrap_or_default();
    hex::encode(Sha256::digest(bytes))
}

fn str_field(obj: &Map<String, Value>, name: &str) -> Result<String, String> {
    obj.get(name).and_then(Value::as_str).map(str::to_string).ok_or_else(|| format!("a key has no {name} string"))
}

fn decode(keytype: &str, scheme: &str, public: &str) -> Result<Kind, String> {
    match (keytype, scheme) {
        ("ed25519", "ed25519") => {
            let bytes: [u8; 32] = hex::decode(public)
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or("ed25519 public key is not 32 hex-encoded bytes")?;
            ed25519_dalek::VerifyingKey::from_bytes(&bytes)
                .map(Kind::Ed25519)
                .map_err(|_| "ed25519 public key is not a valid point".to_string())
        }
        ("ecdsa" | "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp256") => {
            p256::ecdsa::VerifyingKey::from_public_key_pem(public)
                .map(Kind::EcdsaP256)
                .map_err(|_| "ecdsa public key is not a PEM P-256 SubjectPublicKeyInfo".to_string())
        }
        ("rsa", "rsassa-pss-sha256" | "rsa-pkcs1v15-sha256") => {
            let key = rsa::RsaPublicKey::from_public_key_pem(public)
                .or_else(|_| rsa::RsaPublicKey::from_pkcs1_pem(public))
                .map_err(|_| "rsa public key is not PEM SubjectPublicKeyInfo or PKCS#1".to_string())?;
            if key.n().bits() < MIN_RSA_BITS {
                return Err(format!("rsa key of {} bits is shorter than {MIN_RSA_BITS}", key.n().bits()));
            }
            Ok(Kind::Rsa { key, pss: scheme == "rsassa-pss-sha256" })
        }
        _ => Err(format!("unsupported key type {keytype:?} with scheme {scheme:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_types_and_schemes_parse_but_never_verify() {
        for (keytype, scheme) in
            [("dsa", "dsa-sha1"), ("ed25519", "ed448"), ("ecdsa", "ecdsa-sha2-nistp384"), ("rsa", "rsassa-pss-sha512")]
        {
            let key =
                Key::from_json(&json!({"keytype": keytype, "scheme": scheme, "keyval": {"public": "00"}})).unwrap();
            assert!(!key.is_supported());
            assert!(key.identity().is_none());
            let err = key.verify(b"msg", &[0; 64]).unwrap_err();
            assert!(err.contains("unsupported key type") || err.contains("not"), "{err}");
        }
    }

    #[test]
    fn a_key_without_public_material_is_malformed() {
        assert!(Key::from_json(&json!({"keytype": "ed25519", "scheme": "ed25519", "keyval": {}})).is_err());
        assert!(Key::from_json(&json!("ed25519")).is_err());
    }

    #[test]
    fn signatures_made_by_securesystemslib_verify_and_tampered_ones_do_not() {
        let data: Value = serde_json::from_str(include_str!("testdata/python_signatures.json")).unwrap();
        let msg = data["message"].as_str().unwrap().as_bytes();
        let vectors = data["vectors"].as_array().unwrap();
        assert_eq!(vectors.len(), 4);
        for v in vectors {
            let name = v["name"].as_str().unwrap();
            let key = Key::from_json(&v["key"]).unwrap();
            assert!(key.is_supported(), "{name}");
            let sig = hex::decode(v["sig"].as_str().unwrap()).unwrap();
            key.verify(msg, &sig).unwrap_or_else(|e| panic!("{name}: {e}"));
            let mut tampered = msg.to_vec();
            tampered[3] ^= 1;
            assert!(key.verify(&tampered, &sig).is_err(), "{name}: tampered message");
            let mut bad_sig = sig.clone();
            let last = bad_sig.len() - 1;
            bad_sig[last] ^= 1;
            assert!(key.verify(msg, &bad_sig).is_err(), "{name}: tampered signature");
        }
    }

    #[test]
    fn the_deprecated_ecdsa_keytype_is_the_same_key() {
        let data: Value = serde_json::from_str(include_str!("testdata/python_signatures.json")).unwrap();
        let mut v = data["vectors"][0]["key"].clone();
        let modern = Key::from_json(&v).unwrap();
        v["keytype"] = "ecdsa-sha2-nistp256".into();
        let old = Key::from_json(&v).unwrap();
        assert!(old.is_supported());
        assert_eq!(old.identity(), modern.identity());
    }

    #[test]
    fn default_keyid_matches_securesystemslib() {
        // securesystemslib 1.6: compute_default_keyid("ed25519", "ed25519", {"public": "ab" * 32})
        let id = default_keyid("ed25519", "ed25519", &"ab".repeat(32));
        assert_eq!(id, "05584cc3bfabb85de26cb80479f075fa802c97add45fd61feebaa0423da7f57a");
    }
}
