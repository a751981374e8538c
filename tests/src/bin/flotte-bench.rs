//! `flotte-bench`: the idle footprint of an agent (and its controller).
//!
//! Starts a controller and one enrolled agent from the binaries in
//! `--bin-dir` (build them with `cargo build --release -p flotte-agent
//! -p flotte-controller`), waits until the agent is online, lets it settle,
//! then measures both processes over `--idle-secs` while the agent sits idle
//! and connected, and prints the figures and the release binary sizes,
//! plain or as the Markdown table in `docs/BENCHMARKS.md` (`--markdown`).
//!
//! A benchmark, not a test: it checks nothing and takes as long as it is told.

use anyhow::{Context, Result, bail};
use flotte_controller::lab::harness::{AgentProcess, Binaries, ControllerProcess, wait_online};
use flotte_tests::footprint::{self, Footprint};
use std::path::PathBuf;
use std::time::Duration;

struct Options {
    bin_dir: PathBuf,
    idle: Duration,
    settle: Duration,
    markdown: bool,
}

fn options() -> Result<Options> {
    let mut o = Options {
        bin_dir: "target/release".into(),
        idle: Duration::from_secs(60),
        settle: Duration::from_secs(5),
        markdown: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--bin-dir" => o.bin_dir = value()?.into(),
            "--idle-secs" => o.idle = Duration::from_secs(value()?.parse()?),
            "--settle-secs" => o.settle = Duration::from_secs(value()?.parse()?),
            "--markdown" => o.markdown = true,
            "-h" | "--help" => {
                println!("flotte-bench [--bin-dir target/release] [--idle-secs 60] [--settle-secs 5] [--markdown]");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other}; see --help"),
        }
    }
    Ok(o)
}

fn main() -> Result<()> {
    let o = options()?;
    let bins = Binaries { controller: o.bin_dir.join("flotte-controller"), agent: o.bin_dir.join("flotte-agent") };
    for b in [&bins.controller, &bins.agent] {
        if !b.is_file() {
            bail!("{} missing; build with: cargo build --release -p flotte-agent -p flotte-controller", b.display());
        }
    }
    let dir = tempfile::Builder::new().prefix("flotte-bench-").tempdir()?;
    let controller = ControllerProcess::init_and_start(&bins, dir.path(), "")?;
    let client = controller.client()?;
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
    let mut out = String::new();
    let period = rows.first().map_or(0.0, |r| r.1.period.as_secs_f64());
    // CPU time comes in whole clock ticks: one tick over the period, per hour.
    let resolution = 3600.0 / (ticks.max(1) as f64 * period.max(1.0));
    if markdown {
        out += &format!(
            "Measured over {period:.0} s of idle; CPU time is counted in clock ticks, so the CPU column \
             has a resolution of {resolution:.2} s/hour.\n\n"
        );
        out += "| process | RSS (VmRSS) | of which private (RssAnon) | peak RSS (VmHWM) | CPU s/hour | wake-ups/s | threads |\n";
        out += "|---|---|---|---|---|---|---|\n";
        for (name, f) in rows {
            out += &format!(
                "| {name} | {} | {} | {} | {:.2} | {:.2} | {} |\n",
                mib(f.rss_kib),
                mib(f.anon_kib),
                mib(f.hwm_kib),
                f.cpu_seconds_per_hour,
                f.wakeups_per_second,
                f.threads
            );
        }
        out += "\n| release binary | size |\n|---|---|\n";
        for (name, bytes) in sizes {
            out += &format!("| {name} | {} |\n", mib(bytes / 1024));
        }
    } else {
        out += &format!("idle period: {period:.0} s (CPU resolution {resolution:.2} s/hour)\n");
        out += &format!(
            "{:<32} {:>10} {:>10} {:>10} {:>11} {:>11} {:>8}\n",
            "process", "RSS", "private", "peak RSS", "CPU s/hour", "wakeups/s", "threads"
        );
        for (name, f) in rows {
            out += &format!(
                "{name:<32} {:>10} {:>10} {:>10} {:>11.2} {:>11.2} {:>8}\n",
                mib(f.rss_kib),
                mib(f.anon_kib),
                mib(f.hwm_kib),
                f.cpu_seconds_per_hour,
                f.wakeups_per_second,
                f.threads
            );
        }
        for (name, bytes) in sizes {
            out += &format!("binary {name:<25} {:>10}\n", mib(bytes / 1024));
        }
    }
    out
}
