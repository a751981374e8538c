//! The agent's maintenance window (`maintenance_window` in agent.toml,
//! read in the host's time zone when it names none): a push outside it
//! downloads and verifies at once, reports `waiting_for_window` with the
//! next opening while the old version stays active, keeps waiting across a
//! restart, and installs once the window opens. The agent's wall clock is
//! moved to the opening with libfaketime (`flotte_tests::fake_clock`).

use anyhow::{Result, ensure};
use flotte_controller::lab::harness;
use flotte_protocol::messages::InstallState;
use flotte_protocol::{Sha256Digest, Timestamp};
use flotte_tests::fake_clock::FakeClock;
use flotte_tests::{AgentProcess, DEADLINE, Lab, wait_for};
use std::time::{Duration, SystemTime};

/// The agent's time zone in this test: UTC+9 all year (no daylight saving).
const ZONE: &str = "Asia/Tokyo";
const ZONE_OFFSET_MIN: u64 = 9 * 60;

/// A daily window in the agent's local time that opens at the minute that
/// starts two hours from now and lasts an hour, and that opening in UTC.
fn window_in_two_hours() -> (String, Timestamp) {
    let now_min = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs() / 60;
    let open_min = now_min + 120;
    let local = (open_min + ZONE_OFFSET_MIN) % 1440;
    let hm = |m: u64| format!("{:02}:{:02}", m / 60, m % 60);
    let spec = format!("daily {}-{}", hm(local), hm((local + 60) % 1440));
    (spec, Timestamp::from_unix_millis(open_min * 60_000))
}

/// Every report of `agent` for assignment `id` in state `name`.
fn count_reports(lab: &Lab, agent: &AgentProcess, id: flotte_protocol::AssignmentId, name: &str) -> Result<usize> {
    Ok(lab.reports(agent)?.iter().filter(|r| r.assignment == id && r.state.name() == name).count())
}

#[test]
fn a_push_outside_the_agents_window_downloads_and_verifies_then_installs_when_it_opens() -> Result<()> {
    let lab = Lab::start()?;
    let key = lab.trusted_key()?;
    let token = lab.client.create_enrollment_token(Duration::from_secs(600))?.token;
    let mut agent = AgentProcess::new(&lab.bins, lab.dir.path(), "window-01");
    let out = agent.enroll(&lab.controller, &token)?;
    ensure!(out.status.success(), "enroll failed: {}", String::from_utf8_lossy(&out.stderr));
    let clock = FakeClock::new(lab.path("faketime"))?;
    agent.env = clock.env();
    agent.env.push(("TZ".into(), ZONE.into()));

    // Version 1 goes in without a window.
    agent.start()?;
    harness::wait_online(&lab.client, 1, DEADLINE)?;
    lab.publish(&key, "hello", "1.0.0")?;
    let done = lab.wait_done(lab.deploy_all("hello", "1.0.0")?)?;
    assert_eq!(done[0].state, Some(InstallState::Succeeded));

    // The window (in the agent's local zone, named nowhere) opens in two hours.
    let (spec, opens) = window_in_two_hours();
    agent.stop();
    agent.configure(&format!("maintenance_window = \"{spec}\"\n"))?;
    agent.start()?;
    harness::wait_online(&lab.client, 1, DEADLINE)?;
    let package = lab.publish(&key, "hello", "2.0.0")?;
    let deployment = lab.deploy_all("hello", "2.0.0")?;
    let waiting = lab.wait_report(&agent, deployment, "waiting_for_window")?;
    assert_eq!(waiting.state, InstallState::WaitingForWindow { until: opens }, "window {spec} in {ZONE}");
    assert_eq!(waiting.active_after.as_deref(), Some("1.0.0"));
    let id = waiting.assignment;
    assert_eq!(count_reports(&lab, &agent, id, "verifying")?, 1, "verified before waiting");
    assert_eq!(agent.active_version("hello").as_deref(), Some("1.0.0"), "the old version stays active");
    let content = std::fs::read(&package)?;
    let downloaded = agent.state_dir.join("downloads").join(format!("{}.part", Sha256Digest::of(&content).to_hex()));
    assert_eq!(std::fs::read(&downloaded).ok(), Some(content), "the content is on disk, ready");
    let state = lab.assignment(deployment, &agent)?.state;
    assert!(matches!(state, Some(InstallState::WaitingForWindow { .. })), "in flight, not done: {state:?}");

    // A restart keeps waiting (it verifies again and reports the wait again).
    agent.stop();
    agent.start()?;
    wait_for("the wait reported again after the restart", DEADLINE, || {
        Ok((count_reports(&lab, &agent, id, "waiting_for_window")? >= 2).then_some(()))
    })?;
    assert_eq!(lab.last_report(&agent)?.state, InstallState::WaitingForWindow { until: opens });
    assert_eq!(agent.active_version("hello").as_deref(), Some("1.0.0"));

    // The agent's clock reaches the window: the install happens by itself.
    clock.set("+7200")?;
    let done = lab.wait_assignment(deployment, &agent)?;
    assert_eq!(done.state, Some(InstallState::Succeeded), "{done:?}");
    assert_eq!(agent.active_version("hello").as_deref(), Some("2.0.0"));
    let installed = lab.reports(&agent)?.into_iter().find(|r| r.assignment == id && r.state.name() == "installing");
    let installed_at = installed.map(|r| r.at);
    assert!(installed_at.is_some_and(|at| at >= opens), "installed at {installed_at:?}, not before {opens}");
    Ok(())
}
