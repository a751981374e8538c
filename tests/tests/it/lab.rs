//! The README's lab, both scenarios, run as `flottectl lab` runs them: a
//! real controller and real agents, a phased rollout of a release whose
//! health check fails on some agents, and a verdict on every agent.

use anyhow::Result;
use flotte_controller::lab::{self, LabOptions, Scenario};
use std::time::Duration;

fn options(agents: usize, scenario: Scenario) -> LabOptions {
    LabOptions {
        agents,
        unhealthy: 1,
        scenario,
        waves: "1,25%,100%".into(),
        soak: Duration::from_secs(1),
        keep: false,
        timeout: Duration::from_secs(90),
    }
}

#[test]
fn the_phased_lab_completes_while_its_unhealthy_agent_rolls_back() -> Result<()> {
    assert!(lab::run(&options(6, Scenario::Phased))?, "the lab's verdict (see its output)");
    Ok(())
}

#[test]
fn the_halt_lab_halts_and_the_fleet_rollback_brings_everyone_back() -> Result<()> {
    assert!(lab::run(&options(5, Scenario::Halt))?, "the lab's verdict (see its output)");
    Ok(())
}
