//! Publishing a package: hash the file, sign its metadata, upload the
//! content, then publish the signed release.

use crate::client::AdminClient;
use anyhow::{Context, Result};
use flotte_protocol::api::ReleaseView;
use flotte_protocol::{ContentHasher, InstallerKind, ReleaseMetadata, SecretKey, Timestamp};
use std::io::Read;
use std::path::Path;
use std::time::SystemTime;

/// Hashes `path` in one streaming pass.
pub fn describe(path: &Path, name: &str, version: &str, installer: InstallerKind) -> Result<ReleaseMetadata> {
    let mut file = std::fs::File::open(path).with_context(|| format!("cannot open package {}", path.display()))?;
    let mut hasher = ContentHasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    let (sha256, size) = hasher.finish();
    let metadata = ReleaseMetadata {
        name: name.into(),
        version: version.into(),
        sha256,
        size,
        installer,
        created_at: Timestamp::from_system_time(SystemTime::now()),
    };
    metadata.validate()?;
    Ok(metadata)
}

/// Signs, uploads and publishes `path` as `name@version`.
pub fn publish(client: &AdminClient, key: &SecretKey, path: &Path, name: &str, version: &str) -> Result<ReleaseView> {
    let metadata = describe(path, name, version, InstallerKind::Archive)?;
    let signed = key.sign_release(&metadata);
    client.upload_content(&metadata.sha256, path)?;
    Ok(client.publish(&signed)?)
}
