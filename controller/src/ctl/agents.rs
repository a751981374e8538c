//! `flottectl agents list|show`: finding one agent and rendering inventories.
//!
//! Guarantees: [`find`] matches an agent by exact id first, then by exact
//! hostname, and refuses an ambiguous hostname rather than picking one;
//! rendering never fails, whatever the agent reported.

use crate::ctl::output;
use flotte_protocol::Timestamp;
use flotte_protocol::api::AgentView;
use flotte_protocol::messages::Inventory;
use std::fmt::Write as _;
use std::time::SystemTime;

/// Why [`find`] found no single agent.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FindError {
    #[error("no agent has the id or hostname {0:?} (see flottectl agents list)")]
    NotFound(String),
    #[error("{count} agents are called {name:?}; give the id instead: {ids}")]
    Ambiguous { name: String, count: usize, ids: String },
}

/// The agent whose id or hostname is `key`.
pub fn find<'a>(agents: &'a [AgentView], key: &str) -> Result<&'a AgentView, FindError> {
    if let Some(a) = agents.iter().find(|a| a.id.to_string() == key) {
        return Ok(a);
    }
    let named: Vec<&AgentView> = agents.iter().filter(|a| a.hostname == key).collect();
    match named.as_slice() {
        [] => Err(FindError::NotFound(key.to_string())),
        [one] => Ok(one),
        many => Err(FindError::Ambiguous {
            name: key.to_string(),
            count: many.len(),
            ids: many.iter().map(|a| a.id.to_string()).collect::<Vec<_>>().join(", "),
        }),
    }
}

/// One line for `agents list`: `4 cpu · 7.8 GiB · / 12.0 GiB free · up 3d · alice`.
pub fn summary(agent: &AgentView, now: Timestamp) -> String {
    let Some(inv) = &agent.inventory else { return "-".into() };
    let hw = &inv.hardware;
    let mut parts = vec![format!("{} cpu", hw.cpu_cores), output::size(hw.memory_total)];
    if hw.root_disk_total > 0 {
        parts.push(format!("/ {} free", output::size(hw.root_disk_free)));
    }
    if let Some(up) = uptime(inv, now) {
        parts.push(format!("up {up}"));
    }
    if !inv.users.is_empty() {
        parts.push(inv.users.join(","));
    }
    parts.join(" · ")
}

/// Everything known about one agent, for `agents show`.
pub fn details(agent: &AgentView, now: Timestamp) -> String {
    let mut out = String::new();
    let mut line = |k: &str, v: String| {
        let _ = writeln!(out, "{:<14} {v}", format!("{k}:"));
    };
    line("id", agent.id.to_string());
    line("hostname", agent.hostname.clone());
    line("status", if agent.online { "online".into() } else { "offline".into() });
    line("agent version", agent.agent_version.clone());
    line("enrolled", agent.enrolled_at.to_string());
    line("last seen", agent.last_seen.map_or("never".into(), |t| t.to_string()));
    let Some(inv) = &agent.inventory else {
        line("inventory", "none yet (the agent has not connected)".into());
        return out;
    };
    let hw = &inv.hardware;
    line("os", format!("{} ({})", inv.os, inv.os_version));
    line("kernel", inv.kernel.clone());
    line("arch", inv.arch.clone());
    line("cpu", format!("{} × {}", hw.cpu_cores, or_unknown(&hw.cpu_model)));
    line("memory", output::size(hw.memory_total));
    line("root disk", format!("{} free of {}", output::size(hw.root_disk_free), output::size(hw.root_disk_total)));
    line(
        "booted",
        match (inv.boot_time, uptime(inv, now)) {
            (Some(t), Some(up)) => format!("{t} (up {up})"),
            (Some(t), None) => t.to_string(),
            _ => "unknown".into(),
        },
    );
    line("users", if inv.users.is_empty() { "nobody logged in".into() } else { inv.users.join(", ") });
    let packages = inv.packages.iter().map(|p| format!("{}@{}", p.name, p.version)).collect::<Vec<_>>();
    line("packages", if packages.is_empty() { "none".into() } else { packages.join(" ") });
    match &inv.dpkg_packages {
        None => line("dpkg", "not reported (report_dpkg_packages = false)".into()),
        Some(list) => {
            line("dpkg", format!("{} packages", list.len()));
            for p in list {
                let _ = writeln!(out, "  {} {}", p.name, p.version);
            }
        }
    }
    out
}

/// The clock `flottectl` runs with, for uptimes.
pub fn now() -> Timestamp {
    Timestamp::from_system_time(SystemTime::now())
}

fn uptime(inv: &Inventory, now: Timestamp) -> Option<String> {
    let boot = inv.boot_time?;
    (now >= boot).then(|| {
        let secs = now.saturating_since(boot).as_secs();
        let rounded = if secs >= 86_400 { secs / 3600 * 3600 } else { secs / 60 * 60 };
        humantime::format_duration(std::time::Duration::from_secs(rounded)).to_string()
    })
}

fn or_unknown(s: &str) -> &str {
    if s.is_empty() { "unknown" } else { s }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotte_protocol::AgentId;

    fn agent(id: &str, host: &str) -> AgentView {
        AgentView {
            id: AgentId(id.into()),
            hostname: host.into(),
            os: "Debian".into(),
            arch: "x86_64".into(),
            agent_version: "0.1.0".into(),
            online: true,
            enrolled_at: Timestamp::EPOCH,
            last_seen: None,
            packages: vec![],
            inventory: None,
        }
    }

    #[test]
    fn find_prefers_ids_and_refuses_ambiguous_hostnames() {
        let agents = vec![agent("a1", "ws"), agent("a2", "ws"), agent("a3", "a1")];
        assert_eq!(find(&agents, "a1").unwrap().id.0, "a1");
        assert_eq!(find(&agents, "a3").unwrap().hostname, "a1");
        assert!(matches!(find(&agents, "ws"), Err(FindError::Ambiguous { count: 2, .. })));
        assert!(matches!(find(&agents, "nope"), Err(FindError::NotFound(_))));
    }

    #[test]
    fn summaries_and_details_show_the_inventory() {
        let mut a = agent("a1", "ws");
        assert_eq!(summary(&a, Timestamp::EPOCH), "-");
        let mut inv = Inventory { hostname: "ws".into(), ..Default::default() };
        inv.hardware.cpu_cores = 4;
        inv.hardware.memory_total = 8 << 30;
        inv.boot_time = Some(Timestamp::from_unix_millis(1000));
        inv.users = vec!["alice".into()];
        a.inventory = Some(inv);
        let now = Timestamp::from_unix_millis(1000 + 90 * 60 * 1000);
        assert_eq!(summary(&a, now), "4 cpu · 8.0 GiB · up 1h 30m · alice");
        let text = details(&a, now);
        assert!(text.contains("memory:        8.0 GiB") && text.contains("not reported"), "{text}");
    }
}
