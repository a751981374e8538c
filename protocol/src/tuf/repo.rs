//! The repository side: builds the `signed` part of each role and signs it
//! with ed25519, so the controller (and `flottectl`) can publish metadata
//! that Flotte's client and python-tuf's `ngclient` both accept.
//!
//! Guarantees: output is canonical JSON (`{"signatures":[…],"signed":{…}}`,
//! itself canonical), signatures cover the canonical `signed` bytes, key ids
//! are computed as securesystemslib computes them, and `spec_version` is the
//! one python-tuf writes. Pure: keys come in as seeds, times as parameters.

use crate::ids::Timestamp;
use crate::tuf::canonical::{self, CanonicalError};
use crate::tuf::keys::default_keyid;
use crate::tuf::{expiry, hashing};
use ed25519_dalek::Signer as _;
use serde_json::{Map, Value, json};

/// The specification version written into metadata.
pub const SPEC_VERSION: &str = "1.0.31";

/// A public key as `keys` maps list it, with its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKeyEntry {
    pub keyid: String,
    /// `{"keytype", "scheme", "keyval": {"public"}}`.
    pub json: Value,
}

impl PublicKeyEntry {
    /// An ed25519 key, with its default key id.
    pub fn ed25519(public: &[u8; 32]) -> Self {
        let public = hex::encode(public);
        let keyid = default_keyid("ed25519", "ed25519", &public);
        PublicKeyEntry { keyid, json: json!({"keytype": "ed25519", "scheme": "ed25519", "keyval": {"public": public}}) }
    }
}

/// An ed25519 signing key.
pub struct Ed25519Signer {
    key: ed25519_dalek::SigningKey,
    public: PublicKeyEntry,
}

impl Ed25519Signer {
    /// The key whose secret scalar is derived from `seed` (RFC 8032).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        let key = ed25519_dalek::SigningKey::from_bytes(seed);
        let public = PublicKeyEntry::ed25519(key.verifying_key().as_bytes());
        Ed25519Signer { key, public }
    }

    /// The public half, as root and delegations list it.
    pub fn public(&self) -> &PublicKeyEntry {
        &self.public
    }

    /// The key id signatures name.
    pub fn keyid(&self) -> &str {
        &self.public.keyid
    }
}

/// The keys of one role and how many must sign.
#[derive(Debug, Clone, Copy)]
pub struct RoleSpec<'a> {
    pub keys: &'a [&'a PublicKeyEntry],
    pub threshold: u64,
}

impl RoleSpec<'_> {
    fn to_json(self) -> Value {
        json!({"keyids": self.keys.iter().map(|k| k.keyid.as_str()).collect::<Vec<_>>(), "threshold": self.threshold})
    }

    fn add_keys(self, keys: &mut Map<String, Value>) {
        for k in self.keys {
            keys.insert(k.keyid.clone(), k.json.clone());
        }
    }
}

/// Everything a root lists.
#[derive(Debug, Clone, Copy)]
pub struct RootSpec<'a> {
    pub version: u64,
    pub expires: Timestamp,
    pub consistent_snapshot: bool,
    pub root: RoleSpec<'a>,
    pub timestamp: RoleSpec<'a>,
    pub snapshot: RoleSpec<'a>,
    pub targets: RoleSpec<'a>,
}

impl<'a> RootSpec<'a> {
    /// A root in which one set of keys holds every role, without consistent
    /// snapshots: the shape of test and benchmark repositories.
    pub fn one_role_for_all(version: u64, expires: Timestamp, role: RoleSpec<'a>) -> Self {
        RootSpec {
            version,
            expires,
            consistent_snapshot: false,
            root: role,
            timestamp: role,
            snapshot: role,
            targets: role,
        }
    }
}

/// The `signed` part of a root.
pub fn root(spec: &RootSpec<'_>) -> Value {
    let mut keys = Map::new();
    let roles =
        [("root", spec.root), ("timestamp", spec.timestamp), ("snapshot", spec.snapshot), ("targets", spec.targets)];
    let mut role_map = Map::new();
    for (name, role) in roles {
        role.add_keys(&mut keys);
        role_map.insert(name.to_string(), role.to_json());
    }
    json!({
        "_type": "root",
        "spec_version": SPEC_VERSION,
        "version": spec.version,
        "expires": expiry::format(spec.expires),
        "consistent_snapshot": spec.consistent_snapshot,
        "keys": keys,
        "roles": role_map,
    })
}

/// One delegation of a targets role.
#[derive(Debug, Clone, Copy)]
pub struct DelegationSpec<'a> {
    pub name: &'a str,
    pub keys: RoleSpec<'a>,
    pub terminating: bool,
    /// Shell-style patterns, e.g. `team-x/*`.
    pub paths: &'a [&'a str],
}

/// The `targets` entry of a file: its length and SHA-256, plus `custom`.
pub fn target_entry(bytes: &[u8], custom: Option<Value>) -> Value {
    let mut entry = json!({"length": bytes.len(), "hashes": {"sha256": hashing::sha256_hex(bytes)}});
    if let (Some(custom), Some(obj)) = (custom, entry.as_object_mut()) {
        obj.insert("custom".into(), custom);
    }
    entry
}

/// The `signed` part of a targets role: `targets` maps names to
/// [`target_entry`] values.
pub fn targets(
    version: u64,
    expires: Timestamp,
    targets: Map<String, Value>,
    delegations: &[DelegationSpec<'_>],
) -> Value {
    let mut signed = json!({
        "_type": "targets",
        "spec_version": SPEC_VERSION,
        "version": version,
        "expires": expiry::format(expires),
        "targets": targets,
    });
    if !delegations.is_empty() {
        let mut keys = Map::new();
        let roles: Vec<Value> = delegations
            .iter()
            .map(|d| {
                d.keys.add_keys(&mut keys);
                let mut role = d.keys.to_json();
                if let Some(obj) = role.as_object_mut() {
                    obj.insert("name".into(), d.name.into());
                    obj.insert("terminating".into(), d.terminating.into());
                    obj.insert("paths".into(), d.paths.iter().map(|p| Value::from(*p)).collect());
                }
                role
            })
            .collect();
        if let Some(obj) = signed.as_object_mut() {
            obj.insert("delegations".into(), json!({"keys": keys, "roles": roles}));
        }
    }
    signed
}

/// The `signed` part of a snapshot: the version of `targets` and of every
/// delegated role, by role name.
pub fn snapshot(version: u64, expires: Timestamp, roles: &[(&str, u64)]) -> Value {
    let meta: Map<String, Value> = roles.iter().map(|(r, v)| (format!("{r}.json"), json!({"version": v}))).collect();
    json!({
        "_type": "snapshot",
        "spec_version": SPEC_VERSION,
        "version": version,
        "expires": expiry::format(expires),
        "meta": meta,
    })
}

/// The `signed` part of a timestamp. With `snapshot_bytes`, the snapshot's
/// length and SHA-256 are listed too.
pub fn timestamp(version: u64, expires: Timestamp, snapshot_version: u64, snapshot_bytes: Option<&[u8]>) -> Value {
    let mut meta = json!({"version": snapshot_version});
    if let (Some(bytes), Some(obj)) = (snapshot_bytes, meta.as_object_mut()) {
        obj.insert("length".into(), bytes.len().into());
        obj.insert("hashes".into(), json!({"sha256": hashing::sha256_hex(bytes)}));
    }
    json!({
        "_type": "timestamp",
        "spec_version": SPEC_VERSION,
        "version": version,
        "expires": expiry::format(expires),
        "meta": {"snapshot.json": meta},
    })
}

/// Signs `signed` with every signer and returns the metadata file's bytes.
pub fn sign(signed: &Value, signers: &[&Ed25519Signer]) -> Result<Vec<u8>, CanonicalError> {
    let payload = canonical::encode(signed)?;
    let signatures: Vec<Value> = signers
        .iter()
        .map(|s| json!({"keyid": s.keyid(), "sig": hex::encode(s.key.sign(&payload).to_bytes())}))
        .collect();
    canonical::encode(&json!({"signatures": signatures, "signed": signed}))
}
