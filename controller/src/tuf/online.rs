//! The controller's online TUF keys (timestamp and snapshot), kept in the
//! data directory as ed25519 key files (mode 0600), created on first start.
//!
//! They are the only TUF keys the controller holds. Whoever steals the data
//! directory can sign new snapshots and timestamps with them, which lets an
//! attacker withhold updates until the timestamp expires, but not add or
//! change a release: targets are signed offline.

use crate::datadir::{DataDir, write_atomic};
use crate::error::ControllerError;
use flotte_protocol::SecretKey;
use flotte_protocol::tuf::repo::Ed25519Signer;
use std::path::Path;

/// The online signers.
pub struct OnlineKeys {
    timestamp: Ed25519Signer,
    snapshot: Ed25519Signer,
    timestamp_public: flotte_protocol::PublicKey,
    snapshot_public: flotte_protocol::PublicKey,
}

impl OnlineKeys {
    /// Loads the keys from `dir`, creating any that is missing.
    pub fn load_or_create(dir: &DataDir) -> Result<Self, ControllerError> {
        let timestamp = load_or_create(&dir.root().join("tuf-timestamp.key"))?;
        let snapshot = load_or_create(&dir.root().join("tuf-snapshot.key"))?;
        Ok(OnlineKeys {
            timestamp: Ed25519Signer::from_seed(&timestamp.seed()),
            snapshot: Ed25519Signer::from_seed(&snapshot.seed()),
            timestamp_public: timestamp.public_key(),
            snapshot_public: snapshot.public_key(),
        })
    }

    pub fn timestamp(&self) -> &Ed25519Signer {
        &self.timestamp
    }

    pub fn snapshot(&self) -> &Ed25519Signer {
        &self.snapshot
    }

    /// The public halves, for `GET /v1/tuf/online-keys`.
    pub fn view(&self) -> flotte_protocol::api::OnlineKeysView {
        flotte_protocol::api::OnlineKeysView {
            timestamp: self.timestamp_public.clone(),
            snapshot: self.snapshot_public.clone(),
        }
    }
}

fn load_or_create(path: &Path) -> Result<SecretKey, ControllerError> {
    match std::fs::read_to_string(path) {
        Ok(text) => SecretKey::from_file_contents(&text)
            .map_err(|e| ControllerError::Corrupt(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = SecretKey::from_seed(crate::secrets::random_seed());
            write_atomic(path, key.to_file_contents().as_bytes(), 0o600)?;
            Ok(key)
        }
        Err(e) => Err(ControllerError::Io { context: "cannot read", path: path.to_path_buf(), source: e }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_created_once_and_then_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::new(dir.path());
        let first = OnlineKeys::load_or_create(&data).unwrap();
        let again = OnlineKeys::load_or_create(&data).unwrap();
        assert_eq!(first.view(), again.view());
        assert_ne!(first.timestamp().keyid(), first.snapshot().keyid());
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir.path().join("tuf-snapshot.key")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
