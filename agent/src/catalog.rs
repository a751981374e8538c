//! The pull catalog: releases a pull rollout offered to this host, until a
//! user installs one (`flotte install`) or its deadline makes it required;
//! and which packages users installed that way (so `flotte remove` may
//! uninstall them).
//!
//! Guarantees:
//! - The catalog is one file (`catalog.json` in the state dir) written
//!   through [`crate::durable`] on every change, so it survives restarts and
//!   power loss whole.
//! - An offer leaves the catalog only after the job installing it was
//!   created and journaled; an offer whose assignment already has a job is
//!   dropped at load ([`Catalog::forget_taken`]), so a crash between the two
//!   neither loses nor doubles an install.
//! - Offers are stored as the controller sent them (signed). They are
//!   verified before they are stored and before they are shown; verified
//!   metadata is never read back from disk.
//! - A removal is recorded before the uninstall runs and cleared after it,
//!   so a removal interrupted by a crash is finished at the next start.
//!
//! [`install_time`] is the pure rule for when a required install happens,
//! and [`deferral`] the pure rule for `flotte defer`.

use crate::durable;
use crate::error::{AgentError, Result};
use flotte_protocol::messages::Offer;
use flotte_protocol::{AssignmentId, InstallerKind, ReleaseMetadata, Timestamp};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A package a user installed from the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pulled {
    pub assignment: AssignmentId,
    pub version: String,
    pub installer: InstallerKind,
    /// Who asked for it, for the log: a user name or `uid N`.
    pub by: String,
}

/// A removal under way: recorded before the uninstall, cleared after.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Removal {
    pub name: String,
    pub installer: InstallerKind,
}

/// One offer and what happened to it on this host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub offer: Offer,
    /// The offered release as verified through TUF when it was stored:
    /// what users are shown. Installing verifies it again.
    pub release: ReleaseMetadata,
    /// When this agent stored it: a push with notice is required
    /// `notice_secs` later.
    pub received_at: Timestamp,
    /// Deferrals the user took.
    #[serde(default)]
    pub deferrals_used: u32,
    /// The required install waits at least until then.
    #[serde(default)]
    pub deferred_until: Option<Timestamp>,
}

/// Why `flotte defer` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeferError {
    #[error("it is not required, so there is nothing to defer; it is installed only if you install it")]
    NotRequired,
    #[error("its {0} deferrals are used up")]
    NoneLeft(u32),
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct CatalogFile {
    offers: Vec<Entry>,
    #[serde(default)]
    pulled: BTreeMap<String, Pulled>,
    #[serde(default)]
    removing: Option<Removal>,
}

/// The catalog, mirrored on disk.
#[derive(Debug)]
pub struct Catalog {
    path: PathBuf,
    offers: BTreeMap<AssignmentId, Entry>,
    pulled: BTreeMap<String, Pulled>,
    removing: Option<Removal>,
}

impl Catalog {
    /// Reads the catalog; a missing file is an empty catalog.
    pub fn load(path: &Path) -> Result<Self> {
        let file: CatalogFile = match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|source| AgentError::StateParse { path: path.to_path_buf(), source })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => CatalogFile::default(),
            Err(e) => return Err(AgentError::Io { op: "read", path: path.to_path_buf(), source: e }),
        };
        Ok(Catalog {
            path: path.to_path_buf(),
            offers: file.offers.into_iter().map(|e| (e.offer.assignment, e)).collect(),
            pulled: file.pulled,
            removing: file.removing,
        })
    }

    fn save(&self) -> Result<()> {
        let file = CatalogFile {
            offers: self.offers.values().cloned().collect(),
            pulled: self.pulled.clone(),
            removing: self.removing.clone(),
        };
        let bytes = serde_json::to_vec_pretty(&file)
            .map_err(|e| AgentError::Encode { what: "the catalog", reason: e.to_string() })?;
        durable::write(&self.path, &bytes, durable::STATE)
    }

    /// Stores `offer`, received at `now`; `false` (and nothing written) if
    /// it is already there.
    pub fn insert(&mut self, offer: Offer, release: ReleaseMetadata, now: Timestamp) -> Result<bool> {
        if self.offers.contains_key(&offer.assignment) {
            return Ok(false);
        }
        let entry = Entry { offer, release, received_at: now, deferrals_used: 0, deferred_until: None };
        self.offers.insert(entry.offer.assignment, entry);
        self.save()?;
        Ok(true)
    }

    /// Drops the offer `id` (its job exists now).
    pub fn take(&mut self, id: AssignmentId) -> Result<Option<Entry>> {
        let entry = self.offers.remove(&id);
        if entry.is_some() {
            self.save()?;
        }
        Ok(entry)
    }

    /// `flotte defer`: postpones the required install of offer `id`; the new
    /// install time and the deferrals left.
    pub fn defer(
        &mut self,
        id: AssignmentId,
        now: Timestamp,
    ) -> Result<std::result::Result<(Timestamp, u32), DeferError>> {
        let Some(entry) = self.offers.get_mut(&id) else { return Ok(Err(DeferError::NotRequired)) };
        let until = match deferral(entry, now) {
            Ok(until) => until,
            Err(e) => return Ok(Err(e)),
        };
        entry.deferred_until = Some(until);
        entry.deferrals_used += 1;
        let left = entry.offer.deferrals - entry.deferrals_used;
        self.save()?;
        Ok(Ok((until, left)))
    }

    /// Drops every offer for which `has_job` says a job exists.
    pub fn forget_taken(&mut self, has_job: impl Fn(AssignmentId) -> bool) -> Result<()> {
        let before = self.offers.len();
        self.offers.retain(|id, _| !has_job(*id));
        if self.offers.len() != before { self.save() } else { Ok(()) }
    }

    pub fn offers(&self) -> impl Iterator<Item = &Entry> {
        self.offers.values()
    }

    pub fn contains(&self, id: AssignmentId) -> bool {
        self.offers.contains_key(&id)
    }

    /// Records that a user installed `name` from the catalog.
    pub fn record_pulled(&mut self, name: &str, pulled: Pulled) -> Result<()> {
        self.pulled.insert(name.to_string(), pulled);
        self.save()
    }

    pub fn pulled(&self, name: &str) -> Option<&Pulled> {
        self.pulled.get(name)
    }

    pub fn is_pulled(&self, name: &str) -> bool {
        self.pulled.contains_key(name)
    }

    /// Records a removal before it runs.
    pub fn begin_removal(&mut self, removal: Removal) -> Result<()> {
        self.removing = Some(removal);
        self.save()
    }

    /// The removal a crash interrupted, if any.
    pub fn removal(&self) -> Option<&Removal> {
        self.removing.as_ref()
    }

    /// The removal failed cleanly: forget it, keep the package as pulled.
    pub fn abandon_removal(&mut self) -> Result<()> {
        self.removing = None;
        self.save()
    }

    /// The removal is done: the package is no longer a pulled one.
    pub fn end_removal(&mut self) -> Result<()> {
        if let Some(r) = self.removing.take() {
            self.pulled.remove(&r.name);
        }
        self.save()
    }
}

/// When the agent installs an offer by itself, as seen at `now`: never for
/// a plain pull offer; otherwise at its deadline (pull) or `notice_secs`
/// after it was received (push with notice), no earlier than a deferral
/// allows and no earlier than now, moved to the next opening of the offer's
/// maintenance window if that is closed then.
pub fn install_time(entry: &Entry, now: Timestamp) -> Option<Timestamp> {
    let offer = &entry.offer;
    let required = match (offer.deadline, offer.notice_secs) {
        (Some(deadline), _) => deadline,
        (None, Some(notice)) => entry.received_at.saturating_add(std::time::Duration::from_secs(notice.into())),
        (None, None) => return None,
    };
    let due = required.max(entry.deferred_until.unwrap_or(required)).max(now);
    Some(offer.window.as_ref().map_or(due, |w| w.next_open(due)))
}

/// Until when one more deferral postpones the install: `defer_secs` after
/// the time it would happen now.
pub fn deferral(entry: &Entry, now: Timestamp) -> std::result::Result<Timestamp, DeferError> {
    let due = install_time(entry, now).ok_or(DeferError::NotRequired)?;
    if entry.deferrals_used >= entry.offer.deferrals {
        return Err(DeferError::NoneLeft(entry.offer.deferrals));
    }
    Ok(due.saturating_add(std::time::Duration::from_secs(entry.offer.defer_secs.into())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotte_protocol::{ReleaseRef, Sha256Digest};

    fn t(s: &str) -> Timestamp {
        Timestamp::parse_rfc3339(s).unwrap()
    }

    fn release(id: u64) -> ReleaseMetadata {
        let version = format!("{id}.0");
        ReleaseMetadata::new("app", version, Sha256Digest::of(b"x"), 1, InstallerKind::Archive, Timestamp::EPOCH)
    }

    fn offer(id: u64, deadline: Option<&str>, window: Option<&str>) -> Offer {
        Offer {
            assignment: AssignmentId(id),
            release: ReleaseRef { name: "app".into(), version: format!("{id}.0") },
            issued_at: Timestamp::EPOCH,
            deadline: deadline.map(t),
            window: window.map(|w| w.parse().unwrap()),
            notes: None,
            notice_secs: None,
            deferrals: 0,
            defer_secs: 0,
        }
    }

    fn entry(offer: Offer, received: &str) -> Entry {
        let release = release(offer.assignment.0);
        Entry { offer, release, received_at: t(received), deferrals_used: 0, deferred_until: None }
    }

    #[test]
    fn a_deadline_install_happens_at_the_deadline_inside_the_window() {
        // 2026-12-04 is a Friday.
        let friday = "2026-12-04T15:00:00Z";
        type Row<'a> = (Option<&'a str>, Option<&'a str>, &'a str, Option<&'a str>);
        let table: &[Row] = &[
            // (deadline, window, now, install time)
            (None, None, friday, None),
            (Some("2026-12-04T18:00:00Z"), None, friday, Some("2026-12-04T18:00:00Z")),
            // Passed while the agent was off: at once.
            (Some("2026-12-01T00:00:00Z"), None, friday, Some(friday)),
            // Due Friday evening, but only inside the weekend window.
            (Some("2026-12-04T18:00:00Z"), Some("sat,sun 00:00-06:00"), friday, Some("2026-12-05T00:00:00Z")),
            // Passed, window open now: at once.
            (Some("2026-12-01T00:00:00Z"), Some("daily 00:00-24:00"), friday, Some(friday)),
            // Passed, window closed now: its next opening.
            (Some("2026-12-01T00:00:00Z"), Some("sat 02:00-03:00"), friday, Some("2026-12-05T02:00:00Z")),
        ];
        for (deadline, window, now, expected) in table {
            let e = entry(offer(1, *deadline, *window), "2026-12-01T00:00:00Z");
            assert_eq!(install_time(&e, t(now)), expected.map(t), "{deadline:?} {window:?} at {now}");
        }
    }

    #[test]
    fn a_push_with_notice_installs_after_the_notice_and_each_deferral_postpones_it() {
        let push = Offer { notice_secs: Some(900), deferrals: 2, defer_secs: 3600, ..offer(1, None, None) };
        let mut e = entry(push, "2026-12-04T15:00:00Z");
        let now = t("2026-12-04T15:05:00Z");
        assert_eq!(install_time(&e, now), Some(t("2026-12-04T15:15:00Z")), "the notice");
        // (deferral, install time after it)
        for until in ["2026-12-04T16:15:00Z", "2026-12-04T17:15:00Z"] {
            let next = deferral(&e, now).unwrap();
            assert_eq!(next, t(until));
            e.deferred_until = Some(next);
            e.deferrals_used += 1;
            assert_eq!(install_time(&e, now), Some(next));
        }
        assert_eq!(deferral(&e, now), Err(DeferError::NoneLeft(2)), "the budget is spent");
        let plain = entry(offer(2, None, None), "2026-12-04T15:00:00Z");
        assert_eq!(deferral(&plain, now), Err(DeferError::NotRequired), "a plain pull offer is never required");
    }

    #[test]
    fn the_catalog_survives_a_reload_and_forgets_taken_offers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.json");
        let mut catalog = Catalog::load(&path).unwrap();
        let now = Timestamp::EPOCH;
        assert!(catalog.insert(offer(1, None, None), release(1), now).unwrap());
        assert!(!catalog.insert(offer(1, None, None), release(1), now).unwrap(), "a redelivered offer is not new");
        let push = Offer { notice_secs: Some(60), deferrals: 1, defer_secs: 60, ..offer(2, None, None) };
        assert!(catalog.insert(push, release(2), now).unwrap());
        let (until, left) = catalog.defer(AssignmentId(2), now).unwrap().unwrap();
        assert_eq!((until, left), (Timestamp::from_unix_millis(120_000), 0));
        let pulled = Pulled {
            assignment: AssignmentId(9),
            version: "9.0".into(),
            installer: InstallerKind::Archive,
            by: "alice".into(),
        };
        catalog.record_pulled("tool", pulled.clone()).unwrap();
        catalog.begin_removal(Removal { name: "tool".into(), installer: InstallerKind::Archive }).unwrap();

        let mut reloaded = Catalog::load(&path).unwrap();
        assert_eq!(reloaded.offers().count(), 2);
        assert_eq!(reloaded.pulled("tool"), Some(&pulled));
        assert_eq!(reloaded.removal().map(|r| r.name.as_str()), Some("tool"), "an interrupted removal is remembered");
        reloaded.forget_taken(|id| id == AssignmentId(1)).unwrap();
        reloaded.end_removal().unwrap();

        let mut again = Catalog::load(&path).unwrap();
        assert!(!again.contains(AssignmentId(1)) && again.contains(AssignmentId(2)));
        assert_eq!(again.defer(AssignmentId(2), now).unwrap(), Err(DeferError::NoneLeft(1)), "deferrals are durable");
        assert!(!again.is_pulled("tool") && again.removal().is_none());
    }

    #[test]
    fn a_corrupt_catalog_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.json");
        std::fs::write(&path, "{not json").unwrap();
        let err = Catalog::load(&path).unwrap_err().to_string();
        assert!(err.contains("catalog.json"), "{err}");
    }
}
