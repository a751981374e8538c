//! The four TUF roles' metadata in TUF's own JSON format, parsed from bytes.
//!
//! Guarantees:
//! - Input larger than the caller's limit is refused before it is parsed.
//! - An [`Envelope`] keeps the *received* `signed` object and its canonical
//!   bytes; signatures are checked over those bytes, so fields Flotte does
//!   not model (and that python-tuf keeps as "unrecognized") stay covered.
//! - The typed views below are read from that same `signed` value: what is
//!   verified is exactly what is used.
//! - Structural rules python-tuf enforces are enforced here too: `_type`,
//!   spec version 1.x, versions ≥ 1, exactly the four top-level roles in
//!   root, thresholds ≥ 1, no duplicate key ids in a role, no duplicate
//!   signatures by one key id, unique delegated role names that are not
//!   top-level names, non-empty target hashes.

use crate::ids::Timestamp;
use crate::tuf::error::{Result, TufError};
use crate::tuf::keys::Key;
use crate::tuf::{ROOT, SNAPSHOT, TARGETS, TIMESTAMP, canonical, expiry};
use serde::Deserialize;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// One entry of `signatures`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Signature {
    pub keyid: String,
    /// Hex, as written; decoded when verified.
    pub sig: String,
}

/// A metadata file split into what is signed and the signatures over it.
#[derive(Debug, Clone)]
pub struct Envelope {
    /// The received `signed` object, unknown fields included.
    pub signed: Value,
    /// Canonical JSON of `signed`: the bytes every signature covers.
    pub canonical: Vec<u8>,
    pub signatures: Vec<Signature>,
}

impl Envelope {
    /// Reads `bytes` (at most `max` of them) as metadata for `role`.
    pub fn parse(role: &str, bytes: &[u8], max: usize) -> Result<Envelope> {
        if bytes.len() > max {
            return Err(TufError::TooLarge { role: role.to_string(), len: bytes.len(), max });
        }
        let mut value: Value =
            serde_json::from_slice(bytes).map_err(|e| TufError::malformed(role, format!("not JSON: {e}")))?;
        let obj = value.as_object_mut().ok_or_else(|| TufError::malformed(role, "not a JSON object"))?;
        let signed = obj.remove("signed").ok_or_else(|| TufError::malformed(role, "no \"signed\" object"))?;
        if !signed.is_object() {
            return Err(TufError::malformed(role, "\"signed\" is not an object"));
        }
        let signatures: Vec<Signature> = obj
            .remove("signatures")
            .map(serde_json::from_value)
            .transpose()
            .map_err(|e| TufError::malformed(role, format!("bad signatures: {e}")))?
            .ok_or_else(|| TufError::malformed(role, "no \"signatures\" list"))?;
        let mut seen = BTreeSet::new();
        for s in &signatures {
            if !seen.insert(&s.keyid) {
                return Err(TufError::malformed(role, format!("two signatures by key id {}", s.keyid)));
            }
        }
        let canonical = canonical::encode(&signed).map_err(|e| TufError::malformed(role, e.to_string()))?;
        Ok(Envelope { signed, canonical, signatures })
    }
}

/// Fields every role has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Common {
    pub version: u64,
    pub spec_version: String,
    pub expires: Timestamp,
    /// `expires` as written, for messages.
    pub expires_text: String,
}

impl Common {
    /// Whether the metadata is expired at `now` (python-tuf: `now >= expires`).
    pub fn is_expired(&self, now: Timestamp) -> bool {
        now >= self.expires
    }
}

/// Keys and threshold of one role.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RoleKeys {
    pub keyids: Vec<String>,
    pub threshold: u64,
}

/// `root.json`.
#[derive(Debug, Clone)]
pub struct RootMetadata {
    pub common: Common,
    pub consistent_snapshot: bool,
    pub keys: BTreeMap<String, Key>,
    /// Exactly `root`, `timestamp`, `snapshot` and `targets`.
    pub roles: BTreeMap<String, RoleKeys>,
}

impl RootMetadata {
    /// The keys and threshold of a top-level role.
    pub fn role(&self, name: &str) -> Result<&RoleKeys> {
        self.roles.get(name).ok_or_else(|| TufError::malformed(ROOT, format!("no {name} role")))
    }
}

/// Version, and optionally length and hashes, of a metadata file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct MetaFile {
    pub version: u64,
    #[serde(default)]
    pub length: Option<u64>,
    #[serde(default)]
    pub hashes: Option<BTreeMap<String, String>>,
}

impl MetaFile {
    /// How many bytes to accept when downloading this file: the signed
    /// length if there is one, never more than `max`.
    pub fn download_limit(&self, max: usize) -> usize {
        self.length.map_or(max, |l| usize::try_from(l).unwrap_or(usize::MAX).min(max))
    }
}

/// `timestamp.json`.
#[derive(Debug, Clone)]
pub struct TimestampMetadata {
    pub common: Common,
    /// The `snapshot.json` entry of `meta`.
    pub snapshot_meta: MetaFile,
}

/// `snapshot.json`.
#[derive(Debug, Clone)]
pub struct SnapshotMetadata {
    pub common: Common,
    /// `targets.json` and every delegated role's `<name>.json`.
    pub meta: BTreeMap<String, MetaFile>,
}

/// One entry of `targets`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TargetFile {
    pub length: u64,
    /// Never empty.
    pub hashes: BTreeMap<String, String>,
    /// Application data (Flotte: package name, version, installer, platform).
    #[serde(default)]
    pub custom: Option<Value>,
}

impl TargetFile {
    /// The hash used as consistent-snapshot file name prefix: `sha256` if
    /// listed, else the first by name.
    pub fn prefix_hash(&self) -> Option<&str> {
        self.hashes.get("sha256").or_else(|| self.hashes.values().next()).map(String::as_str)
    }
}

/// Which target names a delegation covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DelegatedPaths {
    /// Shell-style patterns, matched segment by segment.
    Patterns(Vec<String>),
    /// Prefixes of the hex SHA-256 of the target name.
    HashPrefixes(Vec<String>),
    /// Neither was given: the role is trusted for nothing.
    Nothing,
}

/// One entry of `delegations.roles`.
#[derive(Debug, Clone)]
pub struct DelegatedRole {
    pub name: String,
    pub keys: RoleKeys,
    pub terminating: bool,
    pub paths: DelegatedPaths,
}

impl DelegatedRole {
    /// Whether this role is trusted for `target`.
    pub fn covers(&self, target: &str) -> bool {
        match &self.paths {
            DelegatedPaths::Patterns(p) => p.iter().any(|p| crate::tuf::path::matches_pattern(target, p)),
            DelegatedPaths::HashPrefixes(p) => p.iter().any(|p| crate::tuf::path::matches_hash_prefix(target, p)),
            DelegatedPaths::Nothing => false,
        }
    }
}

/// `delegations` of a targets role.
#[derive(Debug, Clone)]
pub struct Delegations {
    pub keys: BTreeMap<String, Key>,
    /// In order of trust: the search visits them in this order.
    pub roles: Vec<DelegatedRole>,
}

/// `targets.json` or a delegated role's metadata.
#[derive(Debug, Clone)]
pub struct TargetsMetadata {
    pub common: Common,
    pub targets: BTreeMap<String, TargetFile>,
    pub delegations: Option<Delegations>,
}

// ---- parsing ---------------------------------------------------------------

#[derive(Deserialize)]
struct RawCommon {
    #[serde(rename = "_type")]
    kind: String,
    spec_version: String,
    version: u64,
    expires: String,
}

#[derive(Deserialize)]
struct RawRoot {
    #[serde(default)]
    consistent_snapshot: Option<bool>,
    keys: BTreeMap<String, Value>,
    roles: BTreeMap<String, RoleKeys>,
}

#[derive(Deserialize)]
struct RawMeta {
    meta: BTreeMap<String, MetaFile>,
}

#[derive(Deserialize)]
struct RawTargets {
    targets: BTreeMap<String, TargetFile>,
    #[serde(default)]
    delegations: Option<RawDelegations>,
}

#[derive(Deserialize)]
struct RawDelegations {
    keys: BTreeMap<String, Value>,
    #[serde(default)]
    roles: Option<Vec<RawDelegatedRole>>,
    #[serde(default)]
    succinct_roles: Option<Value>,
}

#[derive(Deserialize)]
struct RawDelegatedRole {
    name: String,
    keyids: Vec<String>,
    threshold: u64,
    terminating: bool,
    #[serde(default)]
    paths: Option<Vec<String>>,
    #[serde(default)]
    path_hash_prefixes: Option<Vec<String>>,
}

/// Reads the fields every role has and checks `_type` is `kind`. `role` is
/// the role's name (differs from `kind` for delegated targets roles).
pub fn parse_common(kind: &str, role: &str, signed: &Value) -> Result<Common> {
    let raw: RawCommon =
        serde_json::from_value(signed.clone()).map_err(|e| TufError::malformed(role, e.to_string()))?;
    if raw.kind != kind {
        return Err(TufError::WrongType { expected: kind.to_string(), found: raw.kind });
    }
    let parts: Vec<&str> = raw.spec_version.split('.').collect();
    let numeric = parts.iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    if !numeric || !(2..=3).contains(&parts.len()) || parts[0] != "1" {
        return Err(TufError::UnsupportedSpecVersion {
            role: role.to_string(),
            version: raw.version,
            spec_version: raw.spec_version,
        });
    }
    if raw.version == 0 {
        return Err(TufError::malformed(role, "version 0 (versions start at 1)"));
    }
    let expires = expiry::parse(&raw.expires).ok_or_else(|| {
        TufError::malformed(role, format!("v{}: expires {:?} is not YYYY-MM-DDTHH:MM:SSZ", raw.version, raw.expires))
    })?;
    Ok(Common { version: raw.version, spec_version: raw.spec_version, expires, expires_text: raw.expires })
}

fn typed<T: for<'de> Deserialize<'de>>(role: &str, version: u64, signed: &Value) -> Result<T> {
    serde_json::from_value(signed.clone()).map_err(|e| TufError::malformed(role, format!("v{version}: {e}")))
}

fn parse_keys(role: &str, version: u64, raw: &BTreeMap<String, Value>) -> Result<BTreeMap<String, Key>> {
    raw.iter()
        .map(|(id, v)| {
            Key::from_json(v)
                .map(|k| (id.clone(), k))
                .map_err(|e| TufError::malformed(role, format!("v{version}: key {id}: {e}")))
        })
        .collect()
}

fn check_role_keys(role: &str, version: u64, of: &str, keys: &RoleKeys) -> Result<()> {
    if keys.threshold == 0 {
        return Err(TufError::malformed(role, format!("v{version}: role {of} has threshold 0")));
    }
    let unique: BTreeSet<&String> = keys.keyids.iter().collect();
    if unique.len() != keys.keyids.len() {
        return Err(TufError::malformed(role, format!("v{version}: role {of} lists a key id twice")));
    }
    Ok(())
}

impl RootMetadata {
    /// Reads a root's `signed` object (not its signatures).
    pub fn from_signed(signed: &Value) -> Result<Self> {
        let common = parse_common(ROOT, ROOT, signed)?;
        let v = common.version;
        let raw: RawRoot = typed(ROOT, v, signed)?;
        let names: BTreeSet<&str> = raw.roles.keys().map(String::as_str).collect();
        if names != BTreeSet::from([ROOT, TIMESTAMP, SNAPSHOT, TARGETS]) {
            return Err(TufError::malformed(
                ROOT,
                format!("v{v}: roles must be exactly root, timestamp, snapshot, targets"),
            ));
        }
        for (name, keys) in &raw.roles {
            check_role_keys(ROOT, v, name, keys)?;
        }
        let keys = parse_keys(ROOT, v, &raw.keys)?;
        Ok(RootMetadata {
            common,
            consistent_snapshot: raw.consistent_snapshot.unwrap_or(false),
            keys,
            roles: raw.roles,
        })
    }
}

impl TimestampMetadata {
    /// Reads a timestamp's `signed` object (not its signatures).
    pub fn from_signed(signed: &Value) -> Result<Self> {
        let common = parse_common(TIMESTAMP, TIMESTAMP, signed)?;
        let v = common.version;
        let mut raw: RawMeta = typed(TIMESTAMP, v, signed)?;
        let snapshot_meta = raw
            .meta
            .remove("snapshot.json")
            .ok_or_else(|| TufError::malformed(TIMESTAMP, format!("v{v}: no snapshot.json in meta")))?;
        check_meta(TIMESTAMP, v, "snapshot.json", &snapshot_meta)?;
        Ok(TimestampMetadata { common, snapshot_meta })
    }
}

impl SnapshotMetadata {
    /// Reads a snapshot's `signed` object (not its signatures).
    pub fn from_signed(signed: &Value) -> Result<Self> {
        let common = parse_common(SNAPSHOT, SNAPSHOT, signed)?;
        let v = common.version;
        let raw: RawMeta = typed(SNAPSHOT, v, signed)?;
        for (file, meta) in &raw.meta {
            check_meta(SNAPSHOT, v, file, meta)?;
        }
        Ok(SnapshotMetadata { common, meta: raw.meta })
    }
}

fn check_meta(role: &str, version: u64, file: &str, meta: &MetaFile) -> Result<()> {
    if meta.version == 0 {
        return Err(TufError::malformed(role, format!("v{version}: {file} has version 0")));
    }
    if meta.hashes.as_ref().is_some_and(BTreeMap::is_empty) {
        return Err(TufError::malformed(role, format!("v{version}: {file} has an empty hashes object")));
    }
    Ok(())
}

impl TargetsMetadata {
    /// Reads a targets role's `signed` object (not its signatures); `role`
    /// is the role's name: `targets` or a delegated role.
    pub fn from_signed(role: &str, signed: &Value) -> Result<Self> {
        let common = parse_common(TARGETS, role, signed)?;
        let v = common.version;
        let raw: RawTargets = typed(role, v, signed)?;
        if let Some((name, _)) = raw.targets.iter().find(|(_, t)| t.hashes.is_empty()) {
            return Err(TufError::malformed(role, format!("v{v}: target {name:?} has no hashes")));
        }
        let delegations = raw.delegations.map(|d| parse_delegations(role, v, d)).transpose()?;
        Ok(TargetsMetadata { common, targets: raw.targets, delegations })
    }
}

fn parse_delegations(role: &str, v: u64, raw: RawDelegations) -> Result<Delegations> {
    if raw.succinct_roles.is_some() {
        return Err(TufError::malformed(role, format!("v{v}: succinct_roles (TAP 15) is not supported")));
    }
    let keys = parse_keys(role, v, &raw.keys)?;
    let mut names = BTreeSet::new();
    let mut roles = Vec::new();
    for r in raw.roles.unwrap_or_default() {
        if r.name.is_empty() || [ROOT, TIMESTAMP, SNAPSHOT, TARGETS].contains(&r.name.as_str()) {
            return Err(TufError::malformed(role, format!("v{v}: delegated role name {:?} is not allowed", r.name)));
        }
        if !names.insert(r.name.clone()) {
            return Err(TufError::malformed(role, format!("v{v}: role {:?} is delegated twice", r.name)));
        }
        let role_keys = RoleKeys { keyids: r.keyids, threshold: r.threshold };
        check_role_keys(role, v, &r.name, &role_keys)?;
        let paths = match (r.paths, r.path_hash_prefixes) {
            (Some(_), Some(_)) => {
                return Err(TufError::malformed(
                    role,
                    format!("v{v}: role {:?} has both paths and path_hash_prefixes", r.name),
                ));
            }
            (Some(p), None) => DelegatedPaths::Patterns(p),
            (None, Some(h)) => DelegatedPaths::HashPrefixes(h),
            (None, None) => DelegatedPaths::Nothing,
        };
        roles.push(DelegatedRole { name: r.name, keys: role_keys, terminating: r.terminating, paths });
    }
    Ok(Delegations { keys, roles })
}
