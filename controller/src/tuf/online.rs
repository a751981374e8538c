//! The controller's online TUF keys (timestamp and snapshot), kept in the
//! data directory as ed25519 key files (mode 0600), created on first start,
//! and their rotation.
//!
//! They are the only TUF keys the controller holds. Whoever steals the data
//! directory can sign new snapshots and timestamps with them, which lets an
//! attacker withhold updates until the timestamp expires, but not add or
//! change a release: targets are signed offline. The way out of such a
//! theft is a rotation:
//! 1. [`OnlineKeys::prepare_next`] creates the *next* key of each role
//!    (`tuf-ROLE.next.key`) and gives their public halves to the admin;
//! 2. the admin signs a root that names them, offline, with the root keys;
//! 3. once that root is stored, [`OnlineKeys::adopt_named`] renames each
//!    next key the root names over the current one and signs with it from
//!    then on. Agents follow the new root and, from it, refuse anything the
//!    old keys sign.
//!
//! Guarantees:
//! - A next key is used only once a stored root names it; until then the
//!   current keys keep signing, so a rotation abandoned halfway changes
//!   nothing.
//! - Adoption is a rename followed by an fsync of the directory, per role.
//!   It is idempotent and also runs at start-up against the newest stored
//!   root, so a crash between storing the root and adopting its keys is
//!   finished on the next start.
//! - The old secret key is gone once replaced (the rename overwrites it).

use crate::datadir::{DataDir, write_atomic};
use crate::error::ControllerError;
use flotte_protocol::api::OnlineKeysView;
use flotte_protocol::tuf::repo::Ed25519Signer;
use flotte_protocol::tuf::{SNAPSHOT, TIMESTAMP};
use flotte_protocol::{PublicKey, SecretKey};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// The two online roles, in the order their files are handled.
const ROLES: [&str; 2] = [TIMESTAMP, SNAPSHOT];

/// The signers in use at one moment.
pub struct Signers {
    timestamp: Ed25519Signer,
    snapshot: Ed25519Signer,
    view: OnlineKeysView,
}

impl Signers {
    pub fn timestamp(&self) -> &Ed25519Signer {
        &self.timestamp
    }

    pub fn snapshot(&self) -> &Ed25519Signer {
        &self.snapshot
    }

    /// The signer of `role` (timestamp or snapshot).
    pub fn of(&self, role: &str) -> &Ed25519Signer {
        if role == TIMESTAMP { &self.timestamp } else { &self.snapshot }
    }
}

/// The online keys of a data directory.
pub struct OnlineKeys {
    dir: PathBuf,
    current: RwLock<Arc<Signers>>,
}

impl OnlineKeys {
    /// Loads the keys from `dir`, creating any that is missing.
    pub fn load_or_create(dir: &DataDir) -> Result<Self, ControllerError> {
        let dir = dir.root().to_path_buf();
        let signers = load_signers(&dir)?;
        Ok(OnlineKeys { dir, current: RwLock::new(Arc::new(signers)) })
    }

    /// The signers to use now.
    pub fn signers(&self) -> Arc<Signers> {
        Arc::clone(&self.current.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// The public halves of the keys in use, for `GET /v1/tuf/online-keys`.
    pub fn view(&self) -> OnlineKeysView {
        self.signers().view.clone()
    }

    /// Creates the next key of each role, or returns the ones already
    /// prepared; they sign nothing until a stored root names them.
    pub fn prepare_next(&self) -> Result<OnlineKeysView, ControllerError> {
        let timestamp = load_or_create(&next_path(&self.dir, TIMESTAMP))?.public_key();
        let snapshot = load_or_create(&next_path(&self.dir, SNAPSHOT))?.public_key();
        Ok(OnlineKeysView { timestamp, snapshot })
    }

    /// The key id of the prepared next key of `role`, if there is one.
    pub fn next_keyid(&self, role: &str) -> Result<Option<String>, ControllerError> {
        Ok(load(&next_path(&self.dir, role))?.map(|k| Ed25519Signer::from_seed(&k.seed()).keyid().to_string()))
    }

    /// Adopts each prepared next key for which `named(role, keyid)` holds
    /// (the stored root names it for that role): renames it over the
    /// current key and signs with it from now on. Returns the roles whose
    /// key changed.
    pub fn adopt_named(&self, named: impl Fn(&str, &str) -> bool) -> Result<Vec<&'static str>, ControllerError> {
        let mut adopted = Vec::new();
        for role in ROLES {
            let Some(keyid) = self.next_keyid(role)? else { continue };
            if named(role, &keyid) {
                let (from, to) = (next_path(&self.dir, role), current_path(&self.dir, role));
                let io = |source| ControllerError::Io { context: "cannot adopt", path: from.clone(), source };
                std::fs::rename(&from, &to).map_err(io)?;
                std::fs::File::open(&self.dir).and_then(|d| d.sync_all()).map_err(io)?;
                adopted.push(role);
            }
        }
        if !adopted.is_empty() {
            let signers = load_signers(&self.dir)?;
            *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(signers);
        }
        Ok(adopted)
    }
}

fn current_path(dir: &Path, role: &str) -> PathBuf {
    dir.join(format!("tuf-{role}.key"))
}

fn next_path(dir: &Path, role: &str) -> PathBuf {
    dir.join(format!("tuf-{role}.next.key"))
}

fn load_signers(dir: &Path) -> Result<Signers, ControllerError> {
    let timestamp = load_or_create(&current_path(dir, TIMESTAMP))?;
    let snapshot = load_or_create(&current_path(dir, SNAPSHOT))?;
    let public = |k: &SecretKey| -> PublicKey { k.public_key() };
    Ok(Signers {
        view: OnlineKeysView { timestamp: public(&timestamp), snapshot: public(&snapshot) },
        timestamp: Ed25519Signer::from_seed(&timestamp.seed()),
        snapshot: Ed25519Signer::from_seed(&snapshot.seed()),
    })
}

fn load(path: &Path) -> Result<Option<SecretKey>, ControllerError> {
    match std::fs::read_to_string(path) {
        Ok(text) => SecretKey::from_file_contents(&text)
            .map(Some)
            .map_err(|e| ControllerError::Corrupt(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ControllerError::Io { context: "cannot read", path: path.to_path_buf(), source: e }),
    }
}

fn load_or_create(path: &Path) -> Result<SecretKey, ControllerError> {
    if let Some(key) = load(path)? {
        return Ok(key);
    }
    let key = SecretKey::from_seed(crate::secrets::random_seed());
    write_atomic(path, key.to_file_contents().as_bytes(), 0o600)?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> (tempfile::TempDir, OnlineKeys) {
        let dir = tempfile::tempdir().unwrap();
        let keys = OnlineKeys::load_or_create(&DataDir::new(dir.path())).unwrap();
        (dir, keys)
    }

    #[test]
    fn keys_are_created_once_and_then_reloaded() {
        let (dir, first) = keys();
        let again = OnlineKeys::load_or_create(&DataDir::new(dir.path())).unwrap();
        assert_eq!(first.view(), again.view());
        assert_ne!(first.signers().timestamp().keyid(), first.signers().snapshot().keyid());
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir.path().join("tuf-snapshot.key")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn prepared_keys_sign_nothing_until_a_root_names_them() {
        let (_dir, keys) = keys();
        let before = keys.view();
        let next = keys.prepare_next().unwrap();
        assert_eq!(keys.prepare_next().unwrap(), next, "preparing twice gives the same keys");
        assert_ne!(next.timestamp, before.timestamp);
        assert_eq!(keys.view(), before, "still signing with the current keys");
        assert!(keys.adopt_named(|_, _| false).unwrap().is_empty());
        assert_eq!(keys.view(), before);
    }

    #[test]
    fn adopting_replaces_exactly_the_named_roles_and_survives_a_restart() {
        let (dir, keys) = keys();
        let before = keys.view();
        let next = keys.prepare_next().unwrap();
        let next_timestamp = keys.next_keyid(TIMESTAMP).unwrap().unwrap();

        // A root that names only the new timestamp key.
        let adopted = keys.adopt_named(|role, keyid| role == TIMESTAMP && keyid == next_timestamp).unwrap();
        assert_eq!(adopted, [TIMESTAMP]);
        assert_eq!(
            keys.view(),
            OnlineKeysView { timestamp: next.timestamp.clone(), snapshot: before.snapshot.clone() }
        );
        assert_eq!(keys.signers().timestamp().keyid(), next_timestamp);
        assert!(!dir.path().join("tuf-timestamp.next.key").exists(), "the next key became the current one");

        let reloaded = OnlineKeys::load_or_create(&DataDir::new(dir.path())).unwrap();
        assert_eq!(reloaded.view(), keys.view());
        assert!(reloaded.next_keyid(TIMESTAMP).unwrap().is_none());
        assert!(reloaded.next_keyid(SNAPSHOT).unwrap().is_some(), "the unnamed next key waits");
    }
}
