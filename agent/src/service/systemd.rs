//! systemd: the unit file (`flotte-agent service install|uninstall`, for
//! hosts that do not use the Debian package) and sd_notify.
//!
//! The unit is the packaged one (`packaging/agent/flotte-agent.service`,
//! compiled in), with `ExecStart` pointing at this executable and the given
//! config file; it goes to `/etc/systemd/system`, where it also overrides a
//! packaged unit. Guarantees: the unit file is replaced atomically; `systemctl`
//! is called only when systemd is running (`/run/systemd/system`) and
//! enabling was asked for; uninstalling a unit that is not there succeeds.
//!
//! Under `Type=notify` the agent says `READY=1` once its state is loaded
//! and pings `WATCHDOG=1` at half the configured watchdog interval;
//! elsewhere (`NOTIFY_SOCKET` unset) notifications are no-ops. The protocol
//! itself is the `sd-notify` crate's.

use super::{Registration, ServiceManager};
use crate::durable;
use crate::error::{AgentError, Result};
use sd_notify::NotifyState;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The unit as the Debian package ships it.
pub const PACKAGED_UNIT: &str = include_str!("../../../packaging/agent/flotte-agent.service");
/// The unit's file name.
pub const UNIT_NAME: &str = "flotte-agent.service";
/// Where admins' own units live.
pub const DEFAULT_UNIT_DIR: &str = "/etc/systemd/system";

/// systemd, with units in `unit_dir`.
#[derive(Debug, Clone)]
pub struct Systemd {
    pub unit_dir: PathBuf,
}

impl Default for Systemd {
    fn default() -> Self {
        Systemd { unit_dir: DEFAULT_UNIT_DIR.into() }
    }
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

impl ServiceManager for Systemd {
    /// Writes the unit and, if asked, enables it.
    fn install(&self, registration: &Registration<'_>) -> Result<PathBuf> {
        durable::create_dir(&self.unit_dir)?;
        let path = self.unit_dir.join(UNIT_NAME);
        durable::write(&path, render(registration.exe, registration.config).as_bytes(), 0o644)?;
        if registration.enable && systemd_running() {
            systemctl(&["daemon-reload"])?;
            systemctl(&["enable", UNIT_NAME])?;
        }
        Ok(path)
    }

    fn uninstall(&self, stop: bool) -> Result<bool> {
        let path = self.unit_dir.join(UNIT_NAME);
        let existed = path.exists();
        if stop && systemd_running() {
            systemctl(&["disable", "--now", UNIT_NAME])?;
        }
        if existed {
            durable::remove(&path)?;
        }
        if stop && systemd_running() {
            systemctl(&["daemon-reload"])?;
        }
        Ok(existed)
    }

    fn ready(&self) {
        notify(NotifyState::Ready);
    }

    /// Half of `WATCHDOG_USEC`, if it is set for this process.
    fn watchdog_interval(&self) -> Option<Duration> {
        sd_notify::watchdog_enabled().map(|d| d / 2).filter(|d| !d.is_zero())
    }

    fn watchdog(&self) {
        notify(NotifyState::Watchdog);
    }

    fn stopping(&self) {
        notify(NotifyState::Stopping);
    }

    /// systemd sets `JOURNAL_STREAM` when stderr is the journal.
    fn logs_to_system_log(&self) -> bool {
        std::env::var_os("JOURNAL_STREAM").is_some()
    }
}

/// Sends one notification. Failures are logged at debug level and otherwise
/// ignored: a missing service manager must never stop the agent.
fn notify(state: NotifyState) {
    if let Err(e) = sd_notify::notify(&[state]) {
        tracing::debug!(error = %e, "sd_notify failed");
    }
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
        let systemd = Systemd { unit_dir: dir.path().join("units") };
        let registration =
            Registration { exe: Path::new("/bin/flotte-agent"), config: Path::new("/etc/a.toml"), enable: false };
        let path = systemd.install(&registration).unwrap();
        assert!(std::fs::read_to_string(&path).unwrap().contains("ExecStart=/bin/flotte-agent run"));
        assert!(systemd.uninstall(false).unwrap());
        assert!(!path.exists());
        assert!(!systemd.uninstall(false).unwrap(), "a second uninstall finds nothing and succeeds");
    }
}
