//! `peers`: the fanout against the tools admins use today, at N = 16 and
//! N = 64 hosts. Flotte pushes a P MiB package to N simulated agents
//! (archive installer into a tmpfs, as in `fanout --archive`); in the same
//! run, interleaved, the same-sized package goes to N hosts with
//! - `scp`, then `ssh` running `sha256sum -c` and `tar -x` ([`SshHosts::scp_fanout`]);
//! - Ansible `copy` then `command`, `forks = N`, pipelining, ControlPersist
//!   ([`SshHosts::ansible_fanout`]).
//!
//! Every host is its own loopback address of one local `sshd`, so that no
//! two hosts share an SSH connection. Needs `openssh-server` (the scenario
//! says how to install it) and installs `ansible-core` from PyPI into
//! `target/bench-ansible` on first use.

use super::fanout::{Push, push};
use super::site::Site;
use super::ssh::{SshHosts, ensure_ansible};
use super::{Report, Stats, Table, secs};
use anyhow::{Result, ensure};
use flotte_controller::lab::harness::Binaries;
use flotte_protocol::Sha256Digest;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Options {
    /// Fleet sizes, each its own measurement.
    pub hosts: Vec<usize>,
    /// Package size in bytes.
    pub size: u64,
    /// Interleaved runs of each tool per fleet size.
    pub runs: usize,
    /// Also run Ansible (a venv with ansible-core).
    pub ansible: bool,
    /// Where the Ansible venv lives.
    pub ansible_venv: PathBuf,
    /// The port `sshd` listens on.
    pub ssh_port: u16,
    pub timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            hosts: vec![16, 64],
            size: 50 << 20,
            runs: 3,
            ansible: true,
            ansible_venv: "target/bench-ansible".into(),
            ssh_port: 2222,
            timeout: Duration::from_secs(1200),
        }
    }
}

/// Wall times of each tool at one fleet size.
struct Row {
    hosts: usize,
    flotte: Vec<f64>,
    scp: Vec<f64>,
    ansible: Vec<f64>,
}

pub fn run(bins: &Binaries, o: &Options) -> Result<Report> {
    ensure!(o.runs > 0 && !o.hosts.is_empty(), "--runs and --hosts must not be empty");
    let ssh = SshHosts::start(o.ssh_port)?;
    let playbook = if o.ansible { Some(ensure_ansible(&o.ansible_venv)?) } else { None };
    let mut rows = Vec::new();
    for &hosts in &o.hosts {
        let site = Site::start(bins, "")?;
        eprintln!("peers: enrolling {hosts} simulated agents…");
        let identities = site.enroll(hosts)?;
        let fleet = site.fleet(identities, site.archive_installer(), Duration::ZERO, true)?;
        fleet.wait("every agent to connect", Duration::from_secs(120), |f| f.connected() == hosts)?;
        let pid = site.controller_pid()?;
        let mut row = Row { hosts, flotte: Vec::new(), scp: Vec::new(), ansible: Vec::new() };
        for run in 0..o.runs {
            let version = format!("1.0.{run}");
            let package = site.publish("bench", &version, o.size)?;
            let sha256 = Sha256Digest::of(&std::fs::read(&package)?).to_hex();
            // Rotate who goes first, so no tool always runs on a cooler cache.
            for turn in 0..3 {
                match (run + turn) % 3 {
                    0 => {
                        let Push { wall, .. } = push(&site, &fleet, pid, &version, hosts, o.timeout)?;
                        row.flotte.push(wall);
                    }
                    1 => row.scp.push(ssh.scp_fanout(hosts, &package, &sha256)?.as_secs_f64()),
                    _ => {
                        if let Some(playbook) = &playbook {
                            row.ansible.push(ssh.ansible_fanout(hosts, &package, &sha256, playbook)?.as_secs_f64());
                        }
                    }
                }
            }
            eprintln!(
                "peers N={hosts} run {}: Flotte {:.2} s, scp+ssh {:.2} s{}",
                run + 1,
                row.flotte[run],
                row.scp[run],
                row.ansible.get(run).map_or(String::new(), |a| format!(", Ansible {a:.2} s"))
            );
        }
        rows.push(row);
        drop(fleet);
    }
    Ok(report(o, &rows))
}

fn report(o: &Options, rows: &[Row]) -> Report {
    let mut table = Table::new(&["hosts", "tool", "wall time: median (min – max)", "tool / Flotte (median)"]);
    let mut summary = Vec::new();
    for r in rows {
        let flotte = Stats::of(&r.flotte);
        let mut add = |tool: &str, times: &[f64]| {
            if times.is_empty() {
                return None;
            }
            let s = Stats::of(times);
            table.row(vec![
                r.hosts.to_string(),
                tool.into(),
                s.show(secs),
                format!("{:.2}×", s.median / flotte.median),
            ]);
            Some(s.median / flotte.median)
        };
        add("Flotte (QUIC push, TUF + sha256 verify, archive install)", &r.flotte);
        let scp = add("scp, then ssh `sha256sum -c && tar -x`", &r.scp);
        let ansible = add("Ansible `copy` + `command` (forks = N, pipelining)", &r.ansible);
        let mut line = format!("**N = {}: scp+ssh takes {:.2}× Flotte's time", r.hosts, scp.unwrap_or(f64::NAN));
        if let Some(a) = ansible {
            line.push_str(&format!(", Ansible {a:.2}×"));
        }
        line.push_str("**");
        summary.push(line);
    }
    Report {
        notes: vec![
            format!(
                "package {:.1} MiB, {} interleaved runs per fleet size; Flotte: simulated agents, archive installer into a tmpfs root",
                o.size as f64 / (1 << 20) as f64,
                o.runs
            ),
            "Flotte time: from `deploy` until the controller's rollout is `completed`; scp/Ansible time: from \
             the first connection until every host has checked the digest and unpacked the archive"
                .into(),
            "every host is its own loopback address (127.0.0.2…) of one local sshd; ed25519 keys, no DNS".into(),
        ],
        tables: vec![table],
        summary,
    }
}
