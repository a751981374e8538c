//! Each `flotte-bench` scenario at a tiny size: it completes, every push is
//! committed, every digest matches, and its table is sane. No timing is
//! asserted here; speed belongs to `flotte-bench` itself (docs/BENCHMARKS.md).

use flotte_controller::lab::harness::Binaries;
use flotte_tests::bench::{Report, fanout, peers, scale, verify};
use std::time::Duration;

/// The numeric prefix of a cell like `1.23 s (1.0 – 2.0)` or `**12.5 KiB**`.
fn number(cell: &str) -> f64 {
    let s: String = cell.trim_start_matches('*').chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
    s.parse().unwrap_or_else(|_| panic!("no number in {cell:?}"))
}

fn row<'a>(report: &'a Report, first_cell: &str) -> &'a [String] {
    let found = report.tables.iter().flat_map(|t| &t.rows).find(|r| r[0].contains(first_cell));
    found.unwrap_or_else(|| panic!("no row {first_cell:?} in\n{}", report.render(false)))
}

#[test]
fn verify_scenario_hashes_and_checks_the_file_on_both_sides() {
    let dir = tempfile::tempdir().unwrap();
    let options = verify::Options { size: 4 << 20, runs: 2, dir: dir.path().to_path_buf() };
    let report = verify::run(&options).unwrap();
    let flotte = row(&report, "Flotte agent");
    let openssl = row(&report, "openssl");
    assert!(number(&flotte[1]) > 0.0 && number(&openssl[1]) > 0.0, "{}", report.render(false));
    assert!(report.summary[0].contains("Flotte / openssl throughput"), "{:?}", report.summary);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "the scenario leaves its file behind");
}

#[test]
fn fanout_scenario_installs_on_every_sim_agent_and_runs_the_nginx_baseline() {
    let options = fanout::Options {
        agents: 3,
        size: 1 << 20,
        runs: 1,
        archive: true,
        baseline: true,
        timeout: Duration::from_secs(120),
    };
    let report = fanout::run(&Binaries::locate().unwrap(), &options).unwrap();
    let flotte = row(&report, "Flotte: controller → 3 sim agents");
    let nginx = row(&report, "nginx HTTPS → 3");
    assert!(number(&flotte[1]) > 0.0 && number(&nginx[1]) > 0.0, "{}", report.render(false));
    assert!(number(&flotte[4]) > 0.0, "controller peak RSS missing: {flotte:?}");
    assert!(report.summary[0].contains("Flotte / nginx wall time"), "{:?}", report.summary);
}

#[test]
fn scale_scenario_connects_pushes_to_and_reconnects_every_sim_agent() {
    let options = scale::Options {
        agents: 20,
        idle: Duration::from_secs(1),
        spread: Duration::ZERO,
        timeout: Duration::from_secs(120),
        label: "smoke".into(),
        pushes: 2,
        storm: true,
        baseline: true,
    };
    let report = scale::run(&Binaries::locate().unwrap(), &options).unwrap();
    assert_eq!(row(&report, "connected agents")[1], "20");
    assert!(number(&row(&report, "bare quinn")[1]) > 0.0, "{}", report.render(false));
    assert!(number(&row(&report, "Flotte / bare quinn, memory")[1]) > 0.0, "{}", report.render(false));
    assert!(row(&report, "Flotte / bare quinn, keep-alive CPU")[1].ends_with("×**"), "{}", report.render(false));
    let latency = &row(&report, "push latency")[1];
    assert_eq!(latency.matches(" / ").count(), 2, "p50 / p99 / max: {latency}");
    assert!(row(&report, "push latency")[0].contains("of 2 pushes"), "{}", report.render(false));
    assert!(number(&row(&report, "reconnect storm")[1]) > 0.0, "{}", report.render(false));
}

#[test]
fn peers_scenario_pushes_to_every_host_with_flotte_scp_and_ansible() {
    // A free port for this test's sshd (0.0.0.0, as the scenario listens).
    let port = std::net::TcpListener::bind("0.0.0.0:0").unwrap().local_addr().unwrap().port();
    let options = peers::Options {
        hosts: vec![2],
        size: 1 << 20,
        runs: 1,
        ansible: true,
        ansible_venv: std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-ansible"),
        ssh_port: port,
        timeout: Duration::from_secs(120),
    };
    let report = peers::run(&Binaries::locate().unwrap(), &options).unwrap();
    let rows: Vec<&Vec<String>> = report.tables.iter().flat_map(|t| &t.rows).collect();
    for tool in ["Flotte", "scp", "Ansible"] {
        let cells = rows.iter().find(|r| r[1].starts_with(tool)).unwrap_or_else(|| panic!("no {tool} row: {rows:?}"));
        assert_eq!(cells[0], "2", "{cells:?}");
        assert!(number(&cells[2]) > 0.0, "{}", report.render(false));
    }
    assert!(report.summary[0].contains("N = 2: scp+ssh takes"), "{:?}", report.summary);
}

#[test]
fn idle_scenario_measures_a_connected_agent_and_its_controller() {
    let bins = Binaries::locate().unwrap();
    let bin_dir = bins.agent.parent().unwrap();
    let out = std::process::Command::new(bin_dir.join("flotte-bench"))
        .args(["idle", "--idle-secs", "1", "--settle-secs", "0", "--bin-dir"])
        .arg(bin_dir)
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    for row in ["flotte-agent (idle, connected)", "flotte-controller (1 agent)", "flotte-agent "] {
        assert!(stdout.contains(row), "no {row:?} in\n{stdout}");
    }
}
