//! The agent under a service manager: it tells systemd when it is ready,
//! feeds the watchdog, and says when it stops (sd_notify over the socket
//! named by `NOTIFY_SOCKET`, exactly as systemd runs a `Type=notify` unit).

use anyhow::Result;
use flotte_controller::lab::harness::AgentProcess;
use flotte_tests::Lab;
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::Duration;

/// The sd_notify socket a test plays systemd on.
struct NotifySocket(UnixDatagram);

impl NotifySocket {
    fn bind(path: &std::path::Path) -> Result<Self> {
        let socket = UnixDatagram::bind(path)?;
        socket.set_read_timeout(Some(Duration::from_secs(30)))?;
        Ok(NotifySocket(socket))
    }

    /// The next notification, one per line of each datagram
    /// (`READY=1`, `WATCHDOG=1`, `STOPPING=1`).
    fn receive_until(&self, received: &mut Vec<String>, done: impl Fn(&[String]) -> bool) -> Result<()> {
        let mut buf = [0u8; 256];
        while !done(received) {
            let n = self.0.recv(&mut buf)?;
            received.extend(String::from_utf8_lossy(&buf[..n]).lines().map(str::to_string));
        }
        Ok(())
    }
}

fn count(received: &[String], message: &str) -> usize {
    received.iter().filter(|m| *m == message).count()
}

#[test]
fn the_agent_notifies_ready_feeds_the_watchdog_and_says_when_it_stops() -> Result<()> {
    let lab = Lab::start()?;
    let token = lab.client.create_enrollment_token(Duration::from_secs(60))?.token;
    let agent = AgentProcess::new(&lab.bins, lab.dir.path(), "svc-01");
    assert!(agent.enroll(&lab.controller, &token)?.status.success());
    let socket_path = lab.path("notify.sock");
    let socket = NotifySocket::bind(&socket_path)?;

    let mut child = Command::new(&lab.bins.agent)
        .arg("run")
        .arg("--state-dir")
        .arg(&agent.state_dir)
        .arg("--root")
        .arg(&agent.root)
        .arg("--socket")
        .arg(&agent.socket)
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "200000")
        .stderr(Stdio::null())
        .spawn()?;
    let mut received = Vec::new();
    socket.receive_until(&mut received, |r| count(r, "WATCHDOG=1") >= 2)?;
    // SIGTERM, as `systemctl stop` sends.
    #[allow(unsafe_code)]
    // SAFETY: kill(2) on our own child; no memory is involved.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    socket.receive_until(&mut received, |r| count(r, "STOPPING=1") == 1)?;
    assert!(child.wait()?.success(), "a SIGTERM stop is a clean exit");
    assert_eq!(received.first().map(String::as_str), Some("READY=1"), "{received:?}");
    Ok(())
}

#[test]
fn the_controller_notifies_ready_once_bound_feeds_the_watchdog_and_says_when_it_stops() -> Result<()> {
    let mut lab = Lab::start()?;
    lab.controller.terminate();
    let socket_path = lab.path("controller-notify.sock");
    let socket = NotifySocket::bind(&socket_path)?;
    lab.controller.env =
        vec![("NOTIFY_SOCKET".into(), socket_path.display().to_string()), ("WATCHDOG_USEC".into(), "200000".into())];
    // `start` returns after the readiness line, so both sockets are bound.
    lab.controller.start()?;
    let mut received = Vec::new();
    socket.receive_until(&mut received, |r| count(r, "WATCHDOG=1") >= 2)?;
    assert_eq!(received.first().map(String::as_str), Some("READY=1"), "{received:?}");
    assert!(lab.controller.client()?.agents().is_ok(), "READY means the API answers");

    let status = lab.controller.terminate().expect("the controller was running");
    assert!(status.success(), "a SIGTERM stop is a clean exit: {status}");
    socket.receive_until(&mut received, |r| count(r, "STOPPING=1") == 1)?;
    Ok(())
}

#[test]
fn service_install_writes_a_unit_that_verifies_and_uninstall_removes_it() -> Result<()> {
    let lab_bins = flotte_controller::lab::harness::Binaries::locate()?;
    let dir = tempfile::tempdir()?;
    let units = dir.path().join("units");
    let run = |args: &[&str]| -> Result<String> {
        let out = Command::new(&lab_bins.agent).args(args).arg("--unit-dir").arg(&units).output()?;
        anyhow::ensure!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    run(&["service", "install", "--no-enable", "--config", "/etc/flotte/agent.toml"])?;
    let unit = units.join("flotte-agent.service");
    let text = std::fs::read_to_string(&unit)?;
    let exec = format!("ExecStart={} run --config /etc/flotte/agent.toml", lab_bins.agent.display());
    assert!(text.contains(&exec), "{text}");
    let verify = Command::new("systemd-analyze").arg("verify").arg(&unit).output()?;
    let said = String::from_utf8_lossy(&verify.stderr);
    assert!(verify.status.success(), "systemd-analyze verify failed:\n{said}");
    assert!(!said.contains("flotte-agent.service:"), "systemd-analyze complained:\n{said}");
    assert!(run(&["service", "uninstall", "--no-disable"])?.contains("removed"));
    assert!(!unit.exists());
    Ok(())
}
