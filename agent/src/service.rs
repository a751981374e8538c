//! Talking to the service manager.
//!
//! Under systemd (`Type=notify`), the agent says `READY=1` once its state is
//! loaded and pings `WATCHDOG=1` at half the configured watchdog interval;
//! elsewhere (`NOTIFY_SOCKET` unset) every call is a no-op. The protocol
//! itself is the `sd-notify` crate's.
//!
//! Platform-specific service code stays behind this module; launchd and the
//! Windows service manager get their own implementations of the same calls
//! (see ARCHITECTURE.md).

use sd_notify::NotifyState;
use std::time::Duration;

/// Sends one notification. Failures are logged at debug level and
/// otherwise ignored: a missing service manager must never stop the agent.
fn notify(state: NotifyState) {
    if let Err(e) = sd_notify::notify(&[state]) {
        tracing::debug!(error = %e, "sd_notify failed");
    }
}

/// The agent is up: state loaded, about to connect.
pub fn ready() {
    notify(NotifyState::Ready);
}

/// The agent is alive; systemd restarts it if these stop.
pub fn watchdog() {
    notify(NotifyState::Watchdog);
}

/// The agent is shutting down.
pub fn stopping() {
    notify(NotifyState::Stopping);
}

/// How often to ping the watchdog: half of `WATCHDOG_USEC`, if it is set
/// for this process.
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled().map(|d| d / 2).filter(|d| !d.is_zero())
}

/// Whether stderr is connected to the journal (systemd sets
/// `JOURNAL_STREAM`), so logs need neither colours nor timestamps.
pub fn logging_to_journal() -> bool {
    std::env::var_os("JOURNAL_STREAM").is_some()
}
