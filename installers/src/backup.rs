//! Backups of the configuration and data paths a release declares, taken
//! before install and restored on rollback.
//!
//! # Layout
//! ```text
//! <root>/backups/<name>/<version>-<n>/             0700, one complete backup; <version> is the
//!                                                  version about to be installed, n = 1, 2, ...
//! <root>/backups/<name>/<version>-<n>/manifest     the declared paths, in order, and whether each existed
//! <root>/backups/<name>/<version>-<n>/data/<i>     a copy of the i-th path (if it existed)
//! <root>/backups/<name>/.tmp-<version>-<id>/       being written (removed at the next backup)
//! ```
//!
//! # Guarantees
//! - Declared paths must be absolute, without `..`, not `/`, without a
//!   newline, not nested in one another, and not overlapping the backup
//!   directory; otherwise [`InstallError::InvalidBackupPath`] and nothing is
//!   written.
//! - A backup directory exists only complete: it is written under a
//!   temporary name, every file and directory fsynced, then renamed and its
//!   parent fsynced.
//! - Copies keep file type (symlinks stay symlinks, never followed),
//!   content, permission bits (setuid included), owner and group, and the
//!   modification time of files and directories. Hard links are copied as
//!   separate files; extended attributes and ACLs are not kept. Devices,
//!   fifos and sockets are refused.
//! - [`Backups::restore`] puts every path back exactly as it was: a path
//!   that did not exist is removed, a tree is replaced as a whole (so files
//!   created since the backup disappear). Each path is first copied next to
//!   its destination, then swapped in by `rename`; a file or symlink is
//!   replaced atomically, a directory by two renames (a crash between them
//!   leaves the path missing, and re-running the restore repairs it).
//!   Restoring is idempotent; the backup stays until [`Backups::remove`].
//! - Missing parent directories of a restored path are created with mode
//!   0755 (their original modes were not recorded).

use std::ffi::OsStr;
use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt, fchown, lchown, symlink};
use std::path::{Component, Path, PathBuf};

use tracing::{info, warn};

use crate::error::InstallError;
use crate::fsutil::{create_dir_durably, fsync_dir, remove_tree, unique_suffix};
use crate::names::validate_component;

/// Directory under the root holding one directory of backups per package.
const BACKUPS_DIR: &str = "backups";
/// First line of every manifest.
const MANIFEST_HEADER: &str = "flotte-backup 1";

/// The backups of every package under one root.
#[derive(Debug, Clone)]
pub struct Backups {
    /// `<root>/backups`.
    dir: PathBuf,
}

/// One complete backup on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backup {
    name: String,
    version: String,
    /// The `<n>` in `<version>-<n>`: backups of the same version count up.
    seq: u64,
    dir: PathBuf,
    entries: Vec<BackupEntry>,
}

/// One declared path in a backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupEntry {
    /// The absolute, normalized path.
    pub path: PathBuf,
    /// Whether it existed at backup time; if not, restore removes it.
    pub existed: bool,
}

impl Backup {
    /// Package name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The version that was about to be installed when it was taken.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Its sequence number among the backups of this version.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// `<root>/backups/<name>/<version>-<n>`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The declared paths, in the declared order.
    pub fn entries(&self) -> &[BackupEntry] {
        &self.entries
    }
}

impl Backups {
    /// Backups kept under `<root>/backups`. Nothing is created until the
    /// first backup.
    pub fn new(root: impl AsRef<Path>) -> Self {
        Backups { dir: root.as_ref().join(BACKUPS_DIR) }
    }

    /// Copies `paths` into a new backup for `name` before `version` is
    /// installed. Paths that do not exist are recorded as absent.
    pub fn backup(&self, name: &str, version: &str, paths: &[PathBuf]) -> Result<Backup, InstallError> {
        validate_component("package name", name)?;
        validate_component("version", version)?;
        let paths = self.validate_paths(paths)?;
        let pkg_dir = self.dir.join(name);
        create_dir_durably(&self.dir)?;
        create_dir_durably(&pkg_dir)?;
        remove_temporaries(&pkg_dir);

        let tmp = pkg_dir.join(format!(".tmp-{version}-{}", unique_suffix()));
        let result = (|| {
            DirBuilder::new().mode(0o700).create(&tmp).map_err(failed("create", &tmp))?;
            let data = tmp.join("data");
            DirBuilder::new().mode(0o700).create(&data).map_err(failed("create", &data))?;
            let mut entries = Vec::with_capacity(paths.len());
            for (i, path) in paths.into_iter().enumerate() {
                let existed = match fs::symlink_metadata(&path) {
                    Ok(_) => true,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => false,
                    Err(e) => return Err(failed("inspect", &path)(e)),
                };
                if existed {
                    copy_tree(&path, &data.join(i.to_string()))?;
                }
                entries.push(BackupEntry { path, existed });
            }
            fsync_dir(&data)?;
            write_manifest(&tmp.join("manifest"), name, version, &entries)?;
            fsync_dir(&tmp)?;
            let seq = next_seq(&pkg_dir, version)?;
            let dir = pkg_dir.join(format!("{version}-{seq}"));
            fs::rename(&tmp, &dir).map_err(failed("rename backup to", &dir))?;
            fsync_dir(&pkg_dir)?;
            Ok(Backup { name: name.to_owned(), version: version.to_owned(), seq, dir, entries })
        })();
        match &result {
            Ok(backup) => info!(name, version, dir = %backup.dir.display(), "backup taken"),
            Err(_) => remove_tree(&tmp),
        }
        result
    }

    /// Puts every path of `backup` back as it was (see the module doc).
    pub fn restore(&self, backup: &Backup) -> Result<(), InstallError> {
        // The entries could have been edited since they were read: same rules.
        self.validate_paths(&backup.entries.iter().map(|e| e.path.clone()).collect::<Vec<_>>())?;
        for (i, entry) in backup.entries.iter().enumerate() {
            restore_entry(&backup.dir.join("data").join(i.to_string()), entry)?;
        }
        info!(name = backup.name, version = backup.version, seq = backup.seq, "backup restored");
        Ok(())
    }

    /// The most recent complete backup taken before installing `version`.
    pub fn latest(&self, name: &str, version: &str) -> Result<Option<Backup>, InstallError> {
        validate_component("package name", name)?;
        validate_component("version", version)?;
        let pkg_dir = self.dir.join(name);
        let Some(seq) = existing_seqs(&pkg_dir, version)?.into_iter().max() else {
            return Ok(None);
        };
        let dir = pkg_dir.join(format!("{version}-{seq}"));
        let entries = read_manifest(&dir.join("manifest"), name, version)?;
        Ok(Some(Backup { name: name.to_owned(), version: version.to_owned(), seq, dir, entries }))
    }

    /// Deletes a backup (after the release it protected is committed).
    pub fn remove(&self, backup: &Backup) -> Result<(), InstallError> {
        let pkg_dir = self.dir.join(&backup.name);
        if backup.dir.parent() != Some(pkg_dir.as_path()) {
            return Err(InstallError::InvalidBackupPath {
                path: backup.dir.clone(),
                reason: "is not a backup directory of this store",
            });
        }
        let doomed = pkg_dir.join(format!(".tmp-removed-{}", unique_suffix()));
        match fs::rename(&backup.dir, &doomed) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(failed("rename backup to", &doomed)(e)),
        }
        fsync_dir(&pkg_dir)?;
        remove_tree(&doomed);
        Ok(())
    }

    /// Normalizes and checks every declared path (see the module doc).
    fn validate_paths(&self, paths: &[PathBuf]) -> Result<Vec<PathBuf>, InstallError> {
        // Declared paths are absolute; compare them with an absolute store.
        let store = std::path::absolute(&self.dir).map_err(failed("resolve", &self.dir))?;
        let mut normalized: Vec<PathBuf> = Vec::with_capacity(paths.len());
        for path in paths {
            let norm = validate_backup_path(path)?;
            let refuse = |reason| Err(InstallError::InvalidBackupPath { path: path.clone(), reason });
            if norm.starts_with(&store) || store.starts_with(&norm) {
                return refuse("overlaps the backup directory");
            }
            if normalized.iter().any(|other| other.starts_with(&norm) || norm.starts_with(other)) {
                return refuse("is the same as, or nested in, another declared path");
            }
            normalized.push(norm);
        }
        Ok(normalized)
    }
}

/// Checks one declared path and returns it normalized (`.` and repeated
/// slashes dropped): absolute, no `..`, not `/`, no newline.
pub fn validate_backup_path(path: &Path) -> Result<PathBuf, InstallError> {
    let refuse = |reason| Err(InstallError::InvalidBackupPath { path: path.to_path_buf(), reason });
    if !path.is_absolute() {
        return refuse("is not absolute");
    }
    if path.as_os_str().as_bytes().contains(&b'\n') {
        return refuse("contains a newline");
    }
    let mut normalized = PathBuf::from("/");
    for component in path.components() {
        match component {
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir => return refuse("contains '..'"),
            Component::Normal(part) => normalized.push(part),
            Component::Prefix(_) => return refuse("has a Windows prefix"),
        }
    }
    if normalized == Path::new("/") {
        return refuse("is the root directory");
    }
    Ok(normalized)
}

/// Restores one entry from `data` (see the module doc).
fn restore_entry(data: &Path, entry: &BackupEntry) -> Result<(), InstallError> {
    let live = &entry.path;
    let (Some(parent), Some(base)) = (live.parent(), live.file_name()) else {
        return Err(InstallError::InvalidBackupPath { path: live.clone(), reason: "has no parent" });
    };
    let sibling = |kind: &str| {
        let mut name = OsStr::new(".").to_os_string();
        name.push(base);
        name.push(format!(".flotte-{kind}-{}", unique_suffix()));
        parent.join(name)
    };
    remove_leftovers_of(parent, base);
    let live_meta = match fs::symlink_metadata(live) {
        Ok(m) => Some(m),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(failed("inspect", live)(e)),
    };
    if !entry.existed {
        if live_meta.is_some() {
            let old = sibling("old");
            fs::rename(live, &old).map_err(failed("move aside", live))?;
            fsync_dir(parent)?;
            remove_tree(&old);
        }
        return Ok(());
    }
    if fs::symlink_metadata(parent).is_err() {
        fs::create_dir_all(parent).map_err(failed("create", parent))?;
        if let Some(grandparent) = parent.parent() {
            fsync_dir(grandparent)?;
        }
    }
    let fresh = sibling("restore");
    if let Err(e) = copy_tree(data, &fresh) {
        remove_tree(&fresh);
        return Err(e);
    }
    let fresh_is_dir = fs::symlink_metadata(&fresh).map_err(failed("inspect", &fresh))?.is_dir();
    match live_meta {
        // rename(2) replaces a file or symlink in one step, but not a
        // directory, nor a file with a directory.
        Some(m) if m.is_dir() || fresh_is_dir => {
            let old = sibling("old");
            fs::rename(live, &old).map_err(failed("move aside", live))?;
            fs::rename(&fresh, live).map_err(failed("restore", live))?;
            fsync_dir(parent)?;
            remove_tree(&old);
        }
        _ => {
            fs::rename(&fresh, live).map_err(failed("restore", live))?;
            fsync_dir(parent)?;
        }
    }
    Ok(())
}

/// Copies `src` to the new path `dst`, recursively, keeping type, content,
/// mode, owner and mtime; everything written is fsynced.
fn copy_tree(src: &Path, dst: &Path) -> Result<(), InstallError> {
    let meta = fs::symlink_metadata(src).map_err(failed("inspect", src))?;
    let kind = meta.file_type();
    let mode = Permissions::from_mode(meta.mode() & 0o7777);
    if kind.is_symlink() {
        let target = fs::read_link(src).map_err(failed("read symlink", src))?;
        symlink(&target, dst).map_err(failed("create symlink", dst))?;
        lchown(dst, Some(meta.uid()), Some(meta.gid())).map_err(failed("chown", dst))?;
    } else if kind.is_file() {
        let mut from =
            OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(src).map_err(failed("open", src))?;
        let mut to =
            OpenOptions::new().write(true).create_new(true).mode(0o600).open(dst).map_err(failed("create", dst))?;
        io::copy(&mut from, &mut to).map_err(failed("copy", src))?;
        to.flush().map_err(failed("write", dst))?;
        // Owner first: chown clears the setuid and setgid bits.
        fchown(&to, Some(meta.uid()), Some(meta.gid())).map_err(failed("chown", dst))?;
        to.set_permissions(mode).map_err(failed("chmod", dst))?;
        let mtime = meta.modified().map_err(failed("inspect", src))?;
        to.set_modified(mtime).map_err(failed("set mtime of", dst))?;
        to.sync_all().map_err(failed("fsync", dst))?;
    } else if kind.is_dir() {
        DirBuilder::new().mode(0o700).create(dst).map_err(failed("create", dst))?;
        let mut names: Vec<_> = fs::read_dir(src)
            .map_err(failed("list", src))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(failed("list", src))?;
        names.sort();
        for name in names {
            copy_tree(&src.join(&name), &dst.join(&name))?;
        }
        let dir = File::open(dst).map_err(failed("open", dst))?;
        fchown(&dir, Some(meta.uid()), Some(meta.gid())).map_err(failed("chown", dst))?;
        dir.set_permissions(mode).map_err(failed("chmod", dst))?;
        let mtime = meta.modified().map_err(failed("inspect", src))?;
        dir.set_modified(mtime).map_err(failed("set mtime of", dst))?;
        dir.sync_all().map_err(failed("fsync", dst))?;
    } else {
        return Err(InstallError::BackupFailed {
            op: "copy",
            path: src.to_path_buf(),
            source: io::Error::new(io::ErrorKind::InvalidInput, "unsupported file type (device, fifo or socket)"),
        });
    }
    Ok(())
}

fn write_manifest(path: &Path, name: &str, version: &str, entries: &[BackupEntry]) -> Result<(), InstallError> {
    let mut text = format!("{MANIFEST_HEADER}\nname {name}\nversion {version}\n").into_bytes();
    for entry in entries {
        text.extend_from_slice(if entry.existed { b"present " } else { b"absent " });
        text.extend_from_slice(entry.path.as_os_str().as_bytes());
        text.push(b'\n');
    }
    let mut file =
        OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(failed("create", path))?;
    file.write_all(&text).map_err(failed("write", path))?;
    file.sync_all().map_err(failed("fsync", path))
}

fn read_manifest(path: &Path, name: &str, version: &str) -> Result<Vec<BackupEntry>, InstallError> {
    let corrupt = |reason: &str| InstallError::CorruptState { path: path.to_path_buf(), reason: reason.to_owned() };
    let bytes = fs::read(path).map_err(failed("read", path))?;
    let mut lines = bytes.split(|&b| b == b'\n');
    let expected_head = [MANIFEST_HEADER.to_owned(), format!("name {name}"), format!("version {version}")];
    for expected in &expected_head {
        if lines.next() != Some(expected.as_bytes()) {
            return Err(corrupt(&format!("manifest does not start with {expected:?}")));
        }
    }
    let mut entries = Vec::new();
    for line in lines.filter(|l| !l.is_empty()) {
        let (existed, raw) = if let Some(p) = line.strip_prefix(b"present ") {
            (true, p)
        } else if let Some(p) = line.strip_prefix(b"absent ") {
            (false, p)
        } else {
            return Err(corrupt("manifest line is neither present nor absent"));
        };
        entries.push(BackupEntry { path: PathBuf::from(OsStr::from_bytes(raw)), existed });
    }
    Ok(entries)
}

/// Sequence numbers of the complete backups of `version` in `pkg_dir`.
fn existing_seqs(pkg_dir: &Path, version: &str) -> Result<Vec<u64>, InstallError> {
    let entries = match fs::read_dir(pkg_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(failed("list", pkg_dir)(e)),
    };
    let prefix = format!("{version}-");
    let mut seqs = Vec::new();
    for entry in entries {
        let entry = entry.map_err(failed("list", pkg_dir))?;
        let name = entry.file_name();
        let Some(n) = name.to_str().and_then(|n| n.strip_prefix(&prefix)) else { continue };
        // Digits only, so "1.0-1-2" (version "1.0-1") is not a backup of "1.0".
        if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) {
            if let Ok(seq) = n.parse() {
                seqs.push(seq);
            }
        }
    }
    Ok(seqs)
}

fn next_seq(pkg_dir: &Path, version: &str) -> Result<u64, InstallError> {
    Ok(existing_seqs(pkg_dir, version)?.into_iter().max().unwrap_or(0) + 1)
}

/// Removes `.tmp-*` directories left by an interrupted backup or removal.
fn remove_temporaries(pkg_dir: &Path) {
    let Ok(entries) = fs::read_dir(pkg_dir) else { return };
    for entry in entries.flatten() {
        if entry.file_name().as_bytes().starts_with(b".tmp-") {
            remove_tree(&entry.path());
        }
    }
}

/// Removes `.<base>.flotte-*` siblings left by an interrupted restore.
fn remove_leftovers_of(parent: &Path, base: &OsStr) {
    let Ok(entries) = fs::read_dir(parent) else { return };
    let mut prefix = b".".to_vec();
    prefix.extend_from_slice(base.as_bytes());
    prefix.extend_from_slice(b".flotte-");
    for entry in entries.flatten() {
        if entry.file_name().as_bytes().starts_with(&prefix) {
            warn!(path = %entry.path().display(), "removing leftover of an interrupted restore");
            remove_tree(&entry.path());
        }
    }
}

fn failed(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> InstallError {
    let path = path.to_path_buf();
    move |source| InstallError::BackupFailed { op, path, source }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::time::{Duration, SystemTime};

    /// Type, permission bits, owner, content or link target, and (files
    /// only) mtime of every path under `root`, keyed by relative path.
    fn snapshot(root: &Path) -> BTreeMap<PathBuf, String> {
        let mut out = BTreeMap::new();
        fn walk(root: &Path, rel: &Path, out: &mut BTreeMap<PathBuf, String>) {
            let path = root.join(rel);
            let meta = fs::symlink_metadata(&path).unwrap();
            let owner = format!("{}:{} {:o}", meta.uid(), meta.gid(), meta.mode() & 0o7777);
            let desc = if meta.file_type().is_symlink() {
                format!("link -> {}", fs::read_link(&path).unwrap().display())
            } else if meta.is_file() {
                let mtime = meta.modified().unwrap().duration_since(SystemTime::UNIX_EPOCH).unwrap();
                format!("file {owner} {mtime:?} {:?}", fs::read_to_string(&path).unwrap())
            } else {
                let mut names: Vec<_> = fs::read_dir(&path).unwrap().map(|e| e.unwrap().file_name()).collect();
                names.sort();
                for name in names {
                    walk(root, &rel.join(name), out);
                }
                format!("dir {owner}")
            };
            out.insert(rel.to_path_buf(), desc);
        }
        walk(root, Path::new(""), &mut out);
        out
    }

    fn chmod(path: &Path, mode: u32) {
        fs::set_permissions(path, Permissions::from_mode(mode)).unwrap();
    }

    /// A tempdir with `root/` (the installer root) and `live/` (the host's
    /// configuration and data).
    struct Host {
        tmp: tempfile::TempDir,
        backups: Backups,
    }

    impl Host {
        fn new() -> Self {
            let tmp = tempfile::tempdir().unwrap();
            fs::create_dir(tmp.path().join("live")).unwrap();
            let backups = Backups::new(tmp.path().join("root"));
            Host { tmp, backups }
        }

        fn live(&self, rel: &str) -> PathBuf {
            self.tmp.path().join("live").join(rel)
        }
    }

    #[test]
    fn restore_puts_back_a_tree_with_symlinks_and_modes_exactly() {
        let host = Host::new();
        let conf = host.live("etc-app");
        fs::create_dir_all(conf.join("secrets")).unwrap();
        fs::write(conf.join("app.toml"), "threads = 4\n").unwrap();
        fs::write(conf.join("run.sh"), "#!/bin/sh\n").unwrap();
        fs::write(conf.join("secrets/key"), "hunter2").unwrap();
        symlink("app.toml", conf.join("current.toml")).unwrap();
        symlink("/nonexistent/dangling", conf.join("dangling")).unwrap();
        chmod(&conf.join("app.toml"), 0o640);
        chmod(&conf.join("run.sh"), 0o4755);
        chmod(&conf.join("secrets/key"), 0o600);
        chmod(&conf.join("secrets"), 0o700);
        chmod(&conf, 0o750);
        let old = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        File::open(conf.join("app.toml")).unwrap().set_modified(old).unwrap();
        let db = host.live("app.db");
        fs::write(&db, "rows").unwrap();
        let before = (snapshot(&conf), fs::read(&db).unwrap());

        let backup = host.backups.backup("app", "2.0", &[conf.clone(), db.clone()]).unwrap();

        // The release changes everything...
        fs::write(conf.join("app.toml"), "threads = 64\n").unwrap();
        chmod(&conf.join("app.toml"), 0o666);
        fs::remove_file(conf.join("current.toml")).unwrap();
        fs::write(conf.join("current.toml"), "now a file").unwrap();
        fs::remove_file(conf.join("secrets/key")).unwrap();
        fs::write(conf.join("created-since"), "new").unwrap();
        fs::create_dir(conf.join("new-dir")).unwrap();
        chmod(&conf, 0o777);
        fs::remove_file(&db).unwrap();
        fs::create_dir(&db).unwrap(); // a file replaced by a directory

        host.backups.restore(&backup).unwrap();

        assert_eq!((snapshot(&conf), fs::read(&db).unwrap()), before);
        assert!(!conf.join("created-since").exists());
        assert_eq!(
            fs::symlink_metadata(conf.join("run.sh")).unwrap().mode() & 0o7777,
            0o4755,
            "setuid survives the copy"
        );
        let mut siblings: Vec<_> = fs::read_dir(host.live("")).unwrap().map(|e| e.unwrap().file_name()).collect();
        siblings.sort();
        assert_eq!(siblings, ["app.db", "etc-app"], "no temporaries left next to the restored paths");

        // Idempotent.
        host.backups.restore(&backup).unwrap();
        assert_eq!(snapshot(&conf), before.0);
    }

    #[test]
    fn a_path_that_did_not_exist_is_removed_on_restore() {
        let host = Host::new();
        let cache = host.live("cache");
        let backup = host.backups.backup("app", "2.0", std::slice::from_ref(&cache)).unwrap();
        assert_eq!(backup.entries(), [BackupEntry { path: cache.clone(), existed: false }]);

        fs::create_dir_all(cache.join("deep")).unwrap();
        fs::write(cache.join("deep/file"), "x").unwrap();
        host.backups.restore(&backup).unwrap();

        assert!(!cache.exists());
    }

    #[test]
    fn a_restored_file_replaces_whatever_is_there_and_recreates_missing_parents() {
        let host = Host::new();
        let file = host.live("nested/dir/settings.ini");
        fs::create_dir_all(file.parent().unwrap()).unwrap();
        fs::write(&file, "a=1").unwrap();
        let backup = host.backups.backup("app", "2.0", std::slice::from_ref(&file)).unwrap();

        fs::remove_dir_all(host.live("nested")).unwrap();
        host.backups.restore(&backup).unwrap();

        assert_eq!(fs::read_to_string(&file).unwrap(), "a=1");
    }

    #[test]
    fn backups_are_numbered_per_version_and_found_again_after_a_restart() {
        let host = Host::new();
        let conf = host.live("conf");
        fs::write(&conf, "v1").unwrap();
        let first = host.backups.backup("app", "2.0", std::slice::from_ref(&conf)).unwrap();
        fs::write(&conf, "v2").unwrap();
        let second = host.backups.backup("app", "2.0", std::slice::from_ref(&conf)).unwrap();
        host.backups.backup("app", "2.0-1", std::slice::from_ref(&conf)).unwrap();

        assert_eq!((first.seq(), second.seq()), (1, 2));
        assert_eq!(second.dir(), host.tmp.path().join("root/backups/app/2.0-2"));
        assert_eq!(fs::symlink_metadata(second.dir()).unwrap().mode() & 0o777, 0o700);

        let found = Backups::new(host.tmp.path().join("root")).latest("app", "2.0").unwrap().unwrap();
        assert_eq!(found, second);
        assert_eq!(host.backups.latest("app", "3.0").unwrap(), None);

        host.backups.remove(&second).unwrap();
        assert_eq!(host.backups.latest("app", "2.0").unwrap(), Some(first));
    }

    #[test]
    fn bad_paths_are_refused_before_anything_is_written() {
        let host = Host::new();
        let ok = host.live("ok");
        let root_dir = host.tmp.path().join("root");
        let cases: Vec<Vec<PathBuf>> = vec![
            vec!["etc/app".into()],
            vec!["/".into()],
            vec!["//".into()],
            vec!["/etc/../etc/shadow".into()],
            vec![ok.join("..").join("x")],
            vec!["/etc/app\nabsent /etc/passwd".into()],
            vec![ok.clone(), ok.join("sub")],
            vec![ok.clone(), ok.clone()],
            vec![root_dir.join("backups/app")],
            vec![root_dir.clone()],
        ];
        for paths in cases {
            let err = host.backups.backup("app", "2.0", &paths).unwrap_err();
            assert!(matches!(err, InstallError::InvalidBackupPath { .. }), "{paths:?}: {err:?}");
        }
        assert!(!root_dir.exists(), "nothing was created");
        assert!(matches!(host.backups.backup("../x", "2.0", &[]), Err(InstallError::InvalidName { .. })));
    }

    #[test]
    fn paths_are_normalized() {
        assert_eq!(validate_backup_path(Path::new("/etc//app/./conf/")).unwrap(), Path::new("/etc/app/conf"));
    }
}
