//! Phased rollouts with real agents: waves, named-group waves, auto-halt,
//! restart mid-wave, fleet rollback, tag and filter targets, and the
//! requests that must be refused.

use anyhow::Result;
use flotte_controller::rollout::cohort::cohort_key;
use flotte_protocol::api::{RollbackRequest, RolloutRequest, RolloutView, TagRequest, Target};
use flotte_tests::{DEADLINE, Lab, wait_for};

fn request(version: &str, waves: &str) -> RolloutRequest {
    flotte_tests::strict_rollout(version, waves)
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
        (request("1.0.0", "tag:nobody,100%"), 400, "no agent is tagged \"nobody\""),
        (request("1.0.0", "100%,tag:late,100%"), 400, "comes after a 100% wave"),
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

fn now() -> flotte_protocol::Timestamp {
    flotte_protocol::Timestamp::from_system_time(std::time::SystemTime::now())
}

fn wait_stage(lab: &Lab, id: u64, stage: &str) -> Result<RolloutView> {
    wait_for(&format!("rollout {id} to be {stage}"), DEADLINE, || {
        let r = lab.client.rollout(id)?;
        Ok((r.stage.as_deref() == Some(stage)).then_some(r))
    })
}

#[test]
fn a_fleet_rollback_returns_every_agent_to_the_version_it_ran_before() -> Result<()> {
    let mut lab = Lab::start()?;
    let key = lab.trusted_key()?;
    let agents = lab.agents(3)?;
    lab.publish(&key, "hello", "1.0.0")?;
    lab.publish(&key, "hello", "2.0.0")?;
    let v1 = lab.client.create_rollout(&request("1.0.0", "100%"))?;
    wait_phase(&lab, v1.id, "completed")?;
    let v2 = lab.client.create_rollout(&request("2.0.0", "1,100%"))?;
    wait_phase(&lab, v2.id, "completed")?;
    assert!(agents.iter().all(|a| a.active_version("hello").as_deref() == Some("2.0.0")));

    // Agents would refuse the downgrade, so the controller refuses it first.
    let unsigned = lab.client.rollback(v2.id, &RollbackRequest::default()).unwrap_err();
    assert_eq!(unsigned.status(), Some(422), "{unsigned}");
    assert!(unsigned.to_string().contains("no signed rollback authorisation"), "{unsigned}");
    assert!(lab.client.rollouts()?.iter().all(|r| r.rollback_of.is_none()), "nothing was created");
    lab.allow_rollback(&key, "hello", "1.0.0", "2.0.0")?;

    let rollback = lab.client.rollback(v2.id, &RollbackRequest::default())?;
    assert_eq!(rollback.rollout.rollback_of, Some(v2.id));
    assert_eq!((rollback.rollout.version.as_str(), rollback.rollout.targeted), ("1.0.0", 3));
    assert_eq!(rollback.rollout.waves.len(), 2, "the original's waves by default");
    assert!(rollback.skipped.is_empty(), "{:?}", rollback.skipped);
    let done = wait_phase(&lab, rollback.rollout.id, "completed")?;

    assert_eq!(wave_sizes(&done), [1, 2]);
    for agent in &agents {
        assert_eq!(agent.active_version("hello").as_deref(), Some("1.0.0"), "{} on disk", agent.name);
        assert_eq!(flotte_tests::active_content(agent, "hello").as_deref(), Some("1.0.0"), "{}", agent.name);
        let last = lab.last_report(agent)?;
        assert_eq!(last.active_after.as_deref(), Some("1.0.0"), "{} reported", agent.name);
    }
    let again = lab.client.rollback(v2.id, &RollbackRequest::default()).unwrap_err();
    assert_eq!(again.status(), Some(409), "{again}");
    assert!(again.to_string().contains("already rolled back"), "{again}");
    // The first rollout had nothing before it: every agent is skipped, and
    // nothing is uninstalled.
    let nothing = lab.client.rollback(v1.id, &RollbackRequest::default()).unwrap_err();
    assert_eq!(nothing.status(), Some(422), "{nothing}");
    assert!(nothing.to_string().contains("nothing to roll back"), "{nothing}");
    Ok(())
}

#[test]
fn a_halted_rollout_is_aborted_and_rolled_back_where_it_committed() -> Result<()> {
    let mut lab = Lab::start()?;
    let key = lab.trusted_key()?;
    let agents = lab.agents(3)?;
    lab.publish(&key, "hello", "1.0.0")?;
    lab.publish(&key, "hello", "2.0.0")?;
    let v1 = lab.client.create_rollout(&request("1.0.0", "100%"))?;
    wait_phase(&lab, v1.id, "completed")?;
    // Manual advance: the canary commits 2.0.0, then the wave waits.
    let v2 = lab.client.create_rollout(&RolloutRequest { manual: true, ..request("2.0.0", "1,100%") })?;
    wait_stage(&lab, v2.id, "awaiting_approval")?;
    lab.allow_rollback(&key, "hello", "1.0.0", "2.0.0")?;

    let rollback = lab.client.rollback(v2.id, &RollbackRequest { waves: Some("100%".into()), ..Default::default() })?;
    assert_eq!(lab.client.rollout(v2.id)?.phase, "aborted", "the original cannot race its rollback");
    assert_eq!(rollback.rollout.targeted, 1, "only the canary committed 2.0.0");
    wait_phase(&lab, rollback.rollout.id, "completed")?;
    for agent in &agents {
        assert_eq!(agent.active_version("hello").as_deref(), Some("1.0.0"), "{}", agent.name);
    }
    Ok(())
}

#[test]
fn a_rollback_leaves_alone_an_agent_that_moved_on_to_a_newer_release() -> Result<()> {
    let mut lab = Lab::start()?;
    let key = lab.trusted_key()?;
    let agents = lab.agents(2)?;
    for version in ["1.0.0", "2.0.0", "2.1.0"] {
        lab.publish(&key, "hello", version)?;
    }
    let v1 = lab.client.create_rollout(&request("1.0.0", "100%"))?;
    wait_phase(&lab, v1.id, "completed")?;
    let v2 = lab.client.create_rollout(&request("2.0.0", "100%"))?;
    wait_phase(&lab, v2.id, "completed")?;
    // One agent gets the fix release before anyone rolls 2.0.0 back.
    let only_first = Target::Agents(vec![agents[0].name.clone()]);
    let fix = lab.client.create_rollout(&RolloutRequest { target: only_first, ..request("2.1.0", "100%") })?;
    wait_phase(&lab, fix.id, "completed")?;
    lab.allow_rollback(&key, "hello", "1.0.0", "2.0.0")?;

    let rollback = lab.client.rollback(v2.id, &RollbackRequest::default())?;

    assert_eq!(rollback.rollout.targeted, 1, "only the agent still on 2.0.0 goes back");
    let skipped: Vec<(&str, &str)> =
        rollback.skipped.iter().map(|s| (s.hostname.as_str(), s.reason.as_str())).collect();
    assert_eq!(skipped, [(agents[0].name.as_str(), "it runs 2.1.0 now, not 2.0.0; it moved on after this rollout")]);
    wait_phase(&lab, rollback.rollout.id, "completed")?;
    assert_eq!(agents[0].active_version("hello").as_deref(), Some("2.1.0"), "the fix stays");
    assert_eq!(agents[1].active_version("hello").as_deref(), Some("1.0.0"));
    Ok(())
}

#[test]
fn tag_targets_are_dynamic_and_take_in_agents_tagged_later() -> Result<()> {
    let mut lab = Lab::start()?;
    let key = lab.trusted_key()?;
    let agents = lab.agents(3)?;
    lab.publish(&key, "hello", "1.0.0")?;
    let tag = |agent: &str, tags: &[&str]| {
        let add = tags.iter().map(|t| t.to_string()).collect();
        lab.client.change_tags(agent, &TagRequest { add, remove: vec![] })
    };
    assert_eq!(tag("agent-01", &["pilot", "lab"])?.tags, ["lab", "pilot"]);
    let pilot = Target::Tags(vec!["pilot".into()]);

    let created =
        lab.client.create_rollout(&RolloutRequest { target: pilot, manual: true, ..request("1.0.0", "1,100%") })?;
    assert_eq!(created.targeted, 1);
    wait_stage(&lab, created.id, "awaiting_approval")?;
    tag("agent-02", &["pilot"])?;
    assert_eq!(lab.client.rollout(created.id)?.targeted, 2, "a newly tagged agent joins");
    lab.client.rollout_command(created.id, "approve")?;
    wait_phase(&lab, created.id, "completed")?;

    let versions: Vec<Option<String>> = agents.iter().map(|a| a.active_version("hello")).collect();
    assert_eq!(versions, [Some("1.0.0".into()), Some("1.0.0".into()), None]);
    let untagged = lab.client.change_tags("agent-01", &TagRequest { add: vec![], remove: vec!["pilot".into()] })?;
    assert_eq!(untagged.tags, ["lab"]);
    Ok(())
}

#[test]
fn filter_targets_match_inventory_and_take_in_agents_that_enroll_later() -> Result<()> {
    let mut lab = Lab::start()?;
    let key = lab.trusted_key()?;
    let _agents = lab.agents(2)?; // dropping them stops them
    lab.publish(&key, "hello", "1.0.0")?;
    let filter = flotte_controller::ctl::rollout::target("os=linux,arch=*,hostname=agent-0*");

    let created =
        lab.client.create_rollout(&RolloutRequest { target: filter, manual: true, ..request("1.0.0", "1,100%") })?;
    assert_eq!(created.targeted, 2);
    wait_stage(&lab, created.id, "awaiting_approval")?;
    let late = lab.agents(1)?.pop().expect("one agent");
    wait_for("the late agent to join the rollout", DEADLINE, || {
        Ok((lab.client.rollout(created.id)?.targeted == 3).then_some(()))
    })?;
    lab.client.rollout_command(created.id, "approve")?;
    wait_phase(&lab, created.id, "completed")?;
    assert_eq!(late.active_version("hello").as_deref(), Some("1.0.0"));
    Ok(())
}

#[test]
fn unknown_targets_are_refused_with_the_reason() -> Result<()> {
    let mut lab = Lab::start()?;
    let key = lab.trusted_key()?;
    lab.agents(1)?;
    lab.publish(&key, "hello", "1.0.0")?;
    let table: &[(&str, u16, &str)] = &[
        ("tag:nobody", 400, "no agent is tagged \"nobody\""),
        ("color=red", 400, "unknown filter field \"color\""),
        ("hostname=ws-*", 422, "no enrolled agents"),
    ];
    for (to, status, message) in table {
        let target = flotte_controller::ctl::rollout::target(to);
        let err = lab.client.create_rollout(&RolloutRequest { target, ..request("1.0.0", "100%") }).unwrap_err();
        assert_eq!(err.status(), Some(*status), "{to}: {err}");
        assert!(err.to_string().contains(message), "{to}: {err}");
    }
    let bad_tag = lab.client.change_tags("agent-01", &TagRequest { add: vec!["Not OK".into()], remove: vec![] });
    assert_eq!(bad_tag.unwrap_err().status(), Some(400));
    assert!(lab.client.rollouts()?.is_empty());
    Ok(())
}

#[test]
fn no_wave_starts_outside_the_maintenance_window() -> Result<()> {
    let mut lab = Lab::start()?;
    let key = lab.trusted_key()?;
    let agents = lab.agents(2)?;
    lab.publish(&key, "hello", "1.0.0")?;
    lab.publish(&key, "world", "1.0.0")?;
    // A daily window that opens two hours from now (UTC), and one always open.
    let now_minutes = (now().as_unix_millis() / 60_000 % 1440) as u32;
    let hm = |m: u32| format!("{:02}:{:02}", m % 1440 / 60, m % 60);
    let closed = format!("daily {}-{} +00:00", hm(now_minutes + 120), hm(now_minutes + 180));

    let waiting = lab.client.create_rollout(&RolloutRequest { window: Some(closed), ..request("1.0.0", "100%") })?;
    let open =
        RolloutRequest { name: "world".into(), window: Some("daily 00:00-24:00".into()), ..request("1.0.0", "100%") };
    let open = lab.client.create_rollout(&open)?;
    wait_phase(&lab, open.id, "completed")?;

    let waiting = lab.client.rollout(waiting.id)?;
    assert_eq!(waiting.stage.as_deref(), Some("outside_window"));
    let opens = waiting.window_opens.expect("when the window opens");
    assert!(opens > now(), "{opens}");
    assert_eq!(wave_sizes(&waiting), [0], "nobody is assigned outside the window");
    assert!(agents.iter().all(|a| a.active_version("hello").is_none()));
    assert!(agents.iter().all(|a| a.active_version("world").as_deref() == Some("1.0.0")));

    let never = RolloutRequest { window: Some("sat 06:00-06:00".into()), ..request("1.0.0", "100%") };
    let err = lab.client.create_rollout(&never).unwrap_err();
    assert_eq!(err.status(), Some(400));
    assert!(err.to_string().contains("never opens"), "{err}");
    Ok(())
}

#[test]
fn a_pilot_group_gets_the_release_first_and_everyone_else_in_the_next_wave() -> Result<()> {
    let mut lab = Lab::start()?;
    let key = lab.trusted_key()?;
    let agents = lab.agents(3)?;
    lab.publish(&key, "hello", "1.0.0")?;
    // The pilot is the agent that cohort order alone would assign last (in
    // the lab's first rollout, id 1): only its group can send it first.
    let views = lab.client.agents()?;
    let id_of = |name: &str| views.iter().find(|v| v.hostname == name).map(|v| v.id.clone()).expect("enrolled");
    let pilot = agents.iter().max_by_key(|a| cohort_key(1, &id_of(&a.name))).expect("three agents");
    lab.client.change_tags(&pilot.name, &TagRequest { add: vec!["pilot".into()], remove: vec![] })?;

    let created = lab.client.create_rollout(&RolloutRequest { manual: true, ..request("1.0.0", "tag:pilot,100%") })?;
    assert_eq!(created.id, 1, "cohort order was computed for rollout 1");
    let first = wait_stage(&lab, created.id, "awaiting_approval")?;

    let sizes: Vec<&str> = first.waves.iter().map(|w| w.size.as_str()).collect();
    assert_eq!(sizes, ["tag:pilot", "100%"]);
    assert_eq!(wave_sizes(&first), [1, 0]);
    assert_eq!(first.waves[0].succeeded, 1);
    let assigned: Vec<String> = lab.client.assignments()?.into_iter().map(|a| a.hostname).collect();
    assert_eq!(assigned, [pilot.name.as_str()], "wave 0 is the pilot alone");
    for agent in &agents {
        let expected = (agent.name == pilot.name).then_some("1.0.0");
        assert_eq!(agent.active_version("hello").as_deref(), expected, "{} before wave 1", agent.name);
    }

    lab.client.rollout_command(created.id, "approve")?;
    let done = wait_phase(&lab, created.id, "completed")?;
    assert_eq!(wave_sizes(&done), [1, 2], "everyone else in wave 1");
    for agent in &agents {
        assert_eq!(agent.active_version("hello").as_deref(), Some("1.0.0"), "{}", agent.name);
    }
    Ok(())
}

#[test]
fn a_rollback_of_a_group_rollout_sends_the_group_back_first() -> Result<()> {
    let mut lab = Lab::start()?;
    let key = lab.trusted_key()?;
    let agents = lab.agents(2)?;
    lab.publish(&key, "hello", "1.0.0")?;
    lab.publish(&key, "hello", "2.0.0")?;
    let v1 = lab.client.create_rollout(&request("1.0.0", "100%"))?;
    wait_phase(&lab, v1.id, "completed")?;
    lab.client.change_tags(&agents[1].name, &TagRequest { add: vec!["pilot".into()], remove: vec![] })?;
    let v2 = lab.client.create_rollout(&request("2.0.0", "tag:pilot,100%"))?;
    wait_phase(&lab, v2.id, "completed")?;

    lab.allow_rollback(&key, "hello", "1.0.0", "2.0.0")?;
    // The original's waves, the pilot read from its tags now.
    let rollback = lab.client.rollback(v2.id, &RollbackRequest { manual: Some(true), ..Default::default() })?;
    let first = wait_stage(&lab, rollback.rollout.id, "awaiting_approval")?;

    assert_eq!(wave_sizes(&first), [1, 0]);
    let versions: Vec<Option<String>> = agents.iter().map(|a| a.active_version("hello")).collect();
    assert_eq!(versions, [Some("2.0.0".into()), Some("1.0.0".into())], "only the pilot went back");
    lab.client.rollout_command(rollback.rollout.id, "approve")?;
    wait_phase(&lab, rollback.rollout.id, "completed")?;
    assert!(agents.iter().all(|a| a.active_version("hello").as_deref() == Some("1.0.0")));
    Ok(())
}
