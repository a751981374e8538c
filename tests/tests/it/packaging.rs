//! The agent as system software: its Debian package installs the binary,
//! the systemd unit and the config file with dpkg, the unit passes
//! `systemd-analyze verify`, and purging removes everything.
//!
//! This test changes the machine's package database (it installs and purges
//! `flotte-agent`), so it needs root, as CI has.

use anyhow::{Context, Result, bail};
use flotte_controller::lab::harness::Binaries;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

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

fn build_agent_deb(out: &Path) -> Result<PathBuf> {
    let bins = Binaries::locate()?;
    let bin_dir = bins.agent.parent().context("binary dir")?;
    let profile = bin_dir.file_name().context("profile")?;
    let target_dir = bin_dir.parent().context("target dir")?;
    let output = run(Command::new(repo_root().join("packaging/build-deb"))
        .arg("agent")
        .arg("--profile")
        .arg(profile)
        .arg("--out")
        .arg(out)
        .arg("--fast")
        .env("CARGO_TARGET_DIR", target_dir))?;
    Ok(PathBuf::from(String::from_utf8(output.stdout)?.trim()))
}

#[test]
fn the_agent_deb_installs_binary_unit_and_conffile_and_purges_cleanly() -> Result<()> {
    let out = tempfile::tempdir()?;
    let deb = build_agent_deb(out.path())?;
    let contents = String::from_utf8(run(Command::new("dpkg-deb").arg("--contents").arg(&deb))?.stdout)?;
    for path in ["./usr/bin/flotte-agent", "./lib/systemd/system/flotte-agent.service", "./etc/flotte/agent.toml"] {
        assert!(contents.contains(path), "{path} missing from the package:\n{contents}");
    }

    // A leftover from an interrupted earlier run would hide what this run does.
    let _ = Command::new("dpkg").args(["--purge", "flotte-agent"]).output();
    run(Command::new("dpkg").arg("--install").arg(&deb))?;
    let installed = (|| -> Result<()> {
        let version = run(Command::new("/usr/bin/flotte-agent").arg("--version"))?;
        assert!(String::from_utf8_lossy(&version.stdout).contains(env!("CARGO_PKG_VERSION")));
        let conffiles = run(Command::new("dpkg-query").args(["-W", "-f=${Conffiles}", "flotte-agent"]))?;
        assert!(
            String::from_utf8_lossy(&conffiles.stdout).contains("/etc/flotte/agent.toml"),
            "agent.toml is a conffile"
        );
        let verify =
            Command::new("systemd-analyze").args(["verify", "/lib/systemd/system/flotte-agent.service"]).output()?;
        let said = String::from_utf8_lossy(&verify.stderr);
        assert!(verify.status.success(), "systemd-analyze verify failed:\n{said}");
        assert!(!said.contains("flotte-agent.service:"), "systemd-analyze complained about the unit:\n{said}");
        Ok(())
    })();
    let purge = run(Command::new("dpkg").args(["--purge", "flotte-agent"]));
    installed?;
    purge?;
    for path in ["/usr/bin/flotte-agent", "/lib/systemd/system/flotte-agent.service", "/etc/flotte/agent.toml"] {
        assert!(!Path::new(path).exists(), "{path} left behind after purge");
    }
    Ok(())
}
