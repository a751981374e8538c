//! The lab: Flotte's main job on one machine. It starts a real controller
//! and N real agents as separate processes on loopback, each agent with its
//! own install root in a temporary directory (no root needed), builds and
//! signs a sample package, deploys it to every agent, prints progress and
//! each agent's final state, and succeeds only if every agent installed it.

pub mod harness;

use crate::ctl::{keys, output, package, sample};
use anyhow::{Context, Result};
use flotte_protocol::api::{DeployRequest, Target};
use harness::{AgentProcess, Binaries, ControllerProcess};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// What the lab should do.
#[derive(Debug, Clone)]
pub struct LabOptions {
    pub agents: usize,
    /// Keep the temporary directory (logs, data) after the run.
    pub keep: bool,
    /// How long the deployment may take before the lab gives up.
    pub timeout: Duration,
}

/// Runs the lab; `Ok(true)` if every agent reported success and has the new
/// version active on disk.
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

    let (key, _) = keys::generate(&dir.join("signing.key"))?;
    client.add_key(&key.public_key())?;
    println!("signing key {} trusted", key.public_key().key_id());

    let mut agents = Vec::with_capacity(options.agents);
    for i in 1..=options.agents {
        agents.push(AgentProcess::enroll_and_start(&bins, &controller, &dir, &format!("lab-{i:02}"))?);
    }
    harness::wait_online(&client, options.agents, Duration::from_secs(30))?;
    println!("{} agents enrolled and online", options.agents);

    let path = sample::build(&dir, "hello", "1.0.0", 2 << 20)?;
    let release = package::publish(&client, &key, &path, "hello", "1.0.0")?;
    println!("published hello@1.0.0 ({}, sha256 {})", output::size(release.size), release.sha256);

    let deploy_started = Instant::now();
    let deployment =
        client.deploy(&DeployRequest { name: "hello".into(), version: "1.0.0".into(), target: Target::All })?;
    println!("deployment {} to {} agents", deployment.id, deployment.assignments);

    let mut last = String::new();
    let assignments = harness::wait_for("the deployment to finish", options.timeout, || {
        let mine: Vec<_> = client.assignments()?.into_iter().filter(|a| a.deployment == deployment.id).collect();
        let mut counts = BTreeMap::new();
        for a in &mine {
            *counts.entry(a.state.as_ref().map_or("assigned", |s| s.name())).or_insert(0) += 1;
        }
        let line = counts.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ");
        if line != last {
            println!("  [{:>7}] {line}", output::duration(deploy_started.elapsed()));
            last = line;
        }
        Ok(mine.iter().all(|a| a.state.as_ref().is_some_and(|s| s.is_terminal())).then_some(mine))
    })?;

    let rows: Vec<Vec<String>> = assignments
        .iter()
        .map(|a| {
            let on_disk = agents.iter().find(|p| p.name == a.hostname).and_then(|p| p.active_version("hello"));
            vec![
                a.hostname.clone(),
                a.state.as_ref().map_or("assigned".into(), |s| s.name().to_string()),
                a.active_version.clone().unwrap_or_else(|| "-".into()),
                on_disk.unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    print!("{}", output::table(&["AGENT", "STATE", "REPORTED ACTIVE", "ON DISK"], &rows));
    let ok = rows.len() == options.agents && rows.iter().all(|r| r[1] == "succeeded" && r[3] == "1.0.0");
    println!(
        "{}: {}/{} agents run hello@1.0.0; deployment took {}, lab {}",
        if ok { "SUCCESS" } else { "FAILURE" },
        rows.iter().filter(|r| r[1] == "succeeded" && r[3] == "1.0.0").count(),
        options.agents,
        output::duration(deploy_started.elapsed()),
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
