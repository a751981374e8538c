//! `scale`: N idle simulated agents connected to one controller.
//!
//! Measures, in order:
//! 0. unless `--no-baseline`, the baseline: the same enrolled agents
//!    connected to a bare quinn server with the controller's mutual TLS and
//!    quinn's default transport ([`super::bare_quinn`]), its RSS per idle
//!    connection; Flotte's per-agent figure is printed as a ratio to it;
//! 1. the controller's RSS per connected agent: its RSS with everyone
//!    connected and settled, minus its RSS after enrollment and before any
//!    agent connected, divided by N (Flotte's per-agent session state
//!    included);
//! 2. its CPU per agent-hour of keep-alives, over a fixed idle period;
//! 3. push latency: from the `deploy` request until each agent has
//!    *received* its assignment (the simulated agents only record the
//!    assignment here, so that N agents' reports do not blur the figure),
//!    p50 / p99 / max; with `--pushes K`, K pushes of distinct packages one
//!    after the other, each aborted before the next, summarised as median
//!    (min – max) over the pushes;
//! 4. unless `--no-storm`, the reconnect storm: the controller is killed (SIGKILL) and started
//!    again; the time from its readiness until every agent has a new
//!    session. Agents notice the restart when their next keep-alive meets
//!    a stateless reset, then reconnect with the agent's own backoff
//!    (exponential, full jitter).

use super::site::Site;
use super::{Report, Stats, Table, secs};
use crate::footprint;
use crate::sim::{Installer, SessionEnd};
use anyhow::{Result, ensure};
use flotte_controller::lab::harness::Binaries;
use flotte_protocol::api::{DeployRequest, Target};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct Options {
    pub agents: usize,
    /// The idle period over which keep-alive CPU is measured.
    pub idle: Duration,
    /// First connections are spread over this period.
    pub spread: Duration,
    /// Longest wait for any phase.
    pub timeout: Duration,
    /// Label of the controller build, for before/after tables.
    pub label: String,
    /// How many pushes to time, one after the other.
    pub pushes: usize,
    /// Whether to measure the reconnect storm after the pushes.
    pub storm: bool,
    /// Whether to measure the baseline first: the same agents connected to
    /// a bare quinn server ([`super::bare_quinn`]).
    pub baseline: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            agents: 10_000,
            idle: Duration::from_secs(60),
            spread: Duration::from_secs(10),
            timeout: Duration::from_secs(600),
            label: "flotte-controller".into(),
            pushes: 1,
            storm: true,
            baseline: true,
        }
    }
}

pub fn run(bins: &Binaries, o: &Options) -> Result<Report> {
    ensure!(o.agents > 0, "--agents must be at least 1");
    ensure!(o.pushes > 0, "--pushes must be at least 1");
    let n = o.agents;
    let mut site = Site::start(bins, "")?;
    eprintln!("enrolling {n} simulated agents…");
    let enroll_started = Instant::now();
    let identities = site.enroll(n)?;
    let enroll_time = enroll_started.elapsed().as_secs_f64();
    let baseline = if o.baseline {
        eprintln!("baseline: connecting {n} agents to a bare quinn server (spread over {:?})…", o.spread);
        let phases = super::bare_quinn::Phases {
            spread: o.spread,
            settle: Duration::from_secs(5),
            idle: o.idle,
            timeout: o.timeout,
        };
        let bin_dir = bins.controller.parent().unwrap_or(std::path::Path::new("."));
        let (data, scratch) = (&site.controller.data_dir, site.dir.path());
        Some(super::bare_quinn::measure(bin_dir, &identities, data, scratch, phases)?)
    } else {
        None
    };
    let pid = site.controller_pid()?;
    let empty = footprint::sample(pid)?;

    eprintln!("connecting {n} agents (spread over {:?})…", o.spread);
    let connect_started = Instant::now();
    let fleet = site.fleet(identities, Installer::Null, o.spread, false)?;
    fleet.wait("every agent to connect", o.timeout, |f| f.connected() == n)?;
    let connect_time = connect_started.elapsed().as_secs_f64();
    let settle = Duration::from_secs(5);
    std::thread::sleep(settle);

    eprintln!("measuring {:?} of idle…", o.idle);
    let idle_start = footprint::sample(pid)?;
    std::thread::sleep(o.idle);
    let idle_end = footprint::sample(pid)?;
    ensure!(fleet.observer.connected() == n, "agents disconnected while idle");
    let rss_per_agent_kib = idle_end.rss_kib.saturating_sub(empty.rss_kib) as f64 / n as f64;
    let idle_cpu = idle_end.cpu_seconds() - idle_start.cpu_seconds();
    let agent_hours = n as f64 * o.idle.as_secs_f64() / 3600.0;
    let cpu_per_agent_hour = idle_cpu / agent_hours;

    let mut pushes = Vec::with_capacity(o.pushes);
    for i in 0..o.pushes {
        // A new package each time, so every push costs the same: earlier
        // assignments stay pending (the agents never report), and a push of
        // the same package would conflict with them.
        let name = format!("bench-{i}");
        site.publish(&name, "1.0.0", 4096)?;
        eprintln!("push {}/{}: an assignment to {n} agents…", i + 1, o.pushes);
        let before = footprint::sample(pid)?;
        let pushed = Instant::now();
        let request = DeployRequest { name, version: "1.0.0".into(), target: Target::All };
        let rollout = site.client.deploy(&request)?.id;
        let received = |f: &crate::sim::Observer| {
            f.times().iter().filter(|t| t.assigned.is_some_and(|(_, at)| at >= pushed)).count()
        };
        fleet.wait("every agent to receive its assignment", o.timeout, |f| received(f) == n)?;
        let latencies: Vec<f64> = fleet
            .observer
            .times()
            .iter()
            .filter_map(|t| t.assigned.map(|(_, at)| at.duration_since(pushed).as_secs_f64()))
            .collect();
        let cpu = footprint::sample(pid)?.cpu_seconds() - before.cpu_seconds();
        site.client.rollout_command(rollout, "abort")?;
        pushes.push(Push::of(&latencies, cpu));
        eprintln!("  {}", pushes[i].describe());
        // Let the abort's wake-ups settle before the next push.
        std::thread::sleep(Duration::from_secs(3));
    }

    let storm = if o.storm { Some(storm(&mut site, &fleet, n, o.timeout)?) } else { None };
    let sim_end = footprint::sample(std::process::id())?;
    let failures = fleet.observer.connect_failures.load(std::sync::atomic::Ordering::Relaxed);
    fleet.stop();

    let mut table = Table::new(&["measure", "value"]);
    let kib = |k: f64| format!("{k:.1} KiB");
    table.row(vec!["connected agents".into(), n.to_string()]);
    table.row(vec!["controller RSS, enrolled but none connected".into(), kib(empty.rss_kib as f64)]);
    table.row(vec!["controller RSS, all connected and idle".into(), kib(idle_end.rss_kib as f64)]);
    table.row(vec!["**controller RSS per connected agent**".into(), format!("**{}**", kib(rss_per_agent_kib))]);
    if let Some(b) = &baseline {
        table.row(vec![
            "bare quinn 0.11 server (mutual TLS, default transport): RSS per idle connection".into(),
            format!("{} (all connected in {})", kib(b.rss_per_connection_kib), secs(b.connect_time.as_secs_f64())),
        ]);
        table.row(vec![
            "**Flotte / bare quinn, memory per idle agent**".into(),
            format!("**{:.2}×**", rss_per_agent_kib / b.rss_per_connection_kib.max(f64::EPSILON)),
        ]);
    }
    table.row(vec![
        format!("controller CPU over {:.0} s idle", o.idle.as_secs_f64()),
        format!("{idle_cpu:.2} s ({:.1}% of a core)", 100.0 * idle_cpu / o.idle.as_secs_f64()),
    ]);
    table.row(vec![
        "**controller CPU per agent-hour of keep-alives**".into(),
        format!("**{:.1} ms**", cpu_per_agent_hour * 1000.0),
    ]);
    if let Some(b) = &baseline {
        table.row(vec![
            "bare quinn server: CPU per connection-hour of the same keep-alives".into(),
            format!("{:.1} ms", b.cpu_per_connection_hour * 1000.0),
        ]);
        table.row(vec![
            "**Flotte / bare quinn, keep-alive CPU**".into(),
            format!("**{:.2}×**", cpu_per_agent_hour / b.cpu_per_connection_hour.max(f64::EPSILON)),
        ]);
    }
    let stat = |f: fn(&Push) -> f64| Stats::of(&pushes.iter().map(f).collect::<Vec<_>>());
    let (p50, p99, max, cpu) = (stat(|p| p.p50), stat(|p| p.p99), stat(|p| p.max), stat(|p| p.cpu));
    let over =
        if pushes.len() > 1 { format!(", median (min – max) of {} pushes", pushes.len()) } else { String::new() };
    table.row(vec![
        format!("**push latency p50 / p99 / max**{over}"),
        format!("**{} / {} / {}**", p50.show(secs), p99.show(secs), max.show(secs)),
    ]);
    table.row(vec!["controller CPU for the push".into(), cpu.show(|c| format!("{c:.2} s"))]);
    if let Some(storm) = &storm {
        table.row(vec![
            "**reconnect storm after a controller restart**".into(),
            format!("**{}**", secs(Stats::quantile(&storm.reconnects, 1.0))),
        ]);
        table.row(vec![
            "reconnected by: first / p50 / p99".into(),
            format!(
                "{} / {} / {}",
                secs(Stats::quantile(&storm.reconnects, 0.0)),
                secs(Stats::quantile(&storm.reconnects, 0.5)),
                secs(Stats::quantile(&storm.reconnects, 0.99))
            ),
        ]);
        let spread = |v: &[f64]| {
            format!(
                "{} / {} / {} / {}",
                secs(Stats::quantile(v, 0.0)),
                secs(Stats::quantile(v, 0.5)),
                secs(Stats::quantile(v, 0.99)),
                secs(Stats::quantile(v, 1.0))
            )
        };
        table.row(vec!["restart noticed, from readiness: first / p50 / p99 / max".into(), spread(&storm.detected)]);
        table.row(vec![
            "restart noticed by: stateless reset / idle timeout / other".into(),
            format!(
                "{} / {} / {}",
                storm.by_reset,
                storm.by_timeout,
                storm.detected.len() - storm.by_reset - storm.by_timeout
            ),
        ]);
        table.row(vec!["back, from noticing: first / p50 / p99 / max".into(), spread(&storm.back_after_detection)]);
        table.row(vec!["controller RSS after the storm".into(), kib(storm.rss_kib as f64)]);
    }
    table.row(vec!["first connection of all agents (spread included)".into(), secs(connect_time)]);
    table.row(vec!["failed connection attempts (whole run)".into(), failures.to_string()]);
    table.row(vec![
        "simulator RSS per agent (client side, for reference)".into(),
        kib(sim_end.rss_kib as f64 / n as f64),
    ]);
    table.row(vec![
        "enrollment (setup, 8 at a time)".into(),
        format!("{} ({:.0}/s)", secs(enroll_time), n as f64 / enroll_time),
    ]);
    Ok(Report {
        notes: vec![
            format!(
                "controller build: {}; {n} simulated agents in one process over {} UDP sockets",
                o.label,
                super::site::SIM_ENDPOINTS.min(n)
            ),
            "agents: keep-alive 10 s, idle timeout 30 s (the agent's defaults); controller log level `info`".into(),
        ],
        tables: vec![table],
        summary: vec![format!(
            "goals: ≤ 40 KiB per idle agent ({}); p99 push latency < 1 s at 10,000 agents ({}); \
             storm of 100,000 in ≤ 120 s (measured here at {n})",
            if rss_per_agent_kib <= 40.0 { "met" } else { "not met" },
            if p99.median < 1.0 { "met at this N" } else { "not met at this N" },
        )],
    })
}

/// One push's latencies, from `deploy` to each agent's receipt.
struct Push {
    p50: f64,
    p99: f64,
    max: f64,
    /// Controller CPU seconds from `deploy` until the last receipt.
    cpu: f64,
}

impl Push {
    fn of(latencies: &[f64], cpu: f64) -> Push {
        Push {
            p50: Stats::quantile(latencies, 0.5),
            p99: Stats::quantile(latencies, 0.99),
            max: Stats::quantile(latencies, 1.0),
            cpu,
        }
    }

    fn describe(&self) -> String {
        format!(
            "p50 {} / p99 {} / max {}, controller CPU {:.2} s",
            secs(self.p50),
            secs(self.p99),
            secs(self.max),
            self.cpu
        )
    }
}

/// The reconnect storm: each agent's reconnection time after the
/// controller's readiness, when and how it noticed the restart, and the
/// controller's RSS once all are back.
struct Storm {
    reconnects: Vec<f64>,
    /// When each agent's old session ended, from readiness (negative: before it).
    detected: Vec<f64>,
    /// From noticing to the new session being welcomed.
    back_after_detection: Vec<f64>,
    by_reset: usize,
    by_timeout: usize,
    rss_kib: u64,
}

fn storm(site: &mut Site, fleet: &crate::sim::Fleet, n: usize, timeout: Duration) -> Result<Storm> {
    eprintln!("restarting the controller (SIGKILL, then start)…");
    let killed = Instant::now();
    site.controller.kill();
    site.controller.start()?;
    let ready = Instant::now();
    let pid = site.controller_pid()?;
    let reconnected =
        |f: &crate::sim::Observer| f.times().iter().filter(|t| t.connected_at.is_some_and(|at| at >= ready)).count();
    fleet.wait("every agent to reconnect", timeout, |f| reconnected(f) == n)?;
    let since_ready = |at: Instant| {
        if at >= ready { at.duration_since(ready).as_secs_f64() } else { -ready.duration_since(at).as_secs_f64() }
    };
    let times = fleet.observer.times();
    let mut storm = Storm {
        reconnects: times.iter().filter_map(|t| t.connected_at.map(since_ready)).collect(),
        detected: vec![],
        back_after_detection: vec![],
        by_reset: 0,
        by_timeout: 0,
        rss_kib: footprint::sample(pid)?.rss_kib,
    };
    for t in &times {
        let (Some((ended, how)), Some(back)) = (t.disconnected, t.connected_at) else { continue };
        if ended < killed {
            continue;
        }
        storm.detected.push(since_ready(ended));
        storm.back_after_detection.push(back.saturating_duration_since(ended).as_secs_f64());
        match how {
            SessionEnd::Reset => storm.by_reset += 1,
            SessionEnd::TimedOut => storm.by_timeout += 1,
            SessionEnd::Other => {}
        }
    }
    Ok(storm)
}
