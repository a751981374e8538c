//! Rollout resources: create (and `deploy`, a big-bang rollout), list,
//! show, and the admin commands pause / resume / approve / abort. Every
//! change is written to the audit log with who made it.

use super::{Actor, ApiResult, ApiState, Failure};
use crate::rollout::driver::after_step;
use crate::rollout::persist::{ActiveRollout, Extras};
use crate::rollout::spec::{Advance, Deferral, Mode, RolloutPolicy, SilencePolicy, parse_failure_limit, parse_waves};
use crate::rollout::targets::{self, Facts};
use crate::rollout::window::WindowError;
use crate::rollout::{CommandError, Joining, Rollout};
use crate::store::OfferTerms;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use flotte_protocol::api::{DeployRequest, DeploymentView, RolloutRequest, RolloutView, Target};
use flotte_protocol::messages::MAX_OFFER_NOTES;
use flotte_protocol::{AgentId, Timestamp};
use std::collections::BTreeMap;
use std::time::Duration;

/// Start times this far in the past are still "now" (clock skew between
/// the admin's laptop and the controller).
const START_SKEW: Duration = Duration::from_secs(60);

/// Default notice users get before a push install with deferrals.
pub const DEFAULT_NOTICE_SECS: u32 = 900;
/// Default postponement of one deferral.
pub const DEFAULT_DEFER_SECS: u32 = 3600;

pub(super) async fn create(
    State(state): State<ApiState>,
    Extension(actor): Extension<Actor>,
    Json(req): Json<RolloutRequest>,
) -> ApiResult<RolloutView> {
    let policy = policy_of(&req)?;
    let offer = offer_terms(&req, &policy, state.services.now())?;
    let plan =
        Plan { name: &req.name, version: &req.version, target: &req.target, policy, start_at: req.start_at, offer };
    let id = start(&state, &actor, plan)?;
    show_one(&state, id)
}

/// `POST /v1/deployments`: a big-bang rollout that starts now.
pub(super) async fn deploy(
    State(state): State<ApiState>,
    Extension(actor): Extension<Actor>,
    Json(req): Json<DeployRequest>,
) -> ApiResult<DeploymentView> {
    let plan = Plan {
        name: &req.name,
        version: &req.version,
        target: &req.target,
        policy: RolloutPolicy::big_bang(),
        start_at: None,
        offer: None,
    };
    let id = start(&state, &actor, plan)?;
    let view = state.services.store.list_deployments()?.into_iter().find(|d| d.id == id);
    view.map(Json).ok_or_else(|| Failure::internal("deployment vanished after insert"))
}

pub(super) fn bad(message: impl Into<String>) -> Failure {
    Failure::new(StatusCode::BAD_REQUEST, message)
}

fn policy_of(req: &RolloutRequest) -> Result<RolloutPolicy, Failure> {
    let policy = RolloutPolicy {
        waves: parse_waves(&req.waves).map_err(|e| bad(e.to_string()))?,
        success_threshold: req.success_threshold,
        failure_limit: parse_failure_limit(&req.max_failures).map_err(|e| bad(e.to_string()))?,
        soak: Duration::from_secs(req.soak_seconds),
        silence_deadline: Duration::from_secs(req.silence_seconds.max(1)),
        silence_policy: if req.silent_counts_as_failed { SilencePolicy::Failed } else { SilencePolicy::Skipped },
        advance: if req.manual { Advance::Manual } else { Advance::Automatic },
        window: req.window.as_deref().map(str::parse).transpose().map_err(|e: WindowError| bad(e.to_string()))?,
        mode: match (req.mode.as_deref().unwrap_or("push"), req.deadline) {
            ("push", None) => Mode::Push,
            ("push", Some(_)) => {
                return Err(
                    bad("a deadline applies only to pull rollouts").hint("add --mode pull, or leave out --deadline")
                );
            }
            ("pull", deadline) => Mode::Pull { deadline },
            (other, _) => return Err(bad(format!("unknown mode {other:?}; use push or pull"))),
        },
        deferral: match req.deferrals {
            None | Some(0) => None,
            Some(count) => Some(Deferral {
                count,
                notice: Duration::from_secs(req.notice_seconds.unwrap_or(DEFAULT_NOTICE_SECS).into()),
                defer_by: Duration::from_secs(req.defer_seconds.unwrap_or(DEFAULT_DEFER_SECS).max(1).into()),
            }),
        },
    };
    policy.validate().map_err(|e| bad(e.to_string()))?;
    Ok(policy)
}

/// What the offers of a pull rollout carry; `None` for push. A deadline in
/// the past is refused (the release would be required at once: that is a
/// push).
fn offer_terms(req: &RolloutRequest, policy: &RolloutPolicy, now: Timestamp) -> Result<Option<OfferTerms>, Failure> {
    if let Some(d) = policy.deferral {
        // A push with notice: delivered as an offer that becomes required
        // `notice` after the agent stores it.
        return Ok(Some(OfferTerms {
            window: policy.window.clone(),
            notice_secs: Some(u32::try_from(d.notice.as_secs()).unwrap_or(u32::MAX)),
            deferrals: d.count,
            defer_secs: u32::try_from(d.defer_by.as_secs()).unwrap_or(u32::MAX),
            ..OfferTerms::default()
        }));
    }
    let Mode::Pull { deadline } = policy.mode else {
        if req.notes.is_some() {
            return Err(bad("release notes are shown to end users only for pull rollouts").hint("add --mode pull"));
        }
        return Ok(None);
    };
    if let Some(d) = deadline
        && d <= now
    {
        return Err(bad(format!("deadline {d} is in the past (it is now {now})"))
            .hint("give a later --deadline, or use --mode push to require the release now"));
    }
    if let (Some(d), Some(start)) = (deadline, req.start_at)
        && d <= start
    {
        return Err(bad(format!("deadline {d} is not after the start time {start}")));
    }
    let notes = req.notes.as_ref().map(|n| n.trim().to_string()).filter(|n| !n.is_empty());
    if let Some(n) = &notes
        && n.len() > MAX_OFFER_NOTES
    {
        return Err(bad(format!("release notes are {} bytes; the limit is {MAX_OFFER_NOTES}", n.len())));
    }
    Ok(Some(OfferTerms { deadline, window: policy.window.clone(), notes, ..OfferTerms::default() }))
}

/// A rollout to create.
struct Plan<'a> {
    name: &'a str,
    version: &'a str,
    target: &'a Target,
    policy: RolloutPolicy,
    start_at: Option<Timestamp>,
    offer: Option<OfferTerms>,
}

/// Validates the request against the fleet and creates the rollout.
fn start(state: &ApiState, actor: &Actor, new: Plan<'_>) -> Result<u64, Failure> {
    let Plan { name, version, target, policy, start_at, offer } = new;
    let services = &state.services;
    let now = services.now();
    let label = format!("{name}@{version}");
    if services.store.release(name, version)?.is_none() {
        return Err(Failure::new(StatusCode::NOT_FOUND, format!("unknown release {label}"))
            .hint("publish it first with `flottectl package publish`"));
    }
    let start_at = match start_at {
        Some(t) if t.saturating_add(START_SKEW) < now => {
            return Err(
                bad(format!("start time {t} is in the past (it is now {now})")).hint("leave out --start to start now")
            );
        }
        Some(t) => t,
        None => now,
    };
    let agents = resolve_targets(state, target)?;
    if agents.is_empty() {
        return Err(Failure::new(StatusCode::UNPROCESSABLE_ENTITY, "no enrolled agents to deploy to")
            .hint("enroll agents first with `flottectl agents token` and `flotte-agent enroll`"));
    }
    let members = members(state, &policy, &agents)?;
    check_conflicts(state, name, version, target, &agents, None)?;
    let extras = Extras { offer, ..Extras::default() };
    let (id, step) = services.store.create_rollout_with(name, version, target, &extras, now, |id| {
        Rollout::new(id, policy.clone(), members, start_at)
    })?;
    // Committed: the new assignments go out before the audit write.
    after_step(services, id, &step);
    services.store.audit(
        &actor.0,
        "rollout.create",
        &format!(
            "rollout {id}: {label} ({}) to {} agents ({}), waves {}",
            describe_mode(&policy),
            agents.len(),
            targets::describe(target),
            policy.waves.iter().map(|w| w.to_string()).collect::<Vec<_>>().join(",")
        ),
        now,
    )?;
    Ok(id)
}

fn describe_mode(policy: &RolloutPolicy) -> String {
    match (policy.mode, policy.deferral) {
        (Mode::Pull { deadline: Some(d) }, _) => format!("pull until {d}"),
        (Mode::Push, Some(d)) => format!("push with {} deferrals", d.count),
        (other, _) => other.name().to_string(),
    }
}

/// The agents `target` reaches now. Unknown names, tags and filter fields
/// are refused.
fn resolve_targets(state: &ApiState, target: &Target) -> Result<Vec<AgentId>, Failure> {
    let store = &state.services.store;
    let agents = store.list_agents()?;
    let tags = store.all_tags()?;
    targets::check(target, &known_tags(&tags)).map_err(|e| {
        bad(e.to_string()).hint("`flottectl agents list` shows agents; `flottectl agents tag AGENT TAG` tags them")
    })?;
    if let Target::Agents(names) = target
        && let Some(name) = names.iter().find(|n| !agents.iter().any(|a| a.id.0 == **n || a.hostname == **n))
    {
        return Err(bad(format!("unknown agent {name:?}"))
            .hint("`flottectl agents list` shows enrolled agents by id and hostname"));
    }
    let none = Vec::new();
    Ok(agents
        .iter()
        .filter(|a| {
            let tags = tags.get(&a.id).unwrap_or(&none);
            targets::matches(target, &Facts { id: &a.id, hostname: &a.hostname, os: &a.os, arch: &a.arch, tags })
        })
        .map(|a| a.id.clone())
        .collect())
}

/// Every tag some agent carries, sorted.
fn known_tags(tags: &BTreeMap<AgentId, Vec<String>>) -> Vec<String> {
    let mut all: Vec<String> = tags.values().flatten().cloned().collect();
    all.sort_unstable();
    all.dedup();
    all
}

/// `agents` as the engine takes them: each with the tags it carries now,
/// which is when its group membership is read (the engine keeps the groups
/// the waves name). A wave naming a group no agent is in is refused, as an
/// unknown tag target is.
pub(super) fn members(state: &ApiState, policy: &RolloutPolicy, agents: &[AgentId]) -> Result<Vec<Joining>, Failure> {
    let mut tags = state.services.store.all_tags()?;
    policy.check_groups(&known_tags(&tags)).map_err(|e| bad(e.to_string()))?;
    Ok(agents.iter().map(|a| Joining { agent: a.clone(), groups: tags.remove(a).unwrap_or_default() }).collect())
}

/// Two unfinished rollouts of different versions of one package must not
/// reach the same agent: which one wins would depend on timing. An agent
/// is reached by a rollout if it is a member, or if the rollout's dynamic
/// target would take it in.
pub(super) fn check_conflicts(
    state: &ApiState,
    name: &str,
    version: &str,
    target: &Target,
    agents: &[AgentId],
    except: Option<u64>,
) -> Result<(), Failure> {
    let store = &state.services.store;
    for ActiveRollout { id, target: other_target, .. } in store.active_rollouts()? {
        if Some(id) == except {
            continue;
        }
        let Some(other) = store.rollout_views(Some(id))?.pop() else { continue };
        if other.name != name || other.version == version {
            continue;
        }
        let overlap = match (target, &other_target) {
            (Target::All, _) | (_, Target::All) => true,
            _ => {
                let mut reached: Vec<AgentId> =
                    store.rollout_engine(id)?.map(|r| r.members().cloned().collect()).unwrap_or_default();
                if targets::is_dynamic(&other_target) {
                    reached.extend(resolve_targets(state, &other_target).unwrap_or_default());
                }
                agents.iter().any(|a| reached.contains(a))
            }
        };
        if overlap {
            return Err(Failure::new(
                StatusCode::CONFLICT,
                format!(
                    "rollout {id} of {}@{} is still {} on some of these agents",
                    other.name, other.version, other.phase
                ),
            )
            .hint(format!("wait for it, or `flottectl rollout abort {id}` first")));
        }
    }
    Ok(())
}

pub(super) fn show_one(state: &ApiState, id: u64) -> ApiResult<RolloutView> {
    state.services.store.rollout_views(Some(id))?.pop().map(Json).ok_or_else(|| {
        Failure::new(StatusCode::NOT_FOUND, format!("no rollout {id}")).hint("`flottectl rollout list` shows them")
    })
}

pub(super) async fn list(State(state): State<ApiState>) -> ApiResult<Vec<RolloutView>> {
    Ok(Json(state.services.store.rollout_views(None)?))
}

pub(super) async fn show(State(state): State<ApiState>, Path(id): Path<u64>) -> ApiResult<RolloutView> {
    show_one(&state, id)
}

pub(super) async fn command(
    State(state): State<ApiState>,
    Extension(actor): Extension<Actor>,
    Path((id, command)): Path<(u64, String)>,
) -> ApiResult<RolloutView> {
    let services = &state.services;
    let _exists = show_one(&state, id)?;
    let now = services.now();
    let run: fn(&mut Rollout, Timestamp) -> Result<(), CommandError> = match command.as_str() {
        "pause" => |r, _| r.pause(),
        "resume" => |r, now| r.resume(now),
        "approve" => |r, now| r.approve(now),
        "abort" => |r, _| r.abort(),
        other => return Err(bad(format!("unknown rollout command {other:?}; use pause, resume, approve or abort"))),
    };
    match services.store.step_rollout(id, now, |r| run(r, now))? {
        Ok(step) => {
            after_step(services, id, &step);
            services.store.audit(&actor.0, &format!("rollout.{command}"), &format!("rollout {id}"), now)?;
            // Connected agents holding its offers drop them now. A rollout
            // without offers has nothing to withdraw: waking its sessions
            // would only make each of them read the store for nothing.
            if command == "abort" && services.store.rollout_has_offers(id)? {
                for agent in services.store.rollout_engine(id)?.iter().flat_map(|r| r.members()) {
                    services.hub.wake(agent);
                }
            }
            show_one(&state, id)
        }
        Err(e) => Err(Failure::new(StatusCode::CONFLICT, e.to_string())),
    }
}
