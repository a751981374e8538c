//! The agent under a service manager: it tells systemd when it is ready,
//! feeds the watchdog, and says when it stops (sd_notify over the socket
//! named by `NOTIFY_SOCKET`, exactly as systemd runs a `Type=notify` unit).

use anyhow::Result;
use flotte_controller::lab::harness::AgentProcess;
use flotte_tests::Lab;
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn the_agent_notifies_ready_feeds_the_watchdog_and_says_when_it_stops() -> Result<()> {
    let lab = Lab::start()?;
    let token = lab.client.create_enrollment_token(Duration::from_secs(60))?.token;
    let agent = AgentProcess::new(&lab.bins, lab.dir.path(), "svc-01");
    assert!(agent.enroll(&lab.controller, &token)?.status.success());
    let socket_path = lab.path("notify.sock");
    let socket = UnixDatagram::bind(&socket_path)?;
    socket.set_read_timeout(Some(Duration::from_secs(30)))?;

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
    let mut buf = [0u8; 256];
    while received.iter().filter(|m: &&String| m.as_str() == "WATCHDOG=1").count() < 2 {
        let n = socket.recv(&mut buf)?;
        received.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    // SIGTERM, as `systemctl stop` sends.
    #[allow(unsafe_code)]
    // SAFETY: kill(2) on our own child; no memory is involved.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    loop {
        let n = socket.recv(&mut buf)?;
        let message = String::from_utf8_lossy(&buf[..n]).into_owned();
        received.push(message.clone());
        if message == "STOPPING=1" {
            break;
        }
    }
    assert!(child.wait()?.success(), "a SIGTERM stop is a clean exit");
    assert_eq!(received.first().map(String::as_str), Some("READY=1"), "{received:?}");
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
