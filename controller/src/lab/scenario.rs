//! The lab's rollout scenarios, run after every agent installed
//! `hello@1.0.0` and `hello@2.0.0` (with a health check) was published.
//!
//! - [`Scenario::Phased`]: `hello@2.0.0` goes out in waves (`1,25%,100%`
//!   by default) with a short soak. The unhealthy agents are picked from the
//!   *last* wave's cohort (membership is a pure function of the rollout id
//!   and agent id, so the lab can compute it): their health check fails,
//!   they roll back by themselves and report `rolled_back`, and the failure
//!   limit tolerates exactly them. Expected: the rollout completes.
//! - [`Scenario::Halt`]: every agent of the first wave after the canary is
//!   unhealthy and the failure limit is 0. Expected: the rollout halts
//!   before the last wave. The admin signs that 1.0.0 may replace 2.0.0
//!   (`package allow-rollback`; agents refuse a downgrade without it), then
//!   `rollout rollback` sends the agents that committed 2.0.0 back to
//!   1.0.0, and every agent ends on 1.0.0.
//!
//! Both print the `rollout watch` display while the rollout runs, then a
//! table of every agent as reported and as found on disk.

use super::harness::{self, AgentProcess};
use crate::client::AdminClient;
use crate::ctl::{output, rollout, sample, trust};
use crate::rollout::cohort::cohort_key;
use crate::rollout::spec::{RolloutPolicy, parse_waves};
use anyhow::{Context, Result, bail};
use flotte_protocol::api::{AssignmentView, RollbackRequest, RolloutRequest, RolloutView, Target};
use flotte_protocol::tuf;
use flotte_protocol::{AgentId, SecretKey};
use std::time::Duration;

/// Which rollout story the lab tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// Waves with a short soak; the unhealthy agents roll back, the rollout completes.
    Phased,
    /// Failures cross the limit: the rollout halts and is rolled back.
    Halt,
}

/// What a scenario runs against.
pub struct Stage<'a> {
    pub client: &'a AdminClient,
    pub agents: &'a [AgentProcess],
    /// The targets key, held by the admin (the controller never has it).
    pub targets_key: &'a SecretKey,
    pub waves: &'a str,
    pub soak: Duration,
    pub unhealthy: usize,
    pub timeout: Duration,
}

impl Stage<'_> {
    fn request(&self, success_threshold: f64, max_failures: String) -> RolloutRequest {
        RolloutRequest {
            waves: self.waves.into(),
            success_threshold,
            max_failures,
            soak_seconds: self.soak.as_secs(),
            silence_seconds: self.timeout.as_secs().max(1),
            ..RolloutRequest::new("hello", "2.0.0", Target::All)
        }
    }

    /// Cumulative wave reach for this fleet.
    fn reach(&self) -> Result<Vec<usize>> {
        let waves = parse_waves(self.waves).map_err(|e| anyhow::anyhow!("--waves: {e}"))?;
        let policy = RolloutPolicy { waves, ..RolloutPolicy::big_bang() };
        policy.validate().map_err(|e| anyhow::anyhow!("--waves: {e}"))?;
        Ok(policy.cumulative_reach(self.agents.len() as u64).into_iter().map(|r| r as usize).collect())
    }

    /// The agents in the order rollout `id` assigns them.
    fn cohort_order(&self, id: u64) -> Result<Vec<&AgentProcess>> {
        let known = self.client.agents()?;
        let id_of = |a: &AgentProcess| -> Result<AgentId> {
            Ok(known.iter().find(|v| v.hostname == a.name).with_context(|| format!("{} unknown", a.name))?.id.clone())
        };
        let mut keyed = Vec::new();
        for a in self.agents {
            keyed.push((cohort_key(id, &id_of(a)?), a));
        }
        keyed.sort_by_key(|(k, _)| *k);
        Ok(keyed.into_iter().map(|(_, a)| a).collect())
    }

    /// The `rollout watch` display until rollout `id` completes, halts or is aborted.
    fn watch(&self, id: u64) -> Result<RolloutView> {
        rollout::watch_until(self.client, id, Some(self.timeout))?;
        Ok(self.client.rollout(id)?)
    }

    fn assignments(&self, id: u64) -> Result<Vec<AssignmentView>> {
        Ok(self.client.assignments()?.into_iter().filter(|a| a.deployment == id).collect())
    }
}

fn break_health(agents: &[&AgentProcess]) -> Result<()> {
    for agent in agents {
        std::fs::write(agent.root.join(sample::UNHEALTHY_MARKER), "the lab broke this host on purpose\n")?;
    }
    Ok(())
}

fn names(agents: &[&AgentProcess]) -> String {
    if agents.is_empty() {
        "none".into()
    } else {
        agents.iter().map(|a| a.name.as_str()).collect::<Vec<_>>().join(", ")
    }
}

/// Runs `scenario`; `Ok(true)` if everything ended as expected.
pub fn run(scenario: Scenario, stage: &Stage<'_>) -> Result<bool> {
    match scenario {
        Scenario::Phased => phased(stage),
        Scenario::Halt => halt(stage),
    }
}

fn phased(stage: &Stage<'_>) -> Result<bool> {
    let reach = stage.reach()?;
    let n = stage.agents.len();
    let last_wave = n - reach.iter().rev().nth(1).copied().unwrap_or(0);
    let u = stage.unhealthy;
    if u > 0 && u >= last_wave {
        bail!(
            "--unhealthy {u} leaves no healthy agent in the last wave ({last_wave} agents); use fewer or more agents"
        );
    }
    // The last wave must pass with its unhealthy agents failed.
    let success = if u == 0 { 100.0 } else { ((last_wave - u) * 100 / last_wave) as f64 };
    let created = stage.client.create_rollout(&stage.request(success, u.to_string()))?;
    let order = stage.cohort_order(created.id)?;
    let unhealthy: Vec<&AgentProcess> = order.iter().rev().take(u).copied().collect();
    break_health(&unhealthy)?;
    println!(
        "\nrollout {} of hello@2.0.0: waves {}, soak {}, a wave passes at {success}% succeeded, halts above {u} failures",
        created.id,
        stage.waves,
        output::duration(stage.soak)
    );
    println!("unhealthy (in the last wave, so the canary is clean): {}\n", names(&unhealthy));
    let done = stage.watch(created.id)?;

    let assignments = stage.assignments(created.id)?;
    let mut rows = Vec::new();
    let mut ok = done.phase == "completed";
    for agent in stage.agents {
        let bad = unhealthy.iter().any(|a| a.name == agent.name);
        let (state, version) = if bad { ("rolled_back", "1.0.0") } else { ("succeeded", "2.0.0") };
        let row = Row::of(agent, assignments.iter().find(|a| a.hostname == agent.name), state, version);
        ok &= row.ok;
        rows.push(row.cells());
    }
    report(&rows, &done, "completed", ok);
    Ok(ok)
}

fn halt(stage: &Stage<'_>) -> Result<bool> {
    let reach = stage.reach()?;
    let Some(second) = reach.iter().position(|&r| r > reach[0]) else {
        bail!("the halt scenario needs a second wave with agents in it; use more agents");
    };
    let created = stage.client.create_rollout(&stage.request(100.0, "0".into()))?;
    let order = stage.cohort_order(created.id)?;
    let unhealthy: Vec<&AgentProcess> = order[reach[0]..reach[second]].to_vec();
    break_health(&unhealthy)?;
    println!(
        "\nrollout {} of hello@2.0.0: waves {}, soak {}, halts at the first failure",
        created.id,
        stage.waves,
        output::duration(stage.soak)
    );
    println!("unhealthy (wave {}): {}\n", second + 1, names(&unhealthy));
    let halted = stage.watch(created.id)?;
    let mut ok = halted.phase == "halted";
    if !ok {
        println!("UNEXPECTED: rollout {} is {}, not halted", created.id, halted.phase);
        return Ok(false);
    }
    // Let the agents already in flight finish (the unhealthy ones roll back
    // by themselves), so the rollback plan sees final states.
    harness::wait_deployment_done(stage.client, created.id, stage.timeout)?;
    println!("\n$ flottectl package allow-rollback hello 1.0.0 --up-to 2.0.0 --key targets.key");
    let signed = trust::authorise_rollback(stage.client, stage.targets_key, tuf::TARGETS, "hello", "1.0.0", "2.0.0")?;
    println!("targets v{}: hello@1.0.0 may now replace versions up to 2.0.0", signed.version);
    println!("\n$ flottectl rollout rollback {}", created.id);
    let rollback = stage.client.rollback(created.id, &RollbackRequest::default())?;
    print!("{}", rollout::rollback_details(&rollback));
    let done = stage.watch(rollback.rollout.id)?;

    let first = stage.assignments(created.id)?;
    let second_run = stage.assignments(rollback.rollout.id)?;
    let mut rows = Vec::new();
    ok &= done.phase == "completed";
    for agent in stage.agents {
        let bad = unhealthy.iter().any(|a| a.name == agent.name);
        let v2 = first.iter().find(|a| a.hostname == agent.name);
        let back = second_run.iter().find(|a| a.hostname == agent.name);
        // Who committed 2.0.0 is rolled back by the fleet rollback; the
        // unhealthy rolled back by themselves; the rest never got 2.0.0.
        let row = match (v2, bad) {
            (Some(_), true) => Row::of(agent, v2, "rolled_back", "1.0.0"),
            (Some(_), false) => Row::of(agent, back, "succeeded", "1.0.0"),
            (None, _) => Row::of(agent, None, "-", "1.0.0"),
        };
        ok &= row.ok;
        rows.push(row.cells());
    }
    report(&rows, &done, "completed", ok);
    Ok(ok)
}

/// One agent's line of the final report.
struct Row {
    agent: String,
    release: String,
    state: String,
    reported: String,
    on_disk: String,
    expected: String,
    ok: bool,
    detail: String,
}

impl Row {
    /// `assignment` is the one that decides the agent's fate (`None`: it
    /// was never assigned, and `state` must be `-`).
    fn of(agent: &AgentProcess, assignment: Option<&AssignmentView>, state: &str, version: &str) -> Row {
        let found = assignment.and_then(|a| a.state.as_ref()).map_or("-".to_string(), |s| s.name().to_string());
        let reported = assignment.and_then(|a| a.active_version.clone()).unwrap_or_else(|| "-".into());
        let on_disk = agent.active_version("hello").unwrap_or_else(|| "-".into());
        let detail = assignment
            .and_then(|a| a.state.as_ref())
            .and_then(|s| s.failure())
            .map_or(String::new(), |(_, m)| m.lines().next().unwrap_or_default().chars().take(60).collect());
        let reported_ok = assignment.is_none() || reported == version;
        let ok = found == state && reported_ok && on_disk == version;
        Row {
            agent: agent.name.clone(),
            release: assignment.map_or("-".into(), |a| format!("{}@{}", a.name, a.version)),
            state: found,
            reported,
            on_disk,
            expected: if state == "-" { format!("stays on {version}") } else { format!("{state} {version}") },
            ok,
            detail,
        }
    }

    fn cells(self) -> Vec<String> {
        let verdict = if self.ok { "ok" } else { "UNEXPECTED" };
        vec![
            self.agent,
            self.release,
            self.state,
            self.reported,
            self.on_disk,
            self.expected,
            verdict.into(),
            self.detail,
        ]
    }
}

fn report(rows: &[Vec<String>], last: &RolloutView, expected_phase: &str, ok: bool) {
    println!();
    let headers = ["AGENT", "ASSIGNMENT", "STATE", "REPORTED ACTIVE", "ON DISK", "EXPECTED", "", "DETAIL"];
    print!("{}", output::table(&headers, rows));
    let as_expected = rows.iter().filter(|r| r[6] == "ok").count();
    println!(
        "rollout {} is {} (expected {expected_phase}); {as_expected}/{} agents as expected{}",
        last.id,
        last.phase,
        rows.len(),
        if ok { "" } else { " — see UNEXPECTED above" }
    );
}
