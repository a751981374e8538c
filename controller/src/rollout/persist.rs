//! Rollouts in the store: the engine's serialized state lives next to the
//! assignments it created, and every step is one transaction.
//!
//! Guarantees:
//! - An engine step and its effects (new assignments, the new state, the
//!   report watermark) commit together, so after a crash no agent is
//!   assigned twice and no wave advances twice.
//! - Reports are fed to the engine from the `reports` table, past a
//!   watermark stored with the state: a report stored before a crash but not
//!   yet seen by the engine is seen after the restart. None is lost.
//! - A step returns each assignment it created as the very [`Delivery`] that
//!   [`Store::pending_deliveries`] reads back for that agent, so the shell
//!   can hand it to a live session without asking the store again.

use super::engine::{Dispatch, Outcome, Rollout};
use super::window::Window;
use crate::error::ControllerError;
use crate::store::{Delivery, OfferTerms, Store, from_ts, ts};
use flotte_protocol::api::{RolloutView, Target, WaveView};
use flotte_protocol::messages::InstallState;
use flotte_protocol::{AgentId, AssignmentId, ReleaseRef, Timestamp};
use rusqlite::{OptionalExtension, Transaction, params};
use std::collections::HashMap;

/// What one engine step did.
#[derive(Debug, Default)]
pub struct Step {
    /// The assignments this step created, each as it goes to its agent
    /// (committed with the step: live sessions get them directly).
    pub deliveries: Vec<(AgentId, Delivery)>,
    /// Everything the engine dispatched, for logs and the audit trail.
    pub dispatches: Vec<Dispatch>,
}

/// What a rollout creates besides the engine and its deployment row.
#[derive(Debug, Default)]
pub struct Extras {
    /// Agents that get another version than the deployment's.
    pub versions: Vec<(AgentId, String)>,
    /// The rollout a rollback reverts.
    pub rollback_of: Option<u64>,
    /// For a pull rollout: what its offers carry.
    pub offer: Option<OfferTerms>,
}

/// One agent's assignment of a rollout, as a rollback sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentResult {
    pub agent: AgentId,
    pub hostname: String,
    /// The latest reported state; `None` before the first report.
    pub state: Option<InstallState>,
    /// The version that was active before this assignment, per the agent's
    /// latest report.
    pub active_before: Option<String>,
    /// The package's active version per the agent's latest report that
    /// names one, for any assignment of the package (this rollout's or a
    /// later one's). `received` reports name none: the agent has not
    /// looked yet.
    pub active_now: Option<String>,
}

/// An unfinished rollout, as the driver wakes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveRollout {
    pub id: u64,
    /// When the engine wants its next timeout; `None`: only news wakes it.
    pub next_timeout: Option<Timestamp>,
    /// Whom it targets (dynamic targets take in agents that appear later).
    pub target: Target,
}

/// How a report's state counts for a rollout.
pub fn outcome(state: &InstallState) -> Outcome {
    match state {
        InstallState::Succeeded => Outcome::Succeeded,
        InstallState::Offered => Outcome::Offered,
        InstallState::Deferred { .. } => Outcome::Deferred,
        InstallState::WaitingForWindow { until } => Outcome::WaitingUntil(*until),
        s if s.is_terminal() => Outcome::Failed,
        _ => Outcome::Progress,
    }
}

fn encode(rollout: &Rollout) -> Result<String, ControllerError> {
    serde_json::to_string(rollout).map_err(|e| ControllerError::Other(format!("cannot encode rollout: {e}")))
}

fn decode(text: &str) -> Result<Rollout, ControllerError> {
    serde_json::from_str(text).map_err(|e| ControllerError::Corrupt(format!("rollout state: {e}")))
}

impl Store {
    /// Creates a deployment row and its rollout, built by `build` from the
    /// new id, and runs the first engine step (a rollout due now starts).
    pub fn create_rollout(
        &self,
        name: &str,
        version: &str,
        target: &Target,
        now: Timestamp,
        build: impl FnOnce(u64) -> Rollout,
    ) -> Result<(u64, Step), ControllerError> {
        self.create_rollout_with(name, version, target, &Extras::default(), now, build)
    }

    /// [`Store::create_rollout`] with per-agent versions and the rollout a
    /// rollback reverts, committed in the same transaction.
    pub fn create_rollout_with(
        &self,
        name: &str,
        version: &str,
        target: &Target,
        extras: &Extras,
        now: Timestamp,
        build: impl FnOnce(u64) -> Rollout,
    ) -> Result<(u64, Step), ControllerError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let created = create_in(&tx, name, version, target, extras, now, build)?;
        tx.commit()?;
        Ok(created)
    }

    /// A fleet rollback as one transaction: aborts `original` unless it is
    /// finished, then creates the rollback rollout (see
    /// [`Store::create_rollout_with`]). A crash leaves both or neither, and
    /// a second rollback of the same rollout fails on the unique
    /// `rollbacks_once` index, changing nothing.
    #[allow(clippy::too_many_arguments)]
    pub fn roll_back(
        &self,
        original: u64,
        name: &str,
        version: &str,
        target: &Target,
        extras: &Extras,
        now: Timestamp,
        build: impl FnOnce(u64) -> Rollout,
    ) -> Result<RolledBack, ControllerError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        // Aborting a finished rollout is refused by the engine: nothing to do.
        let aborted = step_in(&tx, original, now, Rollout::abort)?.ok();
        let (id, step) = create_in(&tx, name, version, target, extras, now, build)?;
        tx.commit()?;
        Ok(RolledBack { aborted, id, step })
    }
}

/// What [`Store::roll_back`] did.
pub struct RolledBack {
    /// The original's abort step, if it was unfinished.
    pub aborted: Option<Step>,
    /// The rollback rollout and its first step.
    pub id: u64,
    pub step: Step,
}

/// [`Store::create_rollout_with`] inside `tx`, which the caller commits.
fn create_in(
    tx: &Transaction,
    name: &str,
    version: &str,
    target: &Target,
    extras: &Extras,
    now: Timestamp,
    build: impl FnOnce(u64) -> Rollout,
) -> Result<(u64, Step), ControllerError> {
    tx.execute(
        "INSERT INTO deployments (name, version, created_at) VALUES (?1, ?2, ?3)",
        params![name, version, ts(now)],
    )?;
    let id = tx.last_insert_rowid();
    let mut rollout = build(u64::try_from(id).unwrap_or(0));
    rollout.handle_timeout(now);
    for (agent, v) in &extras.versions {
        tx.execute(
            "INSERT INTO rollout_versions (rollout_id, agent_id, version) VALUES (?1, ?2, ?3)",
            params![id, agent.0, v],
        )?;
    }
    if let Some(of) = extras.rollback_of {
        tx.execute(
            "INSERT INTO rollbacks (id, rollback_of) VALUES (?1, ?2)",
            params![id, i64::try_from(of).unwrap_or(-1)],
        )?;
    }
    let target = serde_json::to_string(target).map_err(|e| ControllerError::Other(e.to_string()))?;
    let offer = extras
        .offer
        .as_ref()
        .map(serde_json::to_string)
        .transpose()
        .map_err(|e| ControllerError::Other(e.to_string()))?;
    tx.execute(
        "INSERT INTO rollouts (id, target, engine, phase, updated_at, offer) VALUES (?1, ?2, '', '', ?3, ?4)",
        params![id, target, ts(now), offer],
    )?;
    let issue = Issue { name, version, issued_at: now, offer: extras.offer.clone() };
    let step = apply_dispatches(tx, id, &issue, &mut rollout, now)?;
    save(tx, id, &rollout, None, now)?;
    Ok((u64::try_from(id).unwrap_or(0), step))
}

impl Store {
    /// Runs one engine step for rollout `id`: feeds it the reports it has
    /// not seen, then `action` (a command, a timeout, a new agent), and
    /// commits the result. `action`'s error aborts the step and changes
    /// nothing.
    pub fn step_rollout<E>(
        &self,
        id: u64,
        now: Timestamp,
        action: impl FnOnce(&mut Rollout) -> Result<(), E>,
    ) -> Result<Result<Step, E>, ControllerError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let step = step_in(&tx, id, now, action)?;
        if step.is_ok() {
            tx.commit()?;
        }
        Ok(step)
    }
}

/// [`Store::step_rollout`] inside `tx`, which the caller commits; writes
/// nothing when `action` fails.
fn step_in<E>(
    tx: &Transaction,
    id: u64,
    now: Timestamp,
    action: impl FnOnce(&mut Rollout) -> Result<(), E>,
) -> Result<Result<Step, E>, ControllerError> {
    let id = i64::try_from(id).unwrap_or(-1);
    /// A rollout's stored engine and deployment, still encoded.
    struct RolloutRow {
        engine: String,
        report_watermark: i64,
        name: String,
        version: String,
        created_at: i64,
        offer: Option<String>,
    }
    let Some(row) = tx
        .query_row(
            "SELECT r.engine, r.report_watermark, d.name, d.version, d.created_at, r.offer FROM rollouts r
                 JOIN deployments d ON d.id = r.id WHERE r.id = ?1",
            params![id],
            |r| {
                Ok(RolloutRow {
                    engine: r.get(0)?,
                    report_watermark: r.get(1)?,
                    name: r.get(2)?,
                    version: r.get(3)?,
                    created_at: r.get(4)?,
                    offer: r.get(5)?,
                })
            },
        )
        .optional()?
    else {
        return Err(ControllerError::Other(format!("no rollout {id}")));
    };
    let offer = row.offer.map(|t| OfferTerms::decode(&t)).transpose()?;
    let issue = Issue { name: &row.name, version: &row.version, issued_at: from_ts(row.created_at), offer };
    let mut rollout = decode(&row.engine)?;
    let mut new_watermark = row.report_watermark;
    {
        /// A report past the watermark, with its JSON state still encoded.
        struct NewReport {
            rowid: i64,
            agent: AgentId,
            state: String,
            received_at: Timestamp,
        }
        let mut stmt = tx.prepare(
            "SELECT p.rowid, p.agent_id, p.state, p.received_at FROM reports p
                 JOIN assignments a ON a.id = p.assignment_id
                 WHERE a.deployment_id = ?1 AND p.rowid > ?2 ORDER BY p.rowid",
        )?;
        let rows = stmt.query_map(params![id, row.report_watermark], |r| {
            Ok(NewReport {
                rowid: r.get(0)?,
                agent: AgentId(r.get(1)?),
                state: r.get(2)?,
                received_at: from_ts(r.get(3)?),
            })
        })?;
        for report in rows {
            let report = report?;
            let state: InstallState = serde_json::from_str(&report.state)
                .map_err(|e| ControllerError::Corrupt(format!("report state: {e}")))?;
            rollout.handle_report(report.received_at, &report.agent, outcome(&state));
            new_watermark = report.rowid;
        }
    }
    rollout.handle_timeout(now);
    if let Err(e) = action(&mut rollout) {
        return Ok(Err(e));
    }
    let step = apply_dispatches(tx, id, &issue, &mut rollout, now)?;
    save(tx, id, &rollout, Some(new_watermark), now)?;
    Ok(Ok(step))
}

impl Store {
    /// The rollout an assignment belongs to, if any.
    pub fn rollout_of_assignment(&self, assignment: u64) -> Result<Option<u64>, ControllerError> {
        let found: Option<i64> = self
            .conn()
            .query_row(
                "SELECT r.id FROM rollouts r JOIN assignments a ON a.deployment_id = r.id WHERE a.id = ?1",
                params![i64::try_from(assignment).unwrap_or(-1)],
                |r| r.get(0),
            )
            .optional()?;
        Ok(found.and_then(|v| u64::try_from(v).ok()))
    }

    /// Whether rollout `id`'s assignments travel as offers (a pull
    /// rollout, or a push with notice): only those can be withdrawn.
    pub fn rollout_has_offers(&self, id: u64) -> Result<bool, ControllerError> {
        let found: Option<bool> = self
            .conn()
            .query_row(
                "SELECT offer IS NOT NULL FROM rollouts WHERE id = ?1",
                params![i64::try_from(id).unwrap_or(-1)],
                |r| r.get(0),
            )
            .optional()?;
        Ok(found.unwrap_or(false))
    }

    /// Rollouts that are not finished, with the time each wants to be woken.
    pub fn active_rollouts(&self) -> Result<Vec<ActiveRollout>, ControllerError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT id, next_timeout, target FROM rollouts WHERE phase NOT IN ('completed', 'aborted') ORDER BY id",
        )?;
        /// An active rollout with its JSON target still encoded.
        struct ActiveRow {
            id: u64,
            next_timeout: Option<Timestamp>,
            target: String,
        }
        let rows = stmt.query_map([], |r| {
            Ok(ActiveRow {
                id: u64::try_from(r.get::<_, i64>(0)?).unwrap_or(0),
                next_timeout: r.get::<_, Option<i64>>(1)?.map(from_ts),
                target: r.get(2)?,
            })
        })?;
        rows.map(|row| {
            let ActiveRow { id, next_timeout, target } = row?;
            let target =
                serde_json::from_str(&target).map_err(|e| ControllerError::Corrupt(format!("rollout target: {e}")))?;
            Ok(ActiveRollout { id, next_timeout, target })
        })
        .collect()
    }

    /// Every rollout with its progress, newest last; or one by id.
    pub fn rollout_views(&self, only: Option<u64>) -> Result<Vec<RolloutView>, ControllerError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT r.id, d.name, d.version, d.created_at, r.engine, b.rollback_of FROM rollouts r
             JOIN deployments d ON d.id = r.id LEFT JOIN rollbacks b ON b.id = r.id
             WHERE ?1 IS NULL OR r.id = ?1 ORDER BY r.id",
        )?;
        let only = only.map(|v| i64::try_from(v).unwrap_or(-1));
        /// A rollout with its engine still encoded.
        struct ViewRow {
            id: u64,
            name: String,
            version: String,
            created_at: Timestamp,
            engine: String,
            rollback_of: Option<u64>,
        }
        let rows = stmt.query_map(params![only], |r| {
            Ok(ViewRow {
                id: u64::try_from(r.get::<_, i64>(0)?).unwrap_or(0),
                name: r.get(1)?,
                version: r.get(2)?,
                created_at: from_ts(r.get(3)?),
                engine: r.get(4)?,
                rollback_of: r.get::<_, Option<i64>>(5)?.and_then(|v| u64::try_from(v).ok()),
            })
        })?;
        rows.map(|row| {
            let row = row?;
            let mut view = view(row.id, row.name, row.version, row.created_at, &decode(&row.engine)?);
            view.rollback_of = row.rollback_of;
            Ok(view)
        })
        .collect()
    }

    /// The engine of rollout `id` as last committed, without stepping it.
    pub fn rollout_engine(&self, id: u64) -> Result<Option<Rollout>, ControllerError> {
        let engine: Option<String> = self
            .conn()
            .query_row("SELECT engine FROM rollouts WHERE id = ?1", params![i64::try_from(id).unwrap_or(-1)], |r| {
                r.get(0)
            })
            .optional()?;
        engine.map(|e| decode(&e)).transpose()
    }

    /// Every assignment of rollout `id`, with its state and the version the
    /// agent last said was active before it: what a rollback works from.
    pub fn rollout_results(&self, id: u64) -> Result<Vec<AgentResult>, ControllerError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT a.agent_id, g.hostname, a.state,
               (SELECT p.active_before FROM reports p WHERE p.assignment_id = a.id ORDER BY p.rowid DESC LIMIT 1),
               (SELECT p.active_after FROM reports p JOIN assignments x ON x.id = p.assignment_id
                 WHERE p.agent_id = a.agent_id AND x.name = a.name AND p.active_after IS NOT NULL
                 ORDER BY p.seq DESC LIMIT 1)
             FROM assignments a JOIN agents g ON g.id = a.agent_id
             WHERE a.deployment_id = ?1 ORDER BY g.hostname, a.agent_id",
        )?;
        /// The result without its JSON state, which is decoded after.
        struct ResultRow {
            result: AgentResult,
            state: Option<String>,
        }
        let rows = stmt.query_map(params![i64::try_from(id).unwrap_or(-1)], |r| {
            Ok(ResultRow {
                result: AgentResult {
                    agent: AgentId(r.get(0)?),
                    hostname: r.get(1)?,
                    state: None,
                    active_before: r.get(3)?,
                    active_now: r.get(4)?,
                },
                state: r.get(2)?,
            })
        })?;
        rows.map(|row| {
            let ResultRow { mut result, state } = row?;
            result.state = state
                .map(|s| serde_json::from_str::<InstallState>(&s))
                .transpose()
                .map_err(|e| ControllerError::Corrupt(format!("assignment state: {e}")))?;
            Ok(result)
        })
        .collect()
    }

    /// Appends to the audit log: who did what, when.
    pub fn audit(&self, actor: &str, action: &str, detail: &str, now: Timestamp) -> Result<(), ControllerError> {
        self.conn().execute(
            "INSERT INTO audit_log (at, actor, action, detail) VALUES (?1, ?2, ?3, ?4)",
            params![ts(now), actor, action, detail],
        )?;
        Ok(())
    }
}

/// What every assignment of one rollout carries.
struct Issue<'a> {
    name: &'a str,
    /// The deployment's version; some agents of a rollback get their own.
    version: &'a str,
    /// When the deployment was created.
    issued_at: Timestamp,
    /// A pull rollout's (or a push with notice's) offer terms.
    offer: Option<OfferTerms>,
}

/// Records the engine's dispatches: one `assignments` row per new
/// assignment, through one prepared statement (a wave of 10,000 agents is
/// 10,000 inserts in the step's transaction).
fn apply_dispatches(
    tx: &Transaction<'_>,
    id: i64,
    issue: &Issue<'_>,
    rollout: &mut Rollout,
    now: Timestamp,
) -> Result<Step, ControllerError> {
    let mut step = Step::default();
    let mut own_versions: Option<HashMap<String, String>> = None;
    while let Some(dispatch) = rollout.poll_dispatch() {
        if let Dispatch::Assign { agent, .. } = &dispatch {
            let own = match &mut own_versions {
                Some(versions) => versions,
                None => own_versions.insert(rollout_versions(tx, id)?),
            };
            let version = own.get(&agent.0).map_or(issue.version, String::as_str);
            let inserted = tx
                .prepare_cached(
                    "INSERT INTO assignments (deployment_id, agent_id, name, version, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (deployment_id, agent_id) DO NOTHING",
                )?
                .execute(params![id, agent.0, issue.name, version, ts(now)])?;
            if inserted == 1 {
                let assignment = AssignmentId(u64::try_from(tx.last_insert_rowid()).unwrap_or(0));
                let release = ReleaseRef { name: issue.name.to_string(), version: version.to_string() };
                let delivery = Delivery::new(assignment, release, issue.issued_at, issue.offer.as_ref());
                step.deliveries.push((agent.clone(), delivery));
            }
        }
        step.dispatches.push(dispatch);
    }
    Ok(step)
}

/// The agents of rollout `id` that get another version than its
/// deployment's (a rollback's), by agent id.
fn rollout_versions(tx: &Transaction<'_>, id: i64) -> Result<HashMap<String, String>, ControllerError> {
    let mut stmt = tx.prepare("SELECT agent_id, version FROM rollout_versions WHERE rollout_id = ?1")?;
    let rows = stmt.query_map(params![id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn save(
    tx: &Transaction<'_>,
    id: i64,
    rollout: &Rollout,
    watermark: Option<i64>,
    now: Timestamp,
) -> Result<(), ControllerError> {
    tx.execute(
        "UPDATE rollouts SET engine = ?2, phase = ?3, next_timeout = ?4, updated_at = ?5,
         report_watermark = COALESCE(?6, report_watermark) WHERE id = ?1",
        params![id, encode(rollout)?, rollout.phase().name(), rollout.poll_timeout().map(ts), ts(now), watermark],
    )?;
    Ok(())
}

fn view(id: u64, name: String, version: String, created_at: Timestamp, rollout: &Rollout) -> RolloutView {
    use super::engine::{Phase, Stage};
    let window_opens = match rollout.phase() {
        Phase::Running { stage: Stage::OutsideWindow { opens }, .. }
        | Phase::Paused { stage: Stage::OutsideWindow { opens }, .. } => Some(*opens),
        _ => None,
    };
    let (wave, stage, reason, start_at) = match rollout.phase() {
        Phase::Scheduled { start_at } => (None, None, None, Some(*start_at)),
        Phase::Running { wave, stage } | Phase::Paused { wave, stage } => {
            let stage = match stage {
                Stage::Deploying => "deploying",
                Stage::Soaking { .. } => "soaking",
                Stage::AwaitingApproval => "awaiting_approval",
                Stage::OutsideWindow { .. } => "outside_window",
                Stage::AwaitingDeadline { .. } => "awaiting_deadline",
            };
            (Some(*wave), Some(stage.to_string()), None, None)
        }
        Phase::Halted { wave, reason } => (Some(*wave), None, Some(reason.clone()), None),
        Phase::Completed | Phase::Aborted => (None, None, None, None),
    };
    let waves = rollout
        .policy()
        .waves
        .iter()
        .zip(rollout.wave_tallies())
        .map(|(size, t)| WaveView {
            size: size.to_string(),
            assigned: t.assigned,
            pending: t.pending,
            succeeded: t.succeeded,
            failed: t.failed,
            silent: t.silent,
            offered: t.offered,
            deferred: t.deferred,
        })
        .collect();
    RolloutView {
        id,
        name,
        version,
        phase: rollout.phase().name().to_string(),
        wave,
        stage,
        reason,
        targeted: rollout.fleet(),
        waves,
        created_at,
        start_at,
        rollback_of: None,
        window: rollout.policy().window.as_ref().map(Window::to_string),
        window_opens,
        mode: rollout.policy().mode.name().to_string(),
        deadline: rollout.policy().mode.deadline(),
        deferrals: rollout.policy().deferral.map_or(0, |d| d.count),
    }
}
