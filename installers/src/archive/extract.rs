//! Hardened tar extraction into an empty staging directory.
//!
//! We iterate the raw tar records ourselves instead of calling `tar`'s
//! `unpack`, so that every rule is visible here. Guarantees, for any input:
//! - nothing is created, written or linked outside `dest` (paths are
//!   normalized by [`super::entry_path`], parents are never symlinks, files
//!   are opened with `O_CREAT|O_EXCL`, which also refuses a final symlink);
//! - nothing is overwritten: a second entry for an existing file or link is
//!   an [`InstallError::UnsafeEntry`];
//! - every symlink stays inside `dest`, both lexically when it is created and
//!   when followed through other links once the tree is complete;
//! - hardlinks only join regular files extracted earlier from the same
//!   archive;
//! - no device, fifo, setuid, setgid or sticky bit reaches the disk, and
//!   owners, times and xattrs from the archive are ignored (files belong to
//!   the agent's user);
//! - entry count and bytes read are capped by [`ArchiveLimits`], counted on
//!   the real stream; extension headers are capped at [`MAX_EXTENSION_BYTES`];
//! - on success every file and directory has been fsynced.
//!
//! On error `dest` may hold a partial tree; the caller removes it.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tar::EntryType;

use super::entry_path;
use super::limits::{ArchiveLimits, Budget};
use crate::error::{InstallError, io_err};
use crate::fsutil::fsync_dir;

/// Largest GNU long-name/long-link or PAX header accepted, in bytes. The
/// `tar` crate would otherwise buffer any size in memory.
pub(crate) const MAX_EXTENSION_BYTES: u64 = 64 * 1024;

/// Mode of directories that the archive implies but does not list.
const IMPLICIT_DIR_MODE: u32 = 0o755;

/// What an extraction produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Extracted {
    /// Members extracted (files, directories, links, global headers).
    pub(crate) entries: u64,
    /// Entry-data bytes read from the stream.
    pub(crate) bytes: u64,
    /// Permission bits the archive gives its root (`./`), or 0o755.
    pub(crate) root_mode: u32,
}

/// Extracts the tar `stream` (read from `artifact`, named in errors) into
/// the existing, empty directory `dest`.
pub(crate) fn extract(
    stream: impl Read,
    artifact: &Path,
    dest: &Path,
    limits: ArchiveLimits,
) -> Result<Extracted, InstallError> {
    let mut ex = Extractor {
        dest,
        artifact,
        budget: Budget::new(limits),
        buf: vec![0; 64 * 1024],
        dirs: HashSet::new(),
        dir_modes: HashMap::new(),
        files: HashSet::new(),
        symlinks: Vec::new(),
        root_mode: IMPLICIT_DIR_MODE,
    };
    let mut archive = tar::Archive::new(stream);
    let entries = archive.entries().map_err(|e| ex.read_err(e))?.raw(true);
    let mut pending = Extensions::default();
    for entry in entries {
        let mut entry = entry.map_err(|e| ex.read_err(e))?;
        match entry.header().entry_type() {
            EntryType::GNULongName => {
                let data = without_nul_terminator(ex.read_extension(&mut entry)?);
                set_once(&mut pending.long_name, data, "GNU long name").map_err(|e| ex.read_err(e))?;
            }
            EntryType::GNULongLink => {
                let data = without_nul_terminator(ex.read_extension(&mut entry)?);
                set_once(&mut pending.long_link, data, "GNU long link").map_err(|e| ex.read_err(e))?;
            }
            EntryType::XHeader => {
                let data = ex.read_extension(&mut entry)?;
                set_once(&mut pending.pax, data, "PAX").map_err(|e| ex.read_err(e))?;
            }
            EntryType::XGlobalHeader => {
                // Global PAX defaults (mtime, charset...) change nothing we honour.
                ex.budget.count_entry()?;
                ex.read_extension(&mut entry)?;
            }
            _ => {
                ex.budget.count_entry()?;
                ex.member(&mut entry, std::mem::take(&mut pending))?;
            }
        }
    }
    if !pending.is_empty() {
        return Err(ex.read_err(invalid_data("extension header at the end of the archive describes no entry")));
    }
    ex.finish()
}

/// Extension records that describe the next member.
#[derive(Debug, Default)]
struct Extensions {
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
    pax: Option<Vec<u8>>,
}

impl Extensions {
    fn is_empty(&self) -> bool {
        self.long_name.is_none() && self.long_link.is_none() && self.pax.is_none()
    }
}

/// The PAX keys we honour (or refuse).
#[derive(Debug, Default)]
struct Pax {
    path: Option<Vec<u8>>,
    linkpath: Option<Vec<u8>>,
    size: Option<u64>,
    sparse: bool,
}

/// State of one extraction.
struct Extractor<'a> {
    dest: &'a Path,
    artifact: &'a Path,
    budget: Budget,
    /// Copy buffer, allocated once.
    buf: Vec<u8>,
    /// Relative paths known to be real directories we created; a parent must
    /// be one of these (never a symlink) before anything is created in it.
    dirs: HashSet<PathBuf>,
    /// Final permission bits per directory, applied once all entries are in
    /// (so a read-only directory does not block its own contents).
    dir_modes: HashMap<PathBuf, u32>,
    /// Regular files extracted so far: the only valid hardlink targets.
    files: HashSet<PathBuf>,
    /// Symlinks created, re-checked against chained escapes at the end.
    symlinks: Vec<PathBuf>,
    /// Mode for `dest` itself, from a `./` entry.
    root_mode: u32,
}

impl Extractor<'_> {
    /// Extracts one member (anything but an extension header).
    fn member<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>, ext: Extensions) -> Result<(), InstallError> {
        let header = entry.header();
        let kind = header.entry_type();
        let header_path = header.path_bytes().into_owned();
        let header_link = header.link_name_bytes().map(|l| l.into_owned());
        let header_mode = header.mode();
        let size = entry.size();
        let name = display_name(ext.long_name.as_deref().unwrap_or(&header_path));

        let pax = match ext.pax {
            Some(bytes) => self.parse_pax(&bytes)?,
            None => Pax::default(),
        };
        if pax.sparse || kind == EntryType::GNUSparse {
            return Err(unsafe_entry(&name, "sparse files are not supported"));
        }
        if pax.size.is_some_and(|s| s != size) {
            // Parsers that disagree on where the next header starts see
            // different archives; refuse rather than pick one.
            return Err(unsafe_entry(&name, "PAX size disagrees with the header size"));
        }
        let raw_path = choose(&name, pax.path, ext.long_name, Some(header_path), "path")?.unwrap_or_default();
        let name = display_name(&raw_path);
        let path = entry_path::normalize(&raw_path).map_err(|r| unsafe_entry(&name, r))?;
        let mode = header_mode.map_err(|e| self.read_err(e))? & 0o777;

        match kind {
            EntryType::Regular | EntryType::Continuous => self.file(entry, &name, &path, mode),
            EntryType::Directory => {
                self.drain(entry)?;
                self.directory(&name, &path, mode)
            }
            EntryType::Symlink => {
                let target = choose(&name, pax.linkpath, ext.long_link, header_link, "link")?.unwrap_or_default();
                self.drain(entry)?;
                self.symlink(&name, &path, &target)
            }
            EntryType::Link => {
                let target = choose(&name, pax.linkpath, ext.long_link, header_link, "link")?.unwrap_or_default();
                self.drain(entry)?;
                self.hardlink(&name, &path, &target)
            }
            EntryType::Char | EntryType::Block => Err(unsafe_entry(&name, "device nodes are not allowed")),
            EntryType::Fifo => Err(unsafe_entry(&name, "fifos are not allowed")),
            other => Err(unsafe_entry(&name, format!("unsupported entry type {:?}", char::from(other.as_byte())))),
        }
    }

    fn file<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        name: &str,
        path: &Path,
        mode: u32,
    ) -> Result<(), InstallError> {
        let full = self.prepare(name, path)?;
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true) // O_EXCL: never overwrite, never follow a symlink
            .mode(0o600)
            .open(&full)
            .map_err(|e| exists_is_duplicate(e, name, "create file", &full))?;
        let size = entry.size();
        let written = self.copy(entry, &mut file, &full)?;
        if written != size {
            return Err(self.read_err(invalid_data("entry data is truncated")));
        }
        // Exact bits, whatever the umask; special bits were masked off.
        file.set_permissions(Permissions::from_mode(mode)).map_err(io_err("set permissions on", &full))?;
        file.sync_all().map_err(io_err("fsync file", &full))?;
        self.files.insert(path.to_path_buf());
        Ok(())
    }

    fn directory(&mut self, name: &str, path: &Path, mode: u32) -> Result<(), InstallError> {
        if path.as_os_str().is_empty() {
            self.root_mode = mode;
            return Ok(());
        }
        if !self.dirs.contains(path) {
            let full = self.prepare(name, path)?;
            DirBuilder::new()
                .mode(0o700)
                .create(&full)
                .map_err(|e| exists_is_duplicate(e, name, "create directory", &full))?;
            self.dirs.insert(path.to_path_buf());
        }
        // A repeated directory entry only updates the mode.
        self.dir_modes.insert(path.to_path_buf(), mode);
        Ok(())
    }

    fn symlink(&mut self, name: &str, path: &Path, target: &[u8]) -> Result<(), InstallError> {
        entry_path::symlink_target_is_inside(path, target).map_err(|r| unsafe_entry(name, r))?;
        let full = self.prepare(name, path)?;
        std::os::unix::fs::symlink(OsStr::from_bytes(target), &full)
            .map_err(|e| exists_is_duplicate(e, name, "create symlink", &full))?;
        self.symlinks.push(path.to_path_buf());
        Ok(())
    }

    fn hardlink(&mut self, name: &str, path: &Path, target: &[u8]) -> Result<(), InstallError> {
        let target = entry_path::normalize(target).map_err(|r| unsafe_entry(name, format!("hardlink target: {r}")))?;
        if !self.files.contains(&target) {
            return Err(unsafe_entry(
                name,
                "hardlink target is not a regular file extracted earlier from this archive",
            ));
        }
        let full = self.prepare(name, path)?;
        fs::hard_link(self.dest.join(&target), &full)
            .map_err(|e| exists_is_duplicate(e, name, "create hardlink", &full))?;
        self.files.insert(path.to_path_buf());
        Ok(())
    }

    /// Makes sure every parent of `path` is a real directory inside `dest`
    /// (creating missing ones) and returns the full path of the entry.
    fn prepare(&mut self, name: &str, path: &Path) -> Result<PathBuf, InstallError> {
        let Some(parent) = path.parent() else {
            // Only the empty path has no parent: the staging root itself.
            return Err(unsafe_entry(name, "entry would replace the package root"));
        };
        let mut prefix = PathBuf::new();
        for part in parent.iter() {
            prefix.push(part);
            if self.dirs.contains(&prefix) {
                continue;
            }
            let full = self.dest.join(&prefix);
            match fs::symlink_metadata(&full) {
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(unsafe_entry(name, "parent path contains a symlink (write through symlink)"));
                }
                Ok(m) if !m.is_dir() => {
                    return Err(unsafe_entry(name, "parent path is not a directory"));
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    DirBuilder::new().mode(0o700).create(&full).map_err(io_err("create directory", &full))?;
                    self.dir_modes.entry(prefix.clone()).or_insert(IMPLICIT_DIR_MODE);
                }
                Err(e) => return Err(io_err("inspect", &full)(e)),
            }
            self.dirs.insert(prefix.clone());
        }
        Ok(self.dest.join(path))
    }

    /// Copies entry data into `out`, charging the budget before each write.
    /// Returns the number of bytes copied.
    fn copy(&mut self, from: &mut impl Read, out: &mut File, path: &Path) -> Result<u64, InstallError> {
        let mut written = 0u64;
        loop {
            let n = self.read_chunk(from)?;
            if n == 0 {
                return Ok(written);
            }
            out.write_all(&self.buf[..n]).map_err(io_err("write", path))?;
            written += n as u64;
        }
    }

    /// Reads and discards entry data (e.g. a directory header with a size),
    /// still charging it: every byte decompressed counts.
    fn drain(&mut self, from: &mut impl Read) -> Result<(), InstallError> {
        while self.read_chunk(from)? > 0 {}
        Ok(())
    }

    /// Reads a GNU long name/link or PAX record into memory, bounded.
    fn read_extension<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<Vec<u8>, InstallError> {
        if entry.size() > MAX_EXTENSION_BYTES {
            return Err(unsafe_entry(
                &display_name(&entry.header().path_bytes()),
                format!("extension header larger than {MAX_EXTENSION_BYTES} bytes"),
            ));
        }
        let mut data = Vec::new();
        loop {
            let n = self.read_chunk(entry)?;
            if n == 0 {
                return Ok(data);
            }
            data.extend_from_slice(&self.buf[..n]);
        }
    }

    /// Reads one chunk into `buf` and charges it; 0 means end of entry.
    fn read_chunk(&mut self, from: &mut impl Read) -> Result<usize, InstallError> {
        loop {
            match from.read(&mut self.buf) {
                Ok(n) => {
                    self.budget.charge_bytes(n)?;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.read_err(e)),
            }
        }
    }

    fn parse_pax(&self, bytes: &[u8]) -> Result<Pax, InstallError> {
        let mut pax = Pax::default();
        for record in tar::PaxExtensions::new(bytes) {
            let record = record.map_err(|e| self.read_err(e))?;
            match record.key_bytes() {
                b"path" => pax.path = Some(record.value_bytes().to_vec()),
                b"linkpath" => pax.linkpath = Some(record.value_bytes().to_vec()),
                b"size" => {
                    let size = record
                        .value()
                        .ok()
                        .and_then(|v| v.parse::<u64>().ok())
                        .ok_or_else(|| self.read_err(invalid_data("malformed PAX size")))?;
                    pax.size = Some(size);
                }
                key if key.starts_with(b"GNU.sparse.") => pax.sparse = true,
                // mtime, uid, xattrs (incl. security.capability)...: ignored.
                _ => {}
            }
        }
        Ok(pax)
    }

    /// Checks links, applies directory modes and flushes directories.
    fn finish(self) -> Result<Extracted, InstallError> {
        for link in &self.symlinks {
            let full = self.dest.join(link);
            match entry_path::resolved_symlink_is_inside(self.dest, link) {
                Ok(Ok(())) => {}
                Ok(Err(reason)) => return Err(unsafe_entry(&link.to_string_lossy(), reason)),
                Err(e) => return Err(io_err("resolve symlink", full)(e)),
            }
        }
        for (dir, mode) in &self.dir_modes {
            let full = self.dest.join(dir);
            fs::set_permissions(&full, Permissions::from_mode(*mode)).map_err(io_err("set permissions on", &full))?;
        }
        for dir in &self.dirs {
            fsync_dir(&self.dest.join(dir))?;
        }
        fsync_dir(self.dest)?;
        Ok(Extracted { entries: self.budget.entries(), bytes: self.budget.bytes(), root_mode: self.root_mode })
    }

    fn read_err(&self, source: io::Error) -> InstallError {
        InstallError::ArchiveRead { path: self.artifact.to_path_buf(), source }
    }
}

/// Picks the one source of a long path: a PAX record or a GNU extension
/// header (never both: parsers disagree on which wins), else the header.
fn choose(
    name: &str,
    pax: Option<Vec<u8>>,
    gnu: Option<Vec<u8>>,
    header: Option<Vec<u8>>,
    what: &str,
) -> Result<Option<Vec<u8>>, InstallError> {
    match (pax, gnu) {
        (Some(_), Some(_)) => Err(unsafe_entry(name, format!("both a PAX {what} and a GNU long {what}"))),
        (Some(p), None) => Ok(Some(p)),
        (None, Some(g)) => Ok(Some(g)),
        (None, None) => Ok(header),
    }
}

/// GNU long names and links are stored NUL-terminated.
fn without_nul_terminator(mut data: Vec<u8>) -> Vec<u8> {
    while data.last() == Some(&0) {
        data.pop();
    }
    data
}

fn set_once(slot: &mut Option<Vec<u8>>, data: Vec<u8>, what: &str) -> io::Result<()> {
    if slot.is_some() {
        return Err(invalid_data(&format!("two {what} headers for one entry")));
    }
    *slot = Some(data);
    Ok(())
}

fn invalid_data(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_owned())
}

/// `EEXIST` while creating means a second entry for the same path.
fn exists_is_duplicate(e: io::Error, name: &str, op: &'static str, full: &Path) -> InstallError {
    if e.kind() == io::ErrorKind::AlreadyExists {
        unsafe_entry(name, "duplicate entry (would overwrite an earlier one)")
    } else {
        io_err(op, full)(e)
    }
}

fn unsafe_entry(name: &str, reason: impl Into<String>) -> InstallError {
    InstallError::UnsafeEntry { entry: name.to_owned(), reason: reason.into() }
}

/// An entry path fit for an error message: lossy UTF-8, at most 256 chars.
fn display_name(raw: &[u8]) -> String {
    const MAX_CHARS: usize = 256;
    let lossy = String::from_utf8_lossy(raw);
    match lossy.char_indices().nth(MAX_CHARS) {
        Some((cut, _)) => format!("{}...", &lossy[..cut]),
        None => lossy.into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{TarBuilder, gzip, list};
    use std::os::unix::fs::{FileTypeExt, MetadataExt};

    /// A tempdir with `stage/` (the extraction target) and `outside/` (must
    /// stay empty whatever the archive says).
    struct Scratch {
        _tmp: tempfile::TempDir,
        dest: PathBuf,
        outside: PathBuf,
    }

    impl Scratch {
        fn new() -> Self {
            let tmp = tempfile::tempdir().unwrap();
            let dest = tmp.path().join("stage");
            let outside = tmp.path().join("outside");
            DirBuilder::new().mode(0o700).create(&dest).unwrap();
            fs::create_dir(&outside).unwrap();
            Scratch { _tmp: tmp, dest, outside }
        }

        fn run(&self, archive: TarBuilder) -> Result<Extracted, InstallError> {
            self.run_with(ArchiveLimits::default(), archive)
        }

        fn run_with(&self, limits: ArchiveLimits, archive: TarBuilder) -> Result<Extracted, InstallError> {
            let bytes = archive.tar();
            extract(&bytes[..], Path::new("test.tar"), &self.dest, limits)
        }

        /// Nothing appeared next to the staging directory.
        fn assert_outside_untouched(&self) {
            assert!(list(&self.outside).is_empty(), "{:?}", list(&self.outside));
            assert_eq!(list(self.dest.parent().unwrap()), vec!["outside", "stage"]);
        }

        fn outside_str(&self, rest: &str) -> String {
            format!("{}/{rest}", self.outside.display())
        }
    }

    fn mode(path: &Path) -> u32 {
        fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[track_caller]
    fn assert_unsafe(result: Result<Extracted, InstallError>, entry: &str, reason_part: &str) {
        match result {
            Err(InstallError::UnsafeEntry { entry: e, reason }) => {
                assert_eq!(e, entry);
                assert!(reason.contains(reason_part), "reason {reason:?}");
            }
            other => panic!("expected UnsafeEntry for {entry:?}, got {other:?}"),
        }
    }

    #[test]
    fn extracts_files_directories_and_inside_links() {
        let s = Scratch::new();
        let out = s
            .run(
                TarBuilder::new()
                    .dir("bin/", 0o755)
                    .file_mode("bin/tool", b"#!/bin/sh\n", 0o755)
                    .file("share/doc/README", b"hello")
                    .symlink("bin/alias", "tool")
                    .symlink("doc", "share/doc")
                    .hardlink("bin/tool2", "bin/tool"),
            )
            .unwrap();
        assert_eq!(out.entries, 6);
        assert_eq!(out.bytes, 15);
        assert_eq!(out.root_mode, 0o755);
        assert_eq!(fs::read(s.dest.join("bin/tool")).unwrap(), b"#!/bin/sh\n");
        assert_eq!(mode(&s.dest.join("bin/tool")), 0o755);
        assert_eq!(fs::read_to_string(s.dest.join("doc/README")).unwrap(), "hello");
        assert_eq!(fs::read_link(s.dest.join("bin/alias")).unwrap(), Path::new("tool"));
        let ino = |p: &str| fs::metadata(s.dest.join(p)).unwrap().ino();
        assert_eq!(ino("bin/tool2"), ino("bin/tool"), "hardlink shares the inode");
        // `share/` and `share/doc/` were implied, not listed.
        assert_eq!(mode(&s.dest.join("share/doc")), 0o755);
        s.assert_outside_untouched();
    }

    #[test]
    fn dotdot_entry_is_rejected_and_nothing_written_outside() {
        for evil in ["../outside/evil", "a/../../outside/evil", "./.."] {
            let s = Scratch::new();
            let result = s.run(TarBuilder::new().file("ok", b"fine").raw(
                EntryType::Regular,
                evil.as_bytes(),
                b"",
                0o644,
                b"pwned",
            ));
            assert_unsafe(result, evil, "'..'");
            s.assert_outside_untouched();
        }
        let s = Scratch::new();
        let result = s.run(TarBuilder::new().dir("../outside/d/", 0o755));
        assert_unsafe(result, "../outside/d/", "'..'");
        s.assert_outside_untouched();
    }

    #[test]
    fn absolute_entry_is_rejected() {
        let s = Scratch::new();
        let evil = s.outside_str("abs");
        let result = s.run(TarBuilder::new().file(&evil, b"pwned"));
        assert_unsafe(result, &evil, "absolute");
        s.assert_outside_untouched();
    }

    #[test]
    fn windows_prefixed_entries_are_rejected() {
        for (evil, reason) in [("C:\\evil", "backslash"), ("C:/evil", "drive"), ("..\\outside\\evil", "backslash")] {
            let s = Scratch::new();
            assert_unsafe(s.run(TarBuilder::new().file(evil, b"x")), evil, reason);
            assert!(list(&s.dest).is_empty());
        }
    }

    #[test]
    fn symlink_escape_is_rejected() {
        // Absolute target, then a file written through it.
        let s = Scratch::new();
        let target = s.outside_str("");
        let result = s.run(TarBuilder::new().symlink("out", &target).file("out/pwned", b"x"));
        assert_unsafe(result, "out", "absolute");
        s.assert_outside_untouched();
        assert!(fs::symlink_metadata(s.dest.join("out")).is_err());

        // Relative target climbing out.
        let s = Scratch::new();
        let result = s.run(TarBuilder::new().symlink("a/out", "../../outside").file("a/out/pwned", b"x"));
        assert_unsafe(result, "a/out", "escapes");
        s.assert_outside_untouched();
    }

    #[test]
    fn chained_symlink_escape_is_rejected() {
        let s = Scratch::new();
        let result = s.run(
            TarBuilder::new()
                .dir("a/", 0o755)
                .symlink("b", "a/l/../outside") // lexically "a/outside": looks fine
                .symlink("a/l", ".."), // lexically the root: looks fine
        );
        assert_unsafe(result, "b", "outside");
        s.assert_outside_untouched();
    }

    #[test]
    fn write_through_symlink_is_rejected() {
        // The link itself is harmless (it stays inside); writing through it is not.
        let s = Scratch::new();
        let result = s.run(TarBuilder::new().dir("real/", 0o755).symlink("alias", "real").file("alias/f", b"through"));
        assert_unsafe(result, "alias/f", "symlink");
        assert!(!s.dest.join("real/f").exists());

        // Nor may a file entry replace the link (O_EXCL refuses it).
        let s = Scratch::new();
        let result =
            s.run(TarBuilder::new().file("real", b"original").symlink("alias", "real").file("alias", b"overwrite"));
        assert_unsafe(result, "alias", "duplicate");
        assert_eq!(fs::read(s.dest.join("real")).unwrap(), b"original");
    }

    #[test]
    fn hardlink_to_etc_shadow_is_rejected() {
        for (target, reason) in [
            ("/etc/shadow", "absolute"),
            ("../../../../../../etc/shadow", "'..'"),
            ("etc/shadow", "not a regular file extracted earlier"),
        ] {
            let s = Scratch::new();
            let result = s.run(TarBuilder::new().hardlink("shadow", target));
            assert_unsafe(result, "shadow", reason);
            assert!(fs::symlink_metadata(s.dest.join("shadow")).is_err());
        }
    }

    #[test]
    fn hardlinks_only_join_earlier_regular_files() {
        // To a symlink: refused (it could be made to point anywhere).
        let s = Scratch::new();
        let result = s.run(TarBuilder::new().file("f", b"x").symlink("l", "f").hardlink("h", "l"));
        assert_unsafe(result, "h", "not a regular file");
        // To a file that comes later: refused.
        let s = Scratch::new();
        let result = s.run(TarBuilder::new().hardlink("h", "f").file("f", b"x"));
        assert_unsafe(result, "h", "not a regular file");
        // To a directory: refused.
        let s = Scratch::new();
        let result = s.run(TarBuilder::new().dir("d/", 0o755).hardlink("h", "d"));
        assert_unsafe(result, "h", "not a regular file");
    }

    #[test]
    fn setuid_bit_is_stripped() {
        let s = Scratch::new();
        s.run(TarBuilder::new().file_mode("suid", b"x", 0o4755).file_mode("sgid", b"x", 0o2750).dir("sticky/", 0o1777))
            .unwrap();
        assert_eq!(mode(&s.dest.join("suid")), 0o755);
        assert_eq!(mode(&s.dest.join("sgid")), 0o750);
        assert_eq!(mode(&s.dest.join("sticky")), 0o777);
    }

    #[test]
    fn modes_are_exact_whatever_the_umask() {
        let s = Scratch::new();
        s.run(TarBuilder::new().file_mode("rw-all", b"x", 0o666).dir("ro/", 0o555).file_mode("ro/secret", b"x", 0o400))
            .unwrap();
        assert_eq!(mode(&s.dest.join("rw-all")), 0o666);
        assert_eq!(mode(&s.dest.join("ro")), 0o555);
        assert_eq!(mode(&s.dest.join("ro/secret")), 0o400);
    }

    #[test]
    fn device_and_fifo_entries_are_rejected() {
        for (kind, reason) in [(EntryType::Char, "device"), (EntryType::Block, "device"), (EntryType::Fifo, "fifo")] {
            let s = Scratch::new();
            let result = s.run(TarBuilder::new().raw(kind, b"node", b"", 0o666, b""));
            assert_unsafe(result, "node", reason);
            assert!(fs::symlink_metadata(s.dest.join("node")).is_err());
        }
        let s = Scratch::new();
        let result = s.run(TarBuilder::new().raw(EntryType::new(b'V'), b"label", b"", 0, b""));
        assert_unsafe(result, "label", "unsupported entry type 'V'");
        // Sanity: nothing special exists in the tree.
        for entry in fs::read_dir(&s.dest).unwrap() {
            let t = entry.unwrap().file_type().unwrap();
            assert!(!t.is_char_device() && !t.is_block_device() && !t.is_fifo());
        }
    }

    #[test]
    fn duplicate_entry_is_rejected_not_overwritten() {
        let s = Scratch::new();
        let result = s.run(TarBuilder::new().file("a", b"first").file("a", b"second"));
        assert_unsafe(result, "a", "duplicate");
        assert_eq!(fs::read(s.dest.join("a")).unwrap(), b"first");

        let s = Scratch::new();
        let result = s.run(TarBuilder::new().file("d", b"file").dir("d/", 0o755));
        assert_unsafe(result, "d/", "duplicate");
    }

    #[test]
    fn entries_may_not_replace_the_root() {
        let s = Scratch::new();
        assert_unsafe(s.run(TarBuilder::new().file("./", b"x")), "./", "root");
        let s = Scratch::new();
        assert_unsafe(s.run(TarBuilder::new().symlink(".", "x")), ".", "root");
    }

    #[test]
    fn entry_count_cap() {
        let limits = ArchiveLimits { max_entries: 3, ..ArchiveLimits::default() };
        let three = || TarBuilder::new().file("a", b"").file("b", b"").dir("c/", 0o755);
        Scratch::new().run_with(limits, three()).unwrap();
        let s = Scratch::new();
        let result = s.run_with(limits, three().file("d", b""));
        assert!(matches!(result, Err(InstallError::TooManyEntries { limit: 3 })));
        assert!(!s.dest.join("d").exists());
    }

    #[test]
    fn unpacked_size_cap_counts_real_bytes() {
        const MIB: usize = 1024 * 1024;
        let limits = ArchiveLimits { max_entries: 100, max_unpacked_bytes: MIB as u64 };
        // 16 MiB of zeros gzips to a few KiB: the compressed size says nothing.
        let bomb = TarBuilder::new().file("zeros", &vec![0; 16 * MIB]).tar();
        let gz = gzip(&bomb);
        assert!(gz.len() < 64 * 1024, "compressed to {} bytes", gz.len());
        let s = Scratch::new();
        let decoder = flate2::read::GzDecoder::new(&gz[..]);
        let result = extract(decoder, Path::new("bomb.tar.gz"), &s.dest, limits);
        assert!(matches!(result, Err(InstallError::TooLarge { limit_bytes }) if limit_bytes == MIB as u64));
        let written = fs::metadata(s.dest.join("zeros")).unwrap().len();
        assert!(written <= MIB as u64, "wrote {written} bytes past the cap");

        // The total counts, not each file: two files of 600 KiB exceed 1 MiB.
        let s = Scratch::new();
        let result =
            s.run_with(limits, TarBuilder::new().file("a", &vec![1; 600 * 1024]).file("b", &vec![1; 600 * 1024]));
        assert!(matches!(result, Err(InstallError::TooLarge { .. })));

        // Data attached to a directory entry is read, so it is charged too.
        let s = Scratch::new();
        let result =
            s.run_with(limits, TarBuilder::new().raw(EntryType::Directory, b"d/", b"", 0o755, &vec![0; 2 * MIB]));
        assert!(matches!(result, Err(InstallError::TooLarge { .. })));

        // Exactly at the cap is fine.
        let s = Scratch::new();
        let out = s.run_with(limits, TarBuilder::new().file("exact", &vec![7; MIB])).unwrap();
        assert_eq!(out.bytes, MIB as u64);
    }

    #[test]
    fn oversized_extension_headers_are_rejected_before_buffering() {
        let s = Scratch::new();
        let huge_name = vec![b'a'; 1024 * 1024];
        let result = s.run(
            TarBuilder::new().raw(EntryType::GNULongName, b"././@LongLink", b"", 0o644, &huge_name).file("short", b"x"),
        );
        assert_unsafe(result, "././@LongLink", "extension header larger than");
    }

    #[test]
    fn long_names_are_honoured_and_validated() {
        let long = format!("{}/file", "d".repeat(150));
        let s = Scratch::new();
        s.run(TarBuilder::new().long_file(&long, b"deep")).unwrap();
        assert_eq!(fs::read(s.dest.join(&long)).unwrap(), b"deep");

        // A PAX path overrides the harmless-looking header path.
        let s = Scratch::new();
        let result = s.run(TarBuilder::new().pax(&[("path", b"../outside/evil")]).file("innocent", b"x"));
        assert_unsafe(result, "../outside/evil", "'..'");
        s.assert_outside_untouched();
        assert!(!s.dest.join("innocent").exists());

        // A PAX linkpath is checked like any link target.
        let s = Scratch::new();
        let result = s.run(TarBuilder::new().pax(&[("linkpath", b"/etc/shadow")]).hardlink("h", "ok"));
        assert_unsafe(result, "h", "absolute");
    }

    #[test]
    fn ambiguous_headers_are_rejected() {
        // GNU long name and PAX path both set: parsers disagree on which wins.
        let s = Scratch::new();
        let result = s.run(
            TarBuilder::new()
                .raw(EntryType::GNULongName, b"././@LongLink", b"", 0o644, b"gnu-name\0")
                .pax(&[("path", b"pax-name")])
                .file("header-name", b"x"),
        );
        assert_unsafe(result, "gnu-name", "both");

        // PAX size disagreeing with the header: where does the next header start?
        let s = Scratch::new();
        let result = s.run(TarBuilder::new().pax(&[("size", b"0")]).file("f", b"data"));
        assert_unsafe(result, "f", "PAX size");

        // Sparse files (GNU or PAX) are not supported.
        let s = Scratch::new();
        let result = s.run(TarBuilder::new().pax(&[("GNU.sparse.major", b"1")]).file("sparse", b"x"));
        assert_unsafe(result, "sparse", "sparse");
    }

    #[test]
    fn truncated_archives_are_read_errors() {
        let bytes = TarBuilder::new().file("f", &[1; 4096]).tar();
        let s = Scratch::new();
        let result = extract(&bytes[..512 + 1000], Path::new("cut.tar"), &s.dest, ArchiveLimits::default());
        match result {
            Err(e @ InstallError::ArchiveRead { .. }) => assert!(!e.is_transient()),
            other => panic!("expected ArchiveRead, got {other:?}"),
        }
    }
}
