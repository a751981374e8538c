//! Flotte as system software: each Debian package (agent, controller)
//! installs its binaries, its systemd unit and its config file with dpkg,
//! the unit passes `systemd-analyze verify`, the installed binaries accept
//! the packaged config, and purging removes everything the package put there.
//!
//! These tests change the machine's package database (they install and
//! purge `flotte-agent` and `flotte-controller`), so they need root, as CI
//! has. Each package has its own test and touches only its own package.

use anyhow::{Context, Result, bail};
use flotte_controller::lab::harness::Binaries;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

/// dpkg refuses to run while another dpkg holds its lock: one package at a time.
static DPKG: Mutex<()> = Mutex::new(());

fn run(cmd: &mut Command) -> Result<Output> {
    let output = cmd.output().with_context(|| format!("cannot run {cmd:?}"))?;
    if !output.status.success() {
        bail!(
            "{cmd:?} failed with {}:\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(output)
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

/// `packaging/build-deb <what>` from the binaries this test run uses.
fn build_deb(what: &str, out: &Path) -> Result<PathBuf> {
    let bins = Binaries::locate()?;
    let bin_dir = bins.agent.parent().context("binary dir")?;
    let profile = bin_dir.file_name().context("profile")?;
    let target_dir = bin_dir.parent().context("target dir")?;
    let output = run(Command::new(repo_root().join("packaging/build-deb"))
        .arg(what)
        .arg("--profile")
        .arg(profile)
        .arg("--out")
        .arg(out)
        .arg("--fast")
        .env("CARGO_TARGET_DIR", target_dir))?;
    Ok(PathBuf::from(String::from_utf8(output.stdout)?.trim()))
}

/// One package under test: what it must install.
struct Package {
    name: &'static str,
    binaries: &'static [&'static str],
    conffile: &'static str,
}

impl Package {
    fn unit(&self) -> String {
        format!("/lib/systemd/system/{}.service", self.name)
    }

    fn paths(&self) -> Vec<String> {
        let mut paths: Vec<String> = self.binaries.iter().map(|b| format!("/usr/bin/{b}")).collect();
        paths.push(self.unit());
        paths.push(self.conffile.to_string());
        paths
    }

    /// Builds, inspects, installs, runs `installed` checks, purges.
    fn install_verify_purge(&self, what: &str, installed: impl FnOnce() -> Result<()>) -> Result<()> {
        let out = tempfile::tempdir()?;
        let deb = build_deb(what, out.path())?;
        let contents = String::from_utf8(run(Command::new("dpkg-deb").arg("--contents").arg(&deb))?.stdout)?;
        for path in self.paths() {
            assert!(contents.contains(&format!(".{path}")), "{path} missing from the package:\n{contents}");
        }

        let _dpkg = DPKG.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // A leftover from an interrupted earlier run would hide what this run does.
        let _ = Command::new("dpkg").args(["--purge", self.name]).output();
        run(Command::new("dpkg").arg("--install").arg(&deb))?;
        let checked = (|| -> Result<()> {
            for b in self.binaries {
                let version = run(Command::new(format!("/usr/bin/{b}")).arg("--version"))?;
                assert!(String::from_utf8_lossy(&version.stdout).contains(env!("CARGO_PKG_VERSION")), "{b}");
            }
            let conffiles = run(Command::new("dpkg-query").args(["-W", "-f=${Conffiles}", self.name]))?;
            assert!(
                String::from_utf8_lossy(&conffiles.stdout).contains(self.conffile),
                "{} is a conffile",
                self.conffile
            );
            let verify = Command::new("systemd-analyze").args(["verify", &self.unit()]).output()?;
            let said = String::from_utf8_lossy(&verify.stderr);
            assert!(verify.status.success(), "systemd-analyze verify failed:\n{said}");
            assert!(!said.contains(&format!("{}.service:", self.name)), "systemd-analyze complained:\n{said}");
            installed()
        })();
        let purge = run(Command::new("dpkg").args(["--purge", self.name]));
        checked?;
        purge?;
        for path in self.paths() {
            assert!(!Path::new(&path).exists(), "{path} left behind after purge");
        }
        Ok(())
    }
}

#[test]
fn the_agent_deb_installs_binary_unit_and_conffile_and_purges_cleanly() -> Result<()> {
    let agent =
        Package { name: "flotte-agent", binaries: &["flotte-agent", "flotte"], conffile: "/etc/flotte/agent.toml" };
    agent.install_verify_purge("agent", || Ok(()))
}

#[test]
fn the_controller_deb_installs_binaries_unit_and_conffile_and_purges_cleanly() -> Result<()> {
    let controller = Package {
        name: "flotte-controller",
        binaries: &["flotte-controller", "flottectl"],
        conffile: "/etc/flotte/controller.toml",
    };
    controller.install_verify_purge("controller", || {
        // The UDP buffer caps for its QUIC socket ship with it and are applied.
        let sysctl = std::fs::read_to_string("/usr/lib/sysctl.d/60-flotte-controller.conf")?;
        assert!(sysctl.contains("net.core.rmem_max = 8388608"), "{sysctl}");
        let rmem_max: u64 = std::fs::read_to_string("/proc/sys/net/core/rmem_max")?.trim().parse()?;
        assert!(rmem_max >= 8 << 20, "net.core.rmem_max is {rmem_max} after the install");
        // The unit's ExecStart reads the packaged conffile: it must parse and
        // point at an uninitialized data directory (the unit's condition).
        let data = tempfile::tempdir()?;
        let not_init = Command::new("/usr/bin/flotte-controller")
            .args(["run", "--config", "/etc/flotte/controller.toml", "--data-dir"])
            .arg(data.path().join("none"))
            .output()?;
        let said = String::from_utf8_lossy(&not_init.stderr);
        assert!(!not_init.status.success() && said.contains("is not initialized"), "{said}");
        let unit = std::fs::read_to_string("/lib/systemd/system/flotte-controller.service")?;
        assert!(unit.contains("ExecStart=/usr/bin/flotte-controller run --config /etc/flotte/controller.toml"));
        assert!(unit.contains("User=flotte-controller") && unit.contains("Type=notify"), "{unit}");
        // The unit's user exists, as a system account that cannot log in.
        let user = Command::new("getent").args(["passwd", "flotte-controller"]).output()?;
        let entry = String::from_utf8_lossy(&user.stdout);
        assert!(user.status.success() && entry.trim_end().ends_with(":/usr/sbin/nologin"), "{entry}");
        Ok(())
    })
}
