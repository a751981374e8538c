//! Talking to the service manager.
//!
//! Under systemd (`Type=notify`), the controller says `READY=1` once both
//! sockets are bound, pings `WATCHDOG=1` from its runtime at half the
//! configured watchdog interval, and says `STOPPING=1` on shutdown;
//! elsewhere (`NOTIFY_SOCKET` unset) every call is a no-op.

use sd_notify::NotifyState;

/// Sends one notification; failures are logged and otherwise ignored.
fn notify(state: NotifyState) {
    if let Err(e) = sd_notify::notify(&[state]) {
        tracing::debug!(error = %e, "sd_notify failed");
    }
}

/// Both sockets are bound and the store is open.
pub fn ready() {
    notify(NotifyState::Ready);
}

/// The controller is shutting down.
pub fn stopping() {
    notify(NotifyState::Stopping);
}

/// Feeds systemd's watchdog from the calling runtime for as long as that
/// runtime runs tasks, if a watchdog is configured for this process. A
/// runtime that stops scheduling stops the pings, and systemd restarts it.
pub fn spawn_watchdog() {
    let Some(interval) = sd_notify::watchdog_enabled().map(|d| d / 2).filter(|d| !d.is_zero()) else {
        return;
    };
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        loop {
            tick.tick().await;
            notify(NotifyState::Watchdog);
        }
    });
}

/// Whether stderr is connected to the journal (systemd sets
/// `JOURNAL_STREAM`), so logs need neither colours nor timestamps.
pub fn logging_to_journal() -> bool {
    std::env::var_os("JOURNAL_STREAM").is_some()
}
