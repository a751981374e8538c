//! The rollout engine: one rollout's policy as a pure state machine.
//!
//! Inputs are events plus `now` ([`Rollout::handle_report`],
//! [`Rollout::add_agent`], [`Rollout::handle_timeout`], admin commands);
//! outputs are [`Dispatch`]es ([`Rollout::poll_dispatch`]) and the next
//! time it wants to be called ([`Rollout::poll_timeout`]). No sockets, no
//! files, no clock, no randomness: a test can drive 10,000 agents through a
//! rollout in milliseconds, and the controller can persist the whole value
//! (serde) after every step and resume exactly where it was.
//!
//! # The arithmetic
//! - Every targeted agent is in one of five states: *unassigned*, *pending*
//!   (assigned, no final word), *succeeded*, *failed* (including rolled
//!   back), or *silent* (pending past the silence deadline).
//! - *Silent* agents count as failed or leave the denominator, by policy.
//!   A silent agent that reports later counts by what it reports: every
//!   agent counts once, by its latest state (so a retried agent counts by its
//!   final state).
//! - The **failure limit** is checked after every event, over everything
//!   assigned so far: `failed > n`, or `failed > p% × counted`, where
//!   `counted = assigned − skipped`. Crossing it halts the rollout.
//! - A wave **passes** when `succeeded ≥ threshold% × counted` for that
//!   wave's own members. A wave whose members were all skipped has produced
//!   no evidence and waits for an admin's approval instead of passing.
//! - After passing, the wave **soaks**; failures during the soak still
//!   count, and the wave must still pass when the soak ends.
//! - With a maintenance window, a wave starts only while the window is
//!   open; a wave that falls due outside it waits (stage *outside window*)
//!   until the next opening. A wave already out keeps going (its agents
//!   hold their assignments); agents joining the last wave are assigned
//!   at once.
//! - Count and percentage waves are cumulative shares of the targeted
//!   fleet *as it is when the wave starts*, so agents that enroll
//!   mid-rollout are picked up by the next wave (or at once, once the last
//!   wave has started). Offline agents are assigned like any other; the
//!   silence deadline decides how they count if they stay away.
//!
//! # Named groups
//! - A member joins with the groups (tags) it is in *when it joins*: at
//!   creation, or when it enrolls or is tagged into a dynamic target. The
//!   engine keeps only the groups its waves name. Tags changed later do not
//!   move a member between waves (a wave plan that shifts under a running
//!   rollout cannot be reasoned about, nor persisted honestly).
//! - A group wave (`tag:pilot`) takes every unassigned member in the group,
//!   in cohort order. A member in several groups goes with the first group
//!   wave that starts after it joined.
//! - A count or percentage wave never takes a member of a group whose wave
//!   is still to come: it tops up from the other members, by cohort order,
//!   and falls short of its share rather than take them early. Group
//!   members already assigned count toward its cumulative share, so
//!   `tag:pilot,25%` means "the pilots, then others up to a quarter of the
//!   fleet" (nobody more if the pilots are a quarter already).
//! - A group wave is judged like any wave; an empty one (nobody in the
//!   group, or all of it already out) passes at once, as does a
//!   percentage wave smaller than one agent.
//! - A member that joins after its group's wave started is an ordinary
//!   member from then on: the next wave that takes it (by cohort order), or
//!   the last wave at once, assigns it.
//!
//! # Pull rollouts
//! - In a pull rollout ([`super::spec::Mode::Pull`]) waves go out exactly like push
//!   waves, but an assignment is an *offer*: the member is *offered*, not
//!   pending. Offered members have no silence clock and leave the
//!   denominator, so a wave never waits for users who have not chosen.
//! - A member becomes pending (with a silence clock) at its first progress
//!   report, i.e. when its user installs: installs that happen count as
//!   successes and failures by the same arithmetic as push, and the failure
//!   limit halts the rollout (no further waves are offered).
//! - A wave whose counted members are zero passes if it made offers (the
//!   users simply have not chosen yet).
//! - With a deadline, the last wave does not complete before the deadline
//!   (stage *awaiting deadline*). At the deadline every offered member
//!   becomes pending, as if pushed then (the agents install by themselves),
//!   with its silence clock starting at the deadline; members assigned
//!   later are pending at once. From then on the push rules decide.

use super::cohort::cohort_key;
use super::spec::{Advance, FailureLimit, RolloutPolicy, SilencePolicy, WaveSize};
use flotte_protocol::{AgentId, Timestamp};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Where a rollout stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Waiting for its start time.
    Scheduled {
        start_at: Timestamp,
    },
    /// Wave `wave` (0-based) is out.
    Running {
        wave: usize,
        stage: Stage,
    },
    /// An admin paused it; `stage` is where it resumes.
    Paused {
        wave: usize,
        stage: Stage,
    },
    /// The failure limit was crossed (or an admin override is needed).
    Halted {
        wave: usize,
        reason: String,
    },
    Completed,
    Aborted,
}

impl Phase {
    pub fn name(&self) -> &'static str {
        match self {
            Phase::Scheduled { .. } => "scheduled",
            Phase::Running { .. } => "running",
            Phase::Paused { .. } => "paused",
            Phase::Halted { .. } => "halted",
            Phase::Completed => "completed",
            Phase::Aborted => "aborted",
        }
    }

    /// Whether nothing will ever happen again.
    pub fn is_final(&self) -> bool {
        matches!(self, Phase::Completed | Phase::Aborted)
    }
}

/// Where the current wave stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Waiting for enough successes.
    Deploying,
    /// Passed; its successes must stay green until `until`.
    Soaking { until: Timestamp },
    /// Passed and soaked; waiting for `flottectl rollout approve`.
    AwaitingApproval,
    /// Wave `wave` is due but the maintenance window is closed; it starts
    /// when the window opens at `opens`.
    OutsideWindow { opens: Timestamp },
    /// The last wave of a pull rollout passed before its deadline; at `at`
    /// the offers become required and the wave is judged again.
    AwaitingDeadline { at: Timestamp },
}

/// What an agent said about its assignment, as far as the policy cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Still working (downloading, installing, in probation…).
    Progress,
    Succeeded,
    /// Failed or rolled back; the new version is not running.
    Failed,
    /// A pull offer is in the agent's catalog; its user has not chosen yet.
    Offered,
    /// The user postponed a required install (still pending, counted).
    Deferred,
    /// Downloaded and verified, waiting for the agent's maintenance window
    /// to open at the given time: pending, and quiet by design until then,
    /// so its silence clock starts at the opening.
    WaitingUntil(Timestamp),
}

/// Something the controller must carry out or record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dispatch {
    /// Give this agent the rollout's release.
    Assign {
        agent: AgentId,
        wave: usize,
    },
    WaveStarted {
        wave: usize,
        agents: u64,
    },
    WavePassed {
        wave: usize,
    },
    AwaitingApproval {
        wave: usize,
        reason: String,
    },
    /// A wave is due outside the maintenance window; it waits for `opens`.
    OutsideWindow {
        wave: usize,
        opens: Timestamp,
    },
    Halted {
        reason: String,
    },
    Completed,
    /// The last wave of a pull rollout waits for the deadline at `at`.
    AwaitingDeadline {
        at: Timestamp,
    },
}

/// An admin command that does not apply in the current phase.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot {command} a rollout that is {phase}{hint}")]
pub struct CommandError {
    pub command: &'static str,
    pub phase: &'static str,
    pub hint: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Status {
    Unassigned,
    Pending,
    Succeeded,
    Failed,
    Silent,
    /// A pull offer its user has not acted on: outside the denominator.
    Offered,
    /// Pending, and its user postponed the install.
    Deferred,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Member {
    key: u64,
    wave: Option<usize>,
    status: Status,
    /// When it was assigned or last heard from (or, waiting for its window,
    /// when that opens): the silence clock.
    heard_at: Option<Timestamp>,
    /// The groups it was in when it joined, of those the waves name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    groups: Vec<String>,
}

/// Counts for one wave (or the whole rollout).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    pub assigned: u64,
    pub pending: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub silent: u64,
    /// Pull offers nobody acted on yet.
    #[serde(default)]
    pub offered: u64,
    /// Pending installs whose user postponed them.
    #[serde(default)]
    pub deferred: u64,
}

impl Tally {
    fn bucket(&mut self, status: Status) -> Option<&mut u64> {
        match status {
            Status::Unassigned => None,
            Status::Pending => Some(&mut self.pending),
            Status::Succeeded => Some(&mut self.succeeded),
            Status::Failed => Some(&mut self.failed),
            Status::Silent => Some(&mut self.silent),
            Status::Offered => Some(&mut self.offered),
            Status::Deferred => Some(&mut self.deferred),
        }
    }

    fn add(&mut self, other: &Tally) {
        self.assigned += other.assigned;
        self.pending += other.pending;
        self.succeeded += other.succeeded;
        self.failed += other.failed;
        self.silent += other.silent;
        self.offered += other.offered;
        self.deferred += other.deferred;
    }

    /// Failures under `policy` (silent agents may count).
    pub fn failures(&self, policy: SilencePolicy) -> u64 {
        self.failed + if policy == SilencePolicy::Failed { self.silent } else { 0 }
    }

    /// The denominator: assigned minus skipped minus offers nobody took.
    pub fn counted(&self, policy: SilencePolicy) -> u64 {
        self.assigned - self.offered - if policy == SilencePolicy::Skipped { self.silent } else { 0 }
    }
}

/// An agent that joins a rollout, with the groups (tags) it is in now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joining {
    pub agent: AgentId,
    pub groups: Vec<String>,
}

impl From<AgentId> for Joining {
    /// An agent in no group.
    fn from(agent: AgentId) -> Self {
        Joining { agent, groups: Vec::new() }
    }
}

/// One rollout. Serialize it to persist it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rollout {
    id: u64,
    policy: RolloutPolicy,
    phase: Phase,
    members: BTreeMap<AgentId, Member>,
    /// Per-wave counts, kept in step with `members`.
    waves: Vec<Tally>,
    /// (deadline, agent) for every pending member.
    silence: BTreeSet<(Timestamp, AgentId)>,
    /// A pull rollout's deadline passed and its offers became required.
    #[serde(default)]
    escalated: bool,
    #[serde(skip)]
    out: VecDeque<Dispatch>,
}

impl Rollout {
    /// A rollout of `policy` (already validated) over `agents` (each an
    /// [`AgentId`], or a [`Joining`] with its groups), starting at
    /// `start_at`.
    pub fn new(
        id: u64,
        policy: RolloutPolicy,
        agents: impl IntoIterator<Item = impl Into<Joining>>,
        start_at: Timestamp,
    ) -> Self {
        let waves = vec![Tally::default(); policy.waves.len()];
        let mut rollout = Rollout {
            id,
            policy,
            phase: Phase::Scheduled { start_at },
            members: BTreeMap::new(),
            waves,
            silence: BTreeSet::new(),
            escalated: false,
            out: VecDeque::new(),
        };
        for agent in agents {
            rollout.insert_member(agent.into());
        }
        rollout
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn phase(&self) -> &Phase {
        &self.phase
    }

    pub fn policy(&self) -> &RolloutPolicy {
        &self.policy
    }

    /// Per-wave counts.
    pub fn wave_tallies(&self) -> &[Tally] {
        &self.waves
    }

    /// Counts over every wave.
    pub fn total(&self) -> Tally {
        let mut t = Tally::default();
        for w in &self.waves {
            t.add(w);
        }
        t
    }

    /// How many agents the rollout targets now.
    pub fn fleet(&self) -> u64 {
        self.members.len() as u64
    }

    /// Every targeted agent, assigned or not.
    pub fn members(&self) -> impl Iterator<Item = &AgentId> {
        self.members.keys()
    }

    /// Whether `agent` is targeted by this rollout.
    pub fn is_member(&self, agent: &AgentId) -> bool {
        self.members.contains_key(agent)
    }

    /// The groups `agent` was in when it joined, of those the waves name.
    pub fn groups_of(&self, agent: &AgentId) -> &[String] {
        self.members.get(agent).map_or(&[], |m| &m.groups)
    }

    /// The next thing to carry out.
    pub fn poll_dispatch(&mut self) -> Option<Dispatch> {
        self.out.pop_front()
    }

    /// When [`Rollout::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        let phase_timer = match &self.phase {
            Phase::Scheduled { start_at } => Some(*start_at),
            Phase::Running { stage: Stage::Soaking { until }, .. } => Some(*until),
            Phase::Running { stage: Stage::OutsideWindow { opens }, .. } => Some(*opens),
            Phase::Running { stage: Stage::AwaitingDeadline { at }, .. } => Some(*at),
            _ => None,
        };
        let silence = if self.phase.is_final() { None } else { self.silence.first().map(|(t, _)| *t) };
        [phase_timer, silence, self.pending_deadline()].into_iter().flatten().min()
    }

    /// Advances time: starts a scheduled rollout, ends soaks, and marks agents
    /// silent whose deadline passed.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        if self.phase.is_final() {
            return;
        }
        if let Some(deadline) = self.pending_deadline()
            && deadline <= now
        {
            self.escalate(deadline);
        }
        while let Some((deadline, agent)) = self.silence.first().cloned() {
            if deadline > now {
                break;
            }
            self.silence.pop_first();
            self.set_status(&agent, Status::Silent);
        }
        match self.phase.clone() {
            Phase::Scheduled { start_at } if start_at <= now => self.start_wave(now, 0),
            Phase::Running { wave, stage: Stage::Soaking { until } } if until <= now => self.soaked(now, wave),
            Phase::Running { wave, stage: Stage::OutsideWindow { opens } } if opens <= now => {
                self.start_wave(now, wave)
            }
            _ => {}
        }
        self.evaluate(now);
    }

    /// A targeted agent reported on its assignment.
    pub fn handle_report(&mut self, now: Timestamp, agent: &AgentId, outcome: Outcome) {
        let Some(member) = self.members.get(agent) else { return };
        if member.status == Status::Unassigned {
            return;
        }
        if let Some(heard) = member.heard_at {
            self.silence.remove(&(heard.saturating_add(self.policy.silence_deadline), agent.clone()));
        }
        let status = match outcome {
            Outcome::Offered if self.policy.mode.is_optional_at(now) && !self.escalated => Status::Offered,
            Outcome::Progress | Outcome::Offered | Outcome::WaitingUntil(_) => Status::Pending,
            Outcome::Succeeded => Status::Succeeded,
            Outcome::Failed => Status::Failed,
            Outcome::Deferred => Status::Deferred,
        };
        // The silence clock restarts now, or when a waiting agent's window opens.
        let clock = match outcome {
            Outcome::WaitingUntil(until) => until.max(now),
            _ => now,
        };
        if let Some(m) = self.members.get_mut(agent) {
            m.heard_at = Some(clock);
        }
        if matches!(status, Status::Pending | Status::Deferred) {
            self.silence.insert((clock.saturating_add(self.policy.silence_deadline), agent.clone()));
        }
        self.set_status(agent, status);
        self.evaluate(now);
    }

    /// An agent that matches the rollout's target appeared (enrolled, or
    /// newly tagged), with the groups it is in now. It joins the next wave
    /// that takes it, or at once if the last wave has started.
    pub fn add_agent(&mut self, now: Timestamp, agent: impl Into<Joining>) {
        let joining = agent.into();
        let agent = joining.agent.clone();
        if self.members.contains_key(&agent) || self.phase.is_final() && self.phase != Phase::Completed {
            return;
        }
        self.insert_member(joining);
        let last = self.policy.waves.len() - 1;
        let wave_started = match &self.phase {
            Phase::Running { wave, .. } | Phase::Paused { wave, .. } | Phase::Halted { wave, .. } => Some(*wave),
            Phase::Completed => Some(last),
            _ => None,
        };
        let last_wave_out = match &self.phase {
            Phase::Running { stage, .. } => !matches!(stage, Stage::OutsideWindow { .. }),
            Phase::Completed => true,
            _ => false,
        };
        if wave_started == Some(last) && last_wave_out {
            self.assign(now, &agent, last);
        }
    }

    // ---- admin commands ----

    pub fn pause(&mut self) -> Result<(), CommandError> {
        match self.phase.clone() {
            Phase::Running { wave, stage } => {
                self.phase = Phase::Paused { wave, stage };
                Ok(())
            }
            other => Err(self.refuse("pause", &other, "")),
        }
    }

    /// Resumes a paused rollout, or overrides a halt.
    pub fn resume(&mut self, now: Timestamp) -> Result<(), CommandError> {
        match self.phase.clone() {
            Phase::Paused { wave, stage } => self.phase = Phase::Running { wave, stage },
            // A wave that never went out (it waited for the window) starts
            // now rather than passing empty.
            Phase::Halted { wave, .. } if self.waves.get(wave).is_some_and(|t| t.assigned == 0) => {
                self.start_wave(now, wave)
            }
            Phase::Halted { wave, .. } => self.phase = Phase::Running { wave, stage: Stage::Deploying },
            other => return Err(self.refuse("resume", &other, "")),
        }
        self.evaluate(now);
        Ok(())
    }

    /// Lets a wave that awaits approval lead to the next one.
    pub fn approve(&mut self, now: Timestamp) -> Result<(), CommandError> {
        match self.phase.clone() {
            Phase::Running { wave, stage: Stage::AwaitingApproval } => {
                self.next_wave(now, wave);
                self.evaluate(now);
                Ok(())
            }
            other => Err(self.refuse("approve", &other, "; only a wave awaiting approval can be approved")),
        }
    }

    pub fn abort(&mut self) -> Result<(), CommandError> {
        if self.phase.is_final() {
            let phase = self.phase.clone();
            return Err(self.refuse("abort", &phase, ""));
        }
        self.phase = Phase::Aborted;
        Ok(())
    }

    fn refuse(&self, command: &'static str, phase: &Phase, hint: &str) -> CommandError {
        CommandError { command, phase: phase.name(), hint: hint.to_string() }
    }

    // ---- internals ----

    fn insert_member(&mut self, joining: Joining) {
        let Joining { agent, mut groups } = joining;
        let key = cohort_key(self.id, &agent);
        groups.retain(|g| self.policy.groups().any(|named| named == g));
        groups.sort_unstable();
        groups.dedup();
        self.members.insert(agent, Member { key, wave: None, status: Status::Unassigned, heard_at: None, groups });
    }

    fn set_status(&mut self, agent: &AgentId, status: Status) {
        let Some(m) = self.members.get_mut(agent) else { return };
        let (old, wave) = (m.status, m.wave);
        m.status = status;
        if let Some(tally) = wave.and_then(|w| self.waves.get_mut(w)) {
            if let Some(b) = tally.bucket(old) {
                *b -= 1;
            }
            if let Some(b) = tally.bucket(status) {
                *b += 1;
            }
        }
    }

    fn assign(&mut self, now: Timestamp, agent: &AgentId, wave: usize) {
        let Some(m) = self.members.get_mut(agent) else { return };
        if m.wave.is_some() {
            return;
        }
        m.wave = Some(wave);
        m.heard_at = Some(now);
        if let Some(t) = self.waves.get_mut(wave) {
            t.assigned += 1;
        }
        if self.policy.mode.is_optional_at(now) && !self.escalated {
            self.set_status(agent, Status::Offered);
        } else {
            self.set_status(agent, Status::Pending);
            self.silence.insert((now.saturating_add(self.policy.silence_deadline), agent.clone()));
        }
        self.out.push_back(Dispatch::Assign { agent: agent.clone(), wave });
    }

    /// A pull rollout's deadline that has not made its offers required yet.
    fn pending_deadline(&self) -> Option<Timestamp> {
        if self.escalated || self.phase.is_final() {
            return None;
        }
        self.policy.mode.deadline()
    }

    /// The deadline `at` passed: every offer nobody took is now required, as
    /// if pushed at `at`.
    fn escalate(&mut self, at: Timestamp) {
        self.escalated = true;
        let offered: Vec<AgentId> =
            self.members.iter().filter(|(_, m)| m.status == Status::Offered).map(|(id, _)| id.clone()).collect();
        for agent in offered {
            if let Some(m) = self.members.get_mut(&agent) {
                m.heard_at = Some(at);
            }
            self.silence.insert((at.saturating_add(self.policy.silence_deadline), agent.clone()));
            self.set_status(&agent, Status::Pending);
        }
    }

    fn start_wave(&mut self, now: Timestamp, wave: usize) {
        if let Some(opens) = self.policy.window.as_ref().filter(|w| !w.is_open(now)).map(|w| w.next_open(now)) {
            self.phase = Phase::Running { wave, stage: Stage::OutsideWindow { opens } };
            self.out.push_back(Dispatch::OutsideWindow { wave, opens });
            return;
        }
        let chosen = self.wave_members(wave);
        self.phase = Phase::Running { wave, stage: Stage::Deploying };
        self.out.push_back(Dispatch::WaveStarted { wave, agents: chosen.len() as u64 });
        for agent in chosen {
            self.assign(now, &agent, wave);
        }
    }

    /// Who `wave` assigns when it starts, in cohort order: its group's
    /// unassigned members, or enough unassigned members to reach its
    /// cumulative share, leaving alone those of groups whose wave is still
    /// to come.
    fn wave_members(&self, wave: usize) -> Vec<AgentId> {
        let unassigned = self.members.iter().filter(|(_, m)| m.wave.is_none());
        let (mut candidates, need): (Vec<(u64, &AgentId)>, u64) = match self.policy.waves.get(wave) {
            Some(WaveSize::Group(group)) => {
                let members: Vec<_> =
                    unassigned.filter(|(_, m)| m.groups.contains(group)).map(|(id, m)| (m.key, id)).collect();
                let all = members.len() as u64;
                (members, all)
            }
            _ => {
                let later: Vec<&str> = self.policy.waves.iter().skip(wave + 1).filter_map(WaveSize::group).collect();
                let target = self.policy.cumulative_reach(self.fleet()).get(wave).copied().unwrap_or(0);
                let members = unassigned
                    .filter(|(_, m)| !m.groups.iter().any(|g| later.contains(&g.as_str())))
                    .map(|(id, m)| (m.key, id))
                    .collect();
                (members, target.saturating_sub(self.total().assigned))
            }
        };
        candidates.sort_unstable();
        let need = usize::try_from(need).unwrap_or(usize::MAX);
        candidates.into_iter().take(need).map(|(_, id)| id.clone()).collect()
    }

    /// Whether `wave` has enough successes; `None` if it produced no
    /// evidence at all (every member skipped).
    fn wave_passes(&self, wave: usize) -> Option<bool> {
        let t = self.waves.get(wave).copied().unwrap_or_default();
        let counted = t.counted(self.policy.silence_policy);
        if counted == 0 {
            // No member to judge: fine if there were none or they were only
            // offered (users have not chosen yet); no evidence if all were
            // skipped.
            return if t.assigned == 0 || t.offered > 0 { Some(true) } else { None };
        }
        Some(t.succeeded as f64 * 100.0 >= self.policy.success_threshold * counted as f64 - 1e-9)
    }

    fn failure_limit_crossed(&self) -> Option<String> {
        let total = self.total();
        let policy = self.policy.silence_policy;
        let failed = total.failures(policy);
        let counted = total.counted(policy);
        match self.policy.failure_limit {
            FailureLimit::Count(n) if failed > n => Some(format!("{failed} agents failed, more than the limit of {n}")),
            FailureLimit::Percent(p) if counted > 0 && failed as f64 * 100.0 > p * counted as f64 + 1e-9 => {
                Some(format!(
                    "{failed} of {counted} agents failed ({:.1}%), more than the limit of {p}%",
                    failed as f64 * 100.0 / counted as f64
                ))
            }
            _ => None,
        }
    }

    /// Applies the policy after any change.
    fn evaluate(&mut self, now: Timestamp) {
        let wave = match &self.phase {
            Phase::Running { wave, .. } | Phase::Paused { wave, .. } => *wave,
            _ => return,
        };
        if let Some(reason) = self.failure_limit_crossed() {
            self.phase = Phase::Halted { wave, reason: reason.clone() };
            self.out.push_back(Dispatch::Halted { reason });
            return;
        }
        if let Phase::Running { wave, stage: Stage::AwaitingDeadline { .. } } = self.phase
            && self.escalated
        {
            // The offers are required now: judge the wave again, as a push.
            self.phase = Phase::Running { wave, stage: Stage::Deploying };
        }
        let Phase::Running { wave, stage } = self.phase.clone() else { return };
        match (stage, self.wave_passes(wave)) {
            (Stage::Deploying, Some(true)) => {
                self.out.push_back(Dispatch::WavePassed { wave });
                if self.policy.soak.is_zero() {
                    self.soaked(now, wave);
                } else {
                    let until = now.saturating_add(self.policy.soak);
                    self.phase = Phase::Running { wave, stage: Stage::Soaking { until } };
                }
            }
            (Stage::Deploying, None) => {
                self.phase = Phase::Running { wave, stage: Stage::AwaitingApproval };
                let reason = "every agent of the wave was skipped, so it produced no evidence".to_string();
                self.out.push_back(Dispatch::AwaitingApproval { wave, reason });
            }
            (Stage::Soaking { .. }, Some(false)) => {
                // Successes turned into failures during the soak.
                self.phase = Phase::Running { wave, stage: Stage::Deploying };
            }
            _ => {}
        }
    }

    /// The soak of `wave` ended.
    fn soaked(&mut self, now: Timestamp, wave: usize) {
        if self.wave_passes(wave) != Some(true) {
            self.phase = Phase::Running { wave, stage: Stage::Deploying };
            return;
        }
        let last = wave + 1 >= self.policy.waves.len();
        if self.policy.advance == Advance::Manual && !last {
            self.phase = Phase::Running { wave, stage: Stage::AwaitingApproval };
            self.out.push_back(Dispatch::AwaitingApproval { wave, reason: "manual advancement".into() });
        } else {
            self.next_wave(now, wave);
        }
    }

    fn next_wave(&mut self, now: Timestamp, wave: usize) {
        if wave + 1 >= self.policy.waves.len()
            && let Some(at) = self.pending_deadline()
        {
            self.phase = Phase::Running { wave, stage: Stage::AwaitingDeadline { at } };
            self.out.push_back(Dispatch::AwaitingDeadline { at });
        } else if wave + 1 >= self.policy.waves.len() {
            self.phase = Phase::Completed;
            self.out.push_back(Dispatch::Completed);
        } else {
            self.start_wave(now, wave + 1);
            // An empty wave (cumulative size already reached) passes at once.
            self.evaluate(now);
        }
    }
}
