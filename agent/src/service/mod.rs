//! The host's service manager, behind one small trait.
//!
//! Everything platform-specific about running as a service lives behind
//! [`ServiceManager`]: registering the agent (`flotte-agent service
//! install|uninstall`), telling the manager it is ready, feeding its
//! watchdog, saying it stops, and whether logs go to the system log. The
//! rest of the agent never asks which platform it is on.
//!
//! Implementations: [`systemd::Systemd`] (Linux). launchd (a plist in
//! `/Library/LaunchDaemons`, `launchctl bootstrap`) and the Windows service
//! control manager (`CreateService`, `SetServiceStatus` for ready/stopping)
//! are planned as further implementations selected at compile time; see
//! ARCHITECTURE.md.

pub mod systemd;

use crate::error::Result;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The service manager of the platform this agent was built for.
#[cfg(target_os = "linux")]
pub type HostServiceManager = systemd::Systemd;

/// What a service registration runs.
#[derive(Debug, Clone)]
pub struct Registration<'a> {
    /// The agent executable the service starts.
    pub exe: &'a Path,
    /// The config file the service passes with `--config`.
    pub config: &'a Path,
    /// Also enable the service (start at boot) if the manager is running.
    pub enable: bool,
}

/// One platform's service manager.
pub trait ServiceManager {
    /// Registers the agent as a service; returns the file it wrote.
    fn install(&self, registration: &Registration<'_>) -> Result<PathBuf>;
    /// Removes the registration, first stopping and disabling the service if
    /// `stop`. Returns whether there was one; removing nothing succeeds.
    fn uninstall(&self, stop: bool) -> Result<bool>;
    /// The agent's state is loaded; it is about to connect.
    fn ready(&self);
    /// How often to call [`ServiceManager::watchdog`]; `None` if the manager
    /// watches nothing.
    fn watchdog_interval(&self) -> Option<Duration>;
    /// The agent is alive.
    fn watchdog(&self);
    /// The agent is shutting down.
    fn stopping(&self);
    /// Whether stderr goes to a system log that stamps lines itself, so logs
    /// need neither colours nor timestamps.
    fn logs_to_system_log(&self) -> bool;
}
