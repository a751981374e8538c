//! The lab: Flotte's main job on one machine. It starts a real controller
//! and N real agents as separate processes on loopback, each agent with its
//! own install root in a temporary directory (no root needed), and:
//!
//! 1. deploys `hello@1.0.0` to every agent (big-bang): every agent must
//!    install it;
//! 2. publishes `hello@2.0.0`, whose signed health check (`bin/hello
//!    --check`, on a short probation) fails on the agents the lab marks
//!    unhealthy (a marker file in their install root, see `ctl::sample`),
//!    and rolls it out in waves as the chosen [`Scenario`] says: `phased`
//!    (the unhealthy agents roll back by themselves, the rollout completes)
//!    or `halt` (failures cross the limit, the rollout halts and is rolled
//!    back with `rollout rollback`).
//!
//! It shows the `rollout watch` display while the rollout runs, then each
//! agent's final state (as reported and as found on disk), and succeeds
//! only if every agent ends exactly as expected.

pub mod harness;
pub mod scenario;

use crate::client::AdminClient;
use crate::ctl::package::ReleaseSpec;
use crate::ctl::{keys, output, package, sample, trust};
use anyhow::{Context, Result};
use flotte_protocol::api::{AssignmentView, DeployRequest, Target};
use flotte_protocol::{HealthCheck, HealthSpec};
use harness::{AgentProcess, Binaries, ControllerProcess};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

pub use scenario::Scenario;

/// What the lab should do.
#[derive(Debug, Clone)]
pub struct LabOptions {
    pub agents: usize,
    /// How many agents fail the health check of 2.0.0 (phased scenario).
    pub unhealthy: usize,
    pub scenario: Scenario,
    /// Cumulative waves of the 2.0.0 rollout.
    pub waves: String,
    /// How long each passed wave soaks.
    pub soak: Duration,
    /// Keep the temporary directory (logs, data) after the run.
    pub keep: bool,
    /// How long each deployment may take before the lab gives up.
    pub timeout: Duration,
}

/// How long 2.0.0 must stay healthy before it is committed.
const PROBATION_SECS: u32 = 2;

/// Runs the lab; `Ok(true)` if every agent ended as expected, on disk and in
/// its reports.
pub fn run(options: &LabOptions) -> Result<bool> {
    let started = Instant::now();
    let bins = Binaries::locate()?;
    let tmp =
        tempfile::Builder::new().prefix("flotte-lab-").tempdir().context("cannot create a temporary directory")?;
    let dir = tmp.path().to_path_buf();
    println!("lab directory: {}", dir.display());

    let controller = ControllerProcess::init_and_start(&bins, &dir, "")?;
    let client = controller.client()?;
    println!("controller: api https://{}  quic {}", controller.api_addr, controller.quic_addr);

    let trust = trust::init(&client, &dir.join("offline-keys"), 3, 2)?;
    let key = keys::load_secret(&trust.targets_key)?;
    println!("TUF root v1 (2 of 3 root keys) and targets key created; root.json sha256 {}", trust.root_sha256);

    let mut agents = Vec::with_capacity(options.agents);
    for i in 1..=options.agents {
        agents.push(AgentProcess::enroll_and_start(&bins, &controller, &dir, &format!("lab-{i:02}"))?);
    }
    harness::wait_online(&client, options.agents, Duration::from_secs(30))?;
    println!("{} agents enrolled and online", options.agents);

    // 1. Everyone installs 1.0.0.
    let v1 = sample::build(&dir, "hello", "1.0.0", 2 << 20)?;
    let release = package::publish(&client, &key, &v1, "hello", "1.0.0")?;
    println!("\npublished hello@1.0.0 ({}, sha256 {})", output::size(release.size), release.sha256);
    let expect_v1 = |_: &AgentProcess| Expected { state: "succeeded", version: "1.0.0" };
    let first = deploy(&client, &agents, "1.0.0", options.timeout, &expect_v1)?;

    // 2. 2.0.0 with a health check that fails where the lab breaks it.
    let spec = ReleaseSpec {
        health: Some(HealthSpec {
            check: HealthCheck::Command {
                argv: sample::HEALTH_COMMAND.split(' ').map(str::to_string).collect(),
                expect_exit: 0,
            },
            probation_secs: PROBATION_SECS,
            interval_secs: 1,
            timeout_secs: 10,
        }),
        ..ReleaseSpec::default()
    };
    let v2 = sample::build(&dir, "hello", "2.0.0", 2 << 20)?;
    let release = package::publish_with(&client, &key, &v2, "hello", "2.0.0", &spec)?;
    println!(
        "\npublished hello@2.0.0 ({}) with health check `{}` on {PROBATION_SECS}s probation",
        output::size(release.size),
        sample::HEALTH_COMMAND,
    );
    let stage = scenario::Stage {
        client: &client,
        agents: &agents,
        targets_key: &key,
        waves: &options.waves,
        soak: options.soak,
        unhealthy: options.unhealthy,
        timeout: options.timeout,
    };
    let second = scenario::run(options.scenario, &stage)?;

    let ok = first && second;
    println!(
        "{}: every agent ended as expected: {}; lab took {}",
        if ok { "SUCCESS" } else { "FAILURE" },
        if ok { "yes" } else { "no" },
        output::duration(started.elapsed()),
    );
    drop(agents);
    drop(controller);
    if options.keep || !ok {
        let kept = tmp.keep();
        println!("logs and data kept in {}", kept.display());
    }
    Ok(ok)
}

/// The state and version one agent must end a deployment in.
struct Expected {
    state: &'static str,
    version: &'static str,
}

/// Deploys `hello@version` to every agent, prints progress and a table,
/// and says whether each agent ended as `expect` says, in its report and
/// on disk.
fn deploy(
    client: &AdminClient,
    agents: &[AgentProcess],
    version: &str,
    timeout: Duration,
    expect: &dyn Fn(&AgentProcess) -> Expected,
) -> Result<bool> {
    let deploy_started = Instant::now();
    let deployment =
        client.deploy(&DeployRequest { name: "hello".into(), version: version.into(), target: Target::All })?;
    println!("deployment {} to {} agents", deployment.id, deployment.assignments);
    let assignments = watch(client, deployment.id, timeout, deploy_started)?;
    let mut all_ok = assignments.len() == agents.len();
    let mut rows = Vec::new();
    for agent in agents {
        let a = assignments.iter().find(|a| a.hostname == agent.name);
        let state = a.and_then(|a| a.state.as_ref()).map_or("assigned".to_string(), |s| s.name().to_string());
        let reported = a.and_then(|a| a.active_version.clone()).unwrap_or_else(|| "-".into());
        let on_disk = agent.active_version("hello").unwrap_or_else(|| "-".into());
        let detail = a
            .and_then(|a| a.state.as_ref())
            .and_then(|s| s.failure())
            .map_or(String::new(), |(_, m)| m.lines().next().unwrap_or_default().chars().take(70).collect());
        let want = expect(agent);
        let ok = state == want.state && reported == want.version && on_disk == want.version;
        all_ok &= ok;
        rows.push(vec![
            agent.name.clone(),
            state,
            reported,
            on_disk,
            format!("{} {}", want.state, want.version),
            if ok { "ok".into() } else { "UNEXPECTED".into() },
            detail,
        ]);
    }
    print!("{}", output::table(&["AGENT", "STATE", "REPORTED ACTIVE", "ON DISK", "EXPECTED", "", "DETAIL"], &rows));
    println!(
        "hello@{version}: {}/{} agents as expected; deployment took {}",
        rows.iter().filter(|r| r[5] == "ok").count(),
        agents.len(),
        output::duration(deploy_started.elapsed())
    );
    Ok(all_ok)
}

/// Prints a line whenever the counts per state change, until every
/// assignment of `deployment` is terminal.
fn watch(client: &AdminClient, deployment: u64, timeout: Duration, since: Instant) -> Result<Vec<AssignmentView>> {
    let mut last = String::new();
    harness::wait_for("the deployment to finish", timeout, || {
        let mine: Vec<_> = client.assignments()?.into_iter().filter(|a| a.deployment == deployment).collect();
        let mut counts = BTreeMap::new();
        for a in &mine {
            *counts.entry(a.state.as_ref().map_or("assigned", |s| s.name())).or_insert(0) += 1;
        }
        let line = counts.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ");
        if line != last {
            println!("  [{:>7}] {line}", output::duration(since.elapsed()));
            last = line;
        }
        let done = !mine.is_empty() && mine.iter().all(|a| a.state.as_ref().is_some_and(|s| s.is_terminal()));
        Ok(done.then_some(mine))
    })
}
