//! Threat tests: one per row of the "Signed metadata and packages" table
//! (threats.md) that the metadata layer answers, written as specifications.
//! Repositories are built with this crate's own signer ([`super::repo`]);
//! the interop tests do the same against python-tuf.

use super::error::TufError;
use super::hashing::Checker;
use super::repo::{self, DelegationSpec, Ed25519Signer, PublicKeyEntry, RoleSpec, RootSpec};
use super::{MAX_TIMESTAMP_LEN, TargetLookup, TimestampUpdate, TrustedMetadataSet};
use crate::ids::Timestamp;
use serde_json::{Map, Value, json};

const DAY: u64 = 86_400_000;

/// Some fixed instant; the clock is always passed in.
fn at(days: u64) -> Timestamp {
    Timestamp::from_unix_millis(1_900_000_000_000 + days * DAY)
}

fn now() -> Timestamp {
    at(0)
}

fn key(n: u8) -> Ed25519Signer {
    Ed25519Signer::from_seed(&[n; 32])
}

fn sign(signed: &Value, by: &[&Ed25519Signer]) -> Vec<u8> {
    repo::sign(signed, by).unwrap()
}

/// A repository whose roles each have one key, with versions to bump.
struct Repo {
    root_key: Ed25519Signer,
    timestamp_key: Ed25519Signer,
    snapshot_key: Ed25519Signer,
    targets_key: Ed25519Signer,
    root_version: u64,
    timestamp_version: u64,
    snapshot_version: u64,
    targets_version: u64,
    expires: Timestamp,
    files: Vec<(String, Vec<u8>)>,
    delegations: Vec<(String, Ed25519Signer, bool, Vec<String>)>,
}

impl Repo {
    fn new() -> Self {
        Repo {
            root_key: key(1),
            timestamp_key: key(2),
            snapshot_key: key(3),
            targets_key: key(4),
            root_version: 1,
            timestamp_version: 1,
            snapshot_version: 1,
            targets_version: 1,
            expires: at(30),
            files: vec![("app.tar".into(), b"app bytes".to_vec())],
            delegations: Vec::new(),
        }
    }

    fn root_signed(&self) -> Value {
        let (r, t, s, g) = (
            self.root_key.public(),
            self.timestamp_key.public(),
            self.snapshot_key.public(),
            self.targets_key.public(),
        );
        repo::root(&RootSpec {
            version: self.root_version,
            expires: self.expires,
            consistent_snapshot: false,
            root: RoleSpec { keys: &[r], threshold: 1 },
            timestamp: RoleSpec { keys: &[t], threshold: 1 },
            snapshot: RoleSpec { keys: &[s], threshold: 1 },
            targets: RoleSpec { keys: &[g], threshold: 1 },
        })
    }

    fn root(&self) -> Vec<u8> {
        sign(&self.root_signed(), &[&self.root_key])
    }

    fn targets_signed(&self) -> Value {
        let files: Map<String, Value> =
            self.files.iter().map(|(n, b)| (n.clone(), repo::target_entry(b, None))).collect();
        let publics: Vec<&PublicKeyEntry> = self.delegations.iter().map(|d| d.1.public()).collect();
        let paths: Vec<Vec<&str>> = self.delegations.iter().map(|d| d.3.iter().map(String::as_str).collect()).collect();
        let keys: Vec<[&PublicKeyEntry; 1]> = publics.iter().map(|p| [*p]).collect();
        let specs: Vec<DelegationSpec<'_>> = self
            .delegations
            .iter()
            .enumerate()
            .map(|(i, d)| DelegationSpec {
                name: &d.0,
                keys: RoleSpec { keys: &keys[i], threshold: 1 },
                terminating: d.2,
                paths: &paths[i],
            })
            .collect();
        repo::targets(self.targets_version, self.expires, files, &specs)
    }

    fn targets(&self) -> Vec<u8> {
        sign(&self.targets_signed(), &[&self.targets_key])
    }

    fn snapshot_signed(&self) -> Value {
        let mut roles = vec![("targets", self.targets_version)];
        roles.extend(self.delegations.iter().map(|d| (d.0.as_str(), 1)));
        repo::snapshot(self.snapshot_version, self.expires, &roles)
    }

    fn snapshot(&self) -> Vec<u8> {
        sign(&self.snapshot_signed(), &[&self.snapshot_key])
    }

    fn timestamp(&self) -> Vec<u8> {
        sign(
            &repo::timestamp(self.timestamp_version, self.expires, self.snapshot_version, None),
            &[&self.timestamp_key],
        )
    }
}

fn refresh(set: &mut TrustedMetadataSet, repo: &Repo, now: Timestamp) -> Result<(), TufError> {
    set.update_timestamp(&repo.timestamp(), now)?;
    set.update_snapshot(&repo.snapshot(), now)?;
    set.update_targets(&repo.targets(), now)?;
    Ok(())
}

/// A client that restarted: trusted root plus the persisted timestamp and
/// snapshot of its last successful update.
fn restarted(root: &[u8], timestamp: &[u8], snapshot: &[u8]) -> TrustedMetadataSet {
    let mut set = TrustedMetadataSet::new(root).unwrap();
    set.restore_timestamp(timestamp).unwrap();
    set.restore_snapshot(snapshot).unwrap();
    set
}

fn flip_byte_in_signed(bytes: &[u8]) -> Vec<u8> {
    // The version digit of `"version":N` inside `signed` changes N.
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    let at = text.rfind("\"version\":").unwrap() + "\"version\":".len();
    let mut out = bytes.to_vec();
    out[at] = if out[at] == b'9' { b'8' } else { out[at] + 1 };
    out
}

#[test]
fn a_repository_built_by_the_signer_is_accepted() {
    let repo = Repo::new();
    let mut set = TrustedMetadataSet::new(&repo.root()).unwrap();
    refresh(&mut set, &repo, now()).unwrap();
    let TargetLookup::Found(file) = set.target("app.tar").unwrap() else { panic!("app.tar not found") };
    assert_eq!(file.length, 9);
    assert_eq!(set.target("other.tar").unwrap(), TargetLookup::NotFound);
}

#[test]
fn tampered_metadata_rejected() {
    let repo = Repo::new();
    let mut set = TrustedMetadataSet::new(&repo.root()).unwrap();
    set.update_timestamp(&repo.timestamp(), now()).unwrap();

    let payload_flipped = flip_byte_in_signed(&repo.snapshot());
    let err = set.update_snapshot(&payload_flipped, now()).unwrap_err();
    assert!(matches!(err, TufError::Threshold { ref role, .. } if role == "snapshot"), "{err}");

    let mut sig_flipped = repo.snapshot();
    let text = String::from_utf8(sig_flipped.clone()).unwrap();
    let sig_at = text.find("\"sig\":\"").unwrap() + 7;
    sig_flipped[sig_at] = if sig_flipped[sig_at] == b'0' { b'1' } else { b'0' };
    let err = set.update_snapshot(&sig_flipped, now()).unwrap_err();
    assert!(err.to_string().contains("snapshot v1: 0 of the required 1 signatures"), "{err}");
    assert!(set.snapshot().is_none(), "trusted state unchanged");

    // Unknown fields are signed too: removing one breaks the signature.
    let mut signed = repo.snapshot_signed();
    signed["x-vendor"] = json!({"b": 1, "a": [true, null]});
    let with_extra = sign(&signed, &[&repo.snapshot_key]);
    let mut doc: Value = serde_json::from_slice(&with_extra).unwrap();
    doc["signed"].as_object_mut().unwrap().remove("x-vendor");
    let stripped = serde_json::to_vec(&doc).unwrap();
    assert!(set.update_snapshot(&stripped, now()).is_err());
    set.update_snapshot(&with_extra, now()).unwrap();

    // The root itself: a tampered trusted root is refused at start.
    assert!(TrustedMetadataSet::new(&flip_byte_in_signed(&repo.root())).is_err());
}

#[test]
fn threshold_counts_unique_keys() {
    let (k1, k2, k3) = (key(11), key(12), key(13));
    let repo = Repo::new();
    // A root whose targets role is 2-of-3, where "alias" is k1 under a second id.
    let alias = PublicKeyEntry { keyid: "a1a5".repeat(16), json: k1.public().json.clone() };
    let mut root = repo.root_signed();
    root["keys"][&alias.keyid] = alias.json.clone();
    for k in [&k1, &k2, &k3] {
        root["keys"][k.keyid()] = k.public().json.clone();
    }
    root["roles"]["targets"] = json!({"keyids": [k1.keyid(), alias.keyid, k3.keyid()], "threshold": 2});
    let root_bytes = sign(&root, &[&repo.root_key]);

    let update = |targets: &[u8]| {
        let mut set = TrustedMetadataSet::new(&root_bytes).unwrap();
        set.update_timestamp(&repo.timestamp(), now()).unwrap();
        set.update_snapshot(&repo.snapshot(), now()).unwrap();
        set.update_targets(targets, now()).map(|_| ())
    };
    let signed = repo.targets_signed();
    let by_k1 = sign(&signed, &[&k1]);
    let k1_sig: Value = serde_json::from_slice::<Value>(&by_k1).unwrap()["signatures"][0].clone();

    // The same signature twice.
    let mut doc: Value = serde_json::from_slice(&by_k1).unwrap();
    doc["signatures"] = json!([k1_sig.clone(), k1_sig.clone()]);
    let err = update(&serde_json::to_vec(&doc).unwrap()).unwrap_err();
    assert!(err.to_string().contains("two signatures by key id"), "{err}");

    // The same key under two ids.
    let mut aliased = k1_sig.clone();
    aliased["keyid"] = alias.keyid.clone().into();
    doc["signatures"] = json!([k1_sig, aliased]);
    let err = update(&serde_json::to_vec(&doc).unwrap()).unwrap_err();
    assert!(
        matches!(err, TufError::Threshold { valid: 1, threshold: 2, ref details, .. } if details.contains("same key")),
        "{err}"
    );

    // A key id listed twice in a role is refused outright.
    let mut twice = root.clone();
    twice["roles"]["targets"]["keyids"] = json!([k1.keyid(), k1.keyid(), k3.keyid()]);
    let err = TrustedMetadataSet::new(&sign(&twice, &[&repo.root_key])).unwrap_err();
    assert!(err.to_string().contains("lists a key id twice"), "{err}");

    // Two distinct keys meet the threshold; k2 is not a targets key.
    assert!(update(&sign(&signed, &[&k1, &k2])).is_err());
    update(&sign(&signed, &[&k1, &k3])).unwrap();
}

#[test]
fn unknown_key_types_never_count_toward_a_threshold() {
    let repo = Repo::new();
    let mut root = repo.root_signed();
    root["keys"]["f00d"] = json!({"keytype": "sphincs", "scheme": "sphincs-shake", "keyval": {"public": "00"}});
    root["roles"]["timestamp"] = json!({"keyids": [repo.timestamp_key.keyid(), "f00d"], "threshold": 2});
    let mut set = TrustedMetadataSet::new(&sign(&root, &[&repo.root_key])).unwrap();
    let mut doc: Value = serde_json::from_slice(&repo.timestamp()).unwrap();
    let mut forged = doc["signatures"][0].clone();
    forged["keyid"] = "f00d".into();
    doc["signatures"].as_array_mut().unwrap().push(forged);
    let err = set.update_timestamp(&serde_json::to_vec(&doc).unwrap(), now()).unwrap_err();
    assert!(
        matches!(err, TufError::Threshold { valid: 1, ref details, .. } if details.contains("unsupported key type \"sphincs\"")),
        "{err}"
    );
}

#[test]
fn root_rotation() {
    let mut repo = Repo::new();
    let v1 = repo.root();
    let (b, c, d) = (key(21), key(22), key(23));
    let v2_signed = {
        let mut r = repo.root_signed();
        r["version"] = 2.into();
        for k in [&b, &c, &d] {
            r["keys"][k.keyid()] = k.public().json.clone();
        }
        r["roles"]["root"] = json!({"keyids": [b.keyid(), c.keyid(), d.keyid()], "threshold": 2});
        r
    };

    // Missing the old threshold (A did not sign): refused.
    let mut set = TrustedMetadataSet::new(&v1).unwrap();
    let err = set.update_root(&sign(&v2_signed, &[&b, &c])).unwrap_err();
    assert!(matches!(err, TufError::Threshold { ref role, version: 2, .. } if role == "root"), "{err}");
    // Missing the new threshold (only one of B, C, D): refused.
    let err = set.update_root(&sign(&v2_signed, &[&repo.root_key, &b])).unwrap_err();
    assert!(matches!(err, TufError::Threshold { valid: 1, threshold: 2, .. }), "{err}");
    assert_eq!(set.root().common.version, 1, "trusted root unchanged");

    // 1-of-1 → 2-of-3, signed by the old key and two new ones: accepted.
    set.update_root(&sign(&v2_signed, &[&repo.root_key, &b, &d])).unwrap();
    assert_eq!(set.root().common.version, 2);

    // v3 must be signed by 2 of B, C, D (old) and by its own threshold.
    let mut v3 = v2_signed.clone();
    v3["version"] = 3.into();
    assert!(set.update_root(&sign(&v3, &[&b])).is_err());
    set.update_root(&sign(&v3, &[&c, &d])).unwrap();

    // Versions must chain: v5 after v3 is refused.
    let mut v5 = v2_signed;
    v5["version"] = 5.into();
    let err = set.update_root(&sign(&v5, &[&c, &d])).unwrap_err();
    assert_eq!(err, TufError::RootVersion { expected: 4, found: 5 });

    // The rest of the workflow uses the new root's keys.
    repo.root_version = 3;
    refresh(&mut set, &repo, now()).unwrap();
}

#[test]
fn rollback_root() {
    let repo = Repo::new();
    let v1 = repo.root_signed();
    let mut v2 = v1.clone();
    v2["version"] = 2.into();
    let mut set = TrustedMetadataSet::new(&sign(&v1, &[&repo.root_key])).unwrap();
    set.update_root(&sign(&v2, &[&repo.root_key])).unwrap();
    // v1 served again where v3 is asked for.
    let err = set.update_root(&sign(&v1, &[&repo.root_key])).unwrap_err();
    assert_eq!(err, TufError::RootVersion { expected: 3, found: 1 });
}

#[test]
fn rollback_timestamp() {
    let mut repo = Repo::new();
    repo.timestamp_version = 5;
    let mut set = TrustedMetadataSet::new(&repo.root()).unwrap();
    refresh(&mut set, &repo, now()).unwrap();
    let (ts5, snap) = (repo.timestamp(), repo.snapshot());

    // After a restart, with the persisted timestamp as reference.
    repo.timestamp_version = 4;
    let mut set = restarted(&repo.root(), &ts5, &snap);
    let err = set.update_timestamp(&repo.timestamp(), now()).unwrap_err();
    assert_eq!(err, TufError::Rollback { role: "timestamp".into(), trusted: 5, new: 4 });
    assert_eq!(set.timestamp().unwrap().common.version, 5, "trusted state unchanged");

    // The same version again is no update, and not an error.
    repo.timestamp_version = 5;
    assert_eq!(set.update_timestamp(&repo.timestamp(), now()).unwrap(), TimestampUpdate::Unchanged);
}

#[test]
fn rollback_snapshot() {
    let mut repo = Repo::new();
    repo.snapshot_version = 3;
    let mut set = TrustedMetadataSet::new(&repo.root()).unwrap();
    refresh(&mut set, &repo, now()).unwrap();
    let (ts, snap3) = (repo.timestamp(), repo.snapshot());

    // A newer timestamp that lists an older snapshot.
    repo.timestamp_version = 2;
    repo.snapshot_version = 2;
    let mut set = restarted(&repo.root(), &ts, &snap3);
    let err = set.update_timestamp(&repo.timestamp(), now()).unwrap_err();
    assert!(
        matches!(err, TufError::MetaRollback { trusted: 3, new: 2, ref file, .. } if file == "snapshot.json"),
        "{err}"
    );

    // The right timestamp, but the old snapshot served in place of the new.
    repo.snapshot_version = 4;
    let mut set = restarted(&repo.root(), &ts, &snap3);
    set.update_timestamp(&repo.timestamp(), now()).unwrap();
    let err = set.update_snapshot(&snap3, now()).unwrap_err();
    assert!(matches!(err, TufError::VersionMismatch { expected: 4, found: 3, .. }), "{err}");
    assert_eq!(set.snapshot().unwrap().common.version, 3, "trusted state unchanged");
    set.update_snapshot(&repo.snapshot(), now()).unwrap();
}

#[test]
fn rollback_targets() {
    let mut repo = Repo::new();
    repo.targets_version = 7;
    let mut set = TrustedMetadataSet::new(&repo.root()).unwrap();
    refresh(&mut set, &repo, now()).unwrap();
    let (ts, snap) = (repo.timestamp(), repo.snapshot());

    // A new snapshot (signed by the snapshot key) listing an older targets.
    repo.timestamp_version = 2;
    repo.snapshot_version = 2;
    repo.targets_version = 6;
    let mut set = restarted(&repo.root(), &ts, &snap);
    set.update_timestamp(&repo.timestamp(), now()).unwrap();
    let err = set.update_snapshot(&repo.snapshot(), now()).unwrap_err();
    assert_eq!(
        err,
        TufError::MetaRollback { listed_by: "snapshot v2".into(), file: "targets.json".into(), trusted: 7, new: 6 }
    );

    // A new snapshot that drops targets.json altogether.
    let mut dropped = repo.snapshot_signed();
    dropped["meta"] = json!({"other.json": {"version": 1}});
    let err = set.update_snapshot(&sign(&dropped, &[&repo.snapshot_key]), now()).unwrap_err();
    assert!(matches!(err, TufError::MetaMissing { ref file, .. } if file == "targets.json"), "{err}");
}

#[test]
fn fast_forward_recovery() {
    let mut repo = Repo::new();
    let mut set = TrustedMetadataSet::new(&repo.root()).unwrap();
    // An attacker with the timestamp key pushes a huge version.
    repo.timestamp_version = 1_000_000;
    refresh(&mut set, &repo, now()).unwrap();
    let (ts_huge, snap) = (repo.timestamp(), repo.snapshot());
    let root_v1 = repo.root();

    // Without a key rotation the client stays stuck (rollback refused).
    repo.timestamp_version = 2;
    let mut stuck = restarted(&root_v1, &ts_huge, &snap);
    assert!(matches!(stuck.update_timestamp(&repo.timestamp(), now()), Err(TufError::Rollback { .. })));

    // The root rotates the timestamp key: trusted timestamp and snapshot are dropped.
    repo.timestamp_key = key(99);
    repo.root_version = 2;
    let mut set = restarted(&root_v1, &ts_huge, &snap);
    set.update_root(&repo.root()).unwrap();
    assert!(set.timestamp().is_none() && set.snapshot().is_none());
    refresh(&mut set, &repo, now()).unwrap();
    assert_eq!(set.timestamp().unwrap().common.version, 2);
}

#[test]
fn a_root_that_keeps_the_timestamp_keys_keeps_the_rollback_reference() {
    let mut repo = Repo::new();
    repo.timestamp_version = 9;
    let mut set = TrustedMetadataSet::new(&repo.root()).unwrap();
    refresh(&mut set, &repo, now()).unwrap();
    let mut set = restarted(&repo.root(), &repo.timestamp(), &repo.snapshot());
    repo.root_version = 2;
    set.update_root(&repo.root()).unwrap();
    assert_eq!(set.timestamp().unwrap().common.version, 9);
}

#[test]
fn freeze_expired() {
    let repo = Repo::new();
    let late = at(31);
    let mut set = TrustedMetadataSet::new(&repo.root()).unwrap();
    // The final root is checked before any timestamp.
    let err = set.update_timestamp(&repo.timestamp(), late).unwrap_err();
    assert!(matches!(err, TufError::Expired { ref role, version: 1, .. } if role == "root"), "{err}");

    // Each role, with everything else fresh.
    for (role, idx) in [("timestamp", 0), ("snapshot", 1), ("targets", 2)] {
        let mut r = Repo::new();
        r.expires = at(60);
        let mut set = TrustedMetadataSet::new(&r.root()).unwrap();
        let expired_at = |v: Value| {
            let mut v = v;
            v["expires"] = super::expiry::format(at(5)).into();
            v
        };
        let ts = if idx == 0 {
            sign(&expired_at(repo::timestamp(1, r.expires, 1, None)), &[&r.timestamp_key])
        } else {
            r.timestamp()
        };
        let snap = if idx == 1 { sign(&expired_at(r.snapshot_signed()), &[&r.snapshot_key]) } else { r.snapshot() };
        let targets = if idx == 2 { sign(&expired_at(r.targets_signed()), &[&r.targets_key]) } else { r.targets() };
        let err = set
            .update_timestamp(&ts, at(10))
            .and_then(|_| set.update_snapshot(&snap, at(10)).map(|_| ()))
            .and_then(|_| set.update_targets(&targets, at(10)).map(|_| ()))
            .unwrap_err();
        assert!(matches!(err, TufError::Expired { role: ref r, .. } if r == role), "{role}: {err}");
        // Exactly at the expiry instant counts as expired (python-tuf: now >= expires).
        let mut edge = TrustedMetadataSet::new(&r.root()).unwrap();
        if idx == 0 {
            assert!(edge.update_timestamp(&ts, at(5)).is_err());
        }
    }
    // An expired persisted timestamp served again unchanged is still expired.
    let r = Repo::new();
    let mut set = restarted(&r.root(), &r.timestamp(), &r.snapshot());
    let err = set.update_timestamp(&r.timestamp(), at(30)).unwrap_err();
    assert!(matches!(err, TufError::Expired { .. }), "{err}");
}

#[test]
fn mix_and_match() {
    let mut repo = Repo::new();
    repo.targets_version = 2;
    let mut set = TrustedMetadataSet::new(&repo.root()).unwrap();
    set.update_timestamp(&repo.timestamp(), now()).unwrap();
    set.update_snapshot(&repo.snapshot(), now()).unwrap();
    // A validly signed targets v1 where the snapshot lists v2.
    let mut old = Repo::new();
    old.files = vec![("app.tar".into(), b"older app".to_vec())];
    let err = set.update_targets(&old.targets(), now()).unwrap_err();
    assert_eq!(
        err,
        TufError::VersionMismatch { role: "targets".into(), expected: 2, found: 1, listed_by: "snapshot v1".into() }
    );
    assert!(set.targets("targets").is_none());

    // With hashes in the snapshot, another targets of the right version is refused too.
    let genuine = repo.targets();
    let mut snap = repo.snapshot_signed();
    snap["meta"]["targets.json"] =
        json!({"version": 2, "length": genuine.len(), "hashes": {"sha256": super::hashing::sha256_hex(&genuine)}});
    let mut set = TrustedMetadataSet::new(&repo.root()).unwrap();
    set.update_timestamp(&repo.timestamp(), now()).unwrap();
    set.update_snapshot(&sign(&snap, &[&repo.snapshot_key]), now()).unwrap();
    let mut other = Repo::new();
    other.targets_version = 2;
    other.files = vec![("app.tar".into(), b"evil app!".to_vec())];
    let err = set.update_targets(&other.targets(), now()).unwrap_err();
    assert!(matches!(err, TufError::HashMismatch { .. } | TufError::LengthMismatch { .. }), "{err}");
    set.update_targets(&genuine, now()).unwrap();

    // Timestamp → snapshot likewise.
    let snap_bytes = repo.snapshot();
    let ts = repo::timestamp(1, repo.expires, 1, Some(&snap_bytes));
    let mut set = TrustedMetadataSet::new(&repo.root()).unwrap();
    set.update_timestamp(&sign(&ts, &[&repo.timestamp_key]), now()).unwrap();
    let mut forged = repo.snapshot_signed();
    forged["meta"]["targets.json"]["version"] = 1.into();
    assert!(set.update_snapshot(&sign(&forged, &[&repo.snapshot_key]), now()).is_err());
    set.update_snapshot(&snap_bytes, now()).unwrap();
}

#[test]
fn target_substitution() {
    let repo = Repo::new();
    let mut set = TrustedMetadataSet::new(&repo.root()).unwrap();
    refresh(&mut set, &repo, now()).unwrap();
    let TargetLookup::Found(file) = set.target("app.tar").unwrap() else { panic!() };
    let check = |bytes: &[u8]| {
        let mut c = Checker::new("app.tar", Some(file.length), &file.hashes)?;
        c.update(bytes)?;
        c.finish()
    };
    check(b"app bytes").unwrap();
    assert!(matches!(check(b"evil byte"), Err(TufError::HashMismatch { .. })));
    assert!(matches!(check(b"app bytes and more"), Err(TufError::LengthMismatch { .. })));
    assert!(matches!(check(b"app"), Err(TufError::LengthMismatch { .. })));
}

#[test]
fn endless_data() {
    let repo = Repo::new();
    let mut set = TrustedMetadataSet::new(&repo.root()).unwrap();
    let mut huge = repo.timestamp();
    huge.resize(MAX_TIMESTAMP_LEN + 1, b' ');
    let err = set.update_timestamp(&huge, now()).unwrap_err();
    assert_eq!(
        err,
        TufError::TooLarge { role: "timestamp".into(), len: MAX_TIMESTAMP_LEN + 1, max: MAX_TIMESTAMP_LEN }
    );
    // Downloads stop at the first byte past the signed length.
    refresh(&mut set, &repo, now()).unwrap();
    let TargetLookup::Found(file) = set.target("app.tar").unwrap() else { panic!() };
    let mut c = Checker::new("app.tar", Some(file.length), &file.hashes).unwrap();
    let chunk = [0u8; 4];
    let fed = (0..).take_while(|_| c.update(&chunk).is_ok()).count();
    assert_eq!(fed, 2, "9 signed bytes: the third 4-byte chunk is refused");
}

#[test]
fn target_name_traversal() {
    let mut repo = Repo::new();
    repo.files.push(("../escape".into(), b"x".to_vec()));
    let mut set = TrustedMetadataSet::new(&repo.root()).unwrap();
    refresh(&mut set, &repo, now()).unwrap();
    for name in ["../escape", "%2e%2e/escape", "/etc/passwd", "a\\..\\b"] {
        assert!(matches!(set.target(name), Err(TufError::TargetName { .. })), "{name}");
    }
}

/// A repository delegating `team-x/*` to `team-x`.
fn delegating_repo(terminating: bool) -> Repo {
    let mut repo = Repo::new();
    repo.delegations.push(("team-x".into(), key(40), terminating, vec!["team-x/*".into()]));
    repo.delegations.push(("fallback".into(), key(41), false, vec!["*/*".into()]));
    repo
}

fn delegated(repo: &Repo, name: &str, files: &[(&str, &[u8])]) -> Vec<u8> {
    let d = repo.delegations.iter().find(|d| d.0 == name).unwrap();
    let files: Map<String, Value> = files.iter().map(|(n, b)| (n.to_string(), repo::target_entry(b, None))).collect();
    sign(&repo::targets(1, repo.expires, files, &[]), &[&d.1])
}

#[test]
fn delegated_roles_are_searched_in_order() {
    let repo = delegating_repo(false);
    let mut set = TrustedMetadataSet::new(&repo.root()).unwrap();
    refresh(&mut set, &repo, now()).unwrap();
    let need = set.target("team-x/app.tar").unwrap();
    assert_eq!(need, TargetLookup::NeedRole { role: "team-x".into(), parent: "targets".into() });
    set.update_delegated_targets(&delegated(&repo, "team-x", &[("team-x/app.tar", b"x1")]), "team-x", "targets", now())
        .unwrap();
    assert!(matches!(set.target("team-x/app.tar").unwrap(), TargetLookup::Found(f) if f.length == 2));

    // Not in team-x: the search goes on to "fallback".
    assert_eq!(
        set.target("team-x/other").unwrap(),
        TargetLookup::NeedRole { role: "fallback".into(), parent: "targets".into() }
    );
    set.update_delegated_targets(
        &delegated(&repo, "fallback", &[("team-x/other", b"y")]),
        "fallback",
        "targets",
        now(),
    )
    .unwrap();
    assert!(matches!(set.target("team-x/other").unwrap(), TargetLookup::Found(_)));

    // A role signed by the wrong key is refused.
    let mut wrong = TrustedMetadataSet::new(&repo.root()).unwrap();
    refresh(&mut wrong, &repo, now()).unwrap();
    let forged = sign(&repo::targets(1, repo.expires, Map::new(), &[]), &[&repo.targets_key]);
    let err = wrong.update_delegated_targets(&forged, "team-x", "targets", now()).unwrap_err();
    assert!(matches!(err, TufError::Threshold { ref role, .. } if role == "team-x"), "{err}");
    let err = wrong.update_delegated_targets(&forged, "nobody", "targets", now()).unwrap_err();
    assert!(matches!(err, TufError::NotDelegated { .. }), "{err}");
}

#[test]
fn delegation_paths_that_dont_match() {
    let repo = delegating_repo(true);
    let mut set = TrustedMetadataSet::new(&repo.root()).unwrap();
    refresh(&mut set, &repo, now()).unwrap();
    // team-x lists a file outside its paths; it is never asked about it.
    let team_x = delegated(&repo, "team-x", &[("team-x/app.tar", b"x"), ("etc/evil", b"evil")]);
    set.update_delegated_targets(&team_x, "team-x", "targets", now()).unwrap();
    assert_eq!(
        set.target("etc/evil").unwrap(),
        TargetLookup::NeedRole { role: "fallback".into(), parent: "targets".into() }
    );
    set.update_delegated_targets(&delegated(&repo, "fallback", &[]), "fallback", "targets", now()).unwrap();
    assert_eq!(set.target("etc/evil").unwrap(), TargetLookup::NotFound);
    // Terminating: a miss in team-x does not fall back.
    assert_eq!(set.target("team-x/missing").unwrap(), TargetLookup::NotFound);
    // A name with more segments than the pattern is not covered.
    assert_eq!(set.target("team-x/sub/app.tar").unwrap(), TargetLookup::NotFound);
}

#[test]
fn the_workflow_order_is_enforced() {
    let repo = Repo::new();
    let mut set = TrustedMetadataSet::new(&repo.root()).unwrap();
    assert!(matches!(set.update_snapshot(&repo.snapshot(), now()), Err(TufError::Order { .. })));
    assert!(matches!(set.update_targets(&repo.targets(), now()), Err(TufError::Order { .. })));
    assert!(matches!(set.target("app.tar"), Err(TufError::Order { .. })));
    set.update_timestamp(&repo.timestamp(), now()).unwrap();
    let mut v2 = repo.root_signed();
    v2["version"] = 2.into();
    assert!(matches!(set.update_root(&sign(&v2, &[&repo.root_key])), Err(TufError::Order { .. })));
}

#[test]
fn malformed_metadata_is_an_error_never_a_panic() {
    let repo = Repo::new();
    let mut set = TrustedMetadataSet::new(&repo.root()).unwrap();
    for bad in [
        &b""[..],
        b"null",
        b"[]",
        b"{\"signed\": 1, \"signatures\": []}",
        b"{\"signed\": {}, \"signatures\": []}",
        b"{\"signed\": {\"_type\": \"timestamp\", \"version\": 1.5}, \"signatures\": []}",
        b"{\"signed\": {\"_type\": \"snapshot\"}, \"signatures\": [{\"keyid\": 1}]}",
    ] {
        assert!(set.update_timestamp(bad, now()).is_err());
    }
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    assert!(set.update_timestamp(deep.as_bytes(), now()).is_err());
    // The wrong role's file in the timestamp's place.
    let err = set.update_timestamp(&repo.snapshot(), now()).unwrap_err();
    assert!(matches!(err, TufError::WrongType { .. }), "{err}");
}

#[test]
fn every_single_byte_corruption_is_refused_without_a_panic() {
    let repo = Repo::new();
    let root = repo.root();
    let timestamp = repo.timestamp();
    let set = TrustedMetadataSet::new(&root).unwrap();
    for i in 0..timestamp.len() {
        for value in [b'0', b'"', b'{', b'\\', 0xff, b' '] {
            if timestamp[i] == value || (value == b' ' && timestamp[i] == b'\n') {
                continue;
            }
            let mut bad = timestamp.clone();
            bad[i] = value;
            let mut s = set.clone();
            // Either refused, or (whitespace between tokens) the same signed content.
            if s.update_timestamp(&bad, now()).is_ok() {
                assert_eq!(value, b' ', "byte {i} set to {value:#x} was accepted");
            }
        }
    }
    for i in (0..root.len()).step_by(7) {
        let mut bad = root.clone();
        bad[i] ^= 0x20;
        let _ = TrustedMetadataSet::new(&bad);
    }
}
