//! Fleet rollback as a plan: which agents go back to which version. Pure:
//! it takes what the agents reported for the original rollout and decides.
//!
//! Guarantees:
//! - Only agents whose latest state for the original rollout is
//!   *succeeded* (they committed the release) are reverted, each to the
//!   version its own report says was active before.
//! - An agent that had nothing before is skipped, not uninstalled
//!   (uninstalling through a rollout is out of scope), and the plan says so.
//! - An agent whose install is still in flight is skipped with a reason;
//!   rolling back again after it settles reverts it.
//! - Agents that failed or rolled back by themselves already run their
//!   previous version and are left alone.
//! - An agent that committed the release but whose latest report for the
//!   package (from any rollout) says another version is active now has
//!   moved on; it is skipped with the version it runs.

use super::persist::AgentResult;
use flotte_protocol::AgentId;
use flotte_protocol::messages::InstallState;
use std::collections::BTreeMap;

/// What a rollback will do.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Each reverted agent and the version it goes back to.
    pub revert: BTreeMap<AgentId, String>,
    /// Agents left alone: (agent, hostname, reason).
    pub skipped: Vec<(AgentId, String, String)>,
}

impl Plan {
    /// The version most reverted agents go back to (ties: the greatest
    /// string), which names the rollback rollout.
    pub fn main_version(&self) -> Option<&str> {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for v in self.revert.values() {
            *counts.entry(v).or_default() += 1;
        }
        counts.into_iter().max_by_key(|(v, n)| (*n, *v)).map(|(v, _)| v)
    }

    /// The distinct versions the rollback needs published.
    pub fn versions(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.revert.values().map(String::as_str).collect();
        v.sort_unstable();
        v.dedup();
        v
    }
}

/// Plans the rollback of `version` from the original rollout's results.
pub fn plan(version: &str, results: &[AgentResult]) -> Plan {
    let mut plan = Plan::default();
    for r in results {
        let skip = |reason: String| (r.agent.clone(), r.hostname.clone(), reason);
        match (&r.state, r.active_before.as_deref()) {
            (Some(InstallState::Succeeded), _) if r.active_now.as_deref() != Some(version) => {
                plan.skipped.push(skip(format!(
                    "it runs {} now, not {version}; it moved on after this rollout",
                    r.active_now.as_deref().unwrap_or("nothing")
                )))
            }
            (Some(InstallState::Succeeded), Some(before)) if before != version => {
                plan.revert.insert(r.agent.clone(), before.to_string());
            }
            (Some(InstallState::Succeeded), Some(_)) => {
                plan.skipped.push(skip(format!("it already ran {version} before the rollout")));
            }
            (Some(InstallState::Succeeded), None) => {
                plan.skipped.push(skip("it had no version before; uninstalling is not part of a rollback".into()))
            }
            (Some(s), _) if s.is_terminal() => {
                plan.skipped.push(skip(format!("it did not commit {version} ({}); nothing to revert", s.name())))
            }
            (s, _) => plan.skipped.push(skip(format!(
                "its install of {version} is still in flight ({}); roll back again once it settles",
                s.as_ref().map_or("not started", InstallState::name)
            ))),
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotte_protocol::messages::FailureClass;

    /// An agent's result for a rollout of 2.0, which it still runs if it
    /// committed it.
    fn result(agent: &str, state: Option<InstallState>, before: Option<&str>) -> AgentResult {
        let active_now = if state == Some(InstallState::Succeeded) { Some("2.0") } else { before };
        AgentResult {
            agent: AgentId(agent.into()),
            hostname: format!("host-{agent}"),
            state,
            active_before: before.map(str::to_string),
            active_now: active_now.map(str::to_string),
        }
    }

    #[test]
    fn an_agent_that_moved_on_to_another_version_is_not_sent_back() {
        let mut moved = result("a", Some(InstallState::Succeeded), Some("1.0"));
        moved.active_now = Some("2.1".into());
        let mut gone = result("b", Some(InstallState::Succeeded), Some("1.0"));
        gone.active_now = None;
        let stayed = result("c", Some(InstallState::Succeeded), Some("1.0"));
        let plan = plan("2.0", &[moved, gone, stayed]);
        assert_eq!(plan.revert.keys().map(|a| a.0.as_str()).collect::<Vec<_>>(), ["c"]);
        let reasons: Vec<&str> = plan.skipped.iter().map(|(_, _, r)| r.as_str()).collect();
        assert_eq!(
            reasons,
            [
                "it runs 2.1 now, not 2.0; it moved on after this rollout",
                "it runs nothing now, not 2.0; it moved on after this rollout"
            ]
        );
    }

    #[test]
    fn only_agents_that_committed_the_release_go_back_to_their_own_previous_version() {
        let failed = InstallState::Failed { class: FailureClass::Install, message: "x".into() };
        let rolled = InstallState::RolledBack { class: FailureClass::Health, message: "x".into() };
        // (agent, latest state, active before, reverted to | skip reason contains)
        type Row<'a> = (&'a str, Option<InstallState>, Option<&'a str>, Result<&'a str, &'a str>);
        let table: &[Row] = &[
            ("a", Some(InstallState::Succeeded), Some("1.0"), Ok("1.0")),
            ("b", Some(InstallState::Succeeded), Some("0.9"), Ok("0.9")),
            ("c", Some(InstallState::Succeeded), None, Err("no version before")),
            ("d", Some(InstallState::Succeeded), Some("2.0"), Err("already ran 2.0")),
            ("e", Some(failed), Some("1.0"), Err("did not commit 2.0 (failed)")),
            ("f", Some(rolled), Some("1.0"), Err("did not commit 2.0 (rolled_back)")),
            ("g", Some(InstallState::HealthChecking), Some("1.0"), Err("still in flight (health_checking)")),
            ("h", None, None, Err("still in flight (not started)")),
        ];
        let results: Vec<AgentResult> = table.iter().map(|(a, s, b, _)| result(a, s.clone(), *b)).collect();
        let plan = plan("2.0", &results);
        for (agent, _, _, expected) in table {
            let id = AgentId((*agent).into());
            match expected {
                Ok(v) => assert_eq!(plan.revert.get(&id).map(String::as_str), Some(*v), "{agent}"),
                Err(reason) => {
                    let skipped = plan.skipped.iter().find(|(a, _, _)| *a == id);
                    let why = skipped.map(|(_, _, r)| r.as_str()).unwrap_or("(not skipped)");
                    assert!(why.contains(reason), "{agent}: {why}");
                }
            }
        }
        assert_eq!(plan.versions(), ["0.9", "1.0"]);
    }

    #[test]
    fn the_rollback_is_named_after_the_version_most_agents_go_back_to() {
        let ok = Some(InstallState::Succeeded);
        let results = [
            result("a", ok.clone(), Some("1.0")),
            result("b", ok.clone(), Some("0.9")),
            result("c", ok.clone(), Some("1.0")),
        ];
        assert_eq!(plan("2.0", &results).main_version(), Some("1.0"));
        assert_eq!(plan("2.0", &[]).main_version(), None);
    }
}
