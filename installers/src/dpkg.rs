//! The dpkg backend: installs real `.deb` packages with the real `dpkg`.
//!
//! # Layout
//! ```text
//! <root>/dpkg-cache/<name>/<version>.deb         every staged .deb: the install source and
//!                                                the rollback targets
//! <root>/dpkg-cache/<name>/.tmp-<version>-<id>   being copied in (removed at the next stage)
//! <root>/dpkg-cache/.removed-<name>-<id>         a cache being deleted by `uninstall`
//! ```
//! The dpkg database (`/var/lib/dpkg`, or the admindir given to
//! [`DpkgInstaller::with_admindir`]) is the only source of truth for what is
//! installed; the cache only holds `.deb` files.
//!
//! # Semantics
//! - `stage` refuses with [`InstallError::NoRollbackTarget`] — before
//!   writing anything — if another version of the package is installed and
//!   no `.deb` of it is cached (unless
//!   [`DpkgInstaller::with_rollback_target_required`] turned that off). A
//!   package that is not installed needs no target: undoing it is
//!   `uninstall`. Then it copies the artifact into the cache (one read of
//!   the agent's verified file; fsync; rename; fsync of the directory) and
//!   checks that the copy's control `Package` and `Version` are exactly the
//!   release's name and version ([`InstallError::DebMismatch`] otherwise,
//!   and the copy is deleted). Every later step uses only the cached copy.
//! - `activate` re-checks the rollback target, runs `dpkg --install` on the
//!   cached `.deb`, and then requires `dpkg-query` to report
//!   `install ok installed <version>` ([`InstallError::NotDetected`]
//!   otherwise). A failing maintainer script fails with
//!   [`InstallError::Dpkg`] carrying dpkg's output tail and leaves the
//!   package as dpkg left it (typically half-configured):
//!   [`Installer::detect`] then says [`Detection::Unclean`], and the agent
//!   must `rollback` (or `uninstall` after a first install). Activating the
//!   version that is cleanly installed already runs nothing. After success,
//!   old cached `.deb`s beyond `keep_versions` are pruned (never the active
//!   or the previous one).
//! - `rollback(to)` = `dpkg --install --force-downgrade` of the cached
//!   `to.deb`, then the same detection check. Works from a half-configured
//!   state.
//! - `uninstall` = `dpkg --purge` (conffiles too: the package leaves no
//!   trace, like undoing a first install should), then detection must say
//!   absent; then the package's cache is deleted.
//! - `detect` = `dpkg-query -W -f '${Status} ${Version}\n' <name>`:
//!   `… ok installed` is [`Detection::Installed`], `not-installed` and
//!   `config-files` are [`Detection::Absent`], anything else (half-installed,
//!   unpacked, half-configured, triggers pending, reinstreq, several
//!   architectures) is [`Detection::Unclean`]. `active_version` answers
//!   [`InstallError::Unclean`] in that last case.
//!
//! dpkg runs with the clean environment of hooks plus
//! `DEBIAN_FRONTEND=noninteractive`, stdin `/dev/null`, working directory
//! `/`, `--force-confdef --force-confold` (a locally modified conffile is
//! kept, never prompted for), and a timeout (default 30 min) after which its
//! process group is killed. dpkg does not resolve dependencies: they must
//! already be installed. Debian epochs (`1:2.0`) cannot be release versions
//! (`:` is not allowed in a version).

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use tracing::{debug, info, warn};

use crate::archive::prune::{OnDisk, select_for_removal};
use crate::archive::validate_name_and_version;
use crate::error::{InstallError, io_err};
use crate::fsutil::{create_dir_durably, fsync_dir, remove_tree, unique_suffix};
use crate::installer::{Activation, Detection, Installer, Package, Staged, Uninstalled};
use crate::names::validate_component;
use crate::process::{self, Finished, clean_command};

/// How long one `dpkg` run may take before its process group is killed.
pub const DEFAULT_DPKG_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// Cached `.deb` versions kept per package by default, the active one
/// included.
const DEFAULT_KEEP_VERSIONS: usize = 3;
/// Directory under the root holding one directory of `.deb`s per package.
const CACHE_DIR: &str = "dpkg-cache";
/// Timeout for `dpkg-query` and `dpkg-deb -f`, which only read.
const QUERY_TIMEOUT: Duration = Duration::from_secs(60);
/// Most stdout kept from `dpkg-query` / `dpkg-deb -f`.
const QUERY_STDOUT_LIMIT: usize = 64 * 1024;

/// Installs `.deb` packages with dpkg (see the module documentation).
#[derive(Debug, Clone)]
pub struct DpkgInstaller {
    /// `<root>/dpkg-cache` holds the staged `.deb`s, the rollback targets.
    root: PathBuf,
    /// The programs, looked up in the clean `PATH` unless absolute.
    dpkg: PathBuf,
    dpkg_query: PathBuf,
    dpkg_deb: PathBuf,
    /// Options that select the database, given to dpkg and dpkg-query.
    db_args: Vec<OsString>,
    /// Options given to dpkg only (install root, forces, log file).
    dpkg_args: Vec<OsString>,
    /// Kills a `dpkg` run that hangs (a maintainer script waiting forever).
    timeout: Duration,
    /// Cached `.deb`s kept per package after an activation.
    keep_versions: usize,
    /// Refuse to replace an installed version that has no cached `.deb`.
    require_rollback_target: bool,
}

impl DpkgInstaller {
    /// Installs into the system's dpkg database (plain `dpkg --install`),
    /// caching `.deb`s under `<root>/dpkg-cache`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        DpkgInstaller {
            root: root.into(),
            dpkg: "dpkg".into(),
            dpkg_query: "dpkg-query".into(),
            dpkg_deb: "dpkg-deb".into(),
            db_args: Vec::new(),
            dpkg_args: Vec::new(),
            timeout: DEFAULT_DPKG_TIMEOUT,
            keep_versions: DEFAULT_KEEP_VERSIONS,
            require_rollback_target: true,
        }
    }

    /// Uses a separate dpkg database and install root instead of the
    /// system's, so nothing of the host's package state is touched (tests,
    /// labs). Adds `--admindir=<admindir>` (dpkg and dpkg-query) and
    /// `--instdir=<instdir> --force-not-root --force-script-chrootless
    /// --log=<admindir>/dpkg.log` (dpkg): without `--log` dpkg appends to
    /// the host's `/var/log/dpkg.log`, and without `script-chrootless` it
    /// would `chroot` into `instdir` to run maintainer scripts. Scripts see
    /// `DPKG_ROOT=<instdir>`. The admindir must exist; see
    /// [`DpkgInstaller::init_admindir`].
    pub fn with_admindir(mut self, admindir: impl AsRef<Path>, instdir: impl AsRef<Path>) -> Self {
        let (admindir, instdir) = (admindir.as_ref(), instdir.as_ref());
        let opt = |name: &str, path: &Path| {
            let mut arg = OsString::from(name);
            arg.push(path.as_os_str());
            arg
        };
        self.db_args = vec![opt("--admindir=", admindir)];
        self.dpkg_args = vec![
            opt("--instdir=", instdir),
            "--force-not-root".into(),
            "--force-script-chrootless".into(),
            opt("--log=", &admindir.join("dpkg.log")),
        ];
        self
    }

    /// Creates an empty dpkg database at `admindir` if there is none: the
    /// `status` and `available` files and the `info/` and `updates/`
    /// directories. Existing files are left as they are.
    pub fn init_admindir(admindir: &Path) -> Result<(), InstallError> {
        for dir in [admindir.to_path_buf(), admindir.join("info"), admindir.join("updates")] {
            fs::create_dir_all(&dir).map_err(io_err("create directory", &dir))?;
        }
        for file in ["status", "available"] {
            let path = admindir.join(file);
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .and_then(|f| f.sync_all())
                .map_err(io_err("create file", &path))?;
        }
        fsync_dir(admindir)
    }

    /// Sets the timeout of each `dpkg` run.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets how many cached `.deb`s per package stay after an activation
    /// (the active and previous ones are always kept).
    pub fn with_keep_versions(mut self, keep_versions: usize) -> Self {
        self.keep_versions = keep_versions;
        self
    }

    /// Whether replacing an installed version without a cached `.deb` of it
    /// is refused (default `true`). With `false` it is allowed, and a later
    /// `rollback` to that version fails with
    /// [`InstallError::NoPreviousVersion`].
    pub fn with_rollback_target_required(mut self, required: bool) -> Self {
        self.require_rollback_target = required;
        self
    }

    /// Uses these programs instead of `dpkg`, `dpkg-query` and `dpkg-deb`
    /// from the clean `PATH`.
    pub fn with_programs(
        mut self,
        dpkg: impl Into<PathBuf>,
        dpkg_query: impl Into<PathBuf>,
        dpkg_deb: impl Into<PathBuf>,
    ) -> Self {
        self.dpkg = dpkg.into();
        self.dpkg_query = dpkg_query.into();
        self.dpkg_deb = dpkg_deb.into();
        self
    }

    /// The root this installer writes under.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<root>/dpkg-cache/<name>/<version>.deb`, where `version`'s `.deb`
    /// is (or would be) cached.
    pub fn cached_deb(&self, name: &str, version: &str) -> Result<PathBuf, InstallError> {
        validate_name_and_version(name, version)?;
        Ok(self.cache_dir(name).join(format!("{version}.deb")))
    }

    fn cache_dir(&self, name: &str) -> PathBuf {
        self.root.join(CACHE_DIR).join(name)
    }

    /// Runs a read-only tool and returns its output.
    fn run_tool(&self, mut cmd: Command, program: &Path) -> Result<Finished, InstallError> {
        cmd.current_dir("/");
        process::run(&mut cmd, QUERY_TIMEOUT, QUERY_STDOUT_LIMIT).map_err(io_err("run", program))
    }

    /// What the dpkg database says about `name`.
    fn query(&self, name: &str) -> Result<Detection, InstallError> {
        let mut cmd = clean_command(&self.dpkg_query);
        cmd.args(&self.db_args).args(["--show", "--showformat=${Status} ${Version}\\n", "--"]).arg(name);
        let done = self.run_tool(cmd, &self.dpkg_query)?;
        match done.output.exit {
            Some(0) => Ok(parse_status(&String::from_utf8_lossy(&done.stdout))),
            // "no packages found matching <name>".
            Some(1) => Ok(Detection::Absent),
            _ => Err(InstallError::Dpkg { op: "query", name: name.to_owned(), output: Box::new(done.output) }),
        }
    }

    /// The `Package` and `Version` control fields of `deb`.
    fn control_fields(&self, deb: &Path, name: &str) -> Result<(String, String), InstallError> {
        let mut cmd = clean_command(&self.dpkg_deb);
        cmd.arg("--field").arg(deb).args(["Package", "Version"]);
        let done = self.run_tool(cmd, &self.dpkg_deb)?;
        if !done.output.succeeded() {
            return Err(InstallError::Dpkg {
                op: "read control fields",
                name: name.to_owned(),
                output: Box::new(done.output),
            });
        }
        let stdout = String::from_utf8_lossy(&done.stdout);
        let field = |key: &str| {
            stdout
                .lines()
                .find_map(|l| l.strip_prefix(key).and_then(|rest| rest.strip_prefix(':')))
                .map(|v| v.trim().to_owned())
                .unwrap_or_default()
        };
        Ok((field("Package"), field("Version")))
    }

    /// Runs `dpkg <action…>` with the configured options.
    fn dpkg(&self, op: &'static str, name: &str, action: &[&std::ffi::OsStr]) -> Result<(), InstallError> {
        let mut cmd = clean_command(&self.dpkg);
        cmd.env("DEBIAN_FRONTEND", "noninteractive")
            .current_dir("/")
            .args(&self.db_args)
            .args(&self.dpkg_args)
            .args(["--force-confdef", "--force-confold"])
            .args(action);
        info!(name, op, "running dpkg");
        let done = process::run(&mut cmd, self.timeout, 0).map_err(io_err("run", &self.dpkg))?;
        if done.output.succeeded() {
            debug!(name, op, outcome = %done.output, tail = %done.output.tail, "dpkg succeeded");
            Ok(())
        } else {
            warn!(name, op, outcome = %done.output, "dpkg failed");
            Err(InstallError::Dpkg { op, name: name.to_owned(), output: Box::new(done.output) })
        }
    }

    /// `dpkg --install` of `deb`, then requires a clean install of `version`.
    fn install_deb(&self, op: &'static str, name: &str, version: &str, deb: &Path) -> Result<(), InstallError> {
        let mut action: Vec<&std::ffi::OsStr> = Vec::new();
        if op == "rollback" {
            action.push("--force-downgrade".as_ref());
        }
        action.extend(["--install".as_ref(), deb.as_os_str()]);
        self.dpkg(op, name, &action)?;
        let detected = self.query(name)?;
        if !detected.is_installed(version) {
            return Err(InstallError::NotDetected {
                name: name.to_owned(),
                op,
                expected: Box::new(Detection::Installed { version: version.to_owned() }),
                detected: Box::new(detected),
            });
        }
        touch(deb);
        Ok(())
    }

    /// Refuses to replace the installed version when it could not be rolled
    /// back to.
    fn require_rollback_target(&self, name: &str, version: &str, detected: &Detection) -> Result<(), InstallError> {
        let Some(installed) = detected.version().filter(|v| *v != version) else {
            return Ok(());
        };
        let expected = self.cache_dir(name).join(format!("{installed}.deb"));
        let cached = validate_component("version", installed).is_ok() && is_file(&expected)?;
        if self.require_rollback_target && !cached {
            return Err(InstallError::NoRollbackTarget {
                name: name.to_owned(),
                installed: installed.to_owned(),
                expected,
            });
        }
        Ok(())
    }

    /// Copies the artifact to its cache path (durably) unless a copy is
    /// already there. Returns the path and whether it was created now.
    fn cache_artifact(&self, package: &Package<'_>) -> Result<(PathBuf, bool), InstallError> {
        let dest = self.cached_deb(package.name, package.version)?;
        let dir = self.cache_dir(package.name);
        remove_leftovers(&dir);
        if is_file(&dest)? {
            return Ok((dest, false));
        }
        let mut source = File::open(package.artifact)
            .map_err(|source| InstallError::ArchiveRead { path: package.artifact.to_path_buf(), source })?;
        create_dir_durably(&self.root.join(CACHE_DIR))?;
        create_dir_durably(&dir)?;
        let tmp = dir.join(format!(".tmp-{}-{}", package.version, unique_suffix()));
        let result = (|| {
            let mut out = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o644)
                .open(&tmp)
                .map_err(io_err("create", &tmp))?;
            io::copy(&mut source, &mut out).map_err(io_err("copy artifact to", &tmp))?;
            out.sync_all().map_err(io_err("fsync", &tmp))?;
            fs::rename(&tmp, &dest).map_err(io_err("rename cached .deb to", &dest))?;
            fsync_dir(&dir)
        })();
        if result.is_err() {
            remove_tree(&tmp);
        }
        result.map(|()| (dest, true))
    }

    /// Cached versions of `name` with their mtimes.
    fn cached_versions(&self, name: &str) -> Result<Vec<OnDisk>, InstallError> {
        let dir = self.cache_dir(name);
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err("list directory", &dir)(e)),
        };
        let mut versions = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_err("list directory", &dir))?;
            let Some(version) = entry.file_name().to_str().and_then(|n| n.strip_suffix(".deb")).map(str::to_owned)
            else {
                continue;
            };
            if validate_name_and_version(name, &version).is_err() {
                continue;
            }
            let meta = fs::symlink_metadata(entry.path()).map_err(io_err("inspect", entry.path()))?;
            if meta.is_file() {
                let modified = meta.modified().map_err(io_err("inspect", entry.path()))?;
                versions.push(OnDisk { version, modified });
            }
        }
        Ok(versions)
    }

    /// Deletes cached `.deb`s beyond `keep_versions`; failures are logged.
    fn prune(&self, name: &str, active: &str, previous: Option<&str>) {
        let versions = match self.cached_versions(name) {
            Ok(v) => v,
            Err(e) => {
                warn!(name, error = %e, "cannot list cached .debs to prune");
                return;
            }
        };
        for version in select_for_removal(versions, active, previous, self.keep_versions) {
            let path = self.cache_dir(name).join(format!("{version}.deb"));
            match fs::remove_file(&path) {
                Ok(()) => debug!(name, version, "pruned cached .deb"),
                Err(e) => warn!(name, version, error = %e, "prune failed"),
            }
        }
        if let Err(e) = fsync_dir(&self.cache_dir(name)) {
            warn!(name, error = %e, "fsync after prune failed");
        }
    }
}

impl Installer for DpkgInstaller {
    fn stage(&self, package: &Package<'_>) -> Result<Staged, InstallError> {
        let (name, version) = (package.name, package.version);
        validate_name_and_version(name, version)?;
        // Before anything is written.
        let detected = self.query(name)?;
        self.require_rollback_target(name, version, &detected)?;
        let (deb, fresh) = self.cache_artifact(package)?;
        let checked = self.control_fields(&deb, name).and_then(|(found_name, found_version)| {
            if found_name != name {
                return Err(InstallError::DebMismatch {
                    path: deb.clone(),
                    field: "Package",
                    expected: name.to_owned(),
                    found: found_name,
                });
            }
            if found_version != version {
                return Err(InstallError::DebMismatch {
                    path: deb.clone(),
                    field: "Version",
                    expected: version.to_owned(),
                    found: found_version,
                });
            }
            Ok(())
        });
        if let Err(e) = checked {
            // Only a copy made now is ours to drop: an older one was checked
            // when it was made and may be a rollback target.
            if fresh && !e.is_transient() {
                remove_tree(&deb);
                let _ = fsync_dir(&self.cache_dir(name));
            }
            return Err(e);
        }
        info!(name, version, deb = %deb.display(), "staged");
        Ok(Staged::new(name, version, deb))
    }

    fn activate(&self, staged: Staged) -> Result<Activation, InstallError> {
        let (name, version) = (staged.name.as_str(), staged.version.as_str());
        let deb = self.cached_deb(name, version)?;
        if staged.location() != deb || !is_file(&deb)? {
            return Err(InstallError::NotStaged { name: name.to_owned(), version: version.to_owned() });
        }
        let before = self.query(name)?;
        if before.is_installed(version) {
            info!(name, version, "already installed");
            touch(&deb);
            return Ok(Activation {
                name: name.to_owned(),
                previous: Some(version.to_owned()),
                active: version.to_owned(),
            });
        }
        self.require_rollback_target(name, version, &before)?;
        self.install_deb("install", name, version, &deb)?;
        let previous = before.version().map(str::to_owned);
        info!(name, version, previous = ?previous, "installed");
        self.prune(name, version, previous.as_deref());
        Ok(Activation { name: name.to_owned(), previous, active: version.to_owned() })
    }

    fn rollback(&self, name: &str, to_version: &str) -> Result<Activation, InstallError> {
        let deb = self.cached_deb(name, to_version)?;
        if !is_file(&deb)? {
            return Err(InstallError::NoPreviousVersion { name: name.to_owned(), version: to_version.to_owned() });
        }
        let before = self.query(name)?;
        let activation = |previous: Option<&str>| Activation {
            name: name.to_owned(),
            previous: previous.map(str::to_owned),
            active: to_version.to_owned(),
        };
        if before.is_installed(to_version) {
            return Ok(activation(Some(to_version)));
        }
        self.install_deb("rollback", name, to_version, &deb)?;
        info!(name, from = %before, to = to_version, "rolled back");
        Ok(activation(before.version()))
    }

    fn uninstall(&self, name: &str) -> Result<Uninstalled, InstallError> {
        validate_component("package name", name)?;
        let before = self.query(name)?;
        if before != Detection::Absent {
            self.dpkg("purge", name, &["--purge".as_ref(), name.as_ref()])?;
            let after = self.query(name)?;
            if after != Detection::Absent {
                return Err(InstallError::NotDetected {
                    name: name.to_owned(),
                    op: "uninstall",
                    expected: Box::new(Detection::Absent),
                    detected: Box::new(after),
                });
            }
            info!(name, removed = %before, "purged");
        }
        let dir = self.cache_dir(name);
        if is_dir(&dir)? {
            let cache = self.root.join(CACHE_DIR);
            let doomed = cache.join(format!(".removed-{name}-{}", unique_suffix()));
            fs::rename(&dir, &doomed).map_err(io_err("rename cache directory to", &doomed))?;
            fsync_dir(&cache)?;
            remove_tree(&doomed);
        }
        Ok(Uninstalled { name: name.to_owned(), removed: before.version().map(str::to_owned) })
    }

    fn detect(&self, name: &str) -> Result<Detection, InstallError> {
        validate_component("package name", name)?;
        self.query(name)
    }

    fn active_version(&self, name: &str) -> Result<Option<String>, InstallError> {
        match self.detect(name)? {
            Detection::Absent => Ok(None),
            Detection::Installed { version } => Ok(Some(version)),
            Detection::Unclean { version, state } => {
                Err(InstallError::Unclean { name: name.to_owned(), version, state })
            }
        }
    }

    /// The versions whose `.deb` is cached (the possible rollback targets).
    fn installed_versions(&self, name: &str) -> Result<Vec<String>, InstallError> {
        validate_component("package name", name)?;
        let mut versions: Vec<String> = self.cached_versions(name)?.into_iter().map(|v| v.version).collect();
        versions.sort();
        Ok(versions)
    }
}

/// Parses `dpkg-query --showformat='${Status} ${Version}\n'` output.
fn parse_status(stdout: &str) -> Detection {
    let lines: Vec<&str> = stdout.lines().filter(|l| !l.trim().is_empty()).collect();
    let line = match lines.as_slice() {
        [] => return Detection::Absent,
        [line] => *line,
        many => {
            return Detection::Unclean {
                version: None,
                state: format!("dpkg lists {} instances (several architectures?): {}", many.len(), many.join("; ")),
            };
        }
    };
    let mut words = line.splitn(4, ' ');
    let (want, flag, status) = (words.next().unwrap_or(""), words.next().unwrap_or(""), words.next().unwrap_or(""));
    let version = words.next().unwrap_or("").trim();
    match status {
        "not-installed" | "config-files" => Detection::Absent,
        "installed" if flag == "ok" && !version.is_empty() => Detection::Installed { version: version.to_owned() },
        _ => Detection::Unclean {
            version: (!version.is_empty()).then(|| version.to_owned()),
            state: format!("dpkg status \"{want} {flag} {status}\""),
        },
    }
}

fn is_file(path: &Path) -> Result<bool, InstallError> {
    match fs::symlink_metadata(path) {
        Ok(m) => Ok(m.is_file()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_err("inspect", path)(e)),
    }
}

fn is_dir(path: &Path) -> Result<bool, InstallError> {
    match fs::symlink_metadata(path) {
        Ok(m) => Ok(m.is_dir()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_err("inspect", path)(e)),
    }
}

/// Marks a cached `.deb` as recently used, for pruning.
fn touch(deb: &Path) {
    if let Err(e) = File::open(deb).and_then(|f| f.set_modified(SystemTime::now())) {
        warn!(deb = %deb.display(), error = %e, "could not bump mtime");
    }
}

/// Removes half-copied `.tmp-*` files left by a crash.
fn remove_leftovers(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(".tmp-") {
            remove_tree(&entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::list;
    use std::process::Command;

    const NAME: &str = "flotte-test-hello";

    /// A private dpkg database and install root in a tempdir.
    struct Lab {
        tmp: tempfile::TempDir,
        admindir: PathBuf,
        instdir: PathBuf,
        installer: DpkgInstaller,
    }

    impl Lab {
        fn new() -> Self {
            let tmp = tempfile::tempdir().unwrap();
            let admindir = tmp.path().join("admin");
            let instdir = tmp.path().join("inst");
            fs::create_dir(&instdir).unwrap();
            fs::create_dir(tmp.path().join("debs")).unwrap();
            DpkgInstaller::init_admindir(&admindir).unwrap();
            let installer = DpkgInstaller::new(tmp.path().join("root")).with_admindir(&admindir, &instdir);
            Lab { tmp, admindir, instdir, installer }
        }

        /// Builds a real .deb with `dpkg-deb --build`. Its file
        /// `/opt/<package>/version` holds `version`. Fails (never skips)
        /// without dpkg-deb.
        fn deb(&self, package: &str, version: &str, postinst: Option<&str>) -> PathBuf {
            let tree = self.tmp.path().join(format!("tree-{package}-{version}-{}", unique_suffix()));
            fs::create_dir_all(tree.join("DEBIAN")).unwrap();
            fs::create_dir_all(tree.join("opt").join(package)).unwrap();
            fs::write(tree.join("opt").join(package).join("version"), version).unwrap();
            fs::write(
                tree.join("DEBIAN/control"),
                format!(
                    "Package: {package}\nVersion: {version}\nArchitecture: all\n\
                     Maintainer: Flotte tests <tests@example.invalid>\nDescription: Flotte test package\n"
                ),
            )
            .unwrap();
            if let Some(script) = postinst {
                let path = tree.join("DEBIAN/postinst");
                fs::write(&path, script).unwrap();
                fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
            }
            let out = self.tmp.path().join("debs").join(format!("{package}_{version}_{}.deb", unique_suffix()));
            let built = Command::new("dpkg-deb")
                .args(["--root-owner-group", "--build"])
                .arg(&tree)
                .arg(&out)
                .output()
                .expect("dpkg-deb is required by these tests (apt-get install dpkg)");
            assert!(built.status.success(), "dpkg-deb --build: {}", String::from_utf8_lossy(&built.stderr));
            out
        }

        fn stage(&self, version: &str, deb: &Path) -> Result<Staged, InstallError> {
            self.installer.stage(&Package { name: NAME, version, artifact: deb })
        }

        fn install(&self, version: &str, deb: &Path) -> Result<Activation, InstallError> {
            self.installer.activate(self.stage(version, deb)?)
        }

        /// Content of the package's file under the install root.
        fn installed_file(&self) -> Option<String> {
            fs::read_to_string(self.instdir.join("opt").join(NAME).join("version")).ok()
        }

        fn detect(&self) -> Detection {
            self.installer.detect(NAME).unwrap()
        }

        /// Installs a .deb behind Flotte's back (no cache).
        fn raw_dpkg_install(&self, deb: &Path) {
            let status = Command::new("dpkg")
                .arg(format!("--admindir={}", self.admindir.display()))
                .arg(format!("--instdir={}", self.instdir.display()))
                .arg(format!("--log={}", self.admindir.join("dpkg.log").display()))
                .args(["--force-not-root", "--force-script-chrootless", "--install"])
                .arg(deb)
                .stdout(std::process::Stdio::null())
                .status()
                .unwrap();
            assert!(status.success());
        }

        fn cache(&self) -> Vec<String> {
            let dir = self.installer.root().join("dpkg-cache").join(NAME);
            if dir.exists() { list(&dir) } else { Vec::new() }
        }
    }

    fn installed(version: &str) -> Detection {
        Detection::Installed { version: version.into() }
    }

    #[test]
    fn a_fresh_install_is_detected() {
        let lab = Lab::new();
        assert_eq!(lab.detect(), Detection::Absent);
        let deb = lab.deb(NAME, "1.0", None);

        let activation = lab.install("1.0", &deb).unwrap();

        assert_eq!(activation, Activation { name: NAME.into(), previous: None, active: "1.0".into() });
        assert_eq!(lab.detect(), installed("1.0"));
        assert_eq!(lab.installer.active_version(NAME).unwrap().as_deref(), Some("1.0"));
        assert_eq!(lab.installed_file().as_deref(), Some("1.0"));
        assert_eq!(lab.cache(), vec!["1.0.deb"]);
        assert_eq!(fs::read(lab.installer.cached_deb(NAME, "1.0").unwrap()).unwrap(), fs::read(&deb).unwrap());
        assert!(lab.admindir.join("dpkg.log").exists(), "dpkg logs into the lab, not /var/log");
    }

    #[test]
    fn an_upgrade_keeps_the_previous_deb_cached() {
        let lab = Lab::new();
        lab.install("1.0", &lab.deb(NAME, "1.0", None)).unwrap();

        let activation = lab.install("2.0", &lab.deb(NAME, "2.0", None)).unwrap();

        assert_eq!(activation.previous.as_deref(), Some("1.0"));
        assert_eq!(lab.detect(), installed("2.0"));
        assert_eq!(lab.installed_file().as_deref(), Some("2.0"));
        assert_eq!(lab.installer.installed_versions(NAME).unwrap(), vec!["1.0", "2.0"]);
        assert_eq!(lab.cache(), vec!["1.0.deb", "2.0.deb"]);
    }

    #[test]
    fn a_failing_postinst_is_reported_and_rollback_restores_the_previous_version() {
        let lab = Lab::new();
        lab.install("1.0", &lab.deb(NAME, "1.0", None)).unwrap();
        let broken = lab.deb(NAME, "2.0", Some("#!/bin/sh\necho 'postinst: cannot start service' >&2\nexit 1\n"));

        let err = lab.install("2.0", &broken).unwrap_err();

        match &err {
            InstallError::Dpkg { op: "install", output, .. } => {
                assert_eq!(output.exit, Some(1));
                assert!(output.tail.contains("postinst: cannot start service"), "{}", output.tail);
                assert!(output.tail.contains("post-installation script"), "{}", output.tail);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(!err.is_transient());
        match lab.detect() {
            Detection::Unclean { version, state } => {
                assert_eq!(version.as_deref(), Some("2.0"));
                assert!(state.contains("half-configured"), "{state}");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(lab.installer.active_version(NAME), Err(InstallError::Unclean { .. })));

        let back = lab.installer.rollback(NAME, "1.0").unwrap();

        assert_eq!(back, Activation { name: NAME.into(), previous: Some("2.0".into()), active: "1.0".into() });
        assert_eq!(lab.detect(), installed("1.0"));
        assert_eq!(lab.installed_file().as_deref(), Some("1.0"));
        // Idempotent: rolling back again runs nothing and still succeeds.
        assert_eq!(lab.installer.rollback(NAME, "1.0").unwrap().previous.as_deref(), Some("1.0"));
    }

    #[test]
    fn a_deb_whose_name_or_version_disagrees_with_the_release_is_refused() {
        let lab = Lab::new();
        let other = lab.deb("flotte-test-other", "1.0", None);
        let err = lab.stage("1.0", &other).unwrap_err();
        assert!(
            matches!(&err, InstallError::DebMismatch { field: "Package", found, .. } if found == "flotte-test-other"),
            "{err:?}"
        );

        let newer = lab.deb(NAME, "1.1", None);
        let err = lab.stage("1.0", &newer).unwrap_err();
        assert!(matches!(&err, InstallError::DebMismatch { field: "Version", found, .. } if found == "1.1"));
        assert!(!err.is_transient());

        assert_eq!(lab.detect(), Detection::Absent);
        assert!(lab.cache().is_empty(), "refused copies are not kept: {:?}", lab.cache());
    }

    #[test]
    fn without_a_cached_previous_deb_the_upgrade_is_refused_before_anything_changes() {
        let lab = Lab::new();
        lab.raw_dpkg_install(&lab.deb(NAME, "1.0", None));
        let two = lab.deb(NAME, "2.0", None);

        let err = lab.stage("2.0", &two).unwrap_err();

        match &err {
            InstallError::NoRollbackTarget { installed, expected, .. } => {
                assert_eq!(installed, "1.0");
                assert_eq!(*expected, lab.installer.cached_deb(NAME, "1.0").unwrap());
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(lab.detect(), installed("1.0"));
        assert_eq!(lab.installed_file().as_deref(), Some("1.0"));
        assert!(lab.cache().is_empty(), "not even the cache was written");

        // Allowed when explicitly not required.
        let lenient = lab.installer.clone().with_rollback_target_required(false);
        let staged = lenient.stage(&Package { name: NAME, version: "2.0", artifact: &two }).unwrap();
        lenient.activate(staged).unwrap();
        assert_eq!(lab.detect(), installed("2.0"));
        assert!(matches!(lenient.rollback(NAME, "1.0"), Err(InstallError::NoPreviousVersion { .. })));
    }

    #[test]
    fn activate_rechecks_the_rollback_target() {
        let lab = Lab::new();
        lab.install("1.0", &lab.deb(NAME, "1.0", None)).unwrap();
        let staged = lab.stage("2.0", &lab.deb(NAME, "2.0", None)).unwrap();
        fs::remove_file(lab.installer.cached_deb(NAME, "1.0").unwrap()).unwrap();

        let err = lab.installer.activate(staged).unwrap_err();

        assert!(matches!(err, InstallError::NoRollbackTarget { .. }), "{err:?}");
        assert_eq!(lab.detect(), installed("1.0"));
        assert_eq!(lab.installed_file().as_deref(), Some("1.0"));
    }

    #[test]
    fn a_failed_first_install_is_undone_by_uninstall() {
        let lab = Lab::new();
        let broken = lab.deb(NAME, "1.0", Some("#!/bin/sh\nexit 1\n"));
        assert!(matches!(lab.install("1.0", &broken), Err(InstallError::Dpkg { .. })));
        assert!(matches!(lab.detect(), Detection::Unclean { .. }));

        let removed = lab.installer.uninstall(NAME).unwrap();

        assert_eq!(removed.removed.as_deref(), Some("1.0"));
        assert_eq!(lab.detect(), Detection::Absent);
        assert_eq!(lab.installed_file(), None);
        assert!(lab.cache().is_empty());
    }

    #[test]
    fn uninstall_purges_and_is_idempotent() {
        let lab = Lab::new();
        lab.install("1.0", &lab.deb(NAME, "1.0", None)).unwrap();
        let removed = lab.installer.uninstall(NAME).unwrap();
        assert_eq!(removed, Uninstalled { name: NAME.into(), removed: Some("1.0".into()) });
        assert_eq!(lab.detect(), Detection::Absent);
        assert_eq!(lab.installer.active_version(NAME).unwrap(), None);
        assert!(lab.installer.installed_versions(NAME).unwrap().is_empty());
        assert_eq!(lab.installer.uninstall(NAME).unwrap().removed, None);
    }

    #[test]
    fn activating_the_installed_version_again_is_a_no_op() {
        let lab = Lab::new();
        let deb = lab.deb(NAME, "1.0", None);
        lab.install("1.0", &deb).unwrap();
        let log_len = fs::metadata(lab.admindir.join("dpkg.log")).unwrap().len();
        let again = lab.install("1.0", &deb).unwrap();
        assert_eq!(again.previous.as_deref(), Some("1.0"));
        assert_eq!(fs::metadata(lab.admindir.join("dpkg.log")).unwrap().len(), log_len, "dpkg did not run");
    }

    #[test]
    fn a_missing_dpkg_is_a_clear_permanent_error() {
        let lab = Lab::new();
        let installer = lab.installer.clone().with_programs("/nonexistent/dpkg", "/nonexistent/dpkg-query", "dpkg-deb");
        let err = installer.detect(NAME).unwrap_err();
        assert!(matches!(&err, InstallError::Io { op: "run", path, .. } if path.ends_with("dpkg-query")), "{err:?}");
        assert!(!err.is_transient());
    }

    #[test]
    fn dpkg_status_lines_are_classified() {
        assert_eq!(parse_status(""), Detection::Absent);
        assert_eq!(parse_status("install ok installed 1.2-3\n"), installed("1.2-3"));
        assert_eq!(parse_status("hold ok installed 1.0\n"), installed("1.0"));
        assert_eq!(parse_status("unknown ok not-installed \n"), Detection::Absent);
        assert_eq!(parse_status("deinstall ok config-files 1.0\n"), Detection::Absent);
        for line in [
            "install ok half-configured 2.0",
            "install ok unpacked 2.0",
            "install reinstreq half-installed 2.0",
            "install ok triggers-pending 2.0",
        ] {
            assert!(matches!(parse_status(line), Detection::Unclean { version: Some(v), .. } if v == "2.0"), "{line}");
        }
        assert!(matches!(
            parse_status("install ok installed 1.0\ninstall ok installed 1.0\n"),
            Detection::Unclean { version: None, .. }
        ));
    }
}
