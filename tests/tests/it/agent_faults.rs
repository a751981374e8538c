//! The agent against bad input and a hostile or broken environment, each
//! with a clear error or a recovery: a bad config file, the controller down
//! at start, a controller with another CA's certificate, the wall clock
//! stepping a day either way, and a read-only state directory.

use anyhow::{Context, Result, ensure};
use flotte_controller::lab::harness::{self, ControllerProcess};
use flotte_protocol::messages::InstallState;
use flotte_tests::fake_clock::FakeClock;
use flotte_tests::{AgentProcess, DEADLINE, Lab, wait_for};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The exit status the agent uses for errors a restart cannot fix.
const EXIT_NEEDS_ADMIN: i32 = 78;

fn log_of(agent: &AgentProcess) -> String {
    std::fs::read_to_string(agent.log_path()).unwrap_or_default()
}

/// Waits until the agent's log contains `needle` at least `count` times.
fn wait_log(agent: &AgentProcess, needle: &str, count: usize) -> Result<()> {
    wait_for(&format!("{count}× {needle:?} in {}'s log", agent.name), DEADLINE, || {
        Ok((log_of(agent).matches(needle).count() >= count).then_some(()))
    })
}

/// Enrolls an agent without starting it.
fn enrolled(lab: &Lab, name: &str) -> Result<AgentProcess> {
    let token = lab.client.create_enrollment_token(Duration::from_secs(600))?.token;
    let agent = AgentProcess::new(&lab.bins, lab.dir.path(), name);
    let out = agent.enroll(&lab.controller, &token)?;
    ensure!(out.status.success(), "enroll failed: {}", String::from_utf8_lossy(&out.stderr));
    Ok(agent)
}

#[test]
fn a_bad_config_file_stops_the_agent_with_key_and_line() -> Result<()> {
    let lab = Lab::start()?;
    let mut agent = enrolled(&lab, "cfg-01")?;
    let cases = [
        ("log_level = \"info\"\ninstal_root = \"/opt/x\"\n", "instal_root", "line 2"),
        ("log_level = \"info\"\n\nreport_dpkg_packages = \"yes\"\n", "report_dpkg_packages", "line 3"),
        ("inventory_interval = 600\n", "inventory_interval", "line 1"),
    ];
    for (text, key, line) in cases {
        agent.configure(text)?;
        std::fs::write(agent.log_path(), "")?;
        agent.start()?;
        let status = agent.wait_exit(DEADLINE)?;
        let log = log_of(&agent);
        assert_eq!(status.code(), Some(EXIT_NEEDS_ADMIN), "{text}: {log}");
        assert!(log.contains(key) && log.contains(line), "{text}: the error names {key} and {line}:\n{log}");
    }
    Ok(())
}

#[test]
fn the_agent_keeps_retrying_until_the_controller_comes_up() -> Result<()> {
    let mut lab = Lab::start()?;
    let key = lab.trusted_key()?;
    let mut agents = lab.agents(1)?;
    lab.controller.kill();
    agents[0].stop();
    std::fs::write(agents[0].log_path(), "")?;
    agents[0].start()?;
    // Observable retries: two failed attempts (each bounded by the agent's
    // connect timeout, as nothing answers), each followed by a backoff.
    wait_log(&agents[0], "reconnecting after a delay", 2)?;
    assert!(agents[0].is_running());
    lab.controller.start()?;
    harness::wait_online(&lab.client, 1, DEADLINE)?;
    lab.publish(&key, "hello", "1.0.0")?;
    let done = lab.wait_done(lab.deploy_all("hello", "1.0.0")?)?;
    assert_eq!(done[0].state, Some(InstallState::Succeeded));
    Ok(())
}

#[test]
fn a_controller_certificate_from_another_ca_is_refused_loudly() -> Result<()> {
    let mut lab = Lab::start()?;
    let mut agents = lab.agents(1)?;
    let (api, quic) = (lab.controller.api_addr, lab.controller.quic_addr);
    // Restarted (as at a reboot) so that it connects at once instead of
    // first waiting out the idle timeout of the old connection; the attempt
    // goes through the same connect path either way.
    agents[0].stop();
    lab.controller.kill();
    // An impostor (or a re-initialized controller): another data directory,
    // another CA, the same addresses.
    let mut impostor = ControllerProcess::init_and_start(&lab.bins, &lab.path("impostor"), "")?;
    impostor.kill();
    impostor.api_addr = api;
    impostor.quic_addr = quic;
    impostor.start()?;
    agents[0].start()?;
    wait_log(&agents[0], "SECURITY: controller certificate rejected", 1)?;
    let log = log_of(&agents[0]);
    assert!(log.contains("ERROR") && log.contains("not from the CA this agent enrolled with"), "{log}");
    assert!(agents[0].is_running(), "the agent keeps running and retrying");
    let impostor_log = std::fs::read_to_string(impostor.log_path())?;
    assert!(!impostor_log.contains("agent connected"), "no session with the impostor:\n{impostor_log}");
    assert!(!agents[0].root.join("packages").exists(), "nothing installed");

    // The real controller comes back: the agent reconnects by itself.
    drop(impostor);
    lab.controller.start()?;
    harness::wait_online(&lab.client, 1, DEADLINE)?;
    agents[0].stop();
    Ok(())
}

#[test]
fn the_wall_clock_stepping_a_day_back_and_forth_changes_nothing() -> Result<()> {
    let mut lab = Lab::start()?;
    let key = lab.trusted_key()?;
    let mut agent = enrolled(&lab, "clock-01")?;
    let clock = FakeClock::new(lab.path("faketime"))?;
    agent.env = clock.env();
    agent.start()?;
    harness::wait_online(&lab.client, 1, DEADLINE)?;

    for (step, version) in [("-1d", "1.0.0"), ("+1d", "2.0.0")] {
        clock.set(step)?;
        // A new handshake under the stepped clock, too: restart the controller.
        lab.controller.kill();
        lab.controller.start()?;
        harness::wait_online(&lab.client, 1, DEADLINE)?;
        lab.publish(&key, "hello", version)?;
        let done = lab.wait_done(lab.deploy_all("hello", version)?)?;
        assert_eq!(done[0].state, Some(InstallState::Succeeded), "after a step of {step}: {:?}", done[0]);
        assert_eq!(agent.active_version("hello").as_deref(), Some(version));
    }
    assert!(log_of(&agent).contains("clock differs from the controller's"), "the skew is noticed");
    Ok(())
}

/// A read-only bind mount of a directory onto itself; undone on drop.
struct ReadOnly(PathBuf);

impl ReadOnly {
    fn mount(dir: &Path) -> Result<Self> {
        let run = |args: &[&str]| -> Result<()> {
            let out = Command::new("mount").args(args).arg(dir).arg(dir).output()?;
            ensure!(out.status.success(), "mount {args:?}: {}", String::from_utf8_lossy(&out.stderr));
            Ok(())
        };
        run(&["--bind"]).context("a read-only bind mount needs root, as CI has")?;
        let guard = ReadOnly(dir.to_path_buf());
        run(&["-o", "remount,bind,ro"])?;
        Ok(guard)
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_read_only_state_directory_stops_the_agent_at_start_with_a_clear_error() -> Result<()> {
    let lab = Lab::start()?;
    let mut agent = enrolled(&lab, "ro-01")?;
    let _ro = ReadOnly::mount(&agent.state_dir)?;
    agent.start()?;
    let status = agent.wait_exit(DEADLINE)?;
    let log = log_of(&agent);
    assert_eq!(status.code(), Some(EXIT_NEEDS_ADMIN), "{log}");
    assert!(log.contains("is not writable") && log.contains("Read-only file system"), "{log}");
    assert!(!log.contains("panicked"), "{log}");
    Ok(())
}
