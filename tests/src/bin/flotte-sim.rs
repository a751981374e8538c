//! `flotte-sim`: a simulated fleet against a running controller.
//!
//! ```text
//! flotte-sim --agents N --trust-root root.json [--admin-config flottectl.toml] [--state DIR]
//!            [--installer null|archive] [--spread-secs S]
//! ```
//!
//! Enrolls N agents through the controller's real enrollment path (one
//! token each, from the admin API the `flottectl` profile names), then runs
//! them in this process (`flotte_tests::sim`) until interrupted: each with
//! its own certificate and QUIC connection, verifying every assignment's
//! release through TUF (pinned `--trust-root`, as `flotte-agent enroll
//! --trust-root` pins it) and its content before its installer sees it, and reporting
//! through the protocol. Prints a status line every 5 s. The benchmarks
//! (`flotte-bench fanout|scale`) drive the same simulator.

use anyhow::{Context, Result, bail};
use flotte_controller::ctl::profile::Profile;
use flotte_tests::sim::{self, Fleet, Installer};
use std::net::ToSocketAddrs as _;
use std::path::PathBuf;
use std::time::Duration;

const USAGE: &str = "flotte-sim --agents N --trust-root root.json [--admin-config flottectl.toml] [--state DIR] \
[--installer null|archive] [--spread-secs S]";

fn main() -> Result<()> {
    let mut agents = 0usize;
    let mut admin = Profile::default_path();
    let mut state: Option<PathBuf> = None;
    let mut trust_root: Option<PathBuf> = None;
    let mut archive = false;
    let mut spread = Duration::ZERO;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--agents" => agents = value()?.parse().context("--agents needs a number")?,
            "--admin-config" => admin = value()?.into(),
            "--state" => state = Some(value()?.into()),
            "--trust-root" => trust_root = Some(value()?.into()),
            "--installer" => {
                archive = match value()?.as_str() {
                    "null" => false,
                    "archive" => true,
                    other => bail!("--installer is null or archive, not {other}"),
                }
            }
            "--spread-secs" => spread = Duration::from_secs(value()?.parse().context("--spread-secs needs a number")?),
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => bail!("unknown argument {other}; usage: {USAGE}"),
        }
    }
    if agents == 0 {
        bail!("--agents must be at least 1; usage: {USAGE}");
    }
    let Some(trust_root) = trust_root else {
        bail!("--trust-root is required: the root.json `flottectl trust init` wrote; usage: {USAGE}");
    };
    let profile = Profile::load(&admin).with_context(|| format!("reading {}", admin.display()))?;
    let client = profile.client()?;
    let api = profile
        .url
        .trim_start_matches("https://")
        .trim_end_matches('/')
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {}", profile.url))?
        .next()
        .context("the API address resolves to nothing")?;
    let keep = state.is_some();
    let dir = match state {
        Some(d) => tempfile::Builder::new().prefix("flotte-sim-").disable_cleanup(keep).tempdir_in(d)?,
        None => tempfile::Builder::new().prefix("flotte-sim-").tempdir()?,
    };
    eprintln!("enrolling {agents} agents…");
    let identities = sim::enroll_fleet(
        &client,
        sim::EnrollWith { api, ca: &profile.ca, trust_root: &trust_root },
        &dir.path().join("state"),
        "sim",
        agents,
        8,
    )?;
    let first = identities.first().context("no agent enrolled")?;
    let controller = (first.server_name.as_str(), first.quic_port)
        .to_socket_addrs()?
        .next()
        .context("the controller's QUIC address resolves to nothing")?;
    let installer = if archive { Installer::Archive { root: dir.path().join("roots") } } else { Installer::Null };
    let options = sim::Options { controller, installer, start_spread: spread, act_on_assignments: true };
    let fleet = Fleet::start(identities, options, 2)?;
    loop {
        std::thread::sleep(Duration::from_secs(5));
        let times = fleet.observer.times();
        let finished = times.iter().filter(|t| t.finished.is_some()).count();
        let failed = times.iter().filter(|t| t.finished.is_some_and(|(_, ok)| !ok)).count();
        println!(
            "connected {}/{agents}, latest assignment finished on {finished} ({failed} failed), {} MiB verified",
            fleet.observer.connected(),
            fleet.observer.bytes.load(std::sync::atomic::Ordering::Relaxed) >> 20
        );
    }
}
