//! Content-addressed package storage: `DATA/content/<sha256>`.
//!
//! Guarantees:
//! - A blob is visible under its digest only after its bytes hashed to that
//!   digest and were fsynced; an upload that fails or lies leaves nothing.
//! - Uploads are capped at a configured size while they stream, so a client
//!   cannot fill the disk by lying about the length.
//! - A stored blob is never changed or deleted, so readers (the send-side
//!   [`cache`]) may keep its bytes as long as they like.

pub mod cache;

use crate::error::ControllerError;
use flotte_protocol::{ContentHasher, Sha256Digest};
use std::path::{Path, PathBuf};
use tokio::io::AsyncWriteExt;

/// Why an upload was refused.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("upload exceeds the maximum package size of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("uploaded bytes hash to {actual}, not to the {expected} named in the request")]
    DigestMismatch { expected: Sha256Digest, actual: Sha256Digest },
    #[error(transparent)]
    Storage(#[from] ControllerError),
}

/// The blob directory.
#[derive(Debug, Clone)]
pub struct ContentStore {
    dir: PathBuf,
}

impl ContentStore {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        ContentStore { dir: dir.into() }
    }

    /// Where the blob with `digest` lives (whether or not it exists).
    pub fn path(&self, digest: &Sha256Digest) -> PathBuf {
        self.dir.join(digest.to_hex())
    }

    /// The size of a stored blob, `None` if absent.
    pub fn size(&self, digest: &Sha256Digest) -> Option<u64> {
        std::fs::metadata(self.path(digest)).ok().filter(|m| m.is_file()).map(|m| m.len())
    }

    /// Starts an upload into a temporary file next to the blobs.
    pub async fn begin_upload(&self, limit: u64) -> Result<Upload, ControllerError> {
        let tmp = self.dir.join(format!(".upload-{}", crate::secrets::random_hex(8)));
        let file = tokio::fs::File::create(&tmp).await.map_err(ControllerError::io("cannot create upload", &tmp))?;
        Ok(Upload { file, tmp, dir: self.dir.clone(), hasher: ContentHasher::new(), limit })
    }
}

/// An upload in progress. Dropping it without `commit` deletes the bytes.
pub struct Upload {
    file: tokio::fs::File,
    tmp: PathBuf,
    dir: PathBuf,
    hasher: ContentHasher,
    limit: u64,
}

impl Upload {
    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), UploadError> {
        if self.hasher.len() + bytes.len() as u64 > self.limit {
            return Err(UploadError::TooLarge { limit: self.limit });
        }
        self.hasher.update(bytes);
        self.file.write_all(bytes).await.map_err(ControllerError::io("cannot write upload", &self.tmp))?;
        Ok(())
    }

    /// Makes the blob visible under `expected` if the bytes hash to it.
    /// Returns the size.
    pub async fn commit(mut self, expected: &Sha256Digest) -> Result<u64, UploadError> {
        let (actual, len) = std::mem::take(&mut self.hasher).finish();
        if actual != *expected {
            return Err(UploadError::DigestMismatch { expected: *expected, actual });
        }
        self.file.sync_all().await.map_err(ControllerError::io("cannot fsync upload", &self.tmp))?;
        let target = self.dir.join(expected.to_hex());
        tokio::fs::rename(&self.tmp, &target).await.map_err(ControllerError::io("cannot store blob", &target))?;
        sync_dir(&self.dir)?;
        Ok(len)
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        // After a successful commit the temp path no longer exists.
        let _ = std::fs::remove_file(&self.tmp);
    }
}

fn sync_dir(dir: &Path) -> Result<(), ControllerError> {
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(ControllerError::io("cannot fsync", dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_blob_appears_only_when_its_bytes_match_its_digest() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::new(dir.path());
        let digest = Sha256Digest::of(b"hello");

        let mut lying = store.begin_upload(100).await.unwrap();
        lying.write(b"hellO").await.unwrap();
        assert!(matches!(lying.commit(&digest).await, Err(UploadError::DigestMismatch { .. })));
        assert_eq!(store.size(&digest), None);

        let mut honest = store.begin_upload(100).await.unwrap();
        honest.write(b"hel").await.unwrap();
        honest.write(b"lo").await.unwrap();
        assert_eq!(honest.commit(&digest).await.unwrap(), 5);
        assert_eq!(store.size(&digest), Some(5));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temp files left");
    }

    #[tokio::test]
    async fn uploads_stop_at_the_size_limit() {
        let dir = tempfile::tempdir().unwrap();
        let mut up = ContentStore::new(dir.path()).begin_upload(4).await.unwrap();
        assert!(matches!(up.write(b"12345").await, Err(UploadError::TooLarge { limit: 4 })));
    }
}
