//! Crashes at every journaled step of an install, and during rollback: the
//! agent is killed (by a crash hook that aborts the process, or by SIGKILL)
//! and restarted. Afterwards exactly the old or exactly the new version is
//! active on disk, and the controller's last report says which.

use anyhow::Result;
use flotte_protocol::messages::{FailureClass, InstallState};
use flotte_tests::{
    AgentProcess, DEADLINE, Lab, active_content, failure_message, leftovers, make_unhealthy, sample_health,
};
use std::os::unix::process::ExitStatusExt;

const FAILPOINT: &str = "FLOTTE_FAILPOINT";

/// A lab whose `n` agents all run hello@1.0.0.
fn lab_with_v1(n: usize) -> Result<(Lab, Vec<AgentProcess>, flotte_protocol::SecretKey)> {
    let mut lab = Lab::start()?;
    let key = lab.trusted_key()?;
    let agents = lab.agents(n)?;
    lab.publish(&key, "hello", "1.0.0")?;
    lab.wait_done(lab.deploy_all("hello", "1.0.0")?)?;
    Ok((lab, agents, key))
}

/// Restarts `agent` with the crash hook `failpoint` armed.
fn arm(agent: &mut AgentProcess, failpoint: &str) -> Result<()> {
    agent.stop();
    agent.env = vec![(FAILPOINT.into(), failpoint.into())];
    agent.start()
}

/// Waits for the armed agent to abort, then starts it again unarmed.
fn crash_and_restart(agent: &mut AgentProcess) -> Result<()> {
    let status = agent.wait_exit(DEADLINE)?;
    assert_eq!(status.signal(), Some(libc::SIGABRT), "{} ended by its crash hook: {status}", agent.name);
    agent.env.clear();
    agent.start()
}

/// Exactly `version` is active on disk, complete, with no half-staged
/// leftovers, and the controller was told so.
fn assert_exactly(lab: &Lab, agent: &AgentProcess, deployment: u64, state: &str, version: &str) -> Result<()> {
    let what = format!("{} ({})", agent.name, agent.env.first().map_or("", |(_, v)| v.as_str()));
    assert_eq!(agent.active_version("hello").as_deref(), Some(version), "{what}: current link");
    assert_eq!(active_content(agent, "hello").as_deref(), Some(version), "{what}: active tree");
    assert_eq!(leftovers(agent, "hello"), Vec::<String>::new(), "{what}: staging leftovers");
    let a = lab.assignment(deployment, agent)?;
    assert_eq!(a.state.as_ref().map(InstallState::name), Some(state), "{what}: {:?}", a.state);
    assert_eq!(a.active_version.as_deref(), Some(version), "{what}: reported active version");
    let last = lab.last_report(agent)?;
    assert_eq!(last.state.name(), state, "{what}: last report");
    assert_eq!(last.active_after.as_deref(), Some(version), "{what}: last report's active version");
    assert_eq!(last.active_before.as_deref(), Some("1.0.0"), "{what}");
    Ok(())
}

#[test]
fn kill9_at_every_step() -> Result<()> {
    // (crash hook, what must be active afterwards, what the controller hears)
    let cases = [
        ("after:downloaded", "2.0.0", "succeeded"),
        ("after:verified", "2.0.0", "succeeded"),
        ("after:staged", "2.0.0", "succeeded"),
        ("after:switched", "1.0.0", "rolled_back"),
        ("after:detected", "1.0.0", "rolled_back"),
        ("after:health-checked", "2.0.0", "succeeded"),
        ("after:committed", "2.0.0", "succeeded"),
    ];
    let (lab, mut agents, key) = lab_with_v1(cases.len())?;
    for (agent, (failpoint, _, _)) in agents.iter_mut().zip(cases) {
        arm(agent, failpoint)?;
    }
    lab.publish_spec(&key, "hello", "2.0.0", &sample_health(1))?;

    let deployment = lab.deploy_all("hello", "2.0.0")?;
    for agent in &mut agents {
        crash_and_restart(agent)?;
    }
    lab.wait_done(deployment)?;

    for (agent, (failpoint, version, state)) in agents.iter().zip(cases) {
        assert_exactly(&lab, agent, deployment, state, version)?;
        let a = lab.assignment(deployment, agent)?;
        if state == "rolled_back" {
            assert!(
                matches!(a.state, Some(InstallState::RolledBack { class: FailureClass::Interrupted, .. })),
                "{failpoint}: {:?}",
                a.state
            );
            assert!(failure_message(&a).contains("before the new version was committed"), "{}", failure_message(&a));
        }
    }
    Ok(())
}

#[test]
fn sigkill_during_probation_rolls_back_after_restart() -> Result<()> {
    let (lab, mut agents, key) = lab_with_v1(1)?;
    lab.publish_spec(&key, "hello", "2.0.0", &sample_health(600))?;
    let deployment = lab.deploy_all("hello", "2.0.0")?;
    lab.wait_report(&agents[0], deployment, "health_checking")?;
    assert_eq!(agents[0].active_version("hello").as_deref(), Some("2.0.0"), "on probation");

    agents[0].kill();
    agents[0].start()?;

    lab.wait_assignment(deployment, &agents[0])?;
    assert_exactly(&lab, &agents[0], deployment, "rolled_back", "1.0.0")
}

#[test]
fn rollback_interrupted() -> Result<()> {
    let (lab, mut agents, key) = lab_with_v1(2)?;
    // One dies right after journaling the rollback, one in the middle of it
    // (switched back, backup not yet restored).
    let failpoints = ["after:rolling-back", "rollback:switched"];
    for (agent, failpoint) in agents.iter_mut().zip(failpoints) {
        make_unhealthy(agent)?;
        arm(agent, failpoint)?;
    }
    lab.publish_spec(&key, "hello", "2.0.0", &sample_health(0))?;
    let deployment = lab.deploy_all("hello", "2.0.0")?;
    for agent in &mut agents {
        crash_and_restart(agent)?;
    }
    lab.wait_done(deployment)?;
    for agent in &agents {
        assert_exactly(&lab, agent, deployment, "rolled_back", "1.0.0")?;
        let a = lab.assignment(deployment, agent)?;
        assert!(
            matches!(a.state, Some(InstallState::RolledBack { class: FailureClass::Health, .. })),
            "the original cause survives the crash: {:?}",
            a.state
        );
        assert!(failure_message(&a).contains("hello.unhealthy exists"), "{}", failure_message(&a));
    }
    Ok(())
}

/// Restarts `agent` (still armed) every time it crashes, until the
/// assignment of `deployment` ends; returns how many crashes there were.
fn crash_until_done(lab: &Lab, agent: &mut AgentProcess, deployment: u64) -> Result<usize> {
    let mut crashes = 0;
    loop {
        let done = flotte_tests::wait_for("a crash or the end", DEADLINE, || {
            if !agent.is_running() {
                return Ok(Some(false));
            }
            let a = lab.find_assignment(deployment, agent)?;
            Ok(a.is_some_and(|a| a.state.as_ref().is_some_and(InstallState::is_terminal)).then_some(true))
        })?;
        if done {
            return Ok(crashes);
        }
        crashes += 1;
        agent.wait_exit(DEADLINE)?;
        agent.start()?;
    }
}

#[test]
fn a_job_that_crashes_the_agent_every_time_is_given_up() -> Result<()> {
    let (lab, mut agents, key) = lab_with_v1(1)?;
    arm(&mut agents[0], "after:staged")?;
    lab.publish_spec(&key, "hello", "2.0.0", &sample_health(0))?;
    let deployment = lab.deploy_all("hello", "2.0.0")?;

    let crashes = crash_until_done(&lab, &mut agents[0], deployment)?;

    assert_eq!(crashes, 4, "the first run and three restarts crash; the fourth restart gives up");
    let a = lab.assignment(deployment, &agents[0])?;
    assert!(matches!(a.state, Some(InstallState::Failed { class: FailureClass::Interrupted, .. })), "{:?}", a.state);
    assert!(failure_message(&a).contains("stopped 4 times"), "{}", failure_message(&a));
    assert_eq!(agents[0].active_version("hello").as_deref(), Some("1.0.0"));
    assert_eq!(a.active_version.as_deref(), Some("1.0.0"));
    Ok(())
}

#[test]
fn a_rollback_that_crashes_the_agent_every_time_quarantines_the_package() -> Result<()> {
    let (lab, mut agents, key) = lab_with_v1(1)?;
    make_unhealthy(&agents[0])?;
    arm(&mut agents[0], "rollback:switched")?;
    lab.publish_spec(&key, "hello", "2.0.0", &sample_health(0))?;
    let deployment = lab.deploy_all("hello", "2.0.0")?;

    let crashes = crash_until_done(&lab, &mut agents[0], deployment)?;

    assert_eq!(crashes, 4);
    let a = lab.assignment(deployment, &agents[0])?;
    assert!(matches!(a.state, Some(InstallState::RollbackFailed { .. })), "{:?}", a.state);
    assert!(failure_message(&a).contains("stopped 4 times while rolling back"), "{}", failure_message(&a));
    // Each attempt got as far as switching back: 1.0.0 is what runs, and the
    // report says what the agent found.
    assert_eq!(agents[0].active_version("hello").as_deref(), Some("1.0.0"));
    assert_eq!(a.active_version.as_deref(), Some("1.0.0"));
    assert!(agents[0].state_dir.join("quarantine/hello.json").is_file());
    Ok(())
}
