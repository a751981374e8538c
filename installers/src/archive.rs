//! The archive backend: tar / tar.gz packages unpacked into versioned
//! directories and switched with a symlink.
//!
//! Layout under the installer root:
//!
//! ```text
//! <root>/packages/<name>/<version>/               extracted content, never modified
//! <root>/packages/<name>/current -> <version>     relative symlink: the active version
//! <root>/packages/<name>/.staging-<version>-<id>  0700, being extracted (removed on error,
//!                                                 or at the next stage after a crash)
//! <root>/packages/<name>/.current.tmp-<id>        the next `current`, about to be renamed
//! <root>/packages/.removed-<name>-<id>            a package being deleted by `uninstall`
//! ```
//!
//! Guarantees:
//! - `stage` never touches `current` or an existing version directory. A
//!   version directory appears only by `rename` of a complete, fsynced
//!   staging directory, so one that exists is complete; that is what makes
//!   `stage` idempotent and crash-safe.
//! - `activate` and `rollback` switch `current` with a single `rename` and
//!   fsync the package directory: after a crash, `current` names exactly the
//!   old or exactly the new version.
//! - Durability of content: every extracted file is fsynced as it is written
//!   and every directory before the rename. Per-file fsync (rather than one
//!   `syncfs`) flushes only our data, not every dirty page on the host's
//!   filesystem, and needs no `unsafe`.
//! - `uninstall` renames the package directory away in one step, so the
//!   package is fully present or fully gone, then deletes it.
//! - After `activate`, at most `keep_versions` versions stay on disk; the
//!   active and previous ones are always kept; the rest go by least recently
//!   staged or activated (directory mtime, bumped on every switch).
//!
//! Calls for the same package must not run concurrently (the agent runs one
//! job per package); calls for different packages may.

mod entry_path;
mod extract;
mod format;
mod limits;
pub(crate) mod prune;

pub use limits::ArchiveLimits;

use std::fs::{self, DirBuilder, File, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use tracing::{debug, info, warn};

use crate::error::{InstallError, io_err};
use crate::fsutil::{create_dir_durably, fsync_dir, remove_tree, replace_symlink, unique_suffix};
use crate::installer::{Activation, Installer, Package, Staged, Uninstalled};
use crate::names::validate_component;

/// Directory under the root that holds one directory per package.
const PACKAGES_DIR: &str = "packages";
/// The active-version symlink in a package directory (a reserved version).
const CURRENT: &str = "current";
/// Prefix of in-progress extraction directories.
const STAGING_PREFIX: &str = ".staging-";
/// Prefix of not-yet-renamed `current` symlinks.
const CURRENT_TMP_PREFIX: &str = ".current.tmp-";
/// Prefix (in `<root>/packages`) of a package directory being deleted by
/// an uninstall.
const REMOVED_PREFIX: &str = ".removed-";
/// Versions kept by default, the active one included.
const DEFAULT_KEEP_VERSIONS: usize = 3;

/// Installs tar and tar.gz packages into versioned directories under a root.
#[derive(Debug, Clone)]
pub struct ArchiveInstaller {
    /// Everything this installer writes lives under `<root>/packages`.
    root: PathBuf,
    /// Caps applied to every extraction (decompression bombs).
    limits: ArchiveLimits,
    /// Versions left on disk after an activation, so rollback has somewhere
    /// to go without a download.
    keep_versions: usize,
}

impl ArchiveInstaller {
    /// An installer rooted at `root`, with default limits and keeping 3
    /// versions. Nothing is created until the first `stage`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        ArchiveInstaller { root: root.into(), limits: ArchiveLimits::default(), keep_versions: DEFAULT_KEEP_VERSIONS }
    }

    /// Replaces the extraction limits.
    pub fn with_limits(mut self, limits: ArchiveLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Sets how many versions (the active one included) stay on disk after
    /// an activation. The active and previous versions are always kept, so
    /// values below 2 keep just those.
    pub fn with_keep_versions(mut self, keep_versions: usize) -> Self {
        self.keep_versions = keep_versions;
        self
    }

    /// The root this installer writes under.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<root>/packages/<name>/current`: the path through which the active
    /// version of `name` is reached (for running or health-checking it).
    pub fn current_path(&self, name: &str) -> Result<PathBuf, InstallError> {
        validate_component("package name", name)?;
        Ok(self.package_dir(name).join(CURRENT))
    }

    pub(crate) fn package_dir(&self, name: &str) -> PathBuf {
        self.root.join(PACKAGES_DIR).join(name)
    }

    /// [`Installer::stage`], with `accept` run on the complete extracted
    /// tree before it is published as a version directory (and on an
    /// already staged version directory). If `accept` fails, a new staging
    /// directory is removed; nothing appears under the version's name.
    pub(crate) fn stage_checked(
        &self,
        package: &Package<'_>,
        accept: &dyn Fn(&Path) -> Result<(), InstallError>,
    ) -> Result<Staged, InstallError> {
        validate_name_and_version(package.name, package.version)?;
        let pkg_dir = self.package_dir(package.name);
        remove_leftovers(&pkg_dir);
        let version_dir = pkg_dir.join(package.version);
        if is_real_dir(&version_dir)? {
            accept(&version_dir)?;
            debug!(name = package.name, version = package.version, "already staged");
        } else {
            self.stage_new(package, &pkg_dir, &version_dir, accept)?;
            info!(name = package.name, version = package.version, "staged");
        }
        Ok(Staged::new(package.name, package.version, version_dir))
    }

    /// Deletes the whole package directory (every version, `current` and
    /// all): renames it out of the way in one step, so that the package is
    /// either fully there or gone, then removes the renamed tree.
    pub(crate) fn remove_package(&self, name: &str) -> Result<(), InstallError> {
        let packages = self.root.join(PACKAGES_DIR);
        let pkg_dir = self.package_dir(name);
        if !is_real_dir(&pkg_dir)? {
            return Ok(());
        }
        let doomed = packages.join(format!("{REMOVED_PREFIX}{name}-{}", unique_suffix()));
        fs::rename(&pkg_dir, &doomed).map_err(io_err("rename package directory to", &doomed))?;
        fsync_dir(&packages)?;
        remove_tree(&doomed);
        info!(name, "package directory removed");
        Ok(())
    }

    /// Extracts into a fresh staging directory, runs `accept` on it, then
    /// renames it to `version_dir`. Removes the staging directory on any
    /// error.
    fn stage_new(
        &self,
        package: &Package<'_>,
        pkg_dir: &Path,
        version_dir: &Path,
        accept: &dyn Fn(&Path) -> Result<(), InstallError>,
    ) -> Result<(), InstallError> {
        // Open (and check) the artifact before creating anything.
        let stream = format::open_tar_stream(package.artifact)?;
        create_dir_durably(&self.root.join(PACKAGES_DIR))?;
        create_dir_durably(pkg_dir)?;
        let staging = pkg_dir.join(format!("{STAGING_PREFIX}{}-{}", package.version, unique_suffix()));
        DirBuilder::new().mode(0o700).create(&staging).map_err(io_err("create directory", &staging))?;
        let result = (|| {
            let extracted = extract::extract(stream, package.artifact, &staging, self.limits)?;
            accept(&staging)?;
            // Complete and flushed: open it up to the archive's root mode.
            fs::set_permissions(&staging, Permissions::from_mode(extracted.root_mode))
                .map_err(io_err("set permissions on", &staging))?;
            fsync_dir(&staging)?;
            publish(&staging, version_dir)?;
            fsync_dir(pkg_dir)?;
            debug!(
                name = package.name,
                version = package.version,
                entries = extracted.entries,
                bytes = extracted.bytes,
                "extracted"
            );
            Ok(())
        })();
        if result.is_err() {
            remove_tree(&staging);
        }
        result
    }

    /// Points `current` at `version` (which must exist) and reports the switch.
    pub(crate) fn switch(&self, name: &str, version: &str) -> Result<Activation, InstallError> {
        let pkg_dir = self.package_dir(name);
        let previous = read_current(&pkg_dir).unwrap_or_else(|e| {
            warn!(name, error = %e, "current link is unreadable; replacing it");
            None
        });
        let version_dir = pkg_dir.join(version);
        // Records "recently used" for pruning; not needed for correctness.
        if let Err(e) = File::open(&version_dir).and_then(|d| d.set_modified(SystemTime::now())) {
            warn!(name, version, error = %e, "could not bump version mtime");
        }
        replace_symlink(&pkg_dir, CURRENT, version)?;
        info!(name, version, previous = ?previous, "switched active version");
        Ok(Activation { name: name.to_owned(), previous, active: version.to_owned() })
    }

    /// Removes versions beyond `keep_versions`. Failures are logged, not
    /// returned: the activation they follow has already happened.
    pub(crate) fn prune(&self, activation: &Activation) {
        let pkg_dir = self.package_dir(&activation.name);
        let on_disk = match list_versions(&pkg_dir) {
            Ok(v) => v,
            Err(e) => {
                warn!(name = activation.name, error = %e, "cannot list versions to prune");
                return;
            }
        };
        let doomed =
            prune::select_for_removal(on_disk, &activation.active, activation.previous.as_deref(), self.keep_versions);
        for version in doomed {
            let dir = pkg_dir.join(&version);
            match fs::remove_dir_all(&dir) {
                Ok(()) => debug!(name = activation.name, version, "pruned old version"),
                Err(e) => warn!(name = activation.name, version, error = %e, "prune failed"),
            }
        }
        if let Err(e) = fsync_dir(&pkg_dir) {
            warn!(name = activation.name, error = %e, "fsync after prune failed");
        }
    }
}

impl Installer for ArchiveInstaller {
    fn stage(&self, package: &Package<'_>) -> Result<Staged, InstallError> {
        self.stage_checked(package, &|_| Ok(()))
    }

    fn activate(&self, staged: Staged) -> Result<Activation, InstallError> {
        validate_name_and_version(&staged.name, &staged.version)?;
        let version_dir = self.package_dir(&staged.name).join(&staged.version);
        if staged.location() != version_dir || !is_real_dir(&version_dir)? {
            return Err(InstallError::NotStaged { name: staged.name, version: staged.version });
        }
        let activation = self.switch(&staged.name, &staged.version)?;
        self.prune(&activation);
        Ok(activation)
    }

    fn rollback(&self, name: &str, to_version: &str) -> Result<Activation, InstallError> {
        validate_name_and_version(name, to_version)?;
        let pkg_dir = self.package_dir(name);
        if !is_real_dir(&pkg_dir)? {
            return Err(InstallError::NotInstalled { name: name.to_owned() });
        }
        if !is_real_dir(&pkg_dir.join(to_version))? {
            return Err(InstallError::NoPreviousVersion { name: name.to_owned(), version: to_version.to_owned() });
        }
        // No pruning here: a rollback is a recovery path and changes nothing
        // but the link.
        self.switch(name, to_version)
    }

    /// Removes `current` and every kept version. An unreadable `current`
    /// does not block the removal.
    fn uninstall(&self, name: &str) -> Result<Uninstalled, InstallError> {
        validate_component("package name", name)?;
        let removed = read_current(&self.package_dir(name)).unwrap_or_else(|e| {
            warn!(name, error = %e, "current link is unreadable; removing the package anyway");
            None
        });
        self.remove_package(name)?;
        Ok(Uninstalled { name: name.to_owned(), removed })
    }

    fn active_version(&self, name: &str) -> Result<Option<String>, InstallError> {
        validate_component("package name", name)?;
        let pkg_dir = self.package_dir(name);
        let Some(version) = read_current(&pkg_dir)? else {
            return Ok(None);
        };
        if !is_real_dir(&pkg_dir.join(&version))? {
            return Err(InstallError::CorruptState {
                path: pkg_dir.join(CURRENT),
                reason: format!("points at missing version {version:?}"),
            });
        }
        Ok(Some(version))
    }

    fn installed_versions(&self, name: &str) -> Result<Vec<String>, InstallError> {
        validate_component("package name", name)?;
        let mut versions: Vec<String> =
            list_versions(&self.package_dir(name))?.into_iter().map(|v| v.version).collect();
        versions.sort();
        Ok(versions)
    }
}

/// Names and versions are path components; `current` is reserved.
pub(crate) fn validate_name_and_version(name: &str, version: &str) -> Result<(), InstallError> {
    validate_component("package name", name)?;
    validate_version(version)
}

/// A version is a path component that is not the reserved `current`.
pub(crate) fn validate_version(version: &str) -> Result<(), InstallError> {
    validate_component("version", version)?;
    if version == CURRENT {
        return Err(InstallError::InvalidName {
            what: "version",
            value: version.to_owned(),
            reason: "reserved: names the active-version symlink",
        });
    }
    Ok(())
}

/// True if `path` is a real directory (not a symlink), false if absent.
pub(crate) fn is_real_dir(path: &Path) -> Result<bool, InstallError> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => Ok(true),
        Ok(_) => {
            Err(InstallError::CorruptState { path: path.to_path_buf(), reason: "exists but is not a directory".into() })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_err("inspect", path)(e)),
    }
}

/// The version `current` points at, `None` if there is no `current`.
pub(crate) fn read_current(pkg_dir: &Path) -> Result<Option<String>, InstallError> {
    let link = pkg_dir.join(CURRENT);
    let target = match fs::read_link(&link) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            return Err(InstallError::CorruptState { path: link, reason: "is not a symlink".into() });
        }
        Err(e) => return Err(io_err("read symlink", link)(e)),
    };
    match target.to_str() {
        Some(v) if validate_version(v).is_ok() => Ok(Some(v.to_owned())),
        _ => Err(InstallError::CorruptState {
            path: link,
            reason: format!("points at {target:?}, not a version directory name"),
        }),
    }
}

/// Complete version directories in `pkg_dir` with their mtimes; empty if
/// the package directory does not exist.
fn list_versions(pkg_dir: &Path) -> Result<Vec<prune::OnDisk>, InstallError> {
    let entries = match fs::read_dir(pkg_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err("list directory", pkg_dir)(e)),
    };
    let mut versions = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_err("list directory", pkg_dir))?;
        let Ok(version) = entry.file_name().into_string() else {
            continue;
        };
        // Skips `current`, `.staging-*` and `.current.tmp-*`.
        if validate_version(&version).is_err() {
            continue;
        }
        let meta = fs::symlink_metadata(entry.path()).map_err(io_err("inspect", entry.path()))?;
        if meta.is_dir() {
            let modified = meta.modified().map_err(io_err("inspect", entry.path()))?;
            versions.push(prune::OnDisk { version, modified });
        }
    }
    Ok(versions)
}

/// Renames the complete staging directory to its version name. If another
/// stage of the same version won the race, its (complete) directory stays
/// and ours is discarded.
fn publish(staging: &Path, version_dir: &Path) -> Result<(), InstallError> {
    match fs::rename(staging, version_dir) {
        Ok(()) => Ok(()),
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTEMPTY | libc::EEXIST)) && is_real_dir(version_dir)? => {
            remove_tree(staging);
            Ok(())
        }
        Err(e) => Err(io_err("rename staging directory to", version_dir)(e)),
    }
}

/// Removes bookkeeping left by a crash: staging dirs and temp links.
fn remove_leftovers(pkg_dir: &Path) {
    let Ok(entries) = fs::read_dir(pkg_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        // `.current.tmp-*`, and any other link being replaced (`.<link>.tmp-*`).
        let temp_link = name.starts_with(CURRENT_TMP_PREFIX) || (name.starts_with('.') && name.contains(".tmp-"));
        if name.starts_with(STAGING_PREFIX) || temp_link {
            info!(path = %entry.path().display(), "removing leftover from an interrupted install");
            remove_tree(&entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::installer::Detection;
    use crate::test_support::{TarBuilder, list, write_artifact};
    use std::time::Duration;

    /// A tempdir holding the installer root and the artifacts.
    struct Host {
        _tmp: tempfile::TempDir,
        artifacts: PathBuf,
        installer: ArchiveInstaller,
    }

    impl Host {
        fn new() -> Self {
            let tmp = tempfile::tempdir().unwrap();
            let artifacts = tmp.path().join("artifacts");
            fs::create_dir(&artifacts).unwrap();
            let installer = ArchiveInstaller::new(tmp.path().join("root"));
            Host { _tmp: tmp, artifacts, installer }
        }

        fn pkg_dir(&self) -> PathBuf {
            self.installer.root().join("packages/app")
        }

        /// Stages a tar.gz of `archive` as app `version`.
        fn stage(&self, version: &str, archive: TarBuilder) -> Result<Staged, InstallError> {
            let artifact =
                write_artifact(&self.artifacts, &format!("{version}-{}.bin", unique_suffix()), &archive.tar_gz());
            self.installer.stage(&Package { name: "app", version, artifact: &artifact })
        }

        /// Stages and activates a package whose `bin/app` says `version`.
        fn install(&self, version: &str) -> Activation {
            let staged = self.stage(version, TarBuilder::new().file("bin/app", version.as_bytes())).unwrap();
            self.installer.activate(staged).unwrap()
        }

        fn current_target(&self) -> PathBuf {
            fs::read_link(self.pkg_dir().join("current")).unwrap()
        }

        fn active_content(&self) -> String {
            fs::read_to_string(self.pkg_dir().join("current/bin/app")).unwrap()
        }
    }

    #[test]
    fn installs_and_switches_current_symlink() {
        let host = Host::new();
        assert_eq!(host.installer.active_version("app").unwrap(), None);

        let activation = host.install("1.0");

        assert_eq!(activation, Activation { name: "app".into(), previous: None, active: "1.0".into() });
        assert_eq!(host.current_target(), Path::new("1.0"), "relative link");
        assert_eq!(host.active_content(), "1.0");
        assert_eq!(fs::read_to_string(host.pkg_dir().join("1.0/bin/app")).unwrap(), "1.0");
        assert_eq!(host.installer.active_version("app").unwrap().as_deref(), Some("1.0"));
        assert_eq!(list(&host.pkg_dir()), vec!["1.0", "current"]);
        assert_eq!(host.installer.current_path("app").unwrap(), host.pkg_dir().join("current"));
    }

    #[test]
    fn staging_alone_does_not_change_the_active_version() {
        let host = Host::new();
        host.install("1.0");
        let staged = host.stage("2.0", TarBuilder::new().file("bin/app", b"2.0")).unwrap();
        assert_eq!(staged.location(), host.pkg_dir().join("2.0"));
        assert_eq!(host.current_target(), Path::new("1.0"));
        assert_eq!(host.active_content(), "1.0");
        assert_eq!(host.installer.installed_versions("app").unwrap(), vec!["1.0", "2.0"]);
    }

    #[test]
    fn second_version_becomes_active_and_previous_is_kept() {
        let host = Host::new();
        host.install("1.0");
        let activation = host.install("2.0");
        assert_eq!(activation.previous.as_deref(), Some("1.0"));
        assert_eq!(activation.active, "2.0");
        assert_eq!(host.current_target(), Path::new("2.0"));
        assert_eq!(host.active_content(), "2.0");
        assert_eq!(fs::read_to_string(host.pkg_dir().join("1.0/bin/app")).unwrap(), "1.0");
        assert_eq!(list(&host.pkg_dir()), vec!["1.0", "2.0", "current"]);
    }

    #[test]
    fn rollback_reactivates_previous_version() {
        let host = Host::new();
        host.install("1.0");
        host.install("2.0");
        let activation = host.installer.rollback("app", "1.0").unwrap();
        assert_eq!(activation, Activation { name: "app".into(), previous: Some("2.0".into()), active: "1.0".into() });
        assert_eq!(host.current_target(), Path::new("1.0"));
        assert_eq!(host.active_content(), "1.0");
        assert!(host.pkg_dir().join("2.0").is_dir(), "rollback prunes nothing");
    }

    #[test]
    fn rollback_needs_a_kept_version() {
        let host = Host::new();
        assert!(matches!(
            host.installer.rollback("app", "1.0"),
            Err(InstallError::NotInstalled { name }) if name == "app"
        ));
        host.install("2.0");
        assert!(matches!(
            host.installer.rollback("app", "1.0"),
            Err(InstallError::NoPreviousVersion { version, .. }) if version == "1.0"
        ));
        assert_eq!(host.current_target(), Path::new("2.0"));
    }

    #[test]
    fn stage_is_idempotent_for_an_existing_version() {
        let host = Host::new();
        let first = host.stage("1.0", TarBuilder::new().file("bin/app", b"first")).unwrap();
        // Same version again (even with other bytes): nothing is rewritten.
        let second = host.stage("1.0", TarBuilder::new().file("bin/app", b"second")).unwrap();
        assert_eq!(first, second);
        assert_eq!(fs::read_to_string(host.pkg_dir().join("1.0/bin/app")).unwrap(), "first");
        assert_eq!(list(&host.pkg_dir()), vec!["1.0"], "no staging leftovers");
        // Activating the same version twice is a no-op that still succeeds.
        host.installer.activate(second).unwrap();
        let again = host.installer.activate(first).unwrap();
        assert_eq!(again.previous.as_deref(), Some("1.0"));
        assert_eq!(host.current_target(), Path::new("1.0"));
    }

    #[test]
    fn leftovers_of_a_crashed_stage_are_removed_at_the_next_stage() {
        let host = Host::new();
        host.install("1.0");
        let crashed = host.pkg_dir().join(".staging-2.0-123-0-0");
        fs::create_dir_all(crashed.join("half/written")).unwrap();
        std::os::unix::fs::symlink("1.0", host.pkg_dir().join(".current.tmp-9-9-9")).unwrap();

        host.stage("2.0", TarBuilder::new().file("bin/app", b"2.0")).unwrap();

        assert_eq!(list(&host.pkg_dir()), vec!["1.0", "2.0", "current"]);
        assert_eq!(host.installer.installed_versions("app").unwrap(), vec!["1.0", "2.0"]);
    }

    #[test]
    fn failed_stage_leaves_active_version_untouched() {
        let host = Host::new();
        host.install("1.0");
        let outside = host.installer.root().join("packages/evil");

        let err = host
            .stage(
                "2.0",
                TarBuilder::new().file("bin/app", b"2.0").raw(tar::EntryType::Regular, b"../../evil", b"", 0o644, b"x"),
            )
            .unwrap_err();

        assert!(matches!(err, InstallError::UnsafeEntry { .. }), "{err:?}");
        assert!(!err.is_transient());
        assert_eq!(host.current_target(), Path::new("1.0"));
        assert_eq!(host.active_content(), "1.0");
        assert_eq!(list(&host.pkg_dir()), vec!["1.0", "current"], "staging removed");
        assert!(!outside.exists());
        assert!(!host.installer.root().join("evil").exists());
    }

    #[test]
    fn a_decompression_bomb_fails_cleanly_through_stage() {
        let mut host = Host::new();
        host.installer =
            host.installer.clone().with_limits(ArchiveLimits { max_entries: 10, max_unpacked_bytes: 1024 * 1024 });
        host.install("1.0");
        let err = host.stage("2.0", TarBuilder::new().file("zeros", &vec![0u8; 8 * 1024 * 1024])).unwrap_err();
        assert!(matches!(err, InstallError::TooLarge { limit_bytes } if limit_bytes == 1024 * 1024));
        assert_eq!(list(&host.pkg_dir()), vec!["1.0", "current"]);
    }

    #[test]
    fn unsupported_format_creates_nothing() {
        let host = Host::new();
        let artifact = write_artifact(&host.artifacts, "app.tar.gz", b"PK\x03\x04zip!");
        let err = host.installer.stage(&Package { name: "app", version: "1.0", artifact: &artifact }).unwrap_err();
        assert!(matches!(err, InstallError::UnsupportedFormat { detected: "zip", .. }));
        assert!(!host.installer.root().exists());
    }

    #[test]
    fn plain_tar_is_installed_too() {
        let host = Host::new();
        let bytes = TarBuilder::new().file("bin/app", b"plain").tar();
        let artifact = write_artifact(&host.artifacts, "app.tgz", &bytes);
        let staged = host.installer.stage(&Package { name: "app", version: "1.0", artifact: &artifact }).unwrap();
        host.installer.activate(staged).unwrap();
        assert_eq!(host.active_content(), "plain");
    }

    #[test]
    fn version_dirs_get_the_archive_root_mode_or_0755() {
        let host = Host::new();
        host.install("1.0");
        let mode = |v: &str| fs::metadata(host.pkg_dir().join(v)).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode("1.0"), 0o755);
        host.stage("2.0", TarBuilder::new().dir("./", 0o750).file("a", b"")).unwrap();
        assert_eq!(mode("2.0"), 0o750);
    }

    #[test]
    fn prune_keeps_active_and_previous() {
        let mut host = Host::new();
        host.installer = host.installer.clone().with_keep_versions(2);
        host.install("1");
        host.install("2");
        host.installer.rollback("app", "1").unwrap();
        // Make "1" look ancient: it must survive as the previous version anyway.
        let old = SystemTime::UNIX_EPOCH + Duration::from_secs(1);
        File::open(host.pkg_dir().join("1")).unwrap().set_modified(old).unwrap();

        let activation = host.install("3");

        assert_eq!(activation.previous.as_deref(), Some("1"));
        assert_eq!(list(&host.pkg_dir()), vec!["1", "3", "current"]);
        assert_eq!(host.current_target(), Path::new("3"));
    }

    #[test]
    fn prune_removes_the_oldest_beyond_keep_versions() {
        let host = Host::new(); // keeps 3 by default
        for v in ["1", "2", "3", "4", "5"] {
            host.install(v);
            // Distinct mtimes even on coarse-grained filesystems.
            let t = SystemTime::UNIX_EPOCH + Duration::from_secs(v.parse::<u64>().unwrap());
            File::open(host.pkg_dir().join(v)).unwrap().set_modified(t).unwrap();
        }
        assert_eq!(list(&host.pkg_dir()), vec!["3", "4", "5", "current"]);
        assert_eq!(host.active_content(), "5");
    }

    #[test]
    fn uninstall_removes_every_version_and_is_idempotent() {
        let host = Host::new();
        host.install("1.0");
        host.install("2.0");

        let removed = host.installer.uninstall("app").unwrap();

        assert_eq!(removed, Uninstalled { name: "app".into(), removed: Some("2.0".into()) });
        assert!(!host.pkg_dir().exists());
        assert_eq!(list(&host.installer.root().join("packages")), Vec::<String>::new(), "no leftovers");
        assert_eq!(host.installer.active_version("app").unwrap(), None);
        assert!(host.installer.installed_versions("app").unwrap().is_empty());
        let again = host.installer.uninstall("app").unwrap();
        assert_eq!(again.removed, None);
        assert!(matches!(host.installer.uninstall("../x"), Err(InstallError::InvalidName { .. })));
    }

    #[test]
    fn detect_and_check_use_the_defaults() {
        let host = Host::new();
        assert_eq!(host.installer.detect("app").unwrap(), Detection::Absent);
        host.install("1.0");
        assert_eq!(host.installer.detect("app").unwrap(), Detection::Installed { version: "1.0".into() });
        assert!(host.installer.check("app", "1.0").unwrap().passed);
    }

    #[test]
    fn invalid_package_names_are_refused() {
        let host = Host::new();
        let artifact = write_artifact(&host.artifacts, "a.tar.gz", &TarBuilder::new().file("f", b"x").tar_gz());
        for (name, version) in [
            ("../etc", "1.0"),
            ("app", "../../etc"),
            ("/abs", "1.0"),
            ("app", "current"),
            ("app", ".staging-x"),
            ("", "1.0"),
            ("app", "a/b"),
        ] {
            let err = host.installer.stage(&Package { name, version, artifact: &artifact }).unwrap_err();
            assert!(matches!(err, InstallError::InvalidName { .. }), "{name:?} {version:?}: {err:?}");
            assert!(matches!(host.installer.rollback(name, version), Err(InstallError::InvalidName { .. })));
        }
        assert!(matches!(host.installer.active_version("../x"), Err(InstallError::InvalidName { .. })));
        assert!(matches!(host.installer.installed_versions("a/b"), Err(InstallError::InvalidName { .. })));
        assert!(!host.installer.root().exists(), "nothing was created");
    }

    #[test]
    fn a_tampered_staged_proof_is_refused() {
        let host = Host::new();
        host.install("1.0");
        let mut staged = host.stage("2.0", TarBuilder::new().file("bin/app", b"2.0")).unwrap();
        staged.version = "1.5".into();
        assert!(matches!(host.installer.activate(staged.clone()), Err(InstallError::NotStaged { .. })));
        staged.version = "../1.0".into();
        assert!(matches!(host.installer.activate(staged), Err(InstallError::InvalidName { .. })));
        assert_eq!(host.current_target(), Path::new("1.0"));
    }

    #[test]
    fn a_staged_version_removed_before_activation_is_not_staged() {
        let host = Host::new();
        let staged = host.stage("1.0", TarBuilder::new().file("bin/app", b"1.0")).unwrap();
        fs::remove_dir_all(host.pkg_dir().join("1.0")).unwrap();
        assert!(matches!(host.installer.activate(staged), Err(InstallError::NotStaged { .. })));
        assert!(!host.pkg_dir().join("current").exists());
    }

    #[test]
    fn a_current_link_to_nowhere_is_reported_as_corrupt() {
        let host = Host::new();
        host.install("1.0");
        fs::remove_dir_all(host.pkg_dir().join("1.0")).unwrap();
        assert!(matches!(host.installer.active_version("app"), Err(InstallError::CorruptState { .. })));
        // Installing again repairs it.
        host.install("2.0");
        assert_eq!(host.installer.active_version("app").unwrap().as_deref(), Some("2.0"));
    }
}
