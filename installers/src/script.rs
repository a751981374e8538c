//! The script backend: an archive whose top level ships hooks that do the
//! real installing.
//!
//! # Package shape
//! A tar / tar.gz archive (extracted by the archive backend, with all its
//! hardening) with these executables at its top level, each starting with
//! `#!` or being an ELF binary:
//!
//! | hook        | required | runs when |
//! |-------------|----------|-----------|
//! | `install`   | yes      | `activate`, and for the target of `rollback` |
//! | `uninstall` | yes      | `uninstall` |
//! | `check`     | yes      | `check` (the backend's health check) |
//! | `rollback`  | no       | when its version's install failed or is rolled back from |
//!
//! A package without the required hooks fails `stage` with
//! [`InstallError::InvalidPackage`] and nothing is published.
//!
//! # How hooks run
//! As the agent's user (root), in a new process group, with stdin
//! `/dev/null`, the version directory as working directory, and only this
//! environment:
//!
//! | variable                  | value |
//! |---------------------------|-------|
//! | `PATH`                    | `/usr/sbin:/usr/bin:/sbin:/bin` |
//! | `LANG`                    | `C` |
//! | `FLOTTE_PACKAGE`          | the package name |
//! | `FLOTTE_VERSION`          | the version whose hook this is |
//! | `FLOTTE_PREVIOUS_VERSION` | `install`: the version being replaced; `rollback`: the version being returned to; empty when there is none and for `check` and `uninstall` |
//! | `FLOTTE_PACKAGE_DIR`      | the absolute version directory (also the working directory) |
//!
//! A hook that runs longer than the timeout (default
//! [`DEFAULT_HOOK_TIMEOUT`]) is killed with its whole process group and
//! reported as [`InstallError::HookTimedOut`]; a non-zero exit is
//! [`InstallError::HookFailed`]. Both carry a [`HookOutput`] with the last
//! 4 KiB of combined stdout/stderr. Processes a hook leaves in its group are
//! killed when it exits: services must be started through the init system.
//! Hooks must be idempotent: after a crash they may run again.
//!
//! # Layout and state
//! The archive backend's layout (`<root>/packages/<name>/<version>/`,
//! `current -> <version>`), plus two markers in the package directory:
//! - `.installing -> <version>`: written (durably) before an `install` hook
//!   of an activation starts; removed once the outcome is settled. If it is
//!   still there, the activation was interrupted (crash), or the hook failed
//!   and its `rollback` hook failed too, or the switch of `current` failed.
//! - `.failed -> <version>`: the activation of `<version>` failed and its
//!   `rollback` hook (if any) has already run.
//!
//! Either marker makes [`Installer::detect`] report
//! [`Detection::Unclean`]; a successful `activate` or `rollback` removes
//! both.
//!
//! # Semantics
//! - `activate(v)`: refuses with [`InstallError::ActivationPending`] if
//!   `.installing` names another version. A no-op if `v` is `current` and
//!   no marker exists. Otherwise writes `.installing -> v`, runs `v`'s
//!   `install`; on success switches `current` to `v` atomically, removes the
//!   markers and prunes old versions. On failure `current` is untouched,
//!   `v`'s `rollback` hook runs if shipped (its failure is logged and leaves
//!   `.installing`), `.failed -> v` replaces `.installing`, and the install
//!   error is returned. The failed install may still have changed the host:
//!   the agent then calls `rollback(previous)` (or `uninstall` for a first
//!   install), which re-runs the previous version's `install`.
//! - `rollback(to)`: the version rolled back from is the one in
//!   `.installing`, else the one in `.failed`, else `current` if it is not
//!   `to`. Its `rollback` hook runs if shipped and not already run (not for
//!   `.failed`); if that fails, nothing else happens and the error is
//!   returned. Then `to`'s `install` always runs (re-asserting `to`), and on
//!   success `current` switches to `to` and the markers are removed.
//! - `uninstall()`: runs the pending version's `rollback` hook if
//!   `.installing` exists, then the `uninstall` hook of `current` (or of the
//!   pending version if nothing was ever activated), then removes the
//!   package directory in one rename. A failing hook stops it with nothing
//!   removed.
//! - `check(v)`: runs `v`'s `check` hook; exit 0 passes.

use std::fmt;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tracing::{info, warn};

use crate::archive::{
    ArchiveInstaller, ArchiveLimits, is_real_dir, read_current, validate_name_and_version, validate_version,
};
use crate::error::{InstallError, io_err};
use crate::fsutil::{fsync_dir, replace_symlink};
use crate::health::CheckOutcome;
use crate::installer::{Activation, Detection, Installer, Package, Staged, Uninstalled};
use crate::names::validate_component;
use crate::process::{self, HookOutput, clean_command};

/// How long a hook may run before its process group is killed.
pub const DEFAULT_HOOK_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// Marker: an activation of the named version is in progress (or broke).
const INSTALLING: &str = ".installing";
/// Marker: the activation of the named version failed; its rollback hook ran.
const FAILED: &str = ".failed";

/// One of the hooks a script package ships.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Hook {
    /// `install`: makes this version the one in use.
    Install,
    /// `uninstall`: removes the package from the host.
    Uninstall,
    /// `check`: exits 0 when this version is healthy.
    Check,
    /// `rollback` (optional): undoes what this version's `install` did.
    Rollback,
}

impl Hook {
    /// Every hook, required ones first.
    pub const ALL: [Hook; 4] = [Hook::Install, Hook::Uninstall, Hook::Check, Hook::Rollback];

    /// The file name at the package's top level.
    pub fn file_name(self) -> &'static str {
        match self {
            Hook::Install => "install",
            Hook::Uninstall => "uninstall",
            Hook::Check => "check",
            Hook::Rollback => "rollback",
        }
    }

    /// Whether a package must ship it.
    pub fn is_required(self) -> bool {
        self != Hook::Rollback
    }
}

impl fmt::Display for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.file_name())
    }
}

/// Installs script packages (see the module documentation).
#[derive(Debug, Clone)]
pub struct ScriptInstaller {
    /// Extraction, the versioned layout, the `current` switch and pruning
    /// are exactly the archive backend's.
    archive: ArchiveInstaller,
    /// Every hook is killed after this long.
    timeout: Duration,
}

impl ScriptInstaller {
    /// An installer rooted at `root` (same layout as
    /// [`ArchiveInstaller::new`]), with a 10 minute hook timeout.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        ScriptInstaller { archive: ArchiveInstaller::new(root), timeout: DEFAULT_HOOK_TIMEOUT }
    }

    /// Sets the hook timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Replaces the extraction limits.
    pub fn with_limits(mut self, limits: ArchiveLimits) -> Self {
        self.archive = self.archive.with_limits(limits);
        self
    }

    /// Sets how many versions stay on disk (see
    /// [`ArchiveInstaller::with_keep_versions`]).
    pub fn with_keep_versions(mut self, keep_versions: usize) -> Self {
        self.archive = self.archive.with_keep_versions(keep_versions);
        self
    }

    /// The root this installer writes under.
    pub fn root(&self) -> &Path {
        self.archive.root()
    }

    /// `<root>/packages/<name>/current`.
    pub fn current_path(&self, name: &str) -> Result<PathBuf, InstallError> {
        self.archive.current_path(name)
    }

    /// Runs `hook` of `name` `version`; `Ok(None)` if it is the optional
    /// rollback hook and the version does not ship one. A failing or killed
    /// hook is an `Ok` here.
    fn spawn_hook(
        &self,
        name: &str,
        version: &str,
        hook: Hook,
        previous: Option<&str>,
    ) -> Result<Option<HookOutput>, InstallError> {
        let version_dir = self.archive.package_dir(name).join(version);
        let version_dir = std::path::absolute(&version_dir).map_err(io_err("resolve", &version_dir))?;
        let program = version_dir.join(hook.file_name());
        if !hook.is_required() && fs::symlink_metadata(&program).is_err_and(|e| e.kind() == io::ErrorKind::NotFound) {
            return Ok(None);
        }
        let mut cmd = clean_command(&program);
        cmd.current_dir(&version_dir)
            .env("FLOTTE_PACKAGE", name)
            .env("FLOTTE_VERSION", version)
            .env("FLOTTE_PREVIOUS_VERSION", previous.unwrap_or(""))
            .env("FLOTTE_PACKAGE_DIR", &version_dir);
        info!(name, version, %hook, previous, "running hook");
        let done = process::run(&mut cmd, self.timeout, 0).map_err(io_err("run hook", &program))?;
        info!(name, version, %hook, outcome = %done.output, "hook finished");
        Ok(Some(done.output))
    }

    /// Like [`Self::spawn_hook`], with a failing or killed hook as an error.
    fn run_hook(
        &self,
        name: &str,
        version: &str,
        hook: Hook,
        previous: Option<&str>,
    ) -> Result<Option<HookOutput>, InstallError> {
        let Some(output) = self.spawn_hook(name, version, hook, previous)? else {
            return Ok(None);
        };
        let (name, version) = (name.to_owned(), version.to_owned());
        if output.timed_out {
            Err(InstallError::HookTimedOut { name, version, hook, timeout: self.timeout, output: Box::new(output) })
        } else if !output.succeeded() {
            Err(InstallError::HookFailed { name, version, hook, output: Box::new(output) })
        } else {
            Ok(Some(output))
        }
    }

    /// The failure path of `activate`: `version`'s install hook failed.
    fn after_failed_install(&self, pkg_dir: &Path, name: &str, version: &str, previous: Option<&str>) {
        match self.run_hook(name, version, Hook::Rollback, previous) {
            Ok(ran) => {
                if ran.is_some() {
                    info!(name, version, "rollback hook of the failed version succeeded");
                }
                let settled =
                    replace_symlink(pkg_dir, FAILED, version).and_then(|()| clear_marker(pkg_dir, INSTALLING));
                if let Err(e) = settled {
                    warn!(name, version, error = %e, "could not record the failed activation");
                }
            }
            Err(e) => warn!(name, version, error = %e, "rollback hook of the failed version failed; roll back"),
        }
    }
}

impl Installer for ScriptInstaller {
    fn stage(&self, package: &Package<'_>) -> Result<Staged, InstallError> {
        self.archive.stage_checked(package, &|tree| validate_hooks(tree, package.name, package.version))
    }

    fn activate(&self, staged: Staged) -> Result<Activation, InstallError> {
        let (name, version) = (staged.name.as_str(), staged.version.as_str());
        validate_name_and_version(name, version)?;
        let pkg_dir = self.archive.package_dir(name);
        let version_dir = pkg_dir.join(version);
        if staged.location() != version_dir || !is_real_dir(&version_dir)? {
            return Err(InstallError::NotStaged { name: name.to_owned(), version: version.to_owned() });
        }
        validate_hooks(&version_dir, name, version)?;
        let current = read_current(&pkg_dir)?;
        let installing = read_marker(&pkg_dir, INSTALLING)?;
        let failed = read_marker(&pkg_dir, FAILED)?;
        if let Some(pending) = installing.as_ref().filter(|p| *p != version) {
            return Err(InstallError::ActivationPending { name: name.to_owned(), version: pending.clone() });
        }
        if current.as_deref() == Some(version) && installing.is_none() && failed.is_none() {
            info!(name, version, "already active");
            return Ok(Activation { name: name.to_owned(), previous: current.clone(), active: version.to_owned() });
        }

        replace_symlink(&pkg_dir, INSTALLING, version)?;
        if let Err(e) = self.run_hook(name, version, Hook::Install, current.as_deref()) {
            if matches!(e, InstallError::HookFailed { .. } | InstallError::HookTimedOut { .. }) {
                self.after_failed_install(&pkg_dir, name, version, current.as_deref());
            } else {
                // The hook never started: nothing to undo.
                clear_marker(&pkg_dir, INSTALLING)?;
            }
            return Err(e);
        }
        let activation = self.archive.switch(name, version)?;
        clear_marker(&pkg_dir, FAILED)?;
        clear_marker(&pkg_dir, INSTALLING)?;
        self.archive.prune(&activation);
        Ok(activation)
    }

    fn rollback(&self, name: &str, to_version: &str) -> Result<Activation, InstallError> {
        validate_name_and_version(name, to_version)?;
        let pkg_dir = self.archive.package_dir(name);
        if !is_real_dir(&pkg_dir)? {
            return Err(InstallError::NotInstalled { name: name.to_owned() });
        }
        let to_dir = pkg_dir.join(to_version);
        if !is_real_dir(&to_dir)? {
            return Err(InstallError::NoPreviousVersion { name: name.to_owned(), version: to_version.to_owned() });
        }
        validate_hooks(&to_dir, name, to_version)?;
        let current = read_current(&pkg_dir)?;
        let (from, undo) = match (read_marker(&pkg_dir, INSTALLING)?, read_marker(&pkg_dir, FAILED)?) {
            (Some(pending), _) => (Some(pending), true),
            (None, Some(failed)) => (Some(failed), false),
            (None, None) => (current.clone().filter(|c| c != to_version), true),
        };
        if let Some(from) = from.as_deref().filter(|_| undo) {
            if is_real_dir(&pkg_dir.join(from))? {
                self.run_hook(name, from, Hook::Rollback, Some(to_version))?;
            } else {
                warn!(
                    name,
                    version = from,
                    "version rolled back from is no longer on disk; its rollback hook cannot run"
                );
            }
        }
        self.run_hook(name, to_version, Hook::Install, from.as_deref())?;
        let activation = self.archive.switch(name, to_version)?;
        clear_marker(&pkg_dir, FAILED)?;
        clear_marker(&pkg_dir, INSTALLING)?;
        info!(name, from = ?from, to = to_version, "rolled back");
        Ok(activation)
    }

    fn uninstall(&self, name: &str) -> Result<Uninstalled, InstallError> {
        validate_component("package name", name)?;
        let pkg_dir = self.archive.package_dir(name);
        if !is_real_dir(&pkg_dir)? {
            return Ok(Uninstalled { name: name.to_owned(), removed: None });
        }
        let current = read_current(&pkg_dir)?;
        let installing = read_marker(&pkg_dir, INSTALLING)?;
        let failed = read_marker(&pkg_dir, FAILED)?;
        let on_disk = |v: &&String| pkg_dir.join(v.as_str()).is_dir();
        if let Some(pending) = installing.as_ref().filter(on_disk) {
            self.run_hook(name, pending, Hook::Rollback, current.as_deref())?;
        }
        let target = current.clone().or_else(|| installing.clone().filter(|v| on_disk(&v)));
        if let Some(version) = target.as_deref() {
            self.run_hook(name, version, Hook::Uninstall, None)?;
        }
        self.archive.remove_package(name)?;
        Ok(Uninstalled { name: name.to_owned(), removed: target.or(installing).or(failed) })
    }

    fn check(&self, name: &str, version: &str) -> Result<CheckOutcome, InstallError> {
        validate_name_and_version(name, version)?;
        if !is_real_dir(&self.archive.package_dir(name).join(version))? {
            return Err(InstallError::NotStaged { name: name.to_owned(), version: version.to_owned() });
        }
        let Some(output) = self.spawn_hook(name, version, Hook::Check, None)? else {
            // Unreachable: `check` is required, so spawn_hook never skips it.
            return Ok(CheckOutcome::fail("check hook missing"));
        };
        let mut detail = format!("check hook {output}");
        if !output.tail.trim().is_empty() {
            detail.push_str("; output tail:\n");
            detail.push_str(&output.tail);
        }
        Ok(CheckOutcome { passed: output.succeeded(), detail })
    }

    fn detect(&self, name: &str) -> Result<Detection, InstallError> {
        validate_component("package name", name)?;
        let pkg_dir = self.archive.package_dir(name);
        if let Some(pending) = read_marker(&pkg_dir, INSTALLING)? {
            let state =
                format!("the install hook of {pending} did not finish, or it failed and so did its rollback hook");
            return Ok(Detection::Unclean { version: Some(pending), state });
        }
        if let Some(failed) = read_marker(&pkg_dir, FAILED)? {
            let current = read_current(&pkg_dir)?;
            let state = format!(
                "the install hook of {failed} failed; roll back to re-run the install hook of {}",
                current.as_deref().unwrap_or("the previous version (none)")
            );
            return Ok(Detection::Unclean { version: Some(failed), state });
        }
        Ok(match self.active_version(name)? {
            Some(version) => Detection::Installed { version },
            None => Detection::Absent,
        })
    }

    fn active_version(&self, name: &str) -> Result<Option<String>, InstallError> {
        self.archive.active_version(name)
    }

    fn installed_versions(&self, name: &str) -> Result<Vec<String>, InstallError> {
        self.archive.installed_versions(name)
    }
}

/// Checks that `tree` ships every required hook, and that every hook it
/// ships is an executable regular file (symlinks inside the package are
/// followed) that the kernel can execute directly (`#!` or ELF).
fn validate_hooks(tree: &Path, name: &str, version: &str) -> Result<(), InstallError> {
    let invalid =
        |reason: String| InstallError::InvalidPackage { name: name.to_owned(), version: version.to_owned(), reason };
    for hook in Hook::ALL {
        let path = tree.join(hook.file_name());
        let meta = match fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound && !hook.is_required() => continue,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(invalid(format!("missing the required {hook} hook at the top level")));
            }
            Err(e) => return Err(io_err("inspect", path)(e)),
        };
        if !meta.is_file() {
            return Err(invalid(format!("the {hook} hook is not a regular file")));
        }
        if meta.permissions().mode() & 0o111 == 0 {
            return Err(invalid(format!("the {hook} hook is not executable")));
        }
        let mut head = [0u8; 4];
        let mut file = fs::File::open(&path).map_err(io_err("open", &path))?;
        let len = file.read(&mut head).map_err(io_err("read", &path))?;
        if !(head[..len].starts_with(b"#!") || head[..len] == *b"\x7fELF") {
            return Err(invalid(format!("the {hook} hook is neither a #! script nor an ELF binary")));
        }
    }
    Ok(())
}

/// The version a marker names, `None` without the marker.
fn read_marker(pkg_dir: &Path, marker: &str) -> Result<Option<String>, InstallError> {
    let link = pkg_dir.join(marker);
    let target = match fs::read_link(&link) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("read symlink", link)(e)),
    };
    match target.to_str() {
        Some(v) if validate_version(v).is_ok() => Ok(Some(v.to_owned())),
        _ => Err(InstallError::CorruptState { path: link, reason: format!("points at {target:?}, not a version") }),
    }
}

/// Removes a marker durably; absent is fine.
fn clear_marker(pkg_dir: &Path, marker: &str) -> Result<(), InstallError> {
    let link = pkg_dir.join(marker);
    match fs::remove_file(&link) {
        Ok(()) => fsync_dir(pkg_dir),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("remove", link)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsutil::unique_suffix;
    use crate::test_support::{TarBuilder, list, wait_until, write_artifact};
    use std::collections::BTreeMap;
    use std::time::Instant;

    /// A tempdir with the installer root, artifacts, and `out/` where test
    /// hooks write what they saw.
    struct Host {
        tmp: tempfile::TempDir,
        installer: ScriptInstaller,
    }

    impl Host {
        fn new() -> Self {
            let tmp = tempfile::tempdir().unwrap();
            fs::create_dir(tmp.path().join("artifacts")).unwrap();
            fs::create_dir(tmp.path().join("out")).unwrap();
            let installer = ScriptInstaller::new(tmp.path().join("root"));
            Host { tmp, installer }
        }

        fn out(&self, file: &str) -> PathBuf {
            self.tmp.path().join("out").join(file)
        }

        fn pkg_dir(&self) -> PathBuf {
            self.installer.root().join("packages/app")
        }

        /// The log every standard hook appends one line to.
        fn log(&self) -> Vec<String> {
            match fs::read_to_string(self.out("log")) {
                Ok(s) => s.lines().map(str::to_owned).collect(),
                Err(_) => Vec::new(),
            }
        }

        /// A hook body that appends "<what> <version> prev=<previous>" to the log.
        fn logging(&self, what: &str) -> String {
            format!(
                "#!/bin/sh\necho \"{what} $FLOTTE_VERSION prev=$FLOTTE_PREVIOUS_VERSION\" >> '{}'\n",
                self.out("log").display()
            )
        }

        /// A package with logging hooks (a rollback hook too), where
        /// `overrides` replace individual hooks.
        fn package(&self, overrides: &[(Hook, &str)]) -> TarBuilder {
            let mut tar = TarBuilder::new().file("payload", b"data");
            for hook in Hook::ALL {
                let body = match overrides.iter().find(|(h, _)| *h == hook) {
                    Some((_, body)) => body.to_string(),
                    None => self.logging(hook.file_name()),
                };
                tar = tar.file_mode(hook.file_name(), body.as_bytes(), 0o755);
            }
            tar
        }

        fn stage(&self, version: &str, package: TarBuilder) -> Result<Staged, InstallError> {
            let artifact = write_artifact(
                &self.tmp.path().join("artifacts"),
                &format!("{version}-{}", unique_suffix()),
                &package.tar_gz(),
            );
            self.installer.stage(&Package { name: "app", version, artifact: &artifact })
        }

        fn install(&self, version: &str, package: TarBuilder) -> Result<Activation, InstallError> {
            self.installer.activate(self.stage(version, package)?)
        }

        fn current(&self) -> Option<String> {
            self.installer.active_version("app").unwrap()
        }
    }

    #[test]
    fn install_hook_runs_with_a_clean_environment_in_the_version_directory() {
        let host = Host::new();
        let install = format!(
            "#!/bin/sh\nenv > '{env}'\npwd > '{pwd}'\ncat > '{stdin}'\n",
            env = host.out("env").display(),
            pwd = host.out("pwd").display(),
            stdin = host.out("stdin").display()
        );
        host.install("1.0", host.package(&[])).unwrap();
        let activation = host.install("2.0", host.package(&[(Hook::Install, &install)])).unwrap();

        assert_eq!(activation.previous.as_deref(), Some("1.0"));
        let version_dir = host.pkg_dir().join("2.0");
        let env: BTreeMap<String, String> = fs::read_to_string(host.out("env"))
            .unwrap()
            .lines()
            .map(|l| {
                let (k, v) = l.split_once('=').unwrap();
                (k.to_owned(), v.to_owned())
            })
            .collect();
        let dir = version_dir.to_str().unwrap().to_owned();
        let expected: BTreeMap<String, String> = [
            ("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            ("LANG", "C"),
            ("FLOTTE_PACKAGE", "app"),
            ("FLOTTE_VERSION", "2.0"),
            ("FLOTTE_PREVIOUS_VERSION", "1.0"),
            ("FLOTTE_PACKAGE_DIR", &dir),
            ("PWD", &dir), // exported by the shell itself
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(env, expected);
        assert_eq!(fs::read_to_string(host.out("pwd")).unwrap().trim_end(), dir);
        assert_eq!(fs::read_to_string(host.out("stdin")).unwrap(), "", "stdin is /dev/null");
        assert_eq!(host.current().as_deref(), Some("2.0"));
        assert_eq!(host.installer.detect("app").unwrap(), Detection::Installed { version: "2.0".into() });
    }

    #[test]
    fn a_first_install_has_an_empty_previous_version() {
        let host = Host::new();
        let activation = host.install("1.0", host.package(&[])).unwrap();
        assert_eq!(activation.previous, None);
        assert_eq!(host.log(), vec!["install 1.0 prev="]);
        assert_eq!(list(&host.pkg_dir()), vec!["1.0", "current"], "no markers left");
    }

    #[test]
    fn failing_install_keeps_the_previous_version_current_and_returns_the_tail() {
        let host = Host::new();
        host.install("1.0", host.package(&[])).unwrap();
        let failing = "#!/bin/sh\necho 'copying files'\necho 'disk on fire' >&2\nexit 3\n";

        let err = host.install("2.0", host.package(&[(Hook::Install, failing)])).unwrap_err();

        match &err {
            InstallError::HookFailed { hook: Hook::Install, version, output, .. } => {
                assert_eq!(version, "2.0");
                assert_eq!(output.exit, Some(3));
                assert!(!output.timed_out);
                assert_eq!(output.tail, "copying files\ndisk on fire\n");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(!err.is_transient());
        assert!(err.to_string().contains("disk on fire"), "{err}");
        assert_eq!(host.current().as_deref(), Some("1.0"));
        assert_eq!(host.log(), vec!["install 1.0 prev=", "rollback 2.0 prev=1.0"], "2.0's rollback hook ran");
        assert!(matches!(
            host.installer.detect("app").unwrap(),
            Detection::Unclean { version: Some(v), .. } if v == "2.0"
        ));

        // The agent's recovery: re-run 1.0's install; 2.0's rollback hook does not run twice.
        let back = host.installer.rollback("app", "1.0").unwrap();
        assert_eq!(back.active, "1.0");
        assert_eq!(host.log()[2..], ["install 1.0 prev=2.0"]);
        assert_eq!(host.installer.detect("app").unwrap(), Detection::Installed { version: "1.0".into() });
        assert_eq!(list(&host.pkg_dir()), vec!["1.0", "2.0", "current"]);
    }

    #[test]
    fn a_hook_that_hangs_past_its_timeout_is_killed_with_its_process_group() {
        let mut host = Host::new();
        host.installer = host.installer.clone().with_timeout(Duration::from_secs(1));
        host.install("1.0", host.package(&[])).unwrap();
        let pid_file = host.out("grandchild.pid");
        let hanging =
            format!("#!/bin/sh\nsleep 600 &\necho $! > '{}'\necho 'waiting forever'\nwait\n", pid_file.display());

        let started = Instant::now();
        let err = host.install("2.0", host.package(&[(Hook::Install, &hanging)])).unwrap_err();

        assert!(started.elapsed() < Duration::from_secs(60));
        match &err {
            InstallError::HookTimedOut { hook: Hook::Install, timeout, output, .. } => {
                assert_eq!(*timeout, Duration::from_secs(1));
                assert!(output.timed_out);
                assert_eq!(output.exit, None);
                assert!(output.duration >= Duration::from_secs(1));
                assert_eq!(output.tail, "waiting forever\n");
            }
            other => panic!("unexpected {other:?}"),
        }
        let grandchild: u32 = fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
        assert!(
            wait_until(Duration::from_secs(10), || process_is_gone(grandchild)),
            "the backgrounded sleep {grandchild} survived the hook"
        );
        assert_eq!(host.current().as_deref(), Some("1.0"));
    }

    /// True once `pid` has exited (gone, or a zombie nobody reaped yet).
    fn process_is_gone(pid: u32) -> bool {
        match fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            // "pid (comm) S ...": the state follows the last ')'.
            Ok(stat) => {
                matches!(stat.rsplit_once(')').map(|(_, rest)| rest.trim_start().as_bytes()[0]), Some(b'Z' | b'X'))
            }
        }
    }

    #[test]
    fn rollback_runs_the_rollback_hook_of_the_version_rolled_back_from_then_reinstalls() {
        let host = Host::new();
        host.install("1.0", host.package(&[])).unwrap();
        host.install("2.0", host.package(&[])).unwrap();

        let activation = host.installer.rollback("app", "1.0").unwrap();

        assert_eq!(activation, Activation { name: "app".into(), previous: Some("2.0".into()), active: "1.0".into() });
        assert_eq!(
            host.log(),
            vec!["install 1.0 prev=", "install 2.0 prev=1.0", "rollback 2.0 prev=1.0", "install 1.0 prev=2.0"]
        );
        assert_eq!(host.current().as_deref(), Some("1.0"));
    }

    #[test]
    fn rollback_without_a_rollback_hook_still_reinstalls_the_target() {
        let host = Host::new();
        host.install("1.0", host.package(&[])).unwrap();
        let mut no_rollback = TarBuilder::new();
        for hook in [Hook::Install, Hook::Uninstall, Hook::Check] {
            no_rollback = no_rollback.file_mode(hook.file_name(), host.logging(hook.file_name()).as_bytes(), 0o755);
        }
        host.install("2.0", no_rollback).unwrap();
        host.installer.rollback("app", "1.0").unwrap();
        assert_eq!(host.log()[2..], ["install 1.0 prev=2.0"]);
    }

    #[test]
    fn a_failing_rollback_hook_stops_the_rollback() {
        let host = Host::new();
        host.install("1.0", host.package(&[])).unwrap();
        host.install("2.0", host.package(&[(Hook::Rollback, "#!/bin/sh\necho nope\nexit 1\n")])).unwrap();
        let err = host.installer.rollback("app", "1.0").unwrap_err();
        assert!(matches!(&err, InstallError::HookFailed { hook: Hook::Rollback, version, .. } if version == "2.0"));
        assert_eq!(host.current().as_deref(), Some("2.0"));
        assert_eq!(host.log().len(), 2, "1.0's install did not run");
    }

    #[test]
    fn uninstall_runs_the_uninstall_hook_and_removes_the_package() {
        let host = Host::new();
        host.install("1.0", host.package(&[])).unwrap();

        let removed = host.installer.uninstall("app").unwrap();

        assert_eq!(removed, Uninstalled { name: "app".into(), removed: Some("1.0".into()) });
        assert_eq!(host.log(), vec!["install 1.0 prev=", "uninstall 1.0 prev="]);
        assert!(!host.pkg_dir().exists());
        assert_eq!(host.installer.detect("app").unwrap(), Detection::Absent);
        assert_eq!(host.installer.uninstall("app").unwrap().removed, None);
    }

    #[test]
    fn a_failing_uninstall_hook_removes_nothing() {
        let host = Host::new();
        host.install("1.0", host.package(&[(Hook::Uninstall, "#!/bin/sh\nexit 2\n")])).unwrap();
        let err = host.installer.uninstall("app").unwrap_err();
        assert!(matches!(err, InstallError::HookFailed { hook: Hook::Uninstall, .. }));
        assert_eq!(host.current().as_deref(), Some("1.0"));
    }

    #[test]
    fn check_reports_the_check_hook_outcome() {
        let host = Host::new();
        host.install("1.0", host.package(&[(Hook::Check, "#!/bin/sh\necho healthy\n")])).unwrap();
        let ok = host.installer.check("app", "1.0").unwrap();
        assert!(ok.passed);
        assert!(ok.detail.contains("healthy"), "{}", ok.detail);

        host.install("2.0", host.package(&[(Hook::Check, "#!/bin/sh\necho 'port closed' >&2\nexit 1\n")])).unwrap();
        let bad = host.installer.check("app", "2.0").unwrap();
        assert!(!bad.passed);
        assert!(bad.detail.contains("status 1") && bad.detail.contains("port closed"), "{}", bad.detail);

        assert!(matches!(host.installer.check("app", "9.9"), Err(InstallError::NotStaged { .. })));
    }

    #[test]
    fn a_package_without_required_hooks_is_refused_at_stage() {
        let host = Host::new();
        let missing_check =
            TarBuilder::new().file_mode("install", b"#!/bin/sh\n", 0o755).file_mode("uninstall", b"#!/bin/sh\n", 0o755);
        let err = host.stage("1.0", missing_check).unwrap_err();
        assert!(matches!(&err, InstallError::InvalidPackage { reason, .. } if reason.contains("check")), "{err:?}");

        let not_executable = TarBuilder::new()
            .file_mode("install", b"#!/bin/sh\n", 0o644)
            .file_mode("uninstall", b"#!/bin/sh\n", 0o755)
            .file_mode("check", b"#!/bin/sh\n", 0o755);
        let err = host.stage("1.0", not_executable).unwrap_err();
        assert!(matches!(&err, InstallError::InvalidPackage { reason, .. } if reason.contains("executable")));

        let no_shebang = TarBuilder::new()
            .file_mode("install", b"echo hi\n", 0o755)
            .file_mode("uninstall", b"#!/bin/sh\n", 0o755)
            .file_mode("check", b"#!/bin/sh\n", 0o755);
        assert!(matches!(host.stage("1.0", no_shebang), Err(InstallError::InvalidPackage { .. })));

        assert!(host.installer.installed_versions("app").unwrap().is_empty(), "nothing was published");
    }

    #[test]
    fn an_interrupted_activation_blocks_others_until_rolled_back() {
        let host = Host::new();
        host.install("1.0", host.package(&[])).unwrap();
        host.stage("2.0", host.package(&[])).unwrap();
        // As if the agent died while 2.0's install hook ran.
        std::os::unix::fs::symlink("2.0", host.pkg_dir().join(INSTALLING)).unwrap();

        assert!(matches!(
            host.installer.detect("app").unwrap(),
            Detection::Unclean { version: Some(v), .. } if v == "2.0"
        ));
        let three = host.stage("3.0", host.package(&[])).unwrap();
        assert!(matches!(
            host.installer.activate(three),
            Err(InstallError::ActivationPending { version, .. }) if version == "2.0"
        ));

        host.installer.rollback("app", "1.0").unwrap();

        assert_eq!(host.log()[1..], ["rollback 2.0 prev=1.0", "install 1.0 prev=2.0"]);
        assert_eq!(host.installer.detect("app").unwrap(), Detection::Installed { version: "1.0".into() });
    }

    #[test]
    fn activating_the_active_version_again_runs_nothing() {
        let host = Host::new();
        let staged = host.stage("1.0", host.package(&[])).unwrap();
        host.installer.activate(staged.clone()).unwrap();
        let again = host.installer.activate(staged).unwrap();
        assert_eq!(again.previous.as_deref(), Some("1.0"));
        assert_eq!(host.log(), vec!["install 1.0 prev="]);
    }

    #[test]
    fn a_failed_first_install_is_undone_by_uninstall() {
        let host = Host::new();
        let err = host.install("1.0", host.package(&[(Hook::Install, "#!/bin/sh\nexit 1\n")])).unwrap_err();
        assert!(matches!(err, InstallError::HookFailed { .. }));
        assert_eq!(host.current(), None);
        assert_eq!(host.log(), vec!["rollback 1.0 prev="]);

        let removed = host.installer.uninstall("app").unwrap();
        assert_eq!(removed.removed.as_deref(), Some("1.0"));
        assert_eq!(host.log().len(), 1, "nothing was activated, so no uninstall hook runs");
        assert_eq!(host.installer.detect("app").unwrap(), Detection::Absent);
    }
}
