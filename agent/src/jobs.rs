//! All assignments this agent knows, and which one may work now. Pure, like
//! [`crate::job`].
//!
//! Guarantees:
//! - An assignment id is accepted once: a second delivery of a known id
//!   (whatever its state) never creates a second job; a finished job
//!   repeats its final report instead.
//! - Jobs run one at a time, in arrival order, so no two installs (or two
//!   downloads of the same content) ever overlap. Later jobs are journaled
//!   and reported `Received` at once and wait their turn. A job waiting for
//!   its maintenance window (downloaded, verified, idle) lends its turn to
//!   the next job that can work (a user's `flotte install` is not stuck
//!   behind a push waiting for the weekend) and takes it back, in arrival
//!   order, once the job at work is done or waits too. Only the job whose
//!   turn it is gets its timer, so a window opening never starts an install
//!   while another job is at work.
//! - Every job learns the agent's maintenance window from the table (the
//!   current config, also for jobs read back after a restart); whether it
//!   applies is the job's own, journaled, [`Origin`].

use crate::job::{Job, JobAction, JobEvent, JobRecord, Origin};
use flotte_protocol::messages::Assignment;
use flotte_protocol::window::Window;
use flotte_protocol::{AssignmentId, Timestamp};
use std::collections::{BTreeMap, VecDeque};

/// The set of jobs plus the run queue.
#[derive(Debug, Default)]
pub struct JobTable {
    jobs: BTreeMap<AssignmentId, Job>,
    /// Unfinished jobs in the order they arrived; the front one runs.
    queue: VecDeque<AssignmentId>,
    /// The job that was last given `Resume` as the front of the queue.
    running: Option<AssignmentId>,
    /// The agent's maintenance window (`maintenance_window`).
    agent_window: Option<Window>,
}

impl JobTable {
    /// The table after a restart: unfinished jobs queue in the order they
    /// were received (then by id); none runs until [`JobTable::resume`].
    pub fn restore(records: Vec<JobRecord>, agent_window: Option<Window>) -> Self {
        let mut table = JobTable { agent_window, ..JobTable::default() };
        let mut pending: Vec<(Timestamp, AssignmentId)> =
            records.iter().filter(|r| !r.state.is_terminal()).map(|r| (r.received_at, r.id)).collect();
        pending.sort();
        table.queue = pending.into_iter().map(|(_, id)| id).collect();
        let window = table.agent_window.clone();
        table.jobs = records
            .into_iter()
            .map(|r| {
                let mut job = Job::restore(r);
                job.set_agent_window(window.clone());
                (job.id(), job)
            })
            .collect();
        table
    }

    /// An empty table whose required installs wait for `agent_window`.
    pub fn with_window(agent_window: Option<Window>) -> Self {
        JobTable { agent_window, ..JobTable::default() }
    }

    /// Handles `ControllerMessage::Assign` (a push) or an offer's install
    /// (`origin` says which).
    pub fn assign(&mut self, now: Timestamp, assignment: Assignment, origin: Origin) {
        let id = assignment.id;
        match self.jobs.get_mut(&id) {
            Some(job) => job.handle(now, JobEvent::Redelivered),
            None => {
                let mut job = Job::new(now, assignment, origin);
                job.set_agent_window(self.agent_window.clone());
                self.jobs.insert(id, job);
                self.queue.push_back(id);
            }
        }
        self.advance(now);
    }

    /// Feeds an event to one job; unknown ids are ignored.
    pub fn handle(&mut self, now: Timestamp, id: AssignmentId, event: JobEvent) {
        if let Some(job) = self.jobs.get_mut(&id) {
            job.handle(now, event);
        }
        self.advance(now);
    }

    /// Lets the front job work, and retries its interrupted download at once
    /// (called at start-up and whenever the controller link comes up).
    pub fn resume(&mut self, now: Timestamp) {
        self.advance(now);
        if let Some(job) = self.running.and_then(|id| self.jobs.get_mut(&id)) {
            job.handle(now, JobEvent::Resume);
        }
    }

    /// The earliest time any job wants [`JobTable::handle_timeout`].
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        self.running.and_then(|id| self.jobs.get(&id)).and_then(Job::poll_timeout)
    }

    pub fn handle_timeout(&mut self, now: Timestamp) {
        if let Some(job) = self.running.and_then(|id| self.jobs.get_mut(&id)) {
            job.handle_timeout(now);
        }
        self.advance(now);
    }

    /// The next piece of work of any job.
    pub fn poll_action(&mut self) -> Option<(AssignmentId, JobAction)> {
        self.jobs.iter_mut().find_map(|(id, job)| job.poll_action().map(|a| (*id, a)))
    }

    pub fn get(&self, id: AssignmentId) -> Option<&Job> {
        self.jobs.get(&id)
    }

    /// Every job, by assignment id.
    pub fn iter(&self) -> impl Iterator<Item = &Job> {
        self.jobs.values()
    }

    pub fn contains(&self, id: AssignmentId) -> bool {
        self.jobs.contains_key(&id)
    }

    /// Drops finished jobs from the queue and gives the turn: the job at
    /// work keeps it; else the first job in arrival order that is not
    /// waiting for its window; else the first job.
    fn advance(&mut self, now: Timestamp) {
        let jobs = &self.jobs;
        self.queue.retain(|id| jobs.get(id).is_some_and(|j| !j.is_terminal()));
        let can_work = |id: &AssignmentId| jobs.get(id).is_some_and(|j| !j.waits_for_window(now));
        let next = self
            .running
            .filter(|id| self.queue.contains(id) && can_work(id))
            .or_else(|| self.queue.iter().copied().find(|id| can_work(id)))
            .or_else(|| self.queue.front().copied());
        match next {
            Some(id) if self.running != Some(id) => {
                self.running = Some(id);
                if let Some(job) = self.jobs.get_mut(&id) {
                    job.handle(now, JobEvent::Resume);
                }
            }
            Some(_) => {}
            None => self.running = None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::JobState;
    use flotte_protocol::ReleaseRef;
    use flotte_protocol::messages::{FailureClass, InstallState};

    fn assignment(id: u64) -> Assignment {
        Assignment {
            id: AssignmentId(id),
            release: ReleaseRef { name: "app".into(), version: format!("{id}.0") },
            issued_at: Timestamp::EPOCH,
        }
    }

    fn drain(table: &mut JobTable) -> Vec<(AssignmentId, JobAction)> {
        std::iter::from_fn(|| table.poll_action()).collect()
    }

    fn count(actions: &[(AssignmentId, JobAction)], f: impl Fn(&JobAction) -> bool) -> usize {
        actions.iter().filter(|(_, a)| f(a)).count()
    }

    #[test]
    fn a_duplicate_assign_creates_no_second_job() {
        let now = Timestamp::EPOCH;
        let mut table = JobTable::default();
        table.assign(now, assignment(1), Origin::Push);
        table.assign(now, assignment(1), Origin::Push);
        let actions = drain(&mut table);
        assert_eq!(count(&actions, |a| matches!(a, JobAction::VerifyMetadata(_))), 1, "{actions:?}");
        assert_eq!(count(&actions, |a| matches!(a, JobAction::Report(r) if r.state == InstallState::Received)), 1);
    }

    #[test]
    fn a_duplicate_of_a_finished_job_repeats_the_final_report_only() {
        let now = Timestamp::EPOCH;
        let mut table = JobTable::default();
        table.assign(now, assignment(1), Origin::Push);
        drain(&mut table);
        table.handle(now, AssignmentId(1), JobEvent::Cancel);
        drain(&mut table);
        table.assign(now, assignment(1), Origin::Push);
        let actions = drain(&mut table);
        assert_eq!(actions.len(), 1, "{actions:?}");
        assert!(matches!(&actions[0].1, JobAction::Report(r) if matches!(r.state, InstallState::Failed { .. })));
    }

    #[test]
    fn jobs_run_one_at_a_time_in_arrival_order() {
        let now = Timestamp::EPOCH;
        let mut table = JobTable::default();
        table.assign(now, assignment(5), Origin::Push);
        table.assign(now, assignment(3), Origin::Push);
        let actions = drain(&mut table);
        let verifying: Vec<_> =
            actions.iter().filter(|(_, a)| matches!(a, JobAction::VerifyMetadata(_))).map(|(id, _)| *id).collect();
        assert_eq!(verifying, vec![AssignmentId(5)], "the second job waits");
        // The first one ends; the second starts by itself.
        table.handle(now, AssignmentId(5), JobEvent::Cancel);
        let actions = drain(&mut table);
        assert!(actions.iter().any(|(id, a)| *id == AssignmentId(3) && matches!(a, JobAction::VerifyMetadata(_))));
    }

    #[test]
    fn a_job_waiting_for_its_window_lets_the_next_job_work_and_gets_its_turn_back() {
        let now = Timestamp::EPOCH;
        let mut waiting = Job::new(now, assignment(1), Origin::Push).record().clone();
        waiting.state = JobState::WaitingForWindow { until: now.saturating_add(std::time::Duration::from_secs(3600)) };
        let mut table = JobTable::restore(vec![waiting], None);
        table.assign(now, assignment(2), Origin::User);
        table.resume(now);
        let actions = drain(&mut table);
        let verifying: Vec<_> =
            actions.iter().filter(|(_, a)| matches!(a, JobAction::VerifyMetadata(_))).map(|(id, _)| *id).collect();
        assert_eq!(verifying, vec![AssignmentId(2)], "the user's install works while the push waits: {actions:?}");
        assert_eq!(table.poll_timeout(), None, "no timer but the working job's");
        // Done: the waiting job gets its turn back (and, restored, verifies again).
        table.handle(now, AssignmentId(2), JobEvent::Cancel);
        let actions = drain(&mut table);
        assert!(actions.iter().any(|(id, a)| *id == AssignmentId(1) && matches!(a, JobAction::VerifyMetadata(_))));
    }

    #[test]
    fn a_restored_table_resumes_only_unfinished_jobs() {
        let now = Timestamp::EPOCH;
        let mut done = JobTable::default();
        done.assign(now, assignment(1), Origin::Push);
        done.handle(now, AssignmentId(1), JobEvent::Cancel);
        let mut finished = done.get(AssignmentId(1)).unwrap().record().clone();
        assert!(matches!(finished.state, JobState::Failed { class: FailureClass::Download, .. }));
        finished.id = AssignmentId(1);
        let mut open = finished.clone();
        open.id = AssignmentId(2);
        open.state = JobState::Downloading { offset: 4 };

        let mut table = JobTable::restore(vec![finished, open], None);
        assert_eq!(drain(&mut table), vec![], "nothing happens before resume");
        table.resume(now);
        let actions = drain(&mut table);
        assert!(actions.iter().all(|(id, _)| *id == AssignmentId(2)), "{actions:?}");
        assert!(actions.iter().any(|(_, a)| matches!(a, JobAction::VerifyMetadata(_))));
        assert!(table.contains(AssignmentId(1)));
    }
}
