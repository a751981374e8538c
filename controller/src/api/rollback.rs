//! `POST /v1/rollouts/{id}/rollback`: fleet rollback. Every agent that
//! committed the rollout's release goes back to the version it ran before,
//! through a new rollout that follows the same rules (waves, thresholds,
//! soak, approval), by default those of the original.
//!
//! Guarantees:
//! - The plan comes from the agents' own reports (`active_before`), see
//!   [`crate::rollout::rollback`]; agents that had nothing before are
//!   skipped and listed, never uninstalled.
//! - Every version the rollback needs must be a published (hence signed)
//!   release; otherwise nothing changes.
//! - A rollout is rolled back at most once; a second request is refused.
//! - An original rollout that is still unfinished (running, paused,
//!   halted) is aborted in the same transaction that creates the rollback,
//!   so it cannot race the rollback and a crash leaves both or neither;
//!   both actions are in the audit log.
//! - An agent whose latest report says it no longer runs the release
//!   (another rollout moved it on) is skipped, not sent back.
//! - The previous versions go out as ordinary assignments: the agent
//!   verifies and installs them like any release (a kept version is
//!   re-activated).
//! - Agents refuse a downgrade that no signed rollback authorisation
//!   covers, so a rollback to an older version is refused here first unless
//!   its targets entry authorises replacing the rolled-back version
//!   (`flottectl package allow-rollback`). The controller cannot sign that
//!   itself: it never holds a targets key.

use super::rollouts::{bad, check_conflicts, members, show_one};
use super::{Actor, ApiResult, ApiState, Failure};
use crate::rollout::Rollout;
use crate::rollout::driver::after_step;
use crate::rollout::persist::Extras;
use crate::rollout::rollback;
use crate::rollout::spec::{Advance, Mode, RolloutPolicy, parse_failure_limit, parse_waves};
use crate::tuf::repository;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use flotte_protocol::AgentId;
use flotte_protocol::api::{RollbackRequest, RollbackView, SkippedAgent, Target};
use flotte_protocol::version::check_downgrade;
use std::time::Duration;

pub(super) async fn rollback(
    State(state): State<ApiState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<u64>,
    Json(req): Json<RollbackRequest>,
) -> ApiResult<RollbackView> {
    let services = &state.services;
    let now = services.now();
    let original = show_one(&state, id)?.0;
    if let Some(earlier) = services.store.rollout_views(None)?.into_iter().find(|r| r.rollback_of == Some(id)) {
        return Err(Failure::new(
            StatusCode::CONFLICT,
            format!("rollout {id} was already rolled back by rollout {} ({})", earlier.id, earlier.phase),
        )
        .hint(format!("`flottectl rollout show {}` shows how far it got", earlier.id)));
    }
    let engine = services.store.rollout_engine(id)?.ok_or_else(|| Failure::internal("rollout without engine"))?;
    let policy = policy_of(engine.policy(), &req)?;
    let plan = rollback::plan(&original.version, &services.store.rollout_results(id)?);
    let skipped: Vec<SkippedAgent> = plan
        .skipped
        .iter()
        .map(|(agent, hostname, reason)| SkippedAgent {
            agent: agent.clone(),
            hostname: hostname.clone(),
            reason: reason.clone(),
        })
        .collect();
    let Some(main) = plan.main_version().map(str::to_string) else {
        return Err(Failure::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "no agent committed {}@{} with a version before it; nothing to roll back",
                original.name, original.version
            ),
        )
        .hint("`flottectl rollout show ID` shows who succeeded"));
    };
    for version in plan.versions() {
        if services.store.release(&original.name, version)?.is_none() {
            return Err(Failure::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("{}@{version}, which agents ran before, is not a published release", original.name),
            )
            .hint("publish it again (signed) with `flottectl package publish`, then retry"));
        }
    }
    for version in plan.versions() {
        let up_to = repository::rollback_up_to(&services.store, &original.name, version)?;
        if let Err(refusal) = check_downgrade(&original.name, version, &original.version, up_to.as_deref()) {
            return Err(Failure::new(StatusCode::UNPROCESSABLE_ENTITY, format!("agents would refuse it: {refusal}"))
                .hint("sign the rollback authorisation with the key of the role that signed the release, then retry"));
        }
    }
    let agents: Vec<AgentId> = plan.revert.keys().cloned().collect();
    let target = Target::Agents(agents.iter().map(|a| a.0.clone()).collect());
    check_conflicts(&state, &original.name, &main, &target, &agents, Some(id))?;

    let extras = Extras {
        versions: plan.revert.iter().filter(|(_, v)| **v != main).map(|(a, v)| (a.clone(), v.clone())).collect(),
        rollback_of: Some(id),
        offer: None,
    };
    let members = members(&state, &policy, &agents)?;
    let done = services.store.roll_back(id, &original.name, &main, &target, &extras, now, |new_id| {
        Rollout::new(new_id, policy.clone(), members, now)
    })?;
    if let Some(aborted) = &done.aborted {
        services.store.audit(&actor.0, "rollout.abort", &format!("rollout {id}: aborted to roll it back"), now)?;
        after_step(services, id, aborted);
    }
    let (new_id, step) = (done.id, done.step);
    services.store.audit(
        &actor.0,
        "rollout.rollback",
        &format!(
            "rollout {new_id}: rolls back rollout {id} ({}@{}) on {} agents to {}, {} skipped",
            original.name,
            original.version,
            agents.len(),
            plan.versions().join(","),
            skipped.len()
        ),
        now,
    )?;
    after_step(services, new_id, &step);
    Ok(Json(RollbackView { rollout: show_one(&state, new_id)?.0, skipped }))
}

/// The original's policy with the request's overrides, validated.
fn policy_of(original: &RolloutPolicy, req: &RollbackRequest) -> Result<RolloutPolicy, Failure> {
    let mut policy = original.clone();
    // A rollback reverts what agents committed: it is required at once, never
    // an offer, and users may not defer it.
    policy.mode = Mode::Push;
    policy.deferral = None;
    if let Some(waves) = &req.waves {
        policy.waves = parse_waves(waves).map_err(|e| bad(e.to_string()))?;
    }
    if let Some(s) = req.success_threshold {
        policy.success_threshold = s;
    }
    if let Some(f) = &req.max_failures {
        policy.failure_limit = parse_failure_limit(f).map_err(|e| bad(e.to_string()))?;
    }
    if let Some(soak) = req.soak_seconds {
        policy.soak = Duration::from_secs(soak);
    }
    if let Some(manual) = req.manual {
        policy.advance = if manual { Advance::Manual } else { Advance::Automatic };
    }
    policy.validate().map_err(|e| bad(e.to_string()))?;
    Ok(policy)
}
