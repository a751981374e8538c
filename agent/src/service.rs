//! Talking to the service manager.
//!
//! Under systemd (`Type=notify`), the agent says `READY=1` once its state is
//! loaded and pings `WATCHDOG=1` at half the configured watchdog interval;
//! elsewhere (`NOTIFY_SOCKET` unset) every call is a no-op. This is the
//! whole sd_notify protocol: one datagram per message to the socket named
//! in the environment, so no library is needed.
//!
//! Platform-specific service code stays behind this module; launchd and the
//! Windows service manager get their own implementations of the same three
//! calls (see ARCHITECTURE.md).

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// The notification socket systemd gave us, if any.
fn socket_path() -> Option<String> {
    std::env::var("NOTIFY_SOCKET").ok().filter(|s| !s.is_empty())
}

/// Sends one sd_notify message (e.g. `READY=1`). Failures are ignored: a
/// missing service manager must never stop the agent.
pub fn notify(message: &str) {
    let Some(path) = socket_path() else { return };
    let Ok(socket) = UnixDatagram::unbound() else { return };
    let sent = if let Some(abstract_name) = path.strip_prefix('@') {
        send_abstract(&socket, abstract_name, message)
    } else {
        socket.send_to(message.as_bytes(), &path).map(|_| ())
    };
    if let Err(e) = sent {
        tracing::debug!(error = %e, "sd_notify failed");
    }
}

#[cfg(target_os = "linux")]
fn send_abstract(socket: &UnixDatagram, name: &str, message: &str) -> std::io::Result<()> {
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
    socket.send_to_addr(message.as_bytes(), &addr).map(|_| ())
}

#[cfg(not(target_os = "linux"))]
fn send_abstract(_: &UnixDatagram, _: &str, _: &str) -> std::io::Result<()> {
    Err(std::io::Error::new(std::io::ErrorKind::Unsupported, "abstract sockets are Linux-only"))
}

/// The agent is up: state loaded, about to connect.
pub fn ready() {
    notify("READY=1");
}

/// The agent is shutting down.
pub fn stopping() {
    notify("STOPPING=1");
}

/// How often to ping the watchdog: half of `WATCHDOG_USEC`, if set for us.
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Some(pid) = std::env::var("WATCHDOG_PID").ok().and_then(|p| p.parse::<u32>().ok())
        && pid != std::process::id()
    {
        return None;
    }
    Some(Duration::from_micros(usec / 2)).filter(|d| !d.is_zero())
}

/// Whether stderr is connected to the journal (systemd sets
/// `JOURNAL_STREAM`), so logs need neither colours nor timestamps.
pub fn logging_to_journal() -> bool {
    std::env::var_os("JOURNAL_STREAM").is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_reach_the_socket_systemd_names() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).unwrap();
        unsafe_set("NOTIFY_SOCKET", path.to_str().unwrap());
        ready();
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
    }

    #[allow(unsafe_code)]
    fn unsafe_set(key: &str, value: &str) {
        // SAFETY: this is the only test that touches NOTIFY_SOCKET, and no
        // other code in the test binary reads it.
        unsafe { std::env::set_var(key, value) }
    }
}
