//! `flotte-agent service install|uninstall`: the systemd unit for hosts that
//! do not use the Debian package.
//!
//! The unit is the packaged one (`packaging/agent/flotte-agent.service`,
//! compiled in), with `ExecStart` pointing at this executable and the given
//! config file; it goes to `/etc/systemd/system`, where it also overrides a
//! packaged unit. Guarantees: the unit file is replaced atomically; `systemctl`
//! is called only when systemd is running (`/run/systemd/system`) and
//! enabling was asked for; uninstalling a unit that is not there succeeds.

use crate::durable;
use crate::error::{AgentError, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The unit as the Debian package ships it.
pub const PACKAGED_UNIT: &str = include_str!("../../packaging/agent/flotte-agent.service");
/// The unit's file name.
pub const UNIT_NAME: &str = "flotte-agent.service";
/// Where admins' own units live.
pub const DEFAULT_UNIT_DIR: &str = "/etc/systemd/system";

/// What `service install` writes and where.
#[derive(Debug, Clone)]
pub struct UnitOptions {
    pub unit_dir: PathBuf,
    /// The agent executable `ExecStart` runs.
    pub exe: PathBuf,
    /// The config file `ExecStart` passes with `--config`.
    pub config: PathBuf,
    /// Run `systemctl daemon-reload` and `enable` (if systemd is running).
    pub enable: bool,
}

/// The packaged unit with `ExecStart` for `exe` and `config`.
pub fn render(exe: &Path, config: &Path) -> String {
    PACKAGED_UNIT
        .lines()
        .map(|line| {
            if line.starts_with("ExecStart=") {
                format!("ExecStart={} run --config {}", exe.display(), config.display())
            } else {
                line.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// Writes the unit and, if asked, enables it. Returns the unit's path.
pub fn install(opts: &UnitOptions) -> Result<PathBuf> {
    durable::create_dir(&opts.unit_dir)?;
    let path = opts.unit_dir.join(UNIT_NAME);
    durable::write(&path, render(&opts.exe, &opts.config).as_bytes(), 0o644)?;
    if opts.enable && systemd_running() {
        systemctl(&["daemon-reload"])?;
        systemctl(&["enable", UNIT_NAME])?;
    }
    Ok(path)
}

/// Disables and stops the unit (if systemd is running and `disable`), then
/// removes its file. Returns whether there was a file.
pub fn uninstall(unit_dir: &Path, disable: bool) -> Result<bool> {
    let path = unit_dir.join(UNIT_NAME);
    let existed = path.exists();
    if disable && systemd_running() {
        systemctl(&["disable", "--now", UNIT_NAME])?;
    }
    if existed {
        durable::remove(&path)?;
    }
    if disable && systemd_running() {
        systemctl(&["daemon-reload"])?;
    }
    Ok(existed)
}

fn systemd_running() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

fn systemctl(args: &[&str]) -> Result<()> {
    let failed = |reason: String| AgentError::Service { command: format!("systemctl {}", args.join(" ")), reason };
    let out = Command::new("systemctl").args(args).output().map_err(|e| failed(e.to_string()))?;
    if out.status.success() { Ok(()) } else { Err(failed(String::from_utf8_lossy(&out.stderr).trim().to_string())) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rendered_unit_runs_this_executable_with_the_config() {
        let text = render(Path::new("/usr/local/bin/flotte-agent"), Path::new("/etc/flotte/agent.toml"));
        assert!(text.contains("\nExecStart=/usr/local/bin/flotte-agent run --config /etc/flotte/agent.toml\n"));
        assert_eq!(text.matches("ExecStart=").count(), 1);
        assert!(text.contains("Type=notify") && text.contains("WatchdogSec="));
    }

    #[test]
    fn install_writes_the_unit_and_uninstall_removes_it() {
        let dir = tempfile::tempdir().unwrap();
        let opts = UnitOptions {
            unit_dir: dir.path().join("units"),
            exe: "/bin/flotte-agent".into(),
            config: "/etc/a.toml".into(),
            enable: false,
        };
        let path = install(&opts).unwrap();
        assert!(std::fs::read_to_string(&path).unwrap().contains("ExecStart=/bin/flotte-agent run"));
        assert!(uninstall(&opts.unit_dir, false).unwrap());
        assert!(!path.exists());
        assert!(!uninstall(&opts.unit_dir, false).unwrap(), "a second uninstall finds nothing and succeeds");
    }
}
