//! `flotte-bench`: Flotte measured against baselines in the same run.
//!
//! ```text
//! flotte-bench verify [--size-mib 1024] [--runs 5] [--dir DIR]
//! flotte-bench fanout [--agents 200] [--size-mib 50] [--runs 3] [--archive] [--no-baseline]
//! flotte-bench scale  [--agents 10000] [--idle-secs 60] [--spread-secs 10] [--pushes 1] [--no-storm] [--label NAME]
//! flotte-bench peers  [--hosts 16,64] [--size-mib 50] [--runs 3] [--no-ansible] [--ssh-port 2222]
//! flotte-bench idle   [--idle-secs 60] [--settle-secs 5]      (the idle footprint of one agent)
//! common: [--bin-dir target/release] [--markdown] [--write docs/BENCHMARKS.md]
//! ```
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

use anyhow::{Context, Result, bail};
use flotte_controller::lab::harness::{AgentProcess, Binaries, ControllerProcess, wait_online};
use flotte_tests::bench::{self, Table, fanout, peers, scale, verify};
use flotte_tests::footprint::{self, Footprint};
use std::path::PathBuf;
use std::time::Duration;

const USAGE: &str = "flotte-bench verify|fanout|scale|peers|idle [options]; see the module documentation \
(tests/src/bin/flotte-bench.rs) or docs/BENCHMARKS.md";

fn main() -> Result<()> {
    let mut args: Vec<String> = std::env::args().collect();
    let command_line = args.join(" ");
    args.remove(0);
    // Without a scenario name, the idle footprint (the original command line).
    let scenario = if args.first().is_some_and(|a| !a.starts_with('-')) { args.remove(0) } else { "idle".into() };
    let mut common = Common { bin_dir: "target/release".into(), markdown: false, write: None };
    let mut rest = Vec::new();
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--bin-dir" => common.bin_dir = it.next().context("--bin-dir needs a value")?.into(),
            "--markdown" => common.markdown = true,
            "--write" => common.write = Some(it.next().context("--write needs a file")?.into()),
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            _ => rest.push(arg),
        }
    }
    let flags = Flags(rest);
    let report = match scenario.as_str() {
        "verify" => {
            let mut o = verify::Options::default();
            if let Some(m) = flags.u64("--size-mib")? {
                o.size = m << 20;
            }
            o.runs = flags.u64("--runs")?.map_or(o.runs, |r| r as usize);
            if let Some(d) = flags.value("--dir") {
                o.dir = d.into();
            }
            flags.check(&["--size-mib", "--runs", "--dir"], &[])?;
            verify::run(&o)?
        }
        "fanout" => {
            let mut o = fanout::Options::default();
            o.agents = flags.u64("--agents")?.map_or(o.agents, |n| n as usize);
            o.size = flags.u64("--size-mib")?.map_or(o.size, |m| m << 20);
            o.runs = flags.u64("--runs")?.map_or(o.runs, |r| r as usize);
            o.archive = flags.has("--archive");
            o.baseline = !flags.has("--no-baseline");
            flags.check(&["--agents", "--size-mib", "--runs"], &["--archive", "--no-baseline"])?;
            fanout::run(&common.binaries()?, &o)?
        }
        "scale" => {
            let mut o = scale::Options::default();
            o.agents = flags.u64("--agents")?.map_or(o.agents, |n| n as usize);
            o.idle = flags.u64("--idle-secs")?.map_or(o.idle, Duration::from_secs);
            o.spread = flags.u64("--spread-secs")?.map_or(o.spread, Duration::from_secs);
            o.pushes = flags.u64("--pushes")?.map_or(o.pushes, |p| p as usize);
            o.storm = !flags.has("--no-storm");
            if let Some(l) = flags.value("--label") {
                o.label = l.to_string();
            }
            flags.check(&["--agents", "--idle-secs", "--spread-secs", "--pushes", "--label"], &["--no-storm"])?;
            scale::run(&common.binaries()?, &o)?
        }
        "peers" => {
            let mut o = peers::Options::default();
            if let Some(list) = flags.value("--hosts") {
                o.hosts = list
                    .split(',')
                    .map(|n| n.trim().parse().with_context(|| format!("--hosts takes numbers like 16,64, not {n}")))
                    .collect::<Result<_>>()?;
            }
            o.size = flags.u64("--size-mib")?.map_or(o.size, |m| m << 20);
            o.runs = flags.u64("--runs")?.map_or(o.runs, |r| r as usize);
            o.ansible = !flags.has("--no-ansible");
            if let Some(port) = flags.u64("--ssh-port")? {
                o.ssh_port = u16::try_from(port).context("--ssh-port is a port number")?;
            }
            flags.check(&["--hosts", "--size-mib", "--runs", "--ssh-port"], &["--no-ansible"])?;
            peers::run(&common.binaries()?, &o)?
        }
        "idle" => return idle(&common, &flags),
        other => bail!("unknown scenario {other}; {USAGE}"),
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
        let name = match flags.value("--label") {
            Some(label) => format!("{scenario}-{label}"),
            None => scenario.clone(),
        };
        bench::write_section(doc, &name, &section)?;
        eprintln!("wrote the {name} section of {}", doc.display());
    }
    Ok(())
}

struct Common {
    bin_dir: PathBuf,
    markdown: bool,
    write: Option<PathBuf>,
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

/// A scenario's own flags: `--name value` pairs and bare switches.
struct Flags(Vec<String>);

impl Flags {
    fn value(&self, name: &str) -> Option<&str> {
        let i = self.0.iter().position(|a| a == name)?;
        self.0.get(i + 1).map(String::as_str)
    }

    fn u64(&self, name: &str) -> Result<Option<u64>> {
        match self.value(name) {
            Some(v) => Ok(Some(v.parse().with_context(|| format!("{name} needs a whole number, not {v}"))?)),
            None if self.has(name) => bail!("{name} needs a value"),
            None => Ok(None),
        }
    }

    fn has(&self, name: &str) -> bool {
        self.0.iter().any(|a| a == name)
    }

    /// Fails on any flag that is neither a known valued flag nor a switch.
    fn check(&self, valued: &[&str], switches: &[&str]) -> Result<()> {
        let mut it = self.0.iter();
        while let Some(a) = it.next() {
            if valued.contains(&a.as_str()) {
                it.next();
            } else if !switches.contains(&a.as_str()) {
                bail!("unknown argument {a}; {USAGE}");
            }
        }
        Ok(())
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

fn idle(common: &Common, flags: &Flags) -> Result<()> {
    flags.check(&["--idle-secs", "--settle-secs"], &[])?;
    let o = Options {
        bin_dir: common.bin_dir.clone(),
        idle: flags.u64("--idle-secs")?.map_or(Duration::from_secs(60), Duration::from_secs),
        settle: flags.u64("--settle-secs")?.map_or(Duration::from_secs(5), Duration::from_secs),
        markdown: common.markdown,
    };
    idle_footprint(o)
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
