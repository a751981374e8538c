//! Slow retrieval (threats table, `slow_retrieval`): a link that only
//! drips data must not hold a job forever. The agent gives the download up
//! once it averages less than `download_min_rate` over its window, retries
//! later, and completes from its part file once the link recovers.

use anyhow::{Context as _, Result};
use flotte_protocol::messages::InstallState;
use flotte_tests::relay::{Mode, Relay};
use flotte_tests::{AgentProcess, DEADLINE, Lab, active_content, wait_for};
use std::io::Read as _;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// What `flotte status --json` says about the job of `name`, if it has a message.
fn job_message(lab: &Lab, agent: &AgentProcess, name: &str) -> Result<Option<String>> {
    let exe = lab.bins.agent.with_file_name("flotte");
    let output = Command::new(exe)
        .args(["status", "--json", "--socket"])
        .arg(&agent.socket)
        .env_remove("FLOTTE_SOCKET")
        .output()
        .context("cannot run flotte")?;
    anyhow::ensure!(output.status.success(), "flotte status: {}", String::from_utf8_lossy(&output.stderr));
    let status: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    let jobs = status["jobs"].as_array().cloned().unwrap_or_default();
    let job = jobs.into_iter().find(|j| j["name"] == name);
    Ok(job.and_then(|j| j["message"].as_str().map(str::to_string)))
}

/// The bytes of `entry` in the tar.gz at `package`.
fn packaged(package: &Path, entry: &str) -> Result<Vec<u8>> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(std::fs::File::open(package)?));
    for file in archive.entries()? {
        let mut file = file?;
        if file.path()?.as_ref() == Path::new(entry) {
            let mut bytes = Vec::new();
            file.read_to_end(&mut bytes)?;
            return Ok(bytes);
        }
    }
    anyhow::bail!("{} has no {entry}", package.display())
}

#[test]
fn slow_retrieval_is_given_up_then_retried_and_completes_when_the_link_recovers() -> Result<()> {
    let mut lab = Lab::start()?;
    let key = lab.trusted_key()?;
    let relay = Relay::start(lab.controller.quic_addr)?;
    // A small window so the test is quick; the defaults are 1 KiB/s over 60 s.
    let config = "download_min_rate = \"64 KiB/s\"\ndownload_min_rate_window = \"2s\"\n";
    let agent = lab.agent_through(&relay, |_| config.into())?;
    // 4 MiB: thousands of datagrams, minutes at the drip's pace.
    let package = lab.publish_padded(&key, "hello", "1.0.0", 4 << 20)?;

    // At most one datagram every 50 ms toward the agent: under 30 KB/s,
    // well below 64 KiB/s, while the connection itself stays up.
    relay.set_mode(Mode::Drip { interval: Duration::from_millis(50) });
    let started = Instant::now();
    let deployment = lab.deploy_all("hello", "1.0.0")?;
    lab.wait_report(&agent, deployment, "downloading")?;
    let downloading_at = started.elapsed();
    let message = wait_for("the download to be given up as a slow retrieval", DEADLINE, || {
        Ok(job_message(&lab, &agent, "hello")?.filter(|m| m.contains("slow retrieval")))
    })?;
    let given_up_at = started.elapsed();
    eprintln!("downloading reported after {downloading_at:?}; given up as slow after {given_up_at:?}: {message}");
    assert!(message.contains("over the last 2s"), "names the window: {message}");
    assert!(message.contains("below the minimum of 64 KiB/s"), "names the minimum: {message}");
    assert!(message.contains(" B/s over") || message.contains(" KiB/s over"), "names the rate seen: {message}");
    assert!(message.contains("the next one is due at"), "says when it retries: {message}");
    let assignment = lab.assignment(deployment, &agent)?;
    assert!(
        matches!(assignment.state, Some(InstallState::Downloading { .. })),
        "the job is not failed, it waits to retry: {:?}",
        assignment.state
    );

    relay.set_mode(Mode::Pass);
    let done = lab.wait_done(deployment)?;
    assert_eq!(done[0].state, Some(InstallState::Succeeded), "{:?}", done[0].state);
    assert_eq!(active_content(&agent, "hello").as_deref(), Some("1.0.0"));
    let installed = std::fs::read(agent.root.join("packages/hello/current/share/padding.bin"))?;
    assert!(installed == packaged(&package, "share/padding.bin")?, "the installed bytes are the published ones");

    let offsets: Vec<u64> = lab
        .reports(&agent)?
        .iter()
        .filter_map(|r| match r.state {
            InstallState::Downloading { offset, .. } => Some(offset),
            _ => None,
        })
        .collect();
    assert_eq!(offsets.first(), Some(&0), "{offsets:?}");
    assert!(offsets.iter().skip(1).any(|o| *o > 0), "the retry resumed from the part file: {offsets:?}");
    assert!(relay.counters().dropped.load(std::sync::atomic::Ordering::Relaxed) > 0, "the relay did throttle the link");
    eprintln!("completed {:?} after the start", started.elapsed());
    Ok(())
}
