//! Offline ed25519 key files (TUF root, targets and delegated-role keys):
//! `NAME` (secret, 0600) and `NAME.pub`.

use anyhow::{Context, Result, bail};
use flotte_protocol::{PublicKey, SecretKey};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Creates a new key pair at `secret_path` and `secret_path.pub`; refuses
/// to overwrite either.
pub fn generate(secret_path: &Path) -> Result<(SecretKey, PathBuf)> {
    let public_path = public_path_for(secret_path);
    for p in [secret_path, public_path.as_path()] {
        if p.exists() {
            bail!("{} already exists; refusing to overwrite a key", p.display());
        }
    }
    let key = SecretKey::from_seed(crate::secrets::random_seed());
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(secret_path)
        .with_context(|| format!("cannot create {}", secret_path.display()))?;
    f.write_all(key.to_file_contents().as_bytes())?;
    f.sync_all()?;
    std::fs::write(&public_path, key.public_key().to_file_contents())?;
    Ok((key, public_path))
}

pub fn public_path_for(secret_path: &Path) -> PathBuf {
    let mut s = secret_path.as_os_str().to_owned();
    s.push(".pub");
    PathBuf::from(s)
}

pub fn load_secret(path: &Path) -> Result<SecretKey> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read signing key {}", path.display()))?;
    SecretKey::from_file_contents(&text).with_context(|| format!("{} is not a signing key", path.display()))
}

pub fn load_public(path: &Path) -> Result<PublicKey> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read public key {}", path.display()))?;
    PublicKey::from_file_contents(&text).with_context(|| format!("{} is not a public key", path.display()))
}
