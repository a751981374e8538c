//! `flotte-bench`: Flotte measured against baselines in the same run.
//!
//! ```text
//! flotte-bench verify [--size-mib 1024] [--runs 5] [--dir DIR]
//! flotte-bench fanout [--agents 200] [--size-mib 50] [--runs 3] [--archive] [--no-baseline]
//! flotte-bench scale  [--agents 10000] [--idle-secs 60] [--spread-secs 10] [--pushes 1] [--no-storm] [--no-baseline] [--label NAME]
//! flotte-bench peers  [--hosts 16,64] [--size-mib 50] [--runs 3] [--no-ansible] [--ssh-port 2222]
//! flotte-bench idle   [--idle-secs 60] [--settle-secs 5]      (the idle footprint of one agent)
//! common: [--bin-dir target/release] [--markdown] [--write docs/BENCHMARKS.md]
//! ```
//!
//! `flotte-bench SCENARIO --help` lists a scenario's options with their
//! defaults, which are the scenario's own `Options::default()`. A command
//! line that names no scenario (nothing, or an option first) measures
//! `idle`, as before the other scenarios existed.
//!
//! Each scenario prints a table (`--markdown`: as Markdown), and `--write
//! FILE` replaces that scenario's marked section of FILE with the table, the
//! machine description and the exact command line. The fleet scenarios
//! start the `flotte-controller` in `--bin-dir` (build it with `cargo build
//! --release -p flotte-tests -p flotte-controller -p flotte-agent`) and run
//! the simulated agents (`flotte_tests::sim`) in this process.
//!
//! A benchmark, not a test: it checks that every push completed and every
//! digest matched, never how fast.

use anyhow::{Result, bail};
use clap::parser::ValueSource;
use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use flotte_controller::lab::harness::{AgentProcess, Binaries, ControllerProcess, wait_online};
use flotte_tests::bench::{self, Table, fanout, peers, scale, verify};
use flotte_tests::footprint::{self, Footprint};
use std::path::PathBuf;
use std::time::Duration;

/// Flotte measured against baselines in the same run.
///
/// Without a scenario (nothing, or an option first) it measures `idle`.
#[derive(Parser)]
#[command(name = "flotte-bench")]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
    #[command(flatten)]
    common: Common,
}

/// What every scenario accepts, before or after its name.
#[derive(Args)]
#[command(next_help_heading = "Common options")]
struct Common {
    /// Where the release binaries (flotte-controller, flotte-agent) are.
    #[arg(long, value_name = "DIR", default_value = "target/release", global = true)]
    bin_dir: PathBuf,
    /// Print the table as Markdown.
    #[arg(long, global = true)]
    markdown: bool,
    /// Replace the scenario's marked section of FILE (`<!-- bench:NAME -->`)
    /// with the table, the machine description and the command line.
    #[arg(long, value_name = "FILE", global = true)]
    write: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Scenario {
    /// How fast the agent verifies a release's content, against `openssl sha256`.
    Verify(VerifyArgs),
    /// One push to simulated agents on loopback, against nginx serving the same file.
    Fanout(FanoutArgs),
    /// A large simulated fleet: enrollment, memory, keep-alive CPU, pushes and a reconnect storm.
    Scale(ScaleArgs),
    /// Flotte against scp and Ansible over ssh to the same hosts.
    Peers(PeersArgs),
    /// The idle footprint of one connected agent and its controller.
    ///
    /// Prints its tables only: `--write` does not apply to it.
    Idle(IdleArgs),
    /// The `scale` baseline's server process (started by `scale` itself).
    #[command(hide = true)]
    BareQuinnServer {
        /// The controller data directory whose certificate and CA to use.
        #[arg(long)]
        data_dir: PathBuf,
        /// Where to write the bound port.
        #[arg(long)]
        port_file: PathBuf,
    },
}

#[derive(Args)]
struct VerifyArgs {
    /// Size of the file hashed, in MiB.
    #[arg(long, value_name = "MIB", default_value_t = verify::Options::default().size >> 20)]
    size_mib: u64,
    /// Timed runs of each side.
    #[arg(long, value_name = "N", default_value_t = verify::Options::default().runs)]
    runs: usize,
    /// Where the file is written (deleted afterwards).
    #[arg(long, value_name = "DIR", default_value_os_t = verify::Options::default().dir)]
    dir: PathBuf,
}

#[derive(Args)]
struct FanoutArgs {
    /// Simulated agents.
    #[arg(long, value_name = "N", default_value_t = fanout::Options::default().agents)]
    agents: usize,
    /// Package size, in MiB.
    #[arg(long, value_name = "MIB", default_value_t = fanout::Options::default().size >> 20)]
    size_mib: u64,
    /// Interleaved runs of each side.
    #[arg(long, value_name = "N", default_value_t = fanout::Options::default().runs)]
    runs: usize,
    /// Install with the real archive installer (into a tmpfs) instead of the null one.
    #[arg(long)]
    archive: bool,
    /// Skip the nginx baseline.
    #[arg(long)]
    no_baseline: bool,
}

#[derive(Args)]
struct ScaleArgs {
    /// Simulated agents.
    #[arg(long, value_name = "N", default_value_t = scale::Options::default().agents)]
    agents: usize,
    /// The idle period over which keep-alive CPU is measured, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = scale::Options::default().idle.as_secs())]
    idle_secs: u64,
    /// First connections are spread over this many seconds.
    #[arg(long, value_name = "SECS", default_value_t = scale::Options::default().spread.as_secs())]
    spread_secs: u64,
    /// How many pushes to time, one after the other.
    #[arg(long, value_name = "N", default_value_t = scale::Options::default().pushes)]
    pushes: usize,
    /// Skip the reconnect storm after the pushes.
    #[arg(long)]
    no_storm: bool,
    /// Skip the baseline (a bare quinn server the same agents connect to first).
    #[arg(long)]
    no_baseline: bool,
    /// Label of the controller build, for before/after tables; when given,
    /// `--write` writes the section `scale-NAME`.
    #[arg(long, value_name = "NAME", default_value_t = scale::Options::default().label)]
    label: String,
}

#[derive(Args)]
struct PeersArgs {
    /// Fleet sizes, each its own measurement.
    #[arg(long, value_name = "N,N…", default_value_t = FleetSizes(peers::Options::default().hosts))]
    hosts: FleetSizes,
    /// Package size, in MiB.
    #[arg(long, value_name = "MIB", default_value_t = peers::Options::default().size >> 20)]
    size_mib: u64,
    /// Interleaved runs of each tool per fleet size.
    #[arg(long, value_name = "N", default_value_t = peers::Options::default().runs)]
    runs: usize,
    /// Skip Ansible (which needs a venv with ansible-core).
    #[arg(long)]
    no_ansible: bool,
    /// The port the benchmark's `sshd` listens on.
    #[arg(long, value_name = "PORT", default_value_t = peers::Options::default().ssh_port)]
    ssh_port: u16,
}

/// Fleet sizes as `--hosts` takes them: `16,64`.
#[derive(Clone)]
struct FleetSizes(Vec<usize>);

impl std::str::FromStr for FleetSizes {
    type Err = String;
    fn from_str(list: &str) -> Result<Self, String> {
        let size = |n: &str| n.trim().parse().map_err(|_| format!("--hosts takes numbers like 16,64, not {n}"));
        Ok(FleetSizes(list.split(',').map(size).collect::<Result<_, _>>()?))
    }
}

impl std::fmt::Display for FleetSizes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sizes: Vec<String> = self.0.iter().map(usize::to_string).collect();
        f.write_str(&sizes.join(","))
    }
}

#[derive(Args)]
struct IdleArgs {
    /// The idle period measured, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = IDLE_SECS)]
    idle_secs: u64,
    /// How long the connected agent settles before the measurement, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = SETTLE_SECS)]
    settle_secs: u64,
}

/// `idle`'s default measurement period.
const IDLE_SECS: u64 = 60;
/// `idle`'s default settling time.
const SETTLE_SECS: u64 = 5;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let command_line = args.join(" ");
    let matches = Cli::command().get_matches_from(with_default_scenario(args));
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let common = cli.common;
    let report = match cli.scenario {
        Scenario::Verify(a) => {
            let o = verify::Options { size: a.size_mib << 20, runs: a.runs, dir: a.dir };
            verify::run(&o)?
        }
        Scenario::Fanout(a) => {
            let o = fanout::Options {
                agents: a.agents,
                size: a.size_mib << 20,
                runs: a.runs,
                archive: a.archive,
                baseline: !a.no_baseline,
                ..fanout::Options::default()
            };
            fanout::run(&common.binaries()?, &o)?
        }
        Scenario::Scale(a) => {
            let o = scale::Options {
                agents: a.agents,
                idle: Duration::from_secs(a.idle_secs),
                spread: Duration::from_secs(a.spread_secs),
                pushes: a.pushes,
                storm: !a.no_storm,
                baseline: !a.no_baseline,
                label: a.label,
                ..scale::Options::default()
            };
            scale::run(&common.binaries()?, &o)?
        }
        Scenario::Peers(a) => {
            let o = peers::Options {
                hosts: a.hosts.0,
                size: a.size_mib << 20,
                runs: a.runs,
                ansible: !a.no_ansible,
                ssh_port: a.ssh_port,
                ..peers::Options::default()
            };
            peers::run(&common.binaries()?, &o)?
        }
        Scenario::BareQuinnServer { data_dir, port_file } => {
            return bench::bare_quinn::serve(&data_dir, &port_file);
        }
        Scenario::Idle(a) => {
            return idle_footprint(Options {
                bin_dir: common.bin_dir,
                idle: Duration::from_secs(a.idle_secs),
                settle: Duration::from_secs(a.settle_secs),
                markdown: common.markdown,
            });
        }
    };
    let text = report.render(common.markdown);
    print!("{text}");
    if let Some(doc) = &common.write {
        let section = format!(
            "Measured {} on {}.\n\n```sh\n{command_line}\n```\n\n{}",
            now_utc(),
            bench::machine(),
            report.render(true)
        );
        let name = section_name(&matches);
        bench::write_section(doc, &name, &section)?;
        eprintln!("wrote the {name} section of {}", doc.display());
    }
    Ok(())
}

/// The section of `--write`'s file a run replaces: the scenario's name, or
/// `scale-NAME` for `scale --label NAME` (not for the default label).
fn section_name(matches: &ArgMatches) -> String {
    match matches.subcommand() {
        Some(("scale", scale)) if scale.value_source("label") == Some(ValueSource::CommandLine) => {
            format!("scale-{}", scale.get_one::<String>("label").map_or("", String::as_str))
        }
        Some((scenario, _)) => scenario.to_string(),
        None => "idle".to_string(),
    }
}

/// `args` with `idle` put in as the scenario when none is named (no
/// argument, or an option first): the idle footprint was this program's
/// first measurement, and its command lines name none.
fn with_default_scenario(mut args: Vec<String>) -> Vec<String> {
    let names_one = args.get(1).is_some_and(|a| !a.starts_with('-') || a == "-h" || a == "--help");
    if !names_one {
        args.insert(1.min(args.len()), "idle".into());
    }
    args
}

impl Common {
    fn binaries(&self) -> Result<Binaries> {
        let bins =
            Binaries { controller: self.bin_dir.join("flotte-controller"), agent: self.bin_dir.join("flotte-agent") };
        if !bins.controller.is_file() {
            bail!(
                "{} missing; build with: cargo build --release -p flotte-tests -p flotte-controller -p flotte-agent",
                bins.controller.display()
            );
        }
        Ok(bins)
    }
}

/// `2026-11-29 11:02 UTC`, from the system clock.
fn now_utc() -> String {
    let ts = flotte_protocol::Timestamp::from_system_time(std::time::SystemTime::now()).to_string();
    ts.get(..16).map_or(ts.clone(), |s| format!("{} UTC", s.replace('T', " ")))
}

struct Options {
    bin_dir: PathBuf,
    idle: Duration,
    settle: Duration,
    markdown: bool,
}

fn idle_footprint(o: Options) -> Result<()> {
    let bins = Binaries { controller: o.bin_dir.join("flotte-controller"), agent: o.bin_dir.join("flotte-agent") };
    for b in [&bins.controller, &bins.agent] {
        if !b.is_file() {
            bail!("{} missing; build with: cargo build --release -p flotte-agent -p flotte-controller", b.display());
        }
    }
    let dir = tempfile::Builder::new().prefix("flotte-bench-").tempdir()?;
    let controller = ControllerProcess::init_and_start(&bins, dir.path(), "")?;
    let client = controller.client()?;
    // Agents enroll with the TUF root an admin hands them: create it first.
    flotte_controller::ctl::trust::init(&client, &dir.path().join("offline-keys"), 1, 1)?;
    let agent = AgentProcess::enroll_and_start(&bins, &controller, dir.path(), "bench-01")?;
    wait_online(&client, 1, Duration::from_secs(60))?;
    let agent_pid = footprint::find_pid(&agent.state_dir)?;
    let controller_pid = footprint::find_pid(&controller.data_dir)?;
    eprintln!("agent pid {agent_pid}, controller pid {controller_pid}; settling {:?}", o.settle);
    std::thread::sleep(o.settle);
    eprintln!("measuring {:?} of idle…", o.idle);
    let start = (footprint::sample(agent_pid)?, footprint::sample(controller_pid)?);
    std::thread::sleep(o.idle);
    let end = (footprint::sample(agent_pid)?, footprint::sample(controller_pid)?);
    let ticks = footprint::clock_ticks_per_second();
    let rows = [
        ("flotte-agent (idle, connected)", footprint::between(&start.0, &end.0, ticks)),
        ("flotte-controller (1 agent)", footprint::between(&start.1, &end.1, ticks)),
    ];
    let online = client.agents()?.iter().filter(|a| a.online).count();
    if online != 1 {
        bail!("the agent went offline during the measurement");
    }
    let sizes: Vec<(String, u64)> = ["flotte-agent", "flotte-controller", "flottectl"]
        .iter()
        .filter_map(|b| Some((b.to_string(), std::fs::metadata(o.bin_dir.join(b)).ok()?.len())))
        .collect();
    print!("{}", render(&rows, &sizes, ticks, o.markdown));
    Ok(())
}

fn mib(kib: u64) -> String {
    format!("{:.2} MiB", kib as f64 / 1024.0)
}

fn render(rows: &[(&str, Footprint)], sizes: &[(String, u64)], ticks: u64, markdown: bool) -> String {
    let period = rows.first().map_or(0.0, |r| r.1.period.as_secs_f64());
    // CPU time comes in whole clock ticks: one tick over the period, per hour.
    let resolution = 3600.0 / (ticks.max(1) as f64 * period.max(1.0));
    let mut processes = Table::new(&[
        "process",
        "RSS (VmRSS)",
        "of which private (RssAnon)",
        "peak RSS (VmHWM)",
        "CPU s/hour",
        "wake-ups/s",
        "threads",
    ]);
    for (name, f) in rows {
        processes.row(vec![
            name.to_string(),
            mib(f.rss_kib),
            mib(f.anon_kib),
            mib(f.hwm_kib),
            format!("{:.2}", f.cpu_seconds_per_hour),
            format!("{:.2}", f.wakeups_per_second),
            f.threads.to_string(),
        ]);
    }
    let mut binaries = Table::new(&["release binary", "size"]);
    for (name, bytes) in sizes {
        binaries.row(vec![name.clone(), mib(bytes / 1024)]);
    }
    let render = |t: &Table| if markdown { t.markdown() } else { t.plain() };
    format!(
        "Measured over {period:.0} s of idle; CPU time is counted in clock ticks, so the CPU column \
         has a resolution of {resolution:.2} s/hour.\n\n{}\n{}",
        render(&processes),
        render(&binaries)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(args: &[&str]) -> ArgMatches {
        let args = std::iter::once("flotte-bench").chain(args.iter().copied()).map(String::from).collect();
        Cli::command().try_get_matches_from(with_default_scenario(args)).unwrap()
    }

    fn parse(args: &[&str]) -> Cli {
        Cli::from_arg_matches(&matches(args)).unwrap()
    }

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn a_command_line_without_a_scenario_measures_idle() {
        assert!(matches!(parse(&[]).scenario, Scenario::Idle(_)));
        let cli = parse(&["--bin-dir", "bins", "--idle-secs", "120", "--markdown"]);
        let Scenario::Idle(idle) = cli.scenario else { panic!("not idle") };
        assert_eq!((idle.idle_secs, idle.settle_secs), (120, SETTLE_SECS));
        assert_eq!(cli.common.bin_dir, PathBuf::from("bins"));
        assert!(cli.common.markdown);
    }

    #[test]
    fn defaults_are_the_scenarios_own() {
        let Scenario::Scale(a) = parse(&["scale"]).scenario else { panic!("not scale") };
        let scale = scale::Options::default();
        assert_eq!(
            (a.agents, a.pushes, a.no_storm, &a.label),
            (scale.agents, scale.pushes, !scale.storm, &scale.label)
        );
        assert_eq!((a.idle_secs, a.spread_secs), (scale.idle.as_secs(), scale.spread.as_secs()));
        let Scenario::Peers(a) = parse(&["peers"]).scenario else { panic!("not peers") };
        let peers = peers::Options::default();
        assert_eq!((a.hosts.0, a.size_mib << 20, a.ssh_port), (peers.hosts, peers.size, peers.ssh_port));
        let Scenario::Verify(a) = parse(&["verify"]).scenario else { panic!("not verify") };
        let verify = verify::Options::default();
        assert_eq!((a.size_mib << 20, a.runs, a.dir), (verify.size, verify.runs, verify.dir));
        let Scenario::Fanout(a) = parse(&["fanout", "--no-baseline"]).scenario else { panic!("not fanout") };
        let fanout = fanout::Options::default();
        assert_eq!((a.agents, a.size_mib << 20, a.runs), (fanout.agents, fanout.size, fanout.runs));
        assert!(a.no_baseline && !a.archive);
    }

    #[test]
    fn hosts_are_a_comma_separated_list_of_numbers() {
        let Scenario::Peers(a) = parse(&["peers", "--hosts", "4, 8,16"]).scenario else { panic!("not peers") };
        assert_eq!(a.hosts.0, [4, 8, 16]);
        let args = ["flotte-bench", "peers", "--hosts", "16,x"];
        let refused = Cli::command().try_get_matches_from(args).unwrap_err().to_string();
        assert!(refused.contains("numbers like 16,64, not x"), "{refused}");
    }

    #[test]
    fn only_an_explicit_label_names_the_scale_section() {
        assert_eq!(section_name(&matches(&["scale"])), "scale");
        assert_eq!(section_name(&matches(&["scale", "--label", "push-after"])), "scale-push-after");
        assert_eq!(section_name(&matches(&["fanout", "--write", "docs/BENCHMARKS.md"])), "fanout");
    }

    /// The `flotte-bench` command lines of the docs' code blocks
    /// (`target/…/flotte-bench …`) and `cargo run` lines, without the
    /// program.
    fn documented_command_lines() -> Vec<String> {
        let docs = [include_str!("../../../docs/BENCHMARKS.md"), include_str!("../../../README.md")];
        let command = |line: &str| {
            if let Some((_, args)) = line.split_once("--bin flotte-bench -- ") {
                return Some(args.split('`').next()?.to_string());
            }
            let (program, args) = line.split_once(' ')?;
            (program.starts_with("target/") && program.ends_with("/flotte-bench")).then(|| args.to_string())
        };
        docs.iter().flat_map(|doc| doc.lines()).filter_map(command).collect()
    }

    #[test]
    fn every_documented_command_line_parses() {
        let lines = documented_command_lines();
        assert!(lines.len() >= 10, "found only {lines:?}");
        for line in lines {
            let args: Vec<&str> = line.split_whitespace().collect();
            let args = std::iter::once("flotte-bench").chain(args).map(String::from).collect();
            if let Err(e) = Cli::command().try_get_matches_from(with_default_scenario(args)) {
                panic!("{line}: {e}");
            }
        }
    }
}
