//! Phased rollouts with real agents: waves, auto-halt, restart mid-wave,
//! and the requests that must be refused.

use anyhow::Result;
use flotte_protocol::api::{RolloutRequest, RolloutView, Target};
use flotte_tests::{DEADLINE, Lab, wait_for};

fn request(version: &str, waves: &str) -> RolloutRequest {
    RolloutRequest {
        name: "hello".into(),
        version: version.into(),
        target: Target::All,
        waves: waves.into(),
        success_threshold: 100.0,
        max_failures: "0".into(),
        soak_seconds: 0,
        silence_seconds: 3600,
        silent_counts_as_failed: true,
        manual: false,
        start_at: None,
    }
}

fn wait_phase(lab: &Lab, id: u64, phase: &str) -> Result<RolloutView> {
    wait_for(&format!("rollout {id} to be {phase}"), DEADLINE, || {
        let r = lab.client.rollout(id)?;
        Ok((r.phase == phase).then_some(r))
    })
}

fn wave_sizes(r: &RolloutView) -> Vec<u64> {
    r.waves.iter().map(|w| w.assigned).collect()
}

#[test]
fn a_phased_rollout_goes_wave_by_wave_to_every_agent() -> Result<()> {
    let mut lab = Lab::start()?;
    let key = lab.trusted_key()?;
    let agents = lab.agents(6)?;
    lab.publish(&key, "hello", "1.0.0")?;

    let created = lab.client.create_rollout(&request("1.0.0", "1,50%,100%"))?;
    let done = wait_phase(&lab, created.id, "completed")?;

    assert_eq!(wave_sizes(&done), [1, 2, 3]);
    assert!(done.waves.iter().all(|w| w.succeeded == w.assigned && w.failed == 0));
    for agent in &agents {
        assert_eq!(agent.active_version("hello").as_deref(), Some("1.0.0"), "{}", agent.name);
    }
    Ok(())
}

#[test]
fn a_failing_canary_halts_the_rollout_before_anyone_else_gets_it() -> Result<()> {
    let mut lab = Lab::start()?;
    let key = lab.trusted_key()?;
    let agents = lab.agents(4)?;
    lab.publish(&key, "hello", "1.0.0")?;
    // Corrupt the stored content: every agent that tries it fails verification.
    let release = lab.client.releases()?.pop().expect("published");
    let blob = lab.controller.data_dir.join("content").join(release.sha256.to_hex());
    let mut bytes = std::fs::read(&blob)?;
    bytes[0] ^= 0xff;
    std::fs::write(&blob, bytes)?;

    let created = lab.client.create_rollout(&request("1.0.0", "1,100%"))?;
    let halted = wait_phase(&lab, created.id, "halted")?;

    assert_eq!(wave_sizes(&halted), [1, 0], "only the canary was assigned");
    assert_eq!(halted.waves[0].failed, 1);
    assert!(halted.reason.as_deref().unwrap_or("").contains("failed"), "{:?}", halted.reason);
    assert_eq!(lab.client.assignments()?.len(), 1);
    assert!(agents.iter().all(|a| a.active_version("hello").is_none()));
    Ok(())
}

#[test]
fn a_controller_killed_mid_rollout_resumes_without_assigning_anyone_twice() -> Result<()> {
    let mut lab = Lab::start()?;
    let key = lab.trusted_key()?;
    let agents = lab.agents(4)?;
    lab.publish(&key, "hello", "1.0.0")?;
    let created = lab.client.create_rollout(&RolloutRequest { manual: true, ..request("1.0.0", "1,100%") })?;
    wait_for("the canary wave to await approval", DEADLINE, || {
        let r = lab.client.rollout(created.id)?;
        Ok((r.stage.as_deref() == Some("awaiting_approval")).then_some(()))
    })?;

    lab.controller.kill();
    lab.controller.start()?;
    lab.client = lab.controller.client()?; // a fresh connection pool
    let after_restart = lab.client.rollout(created.id)?;
    assert_eq!(after_restart.stage.as_deref(), Some("awaiting_approval"), "the wave did not advance by itself");
    lab.client.rollout_command(created.id, "approve")?;
    let done = wait_phase(&lab, created.id, "completed")?;

    assert_eq!(wave_sizes(&done), [1, 3]);
    for agent in &agents {
        assert_eq!(agent.active_version("hello").as_deref(), Some("1.0.0"), "{}", agent.name);
    }
    Ok(())
}

#[test]
fn requests_that_make_no_sense_are_refused_and_change_nothing() -> Result<()> {
    let mut lab = Lab::start()?;
    let key = lab.trusted_key()?;
    lab.agents(2)?;
    lab.publish(&key, "hello", "1.0.0")?;
    lab.publish(&key, "hello", "2.0.0")?;
    let past = flotte_protocol::Timestamp::from_unix_millis(1_000);
    let bad: Vec<(RolloutRequest, u16, &str)> = vec![
        (request("1.0.0", "1,50%"), 400, "must be 100%"),
        (request("1.0.0", "1,50%,25%,100%"), 400, "must not shrink"),
        (RolloutRequest { success_threshold: 0.0, ..request("1.0.0", "100%") }, 400, "success threshold"),
        (RolloutRequest { max_failures: "150%".into(), ..request("1.0.0", "100%") }, 400, "failure limit"),
        (RolloutRequest { start_at: Some(past), ..request("1.0.0", "100%") }, 400, "in the past"),
        (request("9.9.9", "100%"), 404, "unknown release"),
        (
            RolloutRequest { target: Target::Agents(vec!["nobody".into()]), ..request("1.0.0", "100%") },
            400,
            "unknown agent",
        ),
    ];
    for (req, status, message) in bad {
        let err = lab.client.create_rollout(&req).unwrap_err();
        assert_eq!(err.status(), Some(status), "{message}: {err}");
        assert!(err.to_string().contains(message), "{err}");
    }
    assert!(lab.client.rollouts()?.is_empty());

    // A rollout waiting for approval blocks a conflicting version.
    let first = lab.client.create_rollout(&RolloutRequest { manual: true, ..request("1.0.0", "1,100%") })?;
    let conflict = lab.client.create_rollout(&request("2.0.0", "100%")).unwrap_err();
    assert_eq!(conflict.status(), Some(409), "{conflict}");
    lab.client.rollout_command(first.id, "abort")?;
    let again = lab.client.rollout_command(first.id, "approve").unwrap_err();
    assert_eq!(again.status(), Some(409));
    assert!(again.to_string().contains("cannot approve a rollout that is aborted"), "{again}");
    Ok(())
}
