//! The rollout shell: runs engine steps when something happened (a report
//! for one of a rollout's assignments) or when a rollout's timer is due,
//! and hands newly created assignments to their agents' live sessions.
//!
//! It holds no rollout state of its own: every step loads the engine from
//! the store and commits it back (see [`super::persist`]), so a restart
//! resumes exactly where the last commit left off.

use super::engine::Joining;
use super::persist::{ActiveRollout, Step};
use super::targets;
use crate::error::ControllerError;
use crate::server::Services;
use flotte_protocol::{AgentId, Timestamp};
use std::collections::BTreeSet;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::mpsc;
use tracing::{error, info};

/// Tells the driver that a rollout has news.
#[derive(Clone)]
pub struct Nudge(mpsc::UnboundedSender<u64>);

impl Nudge {
    pub fn rollout(&self, id: u64) {
        let _ = self.0.send(id);
    }
}

/// Creates the channel between sessions and the driver.
pub fn channel() -> (Nudge, mpsc::UnboundedReceiver<u64>) {
    let (tx, rx) = mpsc::unbounded_channel();
    (Nudge(tx), rx)
}

fn now() -> Timestamp {
    Timestamp::from_system_time(SystemTime::now())
}

/// Carries out a step's effects outside the store: mail its new
/// assignments to live sessions, log.
pub fn after_step(services: &Services, id: u64, step: &Step) {
    services.hub.deliver(&step.deliveries);
    for d in &step.dispatches {
        use super::engine::Dispatch::*;
        match d {
            Assign { .. } => {}
            WaveStarted { wave, agents } => info!(rollout = id, wave, agents, "wave started"),
            WavePassed { wave } => info!(rollout = id, wave, "wave passed"),
            AwaitingApproval { wave, reason } => info!(rollout = id, wave, reason, "awaiting approval"),
            OutsideWindow { wave, opens } => {
                info!(rollout = id, wave, opens = %opens, "wave waits for the maintenance window")
            }
            Halted { reason } => {
                info!(rollout = id, reason, "rollout halted");
                let _ = services.store.audit("system", "rollout.halt", &format!("rollout {id}: {reason}"), now());
            }
            Completed => info!(rollout = id, "rollout completed"),
            AwaitingDeadline { at } => info!(rollout = id, deadline = %at, "offers out; waiting for the deadline"),
        }
    }
}

/// An agent appeared or changed (enrolled, tagged, reported inventory): it
/// joins every unfinished rollout whose dynamic target it now matches and
/// that does not have it yet.
pub fn join_matching(services: &Services, agent: &AgentId, at: Timestamp) -> Result<(), ControllerError> {
    let active = services.store.active_rollouts()?;
    if !active.iter().any(|a| targets::is_dynamic(&a.target)) {
        return Ok(());
    }
    // One agent's row and tags: this runs for every connection, and a
    // reconnect storm must not read the whole fleet once per agent.
    let Some(view) = services.store.agent_view(agent)? else { return Ok(()) };
    let tags = services.store.tags_of(agent)?;
    let facts = targets::Facts { id: &view.id, hostname: &view.hostname, os: &view.os, arch: &view.arch, tags: &tags };
    for ActiveRollout { id, target, .. } in active {
        if !targets::is_dynamic(&target) || !targets::matches(&target, &facts) {
            continue;
        }
        if services.store.rollout_engine(id)?.is_none_or(|r| r.is_member(agent)) {
            continue;
        }
        // Its groups are read now, as it joins; later tag changes leave it
        // in the wave it joined for.
        let joining = Joining { agent: agent.clone(), groups: tags.clone() };
        let step = services.store.step_rollout(id, at, |r| {
            r.add_agent(at, joining);
            Ok::<(), Infallible>(())
        })?;
        match step {
            Ok(step) => after_step(services, id, &step),
            Err(never) => match never {},
        }
    }
    Ok(())
}

/// Runs one step with no command; logs instead of failing.
pub fn step(services: &Services, id: u64, at: Timestamp) {
    match services.store.step_rollout(id, at, |_| Ok::<(), Infallible>(())) {
        Ok(Ok(step)) => after_step(services, id, &step),
        Ok(Err(never)) => match never {},
        Err(e) => error!(rollout = id, error = %e, "rollout step failed"),
    }
}

/// Runs until `shutdown`: steps rollouts with news or due timers.
pub async fn run(services: Arc<Services>, mut news: mpsc::UnboundedReceiver<u64>, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    // Catch up on whatever happened while the controller was down.
    for ActiveRollout { id, .. } in services.store.active_rollouts().unwrap_or_default() {
        step(&services, id, now());
    }
    loop {
        let active = services.store.active_rollouts().unwrap_or_default();
        let next = active.iter().filter_map(|a| a.next_timeout).min();
        let wait = next.map_or(Duration::from_secs(3600), |t| t.saturating_since(now()));
        tokio::select! {
            first = news.recv() => {
                let Some(first) = first else { return };
                let mut ids = BTreeSet::from([first]);
                while let Ok(id) = news.try_recv() {
                    ids.insert(id);
                }
                for id in ids {
                    step(&services, id, now());
                }
            }
            () = tokio::time::sleep(wait) => {
                let at = now();
                for ActiveRollout { id, next_timeout, .. } in active {
                    if next_timeout.is_some_and(|t| t <= at) {
                        step(&services, id, at);
                    }
                }
            }
            () = &mut shutdown => return,
        }
    }
}
