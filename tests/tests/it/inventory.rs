//! The agent's inventory reaches the admin: the lab's agents appear in
//! `flottectl agents list` and `flottectl agents show` with real host facts
//! (read from this machine), and an install updates the package list.

use anyhow::{Context, Result, ensure};
use flotte_protocol::api::AgentView;
use flotte_tests::{DEADLINE, Lab, wait_for};

/// Runs the real `flottectl` binary against the lab's controller; it must succeed.
fn flottectl(lab: &Lab, args: &[&str]) -> Result<String> {
    let out = lab.flottectl(args)?;
    ensure!(out.status.success(), "flottectl {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    Ok(String::from_utf8(out.stdout)?)
}

#[test]
fn the_labs_agents_show_real_inventory_in_list_and_show() -> Result<()> {
    let mut lab = Lab::start()?;
    let key = lab.trusted_key()?;
    let _agents = lab.agents(2)?;

    let list = flottectl(&lab, &["agents", "list"])?;
    assert!(list.contains("agent-01") && list.contains("agent-02"), "{list}");
    assert!(list.contains(" cpu · ") && list.contains("GiB"), "a hardware summary per agent:\n{list}");

    let shown: AgentView = serde_json::from_str(&flottectl(&lab, &["agents", "show", "agent-01", "--json"])?)?;
    let inv = shown.inventory.context("agents show carries the inventory")?;
    assert_eq!(inv.hostname, "agent-01");
    assert_eq!(inv.arch, std::env::consts::ARCH);
    assert!(!inv.os.is_empty() && inv.os != "unknown", "{inv:?}");
    assert!(inv.hardware.memory_total > 0 && inv.hardware.cpu_cores > 0, "{inv:?}");
    assert!(inv.hardware.root_disk_total > 0, "{inv:?}");
    assert!(inv.boot_time.is_some(), "{inv:?}");
    assert_eq!(inv.dpkg_packages, None, "dpkg packages are off by default");

    let text = flottectl(&lab, &["agents", "show", &shown.id.to_string()])?;
    for field in ["hostname:", "memory:", "root disk:", "booted:", "users:", "packages:"] {
        assert!(text.contains(field), "{field} missing:\n{text}");
    }

    // An install changes the inventory; the agent sends it without a reconnect.
    lab.publish(&key, "hello", "1.0.0")?;
    lab.wait_done(lab.deploy_all("hello", "1.0.0")?)?;
    wait_for("the new package in agent-01's inventory", DEADLINE, || {
        let view: AgentView = serde_json::from_str(&flottectl(&lab, &["agents", "show", "agent-01", "--json"])?)?;
        let packages = view.inventory.map(|i| i.packages).unwrap_or_default();
        Ok(packages.iter().any(|p| p.name == "hello" && p.version == "1.0.0").then_some(()))
    })?;
    Ok(())
}

#[test]
fn the_dpkg_package_list_is_reported_when_configured() -> Result<()> {
    let mut lab = Lab::start()?;
    let _agent = lab.agent_with(|_| "report_dpkg_packages = true\n".into())?;
    let view: AgentView = serde_json::from_str(&flottectl(&lab, &["agents", "show", "agent-01", "--json"])?)?;
    let dpkg = view.inventory.and_then(|i| i.dpkg_packages).context("dpkg packages reported")?;
    assert!(dpkg.iter().any(|p| p.name == "dpkg"), "dpkg itself is installed on a Debian CI machine");
    Ok(())
}
