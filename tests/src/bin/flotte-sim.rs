//! `flotte-sim`: a simulated fleet against a running controller.
//!
//! ```text
//! flotte-sim --agents N --trust-root root.json [--admin-config flottectl.toml] [--state DIR]
//!            [--installer null|archive] [--spread-secs S]
//! ```
//!
//! (`flotte-sim --help` for each option and its default.)
//!
//! Enrolls N agents through the controller's real enrollment path (one
//! token each, from the admin API the `flottectl` profile names), then runs
//! them in this process (`flotte_tests::sim`) until interrupted: each with
//! its own certificate and QUIC connection, verifying every assignment's
//! release through TUF (pinned `--trust-root`, as `flotte-agent enroll
//! --trust-root` pins it) and its content before its installer sees it, and reporting
//! through the protocol. Prints a status line every 5 s. The benchmarks
//! (`flotte-bench fanout|scale`) drive the same simulator.

use anyhow::{Context, Result};
use clap::{Parser, ValueEnum};
use flotte_controller::ctl::profile::Profile;
use flotte_tests::sim::{self, Fleet, Installer};
use std::net::ToSocketAddrs as _;
use std::path::PathBuf;
use std::time::Duration;

/// A simulated fleet against a running controller: enrolls N agents, then
/// runs them in this process until interrupted, printing a status line
/// every 5 s.
#[derive(Parser)]
#[command(name = "flotte-sim")]
struct Cli {
    /// How many agents to enroll and run (at least 1).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    agents: u64,
    /// The TUF root the agents pin: the root.json `flottectl trust init` wrote.
    #[arg(long, value_name = "FILE")]
    trust_root: PathBuf,
    /// The `flottectl` profile whose admin API enrolls the agents.
    #[arg(long, value_name = "FILE", default_value_os_t = Profile::default_path())]
    admin_config: PathBuf,
    /// Keep the agents' state in a new directory under DIR (default: a
    /// temporary directory, removed on exit).
    #[arg(long, value_name = "DIR")]
    state: Option<PathBuf>,
    /// What the agents install with.
    #[arg(long, value_enum, default_value_t = SimInstaller::Null)]
    installer: SimInstaller,
    /// First connections are spread over this many seconds.
    #[arg(long, value_name = "SECS", default_value_t = 0)]
    spread_secs: u64,
}

#[derive(Clone, Copy, ValueEnum)]
enum SimInstaller {
    /// Discard the content after verification.
    Null,
    /// Stage and activate it with the real archive installer, under the
    /// state directory.
    Archive,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let agents = usize::try_from(cli.agents).context("--agents is too large")?;
    let admin = &cli.admin_config;
    let profile = Profile::load(admin).with_context(|| format!("reading {}", admin.display()))?;
    let client = profile.client()?;
    let api = profile
        .url
        .trim_start_matches("https://")
        .trim_end_matches('/')
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {}", profile.url))?
        .next()
        .context("the API address resolves to nothing")?;
    let keep = cli.state.is_some();
    let dir = match cli.state {
        Some(d) => tempfile::Builder::new().prefix("flotte-sim-").disable_cleanup(keep).tempdir_in(d)?,
        None => tempfile::Builder::new().prefix("flotte-sim-").tempdir()?,
    };
    eprintln!("enrolling {agents} agents…");
    let identities = sim::enroll_fleet(
        &client,
        sim::EnrollWith { api, ca: &profile.ca, trust_root: &cli.trust_root },
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
    let installer = match cli.installer {
        SimInstaller::Null => Installer::Null,
        SimInstaller::Archive => Installer::Archive { root: dir.path().join("roots") },
    };
    let start_spread = Duration::from_secs(cli.spread_secs);
    let options = sim::Options { controller, installer, start_spread, act_on_assignments: true, endpoints: 8 };
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn a_fleet_needs_at_least_one_agent_and_a_trust_root() {
        let parse = |args: &[&str]| Cli::try_parse_from(std::iter::once("flotte-sim").chain(args.iter().copied()));
        let cli = parse(&["--agents", "3", "--trust-root", "root.json", "--installer", "archive"]).unwrap();
        assert_eq!((cli.agents, cli.spread_secs), (3, 0));
        assert!(matches!(cli.installer, SimInstaller::Archive));
        assert!(parse(&["--agents", "0", "--trust-root", "root.json"]).is_err());
        assert!(parse(&["--agents", "3"]).is_err());
        assert!(parse(&["--agents", "3", "--trust-root", "root.json", "--installer", "dpkg"]).is_err());
    }
}
