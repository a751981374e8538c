//! The controller as a TUF repository: it keeps the root chain and the
//! targets roles that admins sign offline, and signs the snapshot and
//! timestamp roles itself with its online keys.
//!
//! Guarantees:
//! - Uploaded metadata is stored only if it verifies: a root against the
//!   trusted root's threshold *and* its own (`TrustedMetadataSet::update_root`),
//!   a targets role against the threshold its delegator names, with a version
//!   above the stored one and an expiry in the future. A delegated role may
//!   list only target names its delegation covers.
//! - Every release a targets role adds must have its content uploaded with
//!   the signed length and SHA-256; it is added to the catalogue in the same
//!   SQLite transaction as the role, the new snapshot and the new timestamp,
//!   so agents never see a snapshot that lists a role the store lacks.
//! - Uploads and re-signing run one at a time ([`WRITER`]), so two
//!   snapshots or timestamps never share a version number and a version
//!   check cannot race with the write that follows it.
//! - The controller holds no offline key: with its data directory alone one
//!   can re-sign snapshot and timestamp, but no targets entry an agent trusts.

use super::policy::{self, OnlineState, Resign, Signed};
use crate::error::ControllerError;
use crate::server::Services;
use crate::store::{Store, from_ts, ts};
use flotte_protocol::api::{ReleaseView, TufRoleView};
use flotte_protocol::tuf::metadata::{Envelope, RootMetadata, TargetsMetadata};
use flotte_protocol::tuf::release::{read_release, target_name};
use flotte_protocol::tuf::verify::verify_role;
use flotte_protocol::tuf::{self, TrustedMetadataSet, TufError, path, repo};
use flotte_protocol::{ReleaseMetadata, Timestamp};
use rusqlite::{OptionalExtension, params};

/// Serialises every write to the repository (uploads and re-signing).
static WRITER: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn writer() -> std::sync::MutexGuard<'static, ()> {
    WRITER.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Why an upload was refused.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("{0}")]
    Refused(#[from] TufError),
    #[error("{reason}")]
    Invalid { reason: String, hint: Option<String> },
    #[error(transparent)]
    Store(#[from] ControllerError),
}

impl From<rusqlite::Error> for UploadError {
    fn from(e: rusqlite::Error) -> Self {
        UploadError::Store(e.into())
    }
}

fn invalid(reason: impl Into<String>, hint: Option<&str>) -> UploadError {
    UploadError::Invalid { reason: reason.into(), hint: hint.map(str::to_string) }
}

/// What an accepted upload changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub role: String,
    pub version: u64,
    /// `(release, signing role)` added to the catalogue.
    pub releases: Vec<ReleaseMetadata>,
}

/// The repository file name of a targets role (`targets.json`, `ROLE.json`).
pub fn role_file(role: &str) -> String {
    format!("{}.json", path::quote(role, ""))
}

/// Versioned copies kept per role (consistent snapshots): enough for a
/// client that read a timestamp just before a few publishes.
pub const KEPT_VERSIONS: u64 = 8;

/// The stored bytes of `file` (`N.root.json`, `root.json` for the newest
/// root, `timestamp.json`, `targets.json`, `7.targets.json`…), if any.
pub fn file(store: &Store, file: &str) -> Result<Option<Vec<u8>>, ControllerError> {
    let conn = store.conn();
    if file == "root.json" {
        return Ok(conn
            .query_row("SELECT bytes FROM tuf_metadata WHERE role = 'root' ORDER BY version DESC LIMIT 1", [], |r| {
                r.get(0)
            })
            .optional()?);
    }
    let current = conn.query_row("SELECT bytes FROM tuf_metadata WHERE file = ?1", [file], |r| r.get(0)).optional()?;
    if current.is_some() {
        return Ok(current);
    }
    let versioned =
        conn.query_row("SELECT bytes FROM tuf_versioned WHERE file = ?1", [file], |r| r.get(0)).optional()?;
    if versioned.is_some() {
        return Ok(versioned);
    }
    // `N.targets.json` is also the current `targets.json` if that is
    // version N (stored before versioned copies were kept).
    let Some((version, current_file)) = file.split_once('.').and_then(|(v, rest)| Some((v.parse::<i64>().ok()?, rest)))
    else {
        return Ok(None);
    };
    Ok(conn
        .query_row(
            "SELECT bytes FROM tuf_metadata WHERE file = ?1 AND version = ?2 AND role != 'root'",
            params![current_file, version],
            |r| r.get(0),
        )
        .optional()?)
}

/// Stores `bytes` as the current metadata of `role` (snapshot, timestamp,
/// targets or a delegated role) and, except for the timestamp, under its
/// versioned name too, keeping the newest [`KEPT_VERSIONS`] of those.
fn put_metadata(
    tx: &rusqlite::Transaction<'_>,
    role: &str,
    version: u64,
    expires: Timestamp,
    bytes: &[u8],
) -> Result<(), ControllerError> {
    let file = role_file(role);
    tx.execute(
        "INSERT INTO tuf_metadata (file, role, version, expires, bytes) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (file) DO UPDATE SET version = ?3, expires = ?4, bytes = ?5",
        params![file, role, version as i64, ts(expires), bytes],
    )?;
    if role != tuf::TIMESTAMP {
        tx.execute(
            "INSERT OR REPLACE INTO tuf_versioned (file, role, version, bytes) VALUES (?1, ?2, ?3, ?4)",
            params![format!("{version}.{file}"), role, version as i64, bytes],
        )?;
        tx.execute(
            "DELETE FROM tuf_versioned WHERE role = ?1 AND version <= ?2",
            params![role, version.saturating_sub(KEPT_VERSIONS) as i64],
        )?;
    }
    Ok(())
}

fn signed_of(store: &Store, file: &str) -> Result<Option<Signed>, ControllerError> {
    Ok(store
        .conn()
        .query_row("SELECT version, expires FROM tuf_metadata WHERE file = ?1", [file], |r| read_signed(r, 0))
        .optional()?)
}

/// The `version, expires` columns of a `tuf_metadata` row, from column
/// `first` on.
fn read_signed(r: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<Signed> {
    Ok(Signed { version: u64::try_from(r.get::<_, i64>(first)?).unwrap_or(0), expires: from_ts(r.get(first + 1)?) })
}

/// The newest trusted root, parsed.
fn current_root(store: &Store) -> Result<Option<(Vec<u8>, RootMetadata)>, ControllerError> {
    let Some(bytes) = file(store, "root.json")? else { return Ok(None) };
    let env = Envelope::parse(tuf::ROOT, &bytes, tuf::MAX_ROOT_LEN).map_err(corrupt)?;
    let root = RootMetadata::from_signed(&env.signed).map_err(corrupt)?;
    Ok(Some((bytes, root)))
}

fn corrupt(e: TufError) -> ControllerError {
    ControllerError::Corrupt(format!("stored TUF metadata: {e}"))
}

/// A stored targets role (the top-level one or a delegated one), parsed.
struct StoredTargets {
    role: String,
    version: u64,
    metadata: TargetsMetadata,
}

/// Every stored targets role.
fn targets_roles(store: &Store) -> Result<Vec<StoredTargets>, ControllerError> {
    /// A targets role's row, its bytes not parsed yet.
    struct TargetsRow {
        role: String,
        version: u64,
        bytes: Vec<u8>,
    }
    let rows: Vec<TargetsRow> = {
        let conn = store.conn();
        let mut stmt = conn.prepare(
            "SELECT role, version, bytes FROM tuf_metadata WHERE role NOT IN ('root', 'snapshot', 'timestamp')",
        )?;
        stmt.query_map([], |r| {
            Ok(TargetsRow {
                role: r.get(0)?,
                version: u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0),
                bytes: r.get(2)?,
            })
        })?
        .collect::<Result<_, _>>()?
    };
    rows.into_iter()
        .map(|TargetsRow { role, version, bytes }| {
            let env = Envelope::parse(&role, &bytes, tuf::MAX_TARGETS_LEN).map_err(corrupt)?;
            let metadata = TargetsMetadata::from_signed(&role, &env.signed).map_err(corrupt)?;
            Ok(StoredTargets { role, version, metadata })
        })
        .collect()
}

/// The signed rollback authorisation of `name@version` (the newest version
/// it may replace, see [`flotte_protocol::version::check_downgrade`]) as the
/// stored targets roles list it, the top-level role first. The controller
/// reads it only to refuse early what agents would refuse anyway.
pub fn rollback_up_to(store: &Store, name: &str, version: &str) -> Result<Option<String>, ControllerError> {
    let target = target_name(name, version);
    let mut roles = targets_roles(store)?;
    roles.sort_by_key(|stored| stored.role != tuf::TARGETS);
    Ok(roles
        .iter()
        .find_map(|stored| stored.metadata.targets.get(&target))
        .and_then(|file| read_release(&target, file).ok())
        .and_then(|custom| custom.rollback_up_to))
}

/// Every stored role as the admin sees it: the newest root, the targets
/// roles, snapshot and timestamp, with a warning on each offline-signed
/// role close to expiry ([`policy::expiring`]).
pub fn status(store: &Store, now: Timestamp) -> Result<Vec<TufRoleView>, ControllerError> {
    let rows: Vec<(String, Signed)> = {
        let conn = store.conn();
        let mut stmt = conn.prepare(
            "SELECT role, version, expires FROM tuf_metadata AS t
             WHERE version = (SELECT MAX(version) FROM tuf_metadata WHERE role = t.role)
             ORDER BY CASE role WHEN 'root' THEN 0 WHEN 'targets' THEN 1 WHEN 'snapshot' THEN 3
                                WHEN 'timestamp' THEN 4 ELSE 2 END, role",
        )?;
        stmt.query_map([], |r| Ok((r.get(0)?, read_signed(r, 1)?)))?.collect::<Result<_, _>>()?
    };
    Ok(rows
        .into_iter()
        .map(|(role, signed)| {
            let online = role == tuf::SNAPSHOT || role == tuf::TIMESTAMP;
            let warning = if online {
                None
            } else {
                policy::expiring(&[(role.clone(), signed)], now).first().map(policy::Expiring::advice)
            };
            TufRoleView { role, version: signed.version, expires: signed.expires, online, warning }
        })
        .collect())
}

/// Accepts a root: the first one (self-signed, version 1) or the next of
/// the chain. The root must name the controller's online keys for the
/// timestamp and snapshot roles, or the controller could not serve it.
pub fn upload_root(services: &Services, bytes: &[u8], now: Timestamp) -> Result<Accepted, UploadError> {
    let _writer = writer();
    let store = &services.store;
    let env = Envelope::parse(tuf::ROOT, bytes, tuf::MAX_ROOT_LEN)?;
    let new = RootMetadata::from_signed(&env.signed)?;
    match current_root(store)? {
        None => {
            if new.common.version != 1 {
                return Err(invalid(
                    format!("the first root must be version 1, not {}", new.common.version),
                    Some("run `flottectl trust init` against a controller without a root"),
                ));
            }
            TrustedMetadataSet::new(bytes)?;
        }
        Some((current, _)) => {
            let mut set = TrustedMetadataSet::new(&current)?;
            set.update_root(bytes)?;
        }
    }
    if new.common.is_expired(now) {
        return Err(invalid(format!("root v{} expired at {}", new.common.version, new.common.expires_text), None));
    }
    let online = &services.tuf_keys;
    let current = online.signers();
    for role in [tuf::TIMESTAMP, tuf::SNAPSHOT] {
        let keys = new.role(role)?;
        let next = online.next_keyid(role)?;
        let names = |keyid: &str| keys.keyids.iter().any(|k| k == keyid);
        if !(names(current.of(role).keyid()) || next.as_deref().is_some_and(names)) || keys.threshold != 1 {
            return Err(invalid(
                format!(
                    "root v{} must give the {role} role the controller's online key (current or prepared \
                     next) with threshold 1",
                    new.common.version
                ),
                Some("build the root with `flottectl trust init` or `trust rotate`, which fetch the online keys"),
            ));
        }
    }
    let version = new.common.version;
    let mut conn = store.conn();
    let tx = conn.transaction()?;
    tx.execute(
        "INSERT INTO tuf_metadata (file, role, version, expires, bytes) VALUES (?1, 'root', ?2, ?3, ?4)",
        params![format!("{version}.root.json"), version as i64, ts(new.common.expires), bytes],
    )?;
    tx.commit()?;
    drop(conn);
    adopt_online_keys(services)?;
    sign_online(services, now, true)?;
    Ok(Accepted { role: tuf::ROOT.into(), version, releases: Vec::new() })
}

/// Adopts every prepared online key that the newest stored root names (see
/// [`super::online`]); run after a root upload and at start-up. Returns the
/// roles whose key changed.
pub fn adopt_online_keys(services: &Services) -> Result<Vec<&'static str>, ControllerError> {
    let Some((_, root)) = current_root(&services.store)? else { return Ok(Vec::new()) };
    let adopted = services
        .tuf_keys
        .adopt_named(|role, keyid| root.role(role).is_ok_and(|keys| keys.keyids.iter().any(|k| k == keyid)))?;
    for role in &adopted {
        tracing::info!(role, root = root.common.version, "adopted the new online key the root names");
    }
    Ok(adopted)
}

/// Accepts a targets role (`targets` or a delegated one) signed offline,
/// adds its new releases to the catalogue and signs a new snapshot and
/// timestamp.
pub fn upload_targets(services: &Services, role: &str, bytes: &[u8], now: Timestamp) -> Result<Accepted, UploadError> {
    let _writer = writer();
    let store = &services.store;
    let Some((_, root)) = current_root(store)? else {
        return Err(invalid("this controller has no TUF root yet", Some("run `flottectl trust init` first")));
    };
    let env = Envelope::parse(role, bytes, tuf::MAX_TARGETS_LEN)?;
    let new = TargetsMetadata::from_signed(role, &env.signed)?;
    let version = new.common.version;
    let stored = targets_roles(store)?;
    if role == tuf::TARGETS {
        verify_role(role, version, &root.keys, root.role(tuf::TARGETS)?, &env)?;
    } else {
        let delegation = stored.iter().find_map(|parent| {
            let d = parent.metadata.delegations.as_ref()?;
            d.roles.iter().find(|r| r.name == role).map(|r| (&d.keys, r))
        });
        let Some((keys, delegated)) = delegation else {
            return Err(invalid(
                format!("no stored targets role delegates to {role:?}"),
                Some("delegate it first with `flottectl trust delegate`"),
            ));
        };
        verify_role(role, version, keys, &delegated.keys, &env)?;
        if let Some(name) = new.targets.keys().find(|name| !delegated.covers(name)) {
            return Err(invalid(
                format!("{role} v{version} lists {name:?}, which its delegation does not cover"),
                None,
            ));
        }
    }
    if let Some(old) = stored.iter().find(|s| s.role == role)
        && version <= old.version
    {
        return Err(TufError::Rollback { role: role.into(), trusted: old.version, new: version }.into());
    }
    if new.common.is_expired(now) {
        return Err(invalid(format!("{role} v{version} expired at {}", new.common.expires_text), None));
    }
    let mut releases = Vec::new();
    for (name, file) in &new.targets {
        path::check_target_name(name)?;
        let release = read_release(name, file).map_err(|e| invalid(e.to_string(), None))?.release;
        match services.content.size(&release.sha256) {
            Some(size) if size == release.size => {}
            Some(size) => {
                return Err(invalid(
                    format!(
                        "{} says {} bytes but the stored content {} has {size}",
                        name, release.size, release.sha256
                    ),
                    None,
                ));
            }
            None => {
                return Err(invalid(
                    format!("content {} of {name} was not uploaded", release.sha256),
                    Some("PUT the package to /v1/content/SHA256 first"),
                ));
            }
        }
        releases.push(release);
    }
    let mut added = Vec::new();
    {
        let mut conn = store.conn();
        let tx = conn.transaction()?;
        put_metadata(&tx, role, version, new.common.expires, bytes)?;
        for release in releases {
            if Store::insert_release_tx(&tx, &release, role, now)? {
                added.push(release);
            }
        }
        tx.commit()?;
    }
    sign_online(services, now, true)?;
    Ok(Accepted { role: role.into(), version, releases: added })
}

/// Re-signs what [`policy::due`] says is due (everything, if
/// `targets_changed`). Returns what it signed.
pub fn resign(services: &Services, now: Timestamp, targets_changed: bool) -> Result<Resign, ControllerError> {
    let _writer = writer();
    sign_online(services, now, targets_changed)
}

fn sign_online(services: &Services, now: Timestamp, targets_changed: bool) -> Result<Resign, ControllerError> {
    let store = &services.store;
    if current_root(store)?.is_none() {
        return Ok(Resign::default());
    }
    let state = OnlineState {
        snapshot: signed_of(store, "snapshot.json")?,
        timestamp: signed_of(store, "timestamp.json")?,
        targets_changed,
    };
    let due = policy::due(&state, now);
    let keys = services.tuf_keys.signers();
    let sign_err = |e: tuf::canonical::CanonicalError| ControllerError::Other(format!("cannot sign: {e}"));
    let mut snapshot_version = state.snapshot.map_or(0, |s| s.version);
    let mut snapshot_bytes = file(store, "snapshot.json")?;
    let mut writes: Vec<(&str, u64, Timestamp, Vec<u8>)> = Vec::new();
    if due.snapshot {
        let roles = targets_roles(store)?;
        let listed: Vec<(&str, u64)> = roles.iter().map(|s| (s.role.as_str(), s.version)).collect();
        snapshot_version += 1;
        let expires = policy::expiry(policy::SNAPSHOT_LIFETIME, now);
        let bytes =
            repo::sign(&repo::snapshot(snapshot_version, expires, &listed), &[keys.snapshot()]).map_err(sign_err)?;
        snapshot_bytes = Some(bytes.clone());
        writes.push(("snapshot", snapshot_version, expires, bytes));
    }
    if due.timestamp {
        let version = state.timestamp.map_or(0, |t| t.version) + 1;
        let expires = policy::expiry(policy::TIMESTAMP_LIFETIME, now);
        let signed = repo::timestamp(version, expires, snapshot_version, snapshot_bytes.as_deref());
        let bytes = repo::sign(&signed, &[keys.timestamp()]).map_err(sign_err)?;
        writes.push(("timestamp", version, expires, bytes));
    }
    if !writes.is_empty() {
        let mut conn = store.conn();
        let tx = conn.transaction()?;
        for (role, version, expires, bytes) in writes {
            put_metadata(&tx, role, version, expires, &bytes)?;
        }
        tx.commit()?;
    }
    Ok(due)
}

/// The catalogue view of releases an upload added.
pub fn views(services: &Services, accepted: &Accepted) -> Result<Vec<ReleaseView>, ControllerError> {
    let mut views = Vec::new();
    for r in &accepted.releases {
        views.extend(services.store.release(&r.name, &r.version)?);
    }
    Ok(views)
}

/// Runs the re-signing timer until `shutdown`.
pub async fn run_timer(services: std::sync::Arc<Services>, shutdown: impl Future<Output = ()>) {
    let mut shutdown = std::pin::pin!(shutdown);
    let mut warned: std::collections::HashMap<String, Timestamp> = std::collections::HashMap::new();
    loop {
        let now = services.now();
        match resign(&services, now, false) {
            Ok(done) if !done.nothing() => tracing::info!(?done, "re-signed online TUF metadata"),
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "cannot re-sign online TUF metadata"),
        }
        match status(&services.store, now) {
            Ok(roles) => {
                for role in roles {
                    let Some(warning) = role.warning else { continue };
                    let due =
                        warned.get(&role.role).is_none_or(|at| now.saturating_since(*at) >= policy::WARNING_REPEAT);
                    if due {
                        tracing::warn!(role = %role.role, expires = %role.expires, "{warning}");
                        warned.insert(role.role, now);
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot read TUF metadata expiry"),
        }
        tokio::select! {
            () = &mut shutdown => return,
            () = tokio::time::sleep(policy::CHECK_INTERVAL) => {}
        }
    }
}
