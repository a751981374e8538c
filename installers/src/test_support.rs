//! Test-only helpers to build tar and tar.gz archives, including hostile ones
//! that `tar::Builder`'s path checks would refuse (header bytes are written
//! directly).

use std::io::Write;
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::write::GzEncoder;
use tar::{EntryType, Header};

/// Builds an archive entry by entry; every method writes raw header fields.
pub(crate) struct TarBuilder {
    inner: tar::Builder<Vec<u8>>,
}

impl TarBuilder {
    pub(crate) fn new() -> Self {
        TarBuilder { inner: tar::Builder::new(Vec::new()) }
    }

    /// A regular file with mode 0644.
    pub(crate) fn file(self, path: &str, data: &[u8]) -> Self {
        self.file_mode(path, data, 0o644)
    }

    pub(crate) fn file_mode(self, path: &str, data: &[u8], mode: u32) -> Self {
        self.raw(EntryType::Regular, path.as_bytes(), b"", mode, data)
    }

    pub(crate) fn dir(self, path: &str, mode: u32) -> Self {
        self.raw(EntryType::Directory, path.as_bytes(), b"", mode, b"")
    }

    pub(crate) fn symlink(self, path: &str, target: &str) -> Self {
        self.raw(EntryType::Symlink, path.as_bytes(), target.as_bytes(), 0o777, b"")
    }

    pub(crate) fn hardlink(self, path: &str, target: &str) -> Self {
        self.raw(EntryType::Link, path.as_bytes(), target.as_bytes(), 0o644, b"")
    }

    /// Any entry type, with `path` and `link` copied byte for byte into the
    /// 100-byte header fields (no validation at all).
    pub(crate) fn raw(mut self, kind: EntryType, path: &[u8], link: &[u8], mode: u32, data: &[u8]) -> Self {
        let mut header = Header::new_gnu();
        {
            let old = header.as_old_mut();
            old.name[..path.len()].copy_from_slice(path);
            old.linkname[..link.len()].copy_from_slice(link);
        }
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_size(data.len() as u64);
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        header.set_cksum();
        self.inner.append(&header, data).unwrap();
        self
    }

    /// A file with an arbitrarily long path (the builder adds a GNU long
    /// name header).
    pub(crate) fn long_file(mut self, path: &str, data: &[u8]) -> Self {
        let mut header = Header::new_gnu();
        header.set_entry_type(EntryType::Regular);
        header.set_mode(0o644);
        header.set_size(data.len() as u64);
        self.inner.append_data(&mut header, path, data).unwrap();
        self
    }

    /// A PAX extension header for the next entry.
    pub(crate) fn pax(mut self, records: &[(&str, &[u8])]) -> Self {
        self.inner.append_pax_extensions(records.iter().copied()).unwrap();
        self
    }

    pub(crate) fn tar(self) -> Vec<u8> {
        self.inner.into_inner().unwrap()
    }

    pub(crate) fn tar_gz(self) -> Vec<u8> {
        gzip(&self.tar())
    }
}

pub(crate) fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

/// Writes `bytes` to `dir/name` and returns the path.
pub(crate) fn write_artifact(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// Sorted names in a directory.
pub(crate) fn list(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

/// Polls `condition` until it holds or `limit` passes; true if it held.
/// For conditions no event announces (a killed process disappearing).
pub(crate) fn wait_until(limit: std::time::Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if condition() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}
