//! The end-to-end path: publish, deploy, download, verify, install, report.

use anyhow::Result;
use flotte_protocol::messages::InstallState;
use flotte_tests::{DEADLINE, Lab, wait_for};

#[test]
fn a_deployment_reaches_every_agent_and_each_reports_the_truth() -> Result<()> {
    let mut lab = Lab::start()?;
    let key = lab.trusted_key()?;
    let agents = lab.agents(3)?;
    lab.publish(&key, "hello", "1.0.0")?;

    let done = lab.wait_done(lab.deploy_all("hello", "1.0.0")?)?;

    assert_eq!(done.len(), 3);
    for a in &done {
        assert_eq!(a.state, Some(InstallState::Succeeded), "{}", a.hostname);
        assert_eq!(a.active_version.as_deref(), Some("1.0.0"));
    }
    for agent in &agents {
        assert_eq!(agent.active_version("hello").as_deref(), Some("1.0.0"), "{} on disk", agent.name);
        let script = agent.root.join("packages/hello/current/bin/hello");
        assert!(std::fs::read_to_string(&script)?.contains("hello 1.0.0"));
        let states: Vec<&str> = lab.reports(agent)?.iter().map(|r| r.state.name()).collect();
        assert_eq!(states, ["received", "downloading", "verifying", "installing", "succeeded"], "{}", agent.name);
    }
    Ok(())
}

#[test]
fn a_second_version_replaces_the_first_and_reports_what_was_active_before() -> Result<()> {
    let mut lab = Lab::start()?;
    let key = lab.trusted_key()?;
    let agents = lab.agents(1)?;
    lab.publish(&key, "hello", "1.0.0")?;
    lab.wait_done(lab.deploy_all("hello", "1.0.0")?)?;
    lab.publish(&key, "hello", "1.1.0")?;

    lab.wait_done(lab.deploy_all("hello", "1.1.0")?)?;

    assert_eq!(agents[0].active_version("hello").as_deref(), Some("1.1.0"));
    let last = lab.reports(&agents[0])?.pop().expect("reports");
    assert_eq!(last.state, InstallState::Succeeded);
    assert_eq!(last.active_before.as_deref(), Some("1.0.0"));
    assert_eq!(last.active_after.as_deref(), Some("1.1.0"));
    Ok(())
}

#[test]
fn an_agent_that_was_offline_receives_its_assignment_when_it_returns() -> Result<()> {
    let mut lab = Lab::start()?;
    let key = lab.trusted_key()?;
    let mut agents = lab.agents(1)?;
    agents[0].stop();
    wait_for("the agent to be seen offline", DEADLINE, || {
        Ok(lab.client.agents()?.iter().all(|a| !a.online).then_some(()))
    })?;
    lab.publish(&key, "hello", "1.0.0")?;
    let deployment = lab.deploy_all("hello", "1.0.0")?;
    assert_eq!(lab.client.assignments()?[0].state, None, "nothing can happen while the agent is away");

    agents[0].start()?;

    let done = lab.wait_done(deployment)?;
    assert_eq!(done[0].state, Some(InstallState::Succeeded));
    assert_eq!(agents[0].active_version("hello").as_deref(), Some("1.0.0"));
    Ok(())
}
