//! `fanout`: a big-bang push of a P MiB package to N simulated agents,
//! through the real controller and rollout engine, timed from `deploy`
//! until the controller reports the rollout completed (every agent's
//! `Succeeded` report committed to its database). Against it, in the same
//! run and interleaved: nginx over HTTPS on loopback (TLS 1.3, self-signed
//! certificate) serving the same file to N concurrent `curl` clients, each
//! piped into `openssl dgst -sha256` (SHA-NI, so hashing is not what the
//! baseline waits on; coreutils `sha256sum` has no SHA-NI path here).

use super::nginx::Nginx;
use super::site::{Site, reset_peak_rss};
use super::{Report, Stats, Table, mib_per_s, secs};
use crate::footprint;
use crate::sim::Installer;
use anyhow::{Context, Result, ensure};
use flotte_controller::lab::harness::Binaries;
use flotte_protocol::api::{DeployRequest, Target};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct Options {
    pub agents: usize,
    /// Package size in bytes.
    pub size: u64,
    /// Interleaved runs of each side.
    pub runs: usize,
    /// Use the real archive installer (into a tmpfs) instead of the null one.
    pub archive: bool,
    /// Skip the nginx baseline (the smoke test runs without nginx).
    pub baseline: bool,
    /// Longest wait for one push.
    pub timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            agents: 200,
            size: 50 << 20,
            runs: 3,
            archive: false,
            baseline: true,
            timeout: Duration::from_secs(600),
        }
    }
}

/// One Flotte push.
struct Push {
    wall: f64,
    controller_cpu: f64,
    controller_peak_kib: u64,
}

pub fn run(bins: &Binaries, o: &Options) -> Result<Report> {
    ensure!(o.agents > 0 && o.runs > 0, "--agents and --runs must be at least 1");
    let site = Site::start(bins, "")?;
    eprintln!("enrolling {} simulated agents…", o.agents);
    let identities = site.enroll(o.agents)?;
    let installer = if o.archive { site.archive_installer() } else { Installer::Null };
    let fleet = site.fleet(identities, installer.clone(), Duration::ZERO, true)?;
    fleet.wait("every agent to connect", Duration::from_secs(120), |f| f.connected() == o.agents)?;
    let pid = site.controller_pid()?;
    let nginx = if o.baseline { Some(Nginx::start(site.dir.path())?) } else { None };

    let (mut flotte, mut baseline) = (Vec::new(), Vec::new());
    for run in 0..o.runs {
        let version = format!("1.0.{run}");
        let package = site.publish("bench", &version, o.size)?;
        let size = std::fs::metadata(&package)?.len();
        let push = |site: &Site| -> Result<Push> {
            reset_peak_rss(pid)?;
            let before = footprint::sample(pid)?;
            let started = Instant::now();
            let request = DeployRequest { name: "bench".into(), version: version.clone(), target: Target::All };
            let id = site.client.deploy(&request)?.id;
            let done = |f: &crate::sim::Observer| {
                f.times().iter().filter(|t| t.finished.is_some_and(|(at, _)| at >= started)).count()
            };
            fleet.wait("every agent to finish", o.timeout, |f| done(f) == o.agents)?;
            loop {
                let phase = site.client.rollout(id)?.phase;
                if phase == "completed" {
                    break;
                }
                ensure!(phase == "running", "rollout {id} ended {phase}; see {}", site.controller.log_path().display());
                ensure!(started.elapsed() < o.timeout, "rollout {id} did not complete within {:?}", o.timeout);
                std::thread::sleep(Duration::from_millis(10));
            }
            let wall = started.elapsed().as_secs_f64();
            let after = footprint::sample(pid)?;
            let failed = fleet.observer.times().iter().filter(|t| t.finished.is_some_and(|(_, ok)| !ok)).count();
            ensure!(failed == 0, "{failed} simulated agents failed the install");
            Ok(Push {
                wall,
                controller_cpu: after.cpu_seconds() - before.cpu_seconds(),
                controller_peak_kib: after.hwm_kib,
            })
        };
        let order = if run % 2 == 0 { [true, false] } else { [false, true] };
        for is_flotte in order {
            if is_flotte {
                let p = push(&site)?;
                eprintln!("run {}: Flotte {:.2} s, controller CPU {:.2} s", run + 1, p.wall, p.controller_cpu);
                flotte.push(p);
            } else if let Some(nginx) = &nginx {
                let b = nginx.fetch_all(&package, o.agents)?;
                eprintln!("run {}: nginx {:.2} s, nginx CPU {:.2} s", run + 1, b.wall, b.server_cpu);
                baseline.push(b);
            }
        }
        let _ = size;
    }
    let size = o.size as f64;
    Ok(report(o, size, &installer, &flotte, &baseline))
}

fn report(o: &Options, size: f64, installer: &Installer, flotte: &[Push], baseline: &[super::nginx::Fetch]) -> Report {
    let total = size * o.agents as f64;
    let fw = Stats::of(&flotte.iter().map(|p| p.wall).collect::<Vec<_>>());
    let fc = Stats::of(&flotte.iter().map(|p| p.controller_cpu).collect::<Vec<_>>());
    let fp = Stats::of(&flotte.iter().map(|p| p.controller_peak_kib as f64 / 1024.0).collect::<Vec<_>>());
    let mut table = Table::new(&[
        "",
        "wall time: median (min – max)",
        "aggregate goodput (median)",
        "server CPU s (median)",
        "server peak RSS (median)",
    ]);
    table.row(vec![
        format!("Flotte: controller → {} sim agents over QUIC", o.agents),
        fw.show(secs),
        mib_per_s(total, fw.median),
        format!("{:.2}", fc.median),
        format!("{:.1} MiB", fp.median),
    ]);
    let mut summary = Vec::new();
    if !baseline.is_empty() {
        let bw = Stats::of(&baseline.iter().map(|b| b.wall).collect::<Vec<_>>());
        let bc = Stats::of(&baseline.iter().map(|b| b.server_cpu).collect::<Vec<_>>());
        let bp = Stats::of(&baseline.iter().map(|b| b.server_peak_kib as f64 / 1024.0).collect::<Vec<_>>());
        table.row(vec![
            format!("nginx HTTPS → {} × `curl | openssl dgst -sha256`", o.agents),
            bw.show(secs),
            mib_per_s(total, bw.median),
            format!("{:.2}", bc.median),
            format!("{:.1} MiB", bp.median),
        ]);
        summary.push(format!(
            "**Flotte / nginx wall time: {:.2}×** (goal ≤ 1.5×, then ≤ 1.2×; min–max over runs {:.2}–{:.2})",
            fw.median / bw.median,
            fw.min / bw.max,
            fw.max / bw.min
        ));
    } else {
        summary.push("no baseline in this run (--no-baseline)".into());
    }
    let installer = match installer {
        Installer::Null => "null installer (verified bytes are discarded)",
        Installer::Archive { .. } => "archive installer into a tmpfs root",
    };
    Report {
        notes: vec![
            format!(
                "{} agents, package {:.1} MiB, {} interleaved runs; {installer}",
                o.agents,
                size / (1 << 20) as f64,
                o.runs
            ),
            "Flotte time: from `deploy` until the controller's rollout is `completed` (all `Succeeded` reports \
             committed); server = the flotte-controller process (CPU and peak RSS over the push)"
                .into(),
            "baseline time: from starting the first client until the last one's digest is checked; \
             server = nginx master + workers"
                .into(),
        ],
        tables: vec![table],
        summary,
    }
}

/// Checks a hex digest printed by `openssl dgst -sha256 -r`.
pub(super) fn digest_of_output(output: &[u8]) -> Result<String> {
    let text = String::from_utf8_lossy(output);
    Ok(text.split_whitespace().next().context("no digest in the output")?.to_string())
}
