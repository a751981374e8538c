//! The TUF client workflow (specification 1.0.x, section 5) over any
//! metadata source: the agent fetches over QUIC, `flotte-tuf-client` over
//! HTTP. Trust decisions are `flotte_protocol::tuf::TrustedMetadataSet`'s;
//! this module orders the steps, persists what was accepted and bounds every
//! download.
//!
//! Guarantees:
//! - Metadata is persisted (through [`TufStore`], fsync discipline) only
//!   after it verified, and a refused file leaves the persisted state as it
//!   was; a restarted client checks rollback against the persisted versions.
//! - Every fetch asks for at most the signed length, or the role's size
//!   limit when none is signed, and every source gives a file up after its
//!   whole-file deadline ([`METADATA_DEADLINE`], reported by
//!   [`deadline_passed`] naming the role): each file is small and capped,
//!   so a slow-retrieval attack cannot hold an update forever.
//! - When the source is unreachable ([`Fetched::Unavailable`]), the update
//!   goes on with the persisted timestamp, snapshot and targets, which must
//!   still verify and be unexpired: an offline client trusts nothing newer
//!   and nothing expired. A target they do not list is then
//!   [`UpdateError::NotFoundOffline`], not a verdict.

use crate::tuf_store::TufStore;
use flotte_protocol::Timestamp;
use flotte_protocol::tuf::path::quote;
use flotte_protocol::tuf::{self, TargetFile, TargetLookup, TimestampUpdate, TrustedMetadataSet, TufError};
use std::time::Duration;

/// How long one metadata file may take, request to last byte. 30 s carries
/// the 2 MB snapshot limit at about 70 KB/s; real metadata is far smaller.
pub const METADATA_DEADLINE: Duration = Duration::from_secs(30);

/// The reason a source gives when `file` was not received within `deadline`.
pub fn deadline_passed(file: &str, deadline: Duration) -> String {
    format!(
        "slow retrieval: {} metadata ({file}) not received within its whole-file deadline of {}",
        role_of(file),
        humantime::format_duration(deadline)
    )
}

/// The role a repository file name holds: `7.snapshot.json` → `snapshot`.
fn role_of(file: &str) -> &str {
    let name = file.strip_suffix(".json").unwrap_or(file);
    match name.split_once('.') {
        Some((version, role)) if !version.is_empty() && version.bytes().all(|b| b.is_ascii_digit()) => role,
        _ => name,
    }
}

/// What a source answered for one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    Found(Vec<u8>),
    /// The repository has no such file (the end of the root chain).
    NotFound,
    /// The repository cannot be reached now.
    Unavailable(String),
}

/// Where metadata comes from. `file` is the repository file name
/// (`2.root.json`, `timestamp.json`, `7.snapshot.json`…); no more than `max`
/// bytes may be accepted.
pub trait MetadataSource {
    fn fetch(&mut self, file: &str, max: usize) -> Fetched;
}

/// Why an update or a target search failed.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    #[error("{file} refused: {source}")]
    Refused { file: String, source: TufError },
    #[error("{0}")]
    Tuf(#[from] TufError),
    #[error("cannot fetch {file}: {reason}")]
    Fetch { file: String, reason: String },
    #[error("no trusted root: {0}")]
    NoRoot(String),
    #[error("target {0:?} is not in the repository (no trusted targets role lists it)")]
    NotFound(String),
    /// The repository could not be asked, and the persisted metadata does
    /// not list the target: not a verdict, it may be listed by now.
    #[error("target {target:?} is not in the persisted metadata, and the repository could not be asked: {reason}")]
    NotFoundOffline { target: String, reason: String },
    #[error(transparent)]
    Store(#[from] crate::error::AgentError),
}

/// One client: its persisted metadata and a source.
pub struct Client<'a, S: MetadataSource> {
    pub store: &'a TufStore,
    pub source: S,
    /// Whether an unreachable source falls back to the persisted metadata
    /// (the agent) or fails the update (the interoperability client).
    pub offline_fallback: bool,
}

/// A finished top-level update.
struct Updated {
    set: TrustedMetadataSet,
    /// Why the source could not be used, if the persisted metadata stood in.
    offline: Option<String>,
}

impl<S: MetadataSource> Client<'_, S> {
    /// The top-level update: root chain, timestamp, snapshot, targets.
    pub fn refresh(&mut self, now: Timestamp) -> Result<TrustedMetadataSet, UpdateError> {
        self.update(now).map(|updated| updated.set)
    }

    /// The top-level update, then the search for `name` ([`Self::find_target`]).
    /// If the source could not be used and the persisted metadata does not
    /// list `name`, that is [`UpdateError::NotFoundOffline`], naming why.
    pub fn lookup(&mut self, name: &str, now: Timestamp) -> Result<(TargetFile, String), UpdateError> {
        let Updated { mut set, offline } = self.update(now)?;
        match (self.find_target(&mut set, name, now), offline) {
            (Err(UpdateError::NotFound(target)), Some(reason)) => Err(UpdateError::NotFoundOffline { target, reason }),
            (found, _) => found,
        }
    }

    fn update(&mut self, now: Timestamp) -> Result<Updated, UpdateError> {
        let root = self.store.load(tuf::ROOT)?.ok_or_else(|| UpdateError::NoRoot("none persisted".into()))?;
        let mut set = TrustedMetadataSet::new(&root).map_err(|e| UpdateError::NoRoot(e.to_string()))?;
        // Rollback references from the last successful update. One that no
        // longer verifies (corrupted) is ignored, as python-tuf does.
        if let Some(bytes) = self.store.load(tuf::TIMESTAMP)?
            && let Err(e) = set.restore_timestamp(&bytes)
        {
            tracing::warn!(error = %e, "ignoring the persisted timestamp");
        }
        if let Some(bytes) = self.store.load(tuf::SNAPSHOT)?
            && let Err(e) = set.restore_snapshot(&bytes)
        {
            tracing::warn!(error = %e, "ignoring the persisted snapshot");
        }

        let mut offline = None;
        for _ in 0..tuf::MAX_ROOT_ROTATIONS {
            let file = format!("{}.root.json", set.root().common.version.saturating_add(1));
            let bytes = match self.source.fetch(&file, tuf::MAX_ROOT_LEN) {
                Fetched::Found(bytes) => bytes,
                Fetched::NotFound => break,
                Fetched::Unavailable(reason) if self.offline_fallback => {
                    offline = Some(reason);
                    break;
                }
                Fetched::Unavailable(reason) => return Err(fetch_error(&file, &reason)),
            };
            set.update_root(&bytes).map_err(|source| UpdateError::Refused { file: file.clone(), source })?;
            self.store.save(tuf::ROOT, &bytes)?;
        }
        // Dropped by a key rotation (fast-forward recovery): forget them on disk too.
        if set.timestamp().is_none() {
            self.store.remove(tuf::TIMESTAMP)?;
        }
        if set.snapshot().is_none() {
            self.store.remove(tuf::SNAPSHOT)?;
        }

        let file = "timestamp.json";
        let fetched = match offline {
            Some(_) => Fetched::Unavailable(String::new()),
            None => self.source.fetch(file, tuf::MAX_TIMESTAMP_LEN),
        };
        let bytes = match fetched {
            Fetched::Found(bytes) => bytes,
            Fetched::NotFound => return Err(fetch_error(file, "not found")),
            Fetched::Unavailable(reason) if !self.offline_fallback => return Err(fetch_error(file, &reason)),
            Fetched::Unavailable(reason) => {
                let reason = offline.clone().unwrap_or(reason);
                tracing::info!(%reason, "repository unreachable; using the persisted metadata");
                offline = Some(reason.clone());
                self.store.load(tuf::TIMESTAMP)?.ok_or_else(|| fetch_error(file, &reason))?
            }
        };
        if set.update_timestamp(&bytes, now).map_err(|source| refused(file, source))? == TimestampUpdate::New {
            self.store.save(tuf::TIMESTAMP, &bytes)?;
        }

        // The persisted snapshot, if the timestamp still lists it; else download.
        let reused = match self.store.load(tuf::SNAPSHOT)? {
            Some(bytes) => set.update_snapshot(&bytes, now).is_ok(),
            None => false,
        };
        if !reused {
            let Some(meta) = set.timestamp().map(|t| t.snapshot_meta.clone()) else {
                return Err(fetch_error("snapshot.json", "no trusted timestamp"));
            };
            let file = metadata_file(&set, tuf::SNAPSHOT, meta.version);
            let bytes = self.require(&file, meta.download_limit(tuf::MAX_SNAPSHOT_LEN), offline.as_deref())?;
            set.update_snapshot(&bytes, now).map_err(|source| refused(&file, source))?;
            self.store.save(tuf::SNAPSHOT, &bytes)?;
        }
        self.load_targets(&mut set, tuf::TARGETS, tuf::ROOT, now, offline.as_deref())?;
        Ok(Updated { set, offline })
    }

    /// Searches the delegation tree for `name`, fetching roles as needed.
    /// Returns the entry and the role that listed it.
    pub fn find_target(
        &mut self,
        set: &mut TrustedMetadataSet,
        name: &str,
        now: Timestamp,
    ) -> Result<(TargetFile, String), UpdateError> {
        // Each step loads one more role; the search visits a bounded number.
        let mut last_role = tuf::TARGETS.to_string();
        for _ in 0..=tuf::MAX_DELEGATIONS + 1 {
            let (role, parent) = match set.target(name)? {
                TargetLookup::Found(file) => {
                    let file = file.clone();
                    let role = signing_role(set, name, &file).unwrap_or(last_role);
                    return Ok((file, role));
                }
                TargetLookup::NotFound => return Err(UpdateError::NotFound(name.to_string())),
                TargetLookup::NeedRole { role, parent } => (role, parent),
            };
            self.load_targets(set, &role, &parent, now, None)?;
            last_role = role;
        }
        Err(UpdateError::NotFound(name.to_string()))
    }

    /// Verifies `role` (delegated by `parent`): the persisted copy if the
    /// snapshot still lists it, else a fresh download.
    fn load_targets(
        &mut self,
        set: &mut TrustedMetadataSet,
        role: &str,
        parent: &str,
        now: Timestamp,
        offline: Option<&str>,
    ) -> Result<(), UpdateError> {
        if let Some(bytes) = self.store.load(role)?
            && set.update_delegated_targets(&bytes, role, parent, now).is_ok()
        {
            return Ok(());
        }
        let Some(meta) = set.snapshot_meta(role).cloned() else {
            let listed_by = format!("snapshot v{}", set.snapshot().map_or(0, |s| s.common.version));
            return Err(TufError::MetaMissing { listed_by, file: format!("{role}.json") }.into());
        };
        let file = metadata_file(set, role, meta.version);
        let bytes = self.require(&file, meta.download_limit(tuf::MAX_TARGETS_LEN), offline)?;
        set.update_delegated_targets(&bytes, role, parent, now).map_err(|source| refused(&file, source))?;
        self.store.save(role, &bytes)?;
        Ok(())
    }

    fn require(&mut self, file: &str, max: usize, offline: Option<&str>) -> Result<Vec<u8>, UpdateError> {
        if let Some(reason) = offline {
            return Err(fetch_error(file, reason));
        }
        match self.source.fetch(file, max) {
            Fetched::Found(bytes) => Ok(bytes),
            Fetched::NotFound => Err(fetch_error(file, "not found")),
            Fetched::Unavailable(reason) => Err(fetch_error(file, &reason)),
        }
    }
}

/// The role among those verified in this update that lists `name` with
/// exactly this entry.
fn signing_role(set: &TrustedMetadataSet, name: &str, file: &TargetFile) -> Option<String> {
    let mut roles = vec![tuf::TARGETS.to_string()];
    if let Some(d) = set.targets(tuf::TARGETS).and_then(|t| t.delegations.as_ref()) {
        roles.extend(d.roles.iter().map(|r| r.name.clone()));
    }
    roles.into_iter().find(|r| set.targets(r).and_then(|t| t.targets.get(name)) == Some(file))
}

/// The repository file name of `role` at `version`.
pub fn metadata_file(set: &TrustedMetadataSet, role: &str, version: u64) -> String {
    let file = quote(role, "");
    if set.root().consistent_snapshot { format!("{version}.{file}.json") } else { format!("{file}.json") }
}

fn refused(file: &str, source: TufError) -> UpdateError {
    UpdateError::Refused { file: file.to_string(), source }
}

fn fetch_error(file: &str, reason: &str) -> UpdateError {
    UpdateError::Fetch { file: file.to_string(), reason: reason.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotte_protocol::tuf::repo::{self, Ed25519Signer, RoleSpec, RootSpec};
    use std::collections::BTreeMap;

    const HOUR: Duration = Duration::from_secs(3600);

    fn t0() -> Timestamp {
        Timestamp::from_unix_millis(1_800_000_000_000)
    }

    /// A repository of one root, targets listing `app/1.0`, snapshot and a
    /// timestamp that expires after one hour.
    fn repository() -> BTreeMap<String, Vec<u8>> {
        let key = Ed25519Signer::from_seed(&[1; 32]);
        let later = t0().saturating_add(HOUR * 24);
        let role = RoleSpec { keys: &[key.public()], threshold: 1 };
        let root = repo::root(&RootSpec::one_role_for_all(1, later, role));
        let mut targets = serde_json::Map::new();
        targets.insert("app/1.0".into(), repo::target_entry(b"bytes", None));
        let targets = repo::sign(&repo::targets(1, later, targets, &[]), &[&key]).unwrap();
        let snapshot = repo::sign(&repo::snapshot(1, later, &[("targets", 1)]), &[&key]).unwrap();
        let timestamp = repo::timestamp(1, t0().saturating_add(HOUR), 1, Some(&snapshot));
        BTreeMap::from([
            ("1.root.json".to_string(), repo::sign(&root, &[&key]).unwrap()),
            ("targets.json".to_string(), targets),
            ("snapshot.json".to_string(), snapshot),
            ("timestamp.json".to_string(), repo::sign(&timestamp, &[&key]).unwrap()),
        ])
    }

    /// Serves `files`, or nothing at all when `None` (unreachable).
    struct Memory(Option<BTreeMap<String, Vec<u8>>>);

    impl MetadataSource for Memory {
        fn fetch(&mut self, file: &str, max: usize) -> Fetched {
            match &self.0 {
                None => Fetched::Unavailable("unreachable".into()),
                Some(files) => match files.get(file) {
                    Some(bytes) if bytes.len() <= max => Fetched::Found(bytes.clone()),
                    Some(_) => Fetched::Unavailable("too large".into()),
                    None => Fetched::NotFound,
                },
            }
        }
    }

    fn store_with_root(dir: &std::path::Path) -> TufStore {
        let store = TufStore::open(dir).unwrap();
        store.save(tuf::ROOT, &repository()["1.root.json"]).unwrap();
        store
    }

    fn find(client: &mut Client<'_, Memory>, now: Timestamp) -> Result<String, UpdateError> {
        client.lookup("app/1.0", now).map(|(_, role)| role)
    }

    #[test]
    fn a_missed_deadline_names_the_role_the_file_and_the_deadline() {
        let table = [
            ("timestamp.json", "timestamp metadata (timestamp.json)"),
            ("7.snapshot.json", "snapshot metadata (7.snapshot.json)"),
            ("2.root.json", "root metadata (2.root.json)"),
            ("team-x.json", "team-x metadata (team-x.json)"),
        ];
        for (file, named) in table {
            let reason = deadline_passed(file, Duration::from_secs(30));
            assert_eq!(reason, format!("slow retrieval: {named} not received within its whole-file deadline of 30s"));
        }
    }

    #[test]
    fn an_unreachable_repository_falls_back_to_persisted_unexpired_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_root(dir.path());
        let mut online = Client { store: &store, source: Memory(Some(repository())), offline_fallback: true };
        assert_eq!(find(&mut online, t0()).unwrap(), "targets");
        assert!(store.load(tuf::TIMESTAMP).unwrap().is_some(), "accepted metadata is persisted");

        let mut offline = Client { store: &store, source: Memory(None), offline_fallback: true };
        assert_eq!(find(&mut offline, t0().saturating_add(HOUR / 2)).unwrap(), "targets");
        // Past the persisted timestamp's expiry nothing is trusted offline.
        let err = find(&mut offline, t0().saturating_add(HOUR * 2)).unwrap_err().to_string();
        assert!(err.contains("timestamp v1 expired"), "{err}");
    }

    #[test]
    fn without_fallback_an_unreachable_repository_fails_the_update() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_root(dir.path());
        let mut online = Client { store: &store, source: Memory(Some(repository())), offline_fallback: false };
        find(&mut online, t0()).unwrap();
        let mut offline = Client { store: &store, source: Memory(None), offline_fallback: false };
        let err = find(&mut offline, t0()).unwrap_err().to_string();
        assert!(err.contains("cannot fetch 2.root.json: unreachable"), "{err}");
    }

    #[test]
    fn a_missing_target_is_not_found_and_nothing_is_persisted_without_a_root() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_root(dir.path());
        let mut client = Client { store: &store, source: Memory(Some(repository())), offline_fallback: true };
        assert!(matches!(client.lookup("app/2.0", t0()), Err(UpdateError::NotFound(_))));
        // Offline, the persisted metadata not listing it is no verdict.
        let mut offline = Client { store: &store, source: Memory(None), offline_fallback: true };
        let err = offline.lookup("app/2.0", t0()).unwrap_err();
        assert!(matches!(&err, UpdateError::NotFoundOffline { reason, .. } if reason == "unreachable"), "{err}");

        let empty = TufStore::open(&dir.path().join("empty")).unwrap();
        let mut client = Client { store: &empty, source: Memory(Some(repository())), offline_fallback: true };
        assert!(matches!(client.refresh(t0()), Err(UpdateError::NoRoot(_))));
        assert_eq!(empty.load(tuf::TIMESTAMP).unwrap(), None);
    }
}
