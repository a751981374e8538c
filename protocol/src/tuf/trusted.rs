//! The client's trusted metadata, updated role by role in the order of the
//! TUF client workflow (specification 1.0.x, section 5), modelled on
//! python-tuf's `TrustedMetadataSet`. Pure: bytes and `now` go in; no file,
//! socket or clock is touched.
//!
//! Guarantees:
//! - Every `update_*`/`restore_*` is all-or-nothing: on `Err` the trusted
//!   state is exactly what it was before the call.
//! - Order is enforced: root chain → timestamp → snapshot → targets →
//!   delegated targets. Calling out of order is an [`TufError::Order`] error.
//! - Root: each new root is version trusted+1 and signed by the threshold of
//!   the trusted root *and* its own. When the timestamp or snapshot keys
//!   change, the trusted timestamp and snapshot are dropped (fast-forward
//!   recovery, 5.3.11). Expiry of intermediate roots is not checked; the
//!   final root must be unexpired before a timestamp is accepted.
//! - Timestamp: signed by the root's timestamp threshold, version and listed
//!   snapshot version never lower than the trusted ones, unexpired.
//! - Snapshot: length and hashes as the timestamp lists them, signed, version
//!   equal to the timestamp's entry, no listed file removed or rolled back
//!   compared to the trusted snapshot, unexpired.
//! - Targets (top-level and delegated): delegated by the named parent, length,
//!   hashes and version as the snapshot lists them, signed by the parent's
//!   threshold for that role, unexpired.
//! - [`TrustedMetadataSet::target`] refuses unsafe names, then searches the
//!   delegation tree pre-order, depth-first, honouring `terminating` and path
//!   patterns, visiting at most [`MAX_DELEGATIONS`] + 1 roles. A role is only
//!   asked about names its delegation covers.

use crate::ids::Timestamp;
use crate::tuf::error::{Result, TufError};
use crate::tuf::metadata::{
    Envelope, MetaFile, RootMetadata, SnapshotMetadata, TargetFile, TargetsMetadata, TimestampMetadata,
};
use crate::tuf::verify::verify_role;
use crate::tuf::{
    MAX_DELEGATIONS, MAX_ROOT_LEN, MAX_SNAPSHOT_LEN, MAX_TARGETS_LEN, MAX_TIMESTAMP_LEN, ROOT, SNAPSHOT, TARGETS,
    TIMESTAMP, hashing, path,
};
use std::collections::{BTreeMap, BTreeSet};

/// Trusted TUF metadata of one client.
#[derive(Debug, Clone)]
pub struct TrustedMetadataSet {
    root: RootMetadata,
    timestamp: Option<TimestampMetadata>,
    snapshot: Option<SnapshotMetadata>,
    /// Whether `timestamp` was accepted from the repository in this update.
    /// Until then it is only the rollback reference restored from disk.
    timestamp_final: bool,
    /// Likewise for `snapshot`.
    snapshot_final: bool,
    /// Top-level and delegated targets roles verified in this update, by
    /// role name, each with the role that delegated to it.
    targets: BTreeMap<String, (String, TargetsMetadata)>,
}

/// What [`TrustedMetadataSet::update_timestamp`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampUpdate {
    /// A newer timestamp is now trusted: persist the bytes.
    New,
    /// The repository served the version already trusted; the trusted copy
    /// stays (it is unexpired) and nothing needs persisting.
    Unchanged,
}

/// The outcome of one step of a target search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetLookup<'a> {
    /// The most trusted role that is trusted for the name lists it.
    Found(&'a TargetFile),
    /// No role trusted for the name lists it.
    NotFound,
    /// The search must read `role` (delegated by `parent`) first: fetch it,
    /// give it to [`TrustedMetadataSet::update_delegated_targets`], and ask again.
    NeedRole { role: String, parent: String },
}

impl TrustedMetadataSet {
    /// Starts from a root the client already trusts (shipped, pinned at
    /// enrollment, or persisted). It must be signed by its own threshold;
    /// its expiry is checked only once it is the final root.
    pub fn new(root_bytes: &[u8]) -> Result<Self> {
        let env = Envelope::parse(ROOT, root_bytes, MAX_ROOT_LEN)?;
        let root = RootMetadata::from_signed(&env.signed)?;
        verify_role(ROOT, root.common.version, &root.keys, root.role(ROOT)?, &env)?;
        Ok(TrustedMetadataSet {
            root,
            timestamp: None,
            snapshot: None,
            timestamp_final: false,
            snapshot_final: false,
            targets: BTreeMap::new(),
        })
    }

    /// The trusted root (the newest of the chain so far).
    pub fn root(&self) -> &RootMetadata {
        &self.root
    }

    /// The trusted timestamp: accepted in this update, or restored as the
    /// rollback reference.
    pub fn timestamp(&self) -> Option<&TimestampMetadata> {
        self.timestamp.as_ref()
    }

    /// The trusted snapshot: accepted in this update, or restored as the
    /// rollback reference.
    pub fn snapshot(&self) -> Option<&SnapshotMetadata> {
        self.snapshot.as_ref()
    }

    /// A targets role verified in this update.
    pub fn targets(&self, role: &str) -> Option<&TargetsMetadata> {
        self.targets.get(role).map(|(_, md)| md)
    }

    /// The snapshot's entry for `role` (`targets` or a delegated role).
    pub fn snapshot_meta(&self, role: &str) -> Option<&MetaFile> {
        self.snapshot.as_ref().and_then(|s| s.meta.get(&format!("{role}.json")))
    }

    /// Restores the timestamp an earlier update persisted, as the reference
    /// for rollback checks. Its signatures are checked against the trusted
    /// root; expiry is not (an expired timestamp still protects against
    /// rollback). Only before [`Self::update_timestamp`].
    pub fn restore_timestamp(&mut self, bytes: &[u8]) -> Result<()> {
        if self.timestamp_final {
            return Err(order(TIMESTAMP, "a timestamp was already accepted in this update"));
        }
        let ts = self.read_timestamp(bytes)?;
        self.timestamp = Some(ts);
        Ok(())
    }

    /// Restores the snapshot an earlier update persisted, as the reference
    /// for rollback checks (signatures checked, expiry and hashes not).
    /// Only before [`Self::update_timestamp`].
    pub fn restore_snapshot(&mut self, bytes: &[u8]) -> Result<()> {
        if self.timestamp_final {
            return Err(order(SNAPSHOT, "a timestamp was already accepted in this update"));
        }
        let env = Envelope::parse(SNAPSHOT, bytes, MAX_SNAPSHOT_LEN)?;
        let snap = SnapshotMetadata::from_signed(&env.signed)?;
        verify_role(SNAPSHOT, snap.common.version, &self.root.keys, self.root.role(SNAPSHOT)?, &env)?;
        self.snapshot = Some(snap);
        Ok(())
    }

    /// Accepts the next root of the chain (`N.root.json`, N = trusted + 1).
    pub fn update_root(&mut self, bytes: &[u8]) -> Result<&RootMetadata> {
        if self.timestamp_final {
            return Err(order(ROOT, "a timestamp was already accepted in this update"));
        }
        let env = Envelope::parse(ROOT, bytes, MAX_ROOT_LEN)?;
        let new = RootMetadata::from_signed(&env.signed)?;
        let version = new.common.version;
        verify_role(ROOT, version, &self.root.keys, self.root.role(ROOT)?, &env)?;
        let expected = self.root.common.version.saturating_add(1);
        if version != expected {
            return Err(TufError::RootVersion { expected, found: version });
        }
        verify_role(ROOT, version, &new.keys, new.role(ROOT)?, &env)?;
        if role_keys_changed(&self.root, &new, TIMESTAMP) || role_keys_changed(&self.root, &new, SNAPSHOT) {
            self.timestamp = None;
            self.snapshot = None;
        }
        self.root = new;
        Ok(&self.root)
    }

    /// Accepts a timestamp from the repository.
    pub fn update_timestamp(&mut self, bytes: &[u8], now: Timestamp) -> Result<TimestampUpdate> {
        if self.snapshot_final {
            return Err(order(TIMESTAMP, "a snapshot was already accepted in this update"));
        }
        if self.root.common.is_expired(now) {
            return Err(expired(ROOT, &self.root.common));
        }
        let new = self.read_timestamp(bytes)?;
        let version = new.common.version;
        if let Some(old) = &self.timestamp {
            if version < old.common.version {
                return Err(TufError::Rollback { role: TIMESTAMP.into(), trusted: old.common.version, new: version });
            }
            if new.snapshot_meta.version < old.snapshot_meta.version {
                return Err(TufError::MetaRollback {
                    listed_by: format!("timestamp v{version}"),
                    file: "snapshot.json".into(),
                    trusted: old.snapshot_meta.version,
                    new: new.snapshot_meta.version,
                });
            }
            if version == old.common.version {
                if old.common.is_expired(now) {
                    return Err(expired(TIMESTAMP, &old.common));
                }
                self.timestamp_final = true;
                return Ok(TimestampUpdate::Unchanged);
            }
        }
        if new.common.is_expired(now) {
            return Err(expired(TIMESTAMP, &new.common));
        }
        self.timestamp = Some(new);
        self.timestamp_final = true;
        Ok(TimestampUpdate::New)
    }

    /// Accepts the snapshot the trusted timestamp lists. The bytes may be a
    /// persisted copy: if they still match, nothing needs downloading.
    pub fn update_snapshot(&mut self, bytes: &[u8], now: Timestamp) -> Result<&SnapshotMetadata> {
        let Some(ts) = self.timestamp.as_ref().filter(|_| self.timestamp_final) else {
            return Err(order(SNAPSHOT, "no timestamp was accepted in this update"));
        };
        if !self.targets.is_empty() {
            return Err(order(SNAPSHOT, "targets were already accepted in this update"));
        }
        if ts.common.is_expired(now) {
            return Err(expired(TIMESTAMP, &ts.common));
        }
        if bytes.len() > MAX_SNAPSHOT_LEN {
            return Err(TufError::TooLarge { role: SNAPSHOT.into(), len: bytes.len(), max: MAX_SNAPSHOT_LEN });
        }
        let meta = &ts.snapshot_meta;
        hashing::check("snapshot metadata", meta.length, meta.hashes.as_ref().unwrap_or(&BTreeMap::new()), bytes)?;
        let env = Envelope::parse(SNAPSHOT, bytes, MAX_SNAPSHOT_LEN)?;
        let new = SnapshotMetadata::from_signed(&env.signed)?;
        let version = new.common.version;
        verify_role(SNAPSHOT, version, &self.root.keys, self.root.role(SNAPSHOT)?, &env)?;
        if version != meta.version {
            return Err(TufError::VersionMismatch {
                role: SNAPSHOT.into(),
                expected: meta.version,
                found: version,
                listed_by: format!("timestamp v{}", ts.common.version),
            });
        }
        if let Some(old) = &self.snapshot {
            if version < old.common.version {
                return Err(TufError::Rollback { role: SNAPSHOT.into(), trusted: old.common.version, new: version });
            }
            for (file, old_meta) in &old.meta {
                let listed_by = format!("snapshot v{version}");
                match new.meta.get(file) {
                    None => return Err(TufError::MetaMissing { listed_by, file: file.clone() }),
                    Some(m) if m.version < old_meta.version => {
                        return Err(TufError::MetaRollback {
                            listed_by,
                            file: file.clone(),
                            trusted: old_meta.version,
                            new: m.version,
                        });
                    }
                    Some(_) => {}
                }
            }
        }
        if new.common.is_expired(now) {
            return Err(expired(SNAPSHOT, &new.common));
        }
        self.snapshot_final = true;
        Ok(self.snapshot.insert(new))
    }

    /// Accepts the top-level `targets` role.
    pub fn update_targets(&mut self, bytes: &[u8], now: Timestamp) -> Result<&TargetsMetadata> {
        self.update_delegated_targets(bytes, TARGETS, ROOT, now)
    }

    /// Accepts `role` as delegated by `parent` (`root` for `targets`).
    pub fn update_delegated_targets(
        &mut self,
        bytes: &[u8],
        role: &str,
        parent: &str,
        now: Timestamp,
    ) -> Result<&TargetsMetadata> {
        let Some(snap) = self.snapshot.as_ref().filter(|_| self.snapshot_final) else {
            return Err(order(role, "no snapshot was accepted in this update"));
        };
        if snap.common.is_expired(now) {
            return Err(expired(SNAPSHOT, &snap.common));
        }
        let (keys, role_keys) = if parent == ROOT {
            if role != TARGETS {
                return Err(TufError::NotDelegated { role: role.into(), parent: parent.into() });
            }
            (&self.root.keys, self.root.role(TARGETS)?)
        } else {
            let Some((_, delegator)) = self.targets.get(parent) else {
                return Err(order(role, "its delegator was not accepted in this update"));
            };
            let found = delegator
                .delegations
                .as_ref()
                .and_then(|d| d.roles.iter().find(|r| r.name == role).map(|r| (&d.keys, &r.keys)));
            let Some(found) = found else {
                return Err(TufError::NotDelegated { role: role.into(), parent: parent.into() });
            };
            found
        };
        let file = format!("{role}.json");
        let listed_by = format!("snapshot v{}", snap.common.version);
        let Some(meta) = snap.meta.get(&file) else {
            return Err(TufError::MetaMissing { listed_by, file });
        };
        if bytes.len() > MAX_TARGETS_LEN {
            return Err(TufError::TooLarge { role: role.into(), len: bytes.len(), max: MAX_TARGETS_LEN });
        }
        let what = format!("{role} metadata");
        hashing::check(&what, meta.length, meta.hashes.as_ref().unwrap_or(&BTreeMap::new()), bytes)?;
        let env = Envelope::parse(role, bytes, MAX_TARGETS_LEN)?;
        let new = TargetsMetadata::from_signed(role, &env.signed)?;
        let version = new.common.version;
        verify_role(role, version, keys, role_keys, &env)?;
        if version != meta.version {
            return Err(TufError::VersionMismatch {
                role: role.into(),
                expected: meta.version,
                found: version,
                listed_by,
            });
        }
        if new.common.is_expired(now) {
            return Err(expired(role, &new.common));
        }
        self.targets.insert(role.to_string(), (parent.to_string(), new));
        Ok(&self.targets[role].1)
    }

    /// One step of the search for `name`; see [`TargetLookup`].
    pub fn target(&self, name: &str) -> Result<TargetLookup<'_>> {
        path::check_target_name(name)?;
        if !self.targets.contains_key(TARGETS) {
            return Err(order(TARGETS, "top-level targets were not accepted in this update"));
        }
        let mut to_visit = vec![(TARGETS.to_string(), ROOT.to_string())];
        let mut visited: BTreeSet<String> = BTreeSet::new();
        while visited.len() <= MAX_DELEGATIONS {
            let Some((role, parent)) = to_visit.pop() else { break };
            if visited.contains(&role) {
                continue;
            }
            let md = match self.targets.get(&role) {
                Some((p, md)) if *p == parent => md,
                _ => return Ok(TargetLookup::NeedRole { role, parent }),
            };
            if let Some(file) = md.targets.get(name) {
                return Ok(TargetLookup::Found(file));
            }
            visited.insert(role.clone());
            let mut children = Vec::new();
            for child in md.delegations.iter().flat_map(|d| &d.roles) {
                if child.covers(name) {
                    children.push((child.name.clone(), role.clone()));
                    if child.terminating {
                        to_visit.clear();
                        break;
                    }
                }
            }
            to_visit.extend(children.into_iter().rev());
        }
        Ok(TargetLookup::NotFound)
    }

    fn read_timestamp(&self, bytes: &[u8]) -> Result<TimestampMetadata> {
        let env = Envelope::parse(TIMESTAMP, bytes, MAX_TIMESTAMP_LEN)?;
        let ts = TimestampMetadata::from_signed(&env.signed)?;
        verify_role(TIMESTAMP, ts.common.version, &self.root.keys, self.root.role(TIMESTAMP)?, &env)?;
        Ok(ts)
    }
}

fn order(role: &str, reason: &'static str) -> TufError {
    TufError::Order { role: role.to_string(), reason }
}

fn expired(role: &str, common: &crate::tuf::metadata::Common) -> TufError {
    TufError::Expired { role: role.to_string(), version: common.version, expires: common.expires_text.clone() }
}

/// Whether `role`'s threshold or keys (by id or by material) differ.
fn role_keys_changed(old: &RootMetadata, new: &RootMetadata, role: &str) -> bool {
    let describe = |root: &RootMetadata| {
        root.roles.get(role).map(|r| {
            let keys: BTreeSet<(String, Option<Vec<u8>>)> =
                r.keyids.iter().map(|id| (id.clone(), root.keys.get(id).and_then(|k| k.identity()))).collect();
            (r.threshold, keys)
        })
    };
    describe(old) != describe(new)
}
