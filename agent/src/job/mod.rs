//! One install job as a pure state machine (the quinn-proto model): events
//! go in through [`Job::handle`] and [`Job::handle_timeout`], work comes out
//! of [`Job::poll_action`], and [`Job::poll_timeout`] says when to call back.
//! No IO and no clock: the shell passes `now`.
//!
//! ```text
//! Received → [Waiting] → VerifyingMetadata → Downloading → VerifyingContent → [WaitingForWindow]
//!   → Staging → Preflight → [BackingUp] → Installing (switch) → Detecting → [HealthChecking (probation)]
//!   → Committing → Succeeded
//!
//! before the switch:  any failure ──────────────────────────────→ Failed{class, message}
//! from the switch on: switch / detection / health failure, or a restart
//!                     ──→ RollingBack ──→ RolledBack{class, message}
//!                                    └──→ RollbackFailed (package quarantined)
//! ```
//!
//! Guarantees:
//! - No `Fetch` or install-step action is ever emitted for a release that
//!   did not pass [`JobEvent::MetadataChecked`] with `Ok` *and*
//!   [`flotte_protocol::ReleaseMetadata::validate_spec`] in this process;
//!   what they carry comes only from the verified metadata.
//! - Nor for a release older than the package's active version, unless its
//!   verified targets entry carries a signed rollback authorisation that
//!   covers that version ([`VerifiedRelease::may_replace`]); the job fails
//!   as a verification verdict instead, whoever asked for the install.
//! - Every state change emits [`JobAction::Persist`] before the action that
//!   acts on it, so the shell journals a transition before its side effect.
//!   The one exception is [`JobAction::Quarantine`], written *before* the
//!   `RollbackFailed` record it belongs to, so no journal ever says
//!   "rollback failed" without the package being quarantined.
//! - After a restart ([`Job::restore`]) the job follows
//!   [`JobState::on_restart`]: anything that may have switched the active
//!   version without a journaled commit is rolled back; earlier work is
//!   resumed after verifying the release again (verified metadata is never
//!   read back from disk). A job found in a risky state more than
//!   [`MAX_RESTARTS`] times gives up instead of crashing the agent forever.
//! - Transient failures (a lost link, a full disk, TUF metadata that could
//!   not be fetched) are retried with exponential backoff; verification
//!   verdicts, preflight, detection and health failures are not.
//! - A required install ([`Origin::Push`], [`Origin::Deadline`]) changes
//!   nothing on the host outside its maintenance windows (the agent's, and
//!   for a deadline install also the rollout's; all must be open at once):
//!   it downloads and verifies its content, then waits in
//!   `WaitingForWindow` (journaled and reported `waiting_for_window` with
//!   the opening, repeated every [`WINDOW_REPORT_INTERVAL`]) and stages at
//!   the first instant all are open, checked again against `now` when the
//!   timer fires. A restart while waiting
//!   verifies again and waits again. An install a user started
//!   ([`Origin::User`]) is the user's choice and ignores the windows.
//! - A terminal job never changes again; late or stale events (an old
//!   download attempt, a result nobody waits for) are ignored.

mod record;
#[cfg(test)]
mod tests;

pub use record::{Baseline, JobRecord, JobState, PackageRef, Recovery, ReportDraft};

use flotte_protocol::messages::{Assignment, FailureClass, InstallState, bounded_message};
use flotte_protocol::window::Window;
use flotte_protocol::{
    DetectRule, HealthCheck, InstallerKind, ReleaseMetadata, ReleaseRef, Sha256Digest, Timestamp, VerifiedRelease,
    VerifyError,
};
use std::collections::VecDeque;
use std::time::Duration;

/// First delay before an interrupted download is tried again on a live
/// connection (a reconnect retries at once); doubles up to [`FETCH_RETRY_MAX`].
pub const FETCH_RETRY: Duration = Duration::from_secs(5);
/// Longest delay between download attempts.
pub const FETCH_RETRY_MAX: Duration = Duration::from_secs(300);
/// First delay after a transient step failure (disk full); doubles.
pub const STEP_RETRY: Duration = Duration::from_secs(1);
/// Transient failures of one step tolerated before the job fails.
pub const MAX_TRANSIENT_RETRIES: u32 = 3;
/// Restarts in a risky state tolerated before the job gives up.
pub const MAX_RESTARTS: u32 = 3;
/// Time between health-check runs during probation, unless the release says.
pub const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_secs(5);
/// Longest one health-check run may take, unless the release says.
pub const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(30);

/// Who asked for an install, which decides the maintenance windows it waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Required by the controller: the agent's window applies.
    Push,
    /// A pull offer whose deadline (or notice) passed: the agent's window
    /// and the rollout's, if it has one, apply.
    Deadline { rollout_window: Option<Window> },
    /// A user's `flotte install`: installs at once.
    User,
}

/// While a job waits for its maintenance window it repeats its
/// `waiting_for_window` report this often, so that a rollout's silence
/// deadline (24 h by default) does not count a host that is only waiting,
/// say from Monday to the weekend, as silent.
pub const WINDOW_REPORT_INTERVAL: Duration = Duration::from_secs(12 * 3600);

/// One install step the shell carries out for a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Stage,
    Preflight,
    Backup,
    Switch,
    Detect,
    Health,
    Commit,
    RollBack,
}

/// Why a step failed, and whether trying again later could help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepFailure {
    pub message: String,
    /// The host, not the package, is at fault (disk full, I/O error).
    pub transient: bool,
}

impl StepFailure {
    pub fn permanent(message: impl Into<String>) -> Self {
        StepFailure { message: message.into(), transient: false }
    }

    pub fn transient(message: impl Into<String>) -> Self {
        StepFailure { message: message.into(), transient: true }
    }
}

/// Input to a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobEvent {
    /// The job may work now: it is first in line, the agent just started, or
    /// the controller link came back (an interrupted download is retried at
    /// once).
    Resume,
    /// The controller delivered the same assignment again.
    Redelivered,
    /// The controller cancelled the assignment.
    Cancel,
    /// Do not start downloading before `until` (the hook for maintenance
    /// windows and user consent).
    Hold { until: Timestamp },
    /// Result of [`JobAction::VerifyMetadata`].
    MetadataChecked(Result<VerifiedRelease, VerifyError>),
    /// Result of [`JobAction::LookUpPackage`]: the active version and, if the
    /// package is quarantined on this host, why.
    PackageLooked { active: Option<String>, quarantine: Option<String> },
    /// A download attempt is about to request bytes from `offset` on.
    FetchStarted { attempt: u32, offset: u64 },
    /// All bytes are on disk and fsynced; digest and length as hashed.
    Fetched { attempt: u32, sha256: Sha256Digest, size: u64 },
    /// The attempt stopped for a reason that may pass (connection lost,
    /// timeout); the bytes so far stay on disk.
    FetchInterrupted { attempt: u32, reason: String },
    /// The content cannot be had (not found, bad range, local file error).
    FetchFailed { attempt: u32, failure: StepFailure },
    /// Result of [`JobAction::Stage`].
    Staged(Result<(), StepFailure>),
    /// Result of [`JobAction::Preflight`].
    PreflightChecked(Result<(), StepFailure>),
    /// Result of [`JobAction::Backup`].
    BackedUp(Result<(), StepFailure>),
    /// Result of [`JobAction::Switch`]; `active` is what is active afterwards.
    Switched { result: Result<(), StepFailure>, active: Option<String> },
    /// Result of [`JobAction::Detect`].
    Detected(Result<(), StepFailure>),
    /// Result of one [`JobAction::CheckHealth`] run.
    HealthChecked(Result<(), StepFailure>),
    /// [`JobAction::Commit`] is done (its cleanup never fails the job).
    Committed,
    /// Result of [`JobAction::RollBack`]; `active` is what is active afterwards.
    RolledBack { result: Result<(), StepFailure>, active: Option<String> },
}

/// Work the shell carries out for a job, in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobAction {
    /// Write this record durably: the job's record as of the state change
    /// that emitted it (so every state reaches the journal, in order).
    Persist(Box<JobRecord>),
    /// Queue this report in the outbox.
    Report(ReportDraft),
    /// Verify the signed release; answer with [`JobEvent::MetadataChecked`].
    VerifyMetadata(ReleaseRef),
    /// Read the active version and quarantine of `name`; answer with
    /// [`JobEvent::PackageLooked`].
    LookUpPackage { name: String },
    /// Download `size` bytes of `digest`, resuming what is on disk; answer
    /// with the `Fetch*` events carrying `attempt`.
    Fetch { attempt: u32, digest: Sha256Digest, size: u64 },
    /// Stop the running download attempt, if any, and wait until it stopped.
    CancelFetch,
    /// Delete the downloaded file of `digest`.
    DeleteDownload { digest: Sha256Digest },
    /// Put the downloaded, verified content on disk next to the active
    /// version, changing nothing that runs; answer [`JobEvent::Staged`].
    Stage { package: PackageRef },
    /// Check that the install can be undone (the baseline can be returned
    /// to); answer [`JobEvent::PreflightChecked`].
    Preflight { package: PackageRef, baseline: Option<String> },
    /// Save `paths` for this job; answer [`JobEvent::BackedUp`].
    Backup { package: PackageRef, paths: Vec<String> },
    /// Make the staged version the active one; answer [`JobEvent::Switched`].
    Switch { package: PackageRef },
    /// Check that the version is really installed (the installer's view and
    /// the release's rule); answer [`JobEvent::Detected`].
    Detect { package: PackageRef, rule: Option<DetectRule> },
    /// Run the installer's own check (a script package's `check` hook) and
    /// the release's declared check, if any, once; answer
    /// [`JobEvent::HealthChecked`].
    CheckHealth { package: PackageRef, check: Option<HealthCheck>, timeout: Duration },
    /// Discard what only a rollback would need (the backup); answer
    /// [`JobEvent::Committed`].
    Commit { package: PackageRef, backup: bool },
    /// Make `to` active again (`None`: nothing was active; remove the new
    /// version) and restore the backup if one was taken; answer
    /// [`JobEvent::RolledBack`].
    RollBack { package: PackageRef, to: Option<String>, restore_backup: bool },
    /// Delete the backup taken for this install (its job ended and the
    /// backup is no longer needed).
    DiscardBackup { package: PackageRef },
    /// Refuse further installs of `name` on this host until an admin clears it.
    Quarantine { name: String, reason: String },
}

/// What the health phase runs, from the verified metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
struct HealthPlan {
    /// The release's declared check; `None` runs only the installer's own.
    check: Option<HealthCheck>,
    probation: Duration,
    interval: Duration,
    timeout: Duration,
}

/// A download attempt that stopped for a reason that may pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interruption {
    pub reason: String,
    /// When the next attempt is due (on a live connection).
    pub retry_at: Timestamp,
}

/// Which answer the job waits for; at most one at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Awaiting {
    Verify,
    Lookup,
    /// The release was refused; what is active is still worth reporting.
    LookupAfterRefusal,
    /// The rollback was given up; the report must say what is active.
    LookupAfterGivingUp,
    Fetch {
        attempt: u32,
    },
    Step(Step),
}

/// One assignment on this agent.
#[derive(Debug)]
pub struct Job {
    record: JobRecord,
    /// Set only from a successful verification in this process.
    verified: Option<VerifiedRelease>,
    awaiting: Option<Awaiting>,
    /// Download attempts so far; tells a stale attempt's events apart.
    attempts: u32,
    /// Download interruptions since the last attempt that made progress;
    /// sets the retry delay.
    interruptions: u32,
    /// Where the last download attempt started, to see progress.
    last_offset: Option<u64>,
    /// Why the last download attempt stopped short and when the next one is
    /// due, until the content is fetched (shown by `flotte status`; not
    /// journaled).
    interrupted: Option<Interruption>,
    /// Transient failures of the current step; sets the retry delay.
    failures: u32,
    /// When the job wants to be woken (retry, waiting, next health run).
    timer: Option<Timestamp>,
    /// Why the job is about to end (verification refused the release, a
    /// rollback was given up) while the active version is looked up.
    refusal: Option<String>,
    /// Read back from the journal and not yet resumed: the next `Resume`
    /// follows the restart table.
    restored: bool,
    /// The agent's maintenance window, from its config (applies only if
    /// the record is `windowed`).
    agent_window: Option<Window>,
    actions: VecDeque<JobAction>,
}

impl Job {
    /// A newly received assignment: journal it, then report `Received`.
    pub fn new(now: Timestamp, assignment: Assignment, origin: Origin) -> Self {
        let (windowed, rollout_window) = match origin {
            Origin::Push => (true, None),
            Origin::Deadline { rollout_window } => (true, rollout_window),
            Origin::User => (false, None),
        };
        let record = JobRecord {
            id: assignment.id,
            release: assignment.release,
            issued_at: assignment.issued_at,
            received_at: now,
            state: JobState::Received,
            since: now,
            baseline: None,
            active_after: None,
            package: None,
            restarts: 0,
            backup_taken: false,
            not_before: None,
            windowed,
            rollout_window,
        };
        let mut job = Job::fresh(record);
        job.persist();
        job.report();
        job
    }

    /// A job read back from the journal. It does nothing until
    /// [`JobEvent::Resume`], which applies [`JobState::on_restart`].
    pub fn restore(record: JobRecord) -> Self {
        let mut job = Job::fresh(record);
        job.restored = !job.is_terminal();
        job
    }

    fn fresh(record: JobRecord) -> Self {
        Job {
            record,
            verified: None,
            awaiting: None,
            attempts: 0,
            interruptions: 0,
            last_offset: None,
            interrupted: None,
            failures: 0,
            timer: None,
            refusal: None,
            restored: false,
            agent_window: None,
            actions: VecDeque::new(),
        }
    }

    /// Sets the agent's maintenance window (from its config, so a changed
    /// config applies after a restart); used from the next content check on.
    pub fn set_agent_window(&mut self, window: Option<Window>) {
        self.agent_window = window;
    }

    /// The windows that must all be open for this job to install.
    fn windows(&self) -> Vec<Window> {
        let agent = self.agent_window.iter().filter(|_| self.record.windowed);
        agent.chain(&self.record.rollout_window).cloned().collect()
    }

    pub fn id(&self) -> flotte_protocol::AssignmentId {
        self.record.id
    }

    /// The job's durable state as of now.
    pub fn record(&self) -> &JobRecord {
        &self.record
    }

    pub fn state(&self) -> &JobState {
        &self.record.state
    }

    pub fn is_terminal(&self) -> bool {
        self.record.state.is_terminal()
    }

    /// Why the last download attempt stopped short, while the content is
    /// still being fetched.
    pub fn interruption(&self) -> Option<&Interruption> {
        self.interrupted.as_ref().filter(|_| matches!(self.record.state, JobState::Downloading { .. }))
    }

    /// Whether the job is idle until its maintenance window opens after `now`.
    pub fn waits_for_window(&self, now: Timestamp) -> bool {
        matches!(self.record.state, JobState::WaitingForWindow { until } if until > now)
    }

    /// Feeds one event in.
    pub fn handle(&mut self, now: Timestamp, event: JobEvent) {
        if self.is_terminal() {
            // The controller may have missed the final report: tell it again.
            if event == JobEvent::Redelivered {
                self.report();
            }
            return;
        }
        match (event, self.awaiting) {
            (JobEvent::Resume, None) => self.resume(now),
            (JobEvent::Cancel, _) if self.record.state.cancellable() => self.cancel(now),
            (JobEvent::Hold { until }, _) if self.record.state.before_download() => self.hold(now, until),
            (JobEvent::MetadataChecked(result), Some(Awaiting::Verify)) => self.metadata_checked(now, result),
            (JobEvent::PackageLooked { active, .. }, Some(Awaiting::LookupAfterRefusal)) => {
                self.awaiting = None;
                let message = self.refusal.take().unwrap_or_default();
                self.fail(now, FailureClass::Verification, message, Some(active));
            }
            (JobEvent::PackageLooked { active, .. }, Some(Awaiting::LookupAfterGivingUp)) => {
                self.awaiting = None;
                let message = self.refusal.take().unwrap_or_default();
                self.rollback_failed(now, message, active);
            }
            (JobEvent::PackageLooked { active, quarantine }, Some(Awaiting::Lookup)) => {
                self.awaiting = None;
                self.record.baseline = Some(Baseline { active: active.clone() });
                self.record.active_after = active;
                match quarantine {
                    Some(reason) => {
                        let name = self.package().map(|p| p.name).unwrap_or_default();
                        let message = format!(
                            "package {name} is quarantined on this agent ({reason}); \
                             an admin must clear it with `flotte-agent quarantine clear {name}`"
                        );
                        self.fail(now, FailureClass::Preflight, message, None);
                    }
                    None => self.proceed_unless_downgrade(now),
                }
            }
            (JobEvent::FetchStarted { attempt, offset }, Some(Awaiting::Fetch { attempt: a })) if a == attempt => {
                if self.last_offset.is_some_and(|last| offset > last) {
                    self.interruptions = 0;
                }
                self.last_offset = Some(offset);
                self.enter(now, JobState::Downloading { offset });
            }
            (JobEvent::Fetched { attempt, sha256, size }, Some(Awaiting::Fetch { attempt: a })) if a == attempt => {
                self.awaiting = None;
                self.interrupted = None;
                self.check_content(now, sha256, size);
            }
            (JobEvent::FetchInterrupted { attempt, reason }, Some(Awaiting::Fetch { attempt: a })) if a == attempt => {
                self.awaiting = None;
                self.interruptions = self.interruptions.saturating_add(1);
                let delay = doubled(FETCH_RETRY, self.interruptions - 1).min(FETCH_RETRY_MAX);
                let retry_at = now.saturating_add(delay);
                self.timer = Some(retry_at);
                self.interrupted = Some(Interruption { reason, retry_at });
            }
            (JobEvent::FetchFailed { attempt, failure }, Some(Awaiting::Fetch { attempt: a })) if a == attempt => {
                self.awaiting = None;
                if failure.transient && self.failures < MAX_TRANSIENT_RETRIES {
                    self.retry_later(now);
                } else {
                    self.delete_download();
                    self.fail(now, FailureClass::Download, self.gave_up(failure), None);
                }
            }
            (JobEvent::Staged(result), Some(Awaiting::Step(Step::Stage))) => {
                self.step_done(now, Step::Stage, result, |job, now| job.advance_to(now, JobState::Preflight));
            }
            (JobEvent::PreflightChecked(result), Some(Awaiting::Step(Step::Preflight))) => {
                self.step_done(now, Step::Preflight, result, |job, now| {
                    let wants_backup = job.meta().is_some_and(|m| !m.backup_paths.is_empty());
                    let next = if wants_backup { JobState::BackingUp } else { JobState::Installing };
                    job.advance_to(now, next);
                });
            }
            (JobEvent::BackedUp(result), Some(Awaiting::Step(Step::Backup))) => {
                self.step_done(now, Step::Backup, result, |job, now| {
                    job.record.backup_taken = true;
                    job.advance_to(now, JobState::Installing);
                });
            }
            (JobEvent::Switched { result, active }, Some(Awaiting::Step(Step::Switch))) => {
                self.record.active_after = active;
                self.step_done(now, Step::Switch, result, |job, now| job.advance_to(now, JobState::Detecting));
            }
            (JobEvent::Detected(result), Some(Awaiting::Step(Step::Detect))) => {
                self.step_done(now, Step::Detect, result, Job::after_detection);
            }
            (JobEvent::HealthChecked(result), Some(Awaiting::Step(Step::Health))) => {
                self.step_done(now, Step::Health, result, Job::after_health_check);
            }
            (JobEvent::Committed, Some(Awaiting::Step(Step::Commit))) => {
                self.awaiting = None;
                self.enter(now, JobState::Succeeded);
                self.delete_download();
            }
            (JobEvent::RolledBack { result, active }, Some(Awaiting::Step(Step::RollBack))) => {
                self.record.active_after = active;
                self.step_done(now, Step::RollBack, result, Job::after_rollback);
            }
            // Duplicates, stale attempts, answers nobody asked for, and
            // cancellations that come too late.
            _ => {}
        }
    }

    /// The next piece of work, in order.
    pub fn poll_action(&mut self) -> Option<JobAction> {
        self.actions.pop_front()
    }

    /// When [`Job::handle_timeout`] wants to be called.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        if self.awaiting.is_none() && !self.is_terminal() { self.timer } else { None }
    }

    /// Runs whatever waited for the timer: a download or step retry, the end
    /// of a hold, the next health-check run.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        if self.poll_timeout().is_none_or(|at| at > now) {
            return;
        }
        self.timer = None;
        match self.record.state {
            JobState::Waiting { .. } => self.proceed(now),
            JobState::VerifyingMetadata => self.start_verify(now),
            JobState::WaitingForWindow { .. } => self.install_when_open(now),
            JobState::Downloading { .. } => self.start_fetch(),
            JobState::Staging => self.run_step(Step::Stage),
            JobState::BackingUp => self.run_step(Step::Backup),
            JobState::HealthChecking { .. } => self.run_step(Step::Health),
            JobState::RollingBack { .. } => self.run_step(Step::RollBack),
            _ => {}
        }
    }

    fn resume(&mut self, now: Timestamp) {
        if std::mem::take(&mut self.restored) {
            return self.recover(now);
        }
        match self.record.state {
            JobState::Downloading { .. } if self.verified.is_some() => self.start_fetch(),
            ref state if state.cancellable() && self.verified.is_none() => self.start_verify(now),
            // Everything else waits for its answer or its timer.
            _ => {}
        }
    }

    /// The first `Resume` after [`Job::restore`]: the restart table.
    fn recover(&mut self, now: Timestamp) {
        let recovery = self.record.state.on_restart();
        let checkpoint = self.record.state.checkpoint();
        if matches!(recovery, Recovery::Done | Recovery::Resume) || self.record.package.is_none() {
            // Nothing was touched yet (or we cannot tell what: verify again).
            return self.start_verify(now);
        }
        self.record.restarts = self.record.restarts.saturating_add(1);
        self.persist();
        let restarts = self.record.restarts;
        let give_up = restarts > MAX_RESTARTS;
        match recovery {
            Recovery::ResumeRisky if give_up => {
                self.delete_download();
                let message = format!(
                    "the agent stopped {restarts} times during this job (last after checkpoint \"{checkpoint}\"); \
                     giving up before the switch"
                );
                self.fail(now, FailureClass::Interrupted, message, None);
            }
            Recovery::ResumeRisky => self.start_verify(now),
            Recovery::RollBack => {
                let message = format!(
                    "the agent stopped after checkpoint \"{checkpoint}\", before the new version was committed"
                );
                self.start_rollback(now, FailureClass::Interrupted, message);
            }
            Recovery::FinishCommit if give_up => {
                // The cleanup keeps crashing the agent; the install itself is done.
                self.enter(now, JobState::Succeeded);
            }
            Recovery::FinishCommit => self.run_step(Step::Commit),
            Recovery::RetryRollback if give_up => {
                self.refusal = Some(format!("the agent stopped {restarts} times while rolling back"));
                self.awaiting = Some(Awaiting::LookupAfterGivingUp);
                let name = self.package().map(|p| p.name).unwrap_or_default();
                self.actions.push_back(JobAction::LookUpPackage { name });
            }
            Recovery::RetryRollback => self.run_step(Step::RollBack),
            Recovery::Done | Recovery::Resume => {}
        }
    }

    fn start_verify(&mut self, now: Timestamp) {
        self.enter(now, JobState::VerifyingMetadata);
        self.awaiting = Some(Awaiting::Verify);
        self.actions.push_back(JobAction::VerifyMetadata(self.record.release.clone()));
    }

    fn metadata_checked(&mut self, now: Timestamp, result: Result<VerifiedRelease, VerifyError>) {
        self.awaiting = None;
        let verified = match result {
            Ok(v) => v,
            // The metadata could not be had (link lost mid-update, nothing
            // persisted yet): not a verdict on the release; ask again later.
            Err(VerifyError::Unavailable { .. }) if self.failures < MAX_TRANSIENT_RETRIES => {
                return self.retry_later(now);
            }
            Err(e) => return self.refuse(now, e.to_string()),
        };
        let meta = verified.metadata().clone();
        if let Err(e) = meta.validate_spec() {
            return self.refuse(now, format!("signed release metadata has an invalid spec: {e}"));
        }
        self.record.package = Some(PackageRef {
            name: meta.name.clone(),
            version: meta.version.clone(),
            installer: meta.installer,
            sha256: meta.sha256,
        });
        let name = meta.name.clone();
        self.verified = Some(verified);
        if self.record.baseline.is_none() {
            self.awaiting = Some(Awaiting::Lookup);
            self.actions.push_back(JobAction::LookUpPackage { name });
        } else {
            self.proceed_unless_downgrade(now);
        }
    }

    /// Goes on with the verified release now that the active version is
    /// known, unless the release is older than it and carries no signed
    /// rollback authorisation that covers it: then the job fails as a
    /// verification verdict and nothing on the host changes.
    fn proceed_unless_downgrade(&mut self, now: Timestamp) {
        let refusal = match (&self.verified, self.active_before()) {
            (Some(verified), Some(active)) => verified.may_replace(&active).err(),
            _ => None,
        };
        match refusal {
            Some(refusal) => {
                self.delete_download();
                self.fail(now, FailureClass::Verification, refusal.to_string(), None);
            }
            None => self.proceed(now),
        }
    }

    /// The verified release metadata, once verification passed in this process.
    fn meta(&self) -> Option<&ReleaseMetadata> {
        self.verified.as_ref().map(VerifiedRelease::metadata)
    }

    /// Ends a job whose release failed verification. The report still tells
    /// the controller which version stays active: the name the *unverified*
    /// metadata claims is used for nothing but reading that package's
    /// `current` link, and only if it is a valid package name.
    fn refuse(&mut self, now: Timestamp, error: String) {
        let claimed = Some(self.record.release.name.clone())
            .filter(|name| flotte_protocol::release::validate_name("package name", name).is_ok());
        match claimed {
            Some(name) if self.record.baseline.is_none() => {
                self.refusal = Some(error);
                self.awaiting = Some(Awaiting::LookupAfterRefusal);
                self.actions.push_back(JobAction::LookUpPackage { name });
            }
            _ => {
                self.delete_download();
                self.fail(now, FailureClass::Verification, error, None)
            }
        }
    }

    fn hold(&mut self, now: Timestamp, until: Timestamp) {
        self.record.not_before = Some(until);
        if matches!(self.record.state, JobState::Waiting { .. }) {
            self.set_state(now, JobState::Waiting { until });
            self.timer = Some(until);
        }
    }

    /// Verified and looked up: wait if held, else download.
    fn proceed(&mut self, now: Timestamp) {
        if let Some(until) = self.record.not_before.filter(|until| *until > now) {
            self.set_state(now, JobState::Waiting { until });
            self.timer = Some(until);
            return;
        }
        // Journals `Downloading`; the report follows when an attempt says
        // where it starts ([`JobEvent::FetchStarted`]).
        self.set_state(now, JobState::Downloading { offset: 0 });
        self.start_fetch();
    }

    fn start_fetch(&mut self) {
        let Some((digest, size)) = self.meta().map(|m| (m.sha256, m.size)) else { return };
        self.attempts += 1;
        self.timer = None;
        self.awaiting = Some(Awaiting::Fetch { attempt: self.attempts });
        self.actions.push_back(JobAction::Fetch { attempt: self.attempts, digest, size });
    }

    fn check_content(&mut self, now: Timestamp, sha256: Sha256Digest, size: u64) {
        let Some(meta) = self.meta().cloned() else { return };
        self.enter(now, JobState::VerifyingContent);
        if let Some(message) = content_mismatch(&meta, sha256, size) {
            self.delete_download();
            return self.fail(now, FailureClass::Verification, message, None);
        }
        self.failures = 0;
        self.install_when_open(now);
    }

    /// Stages now if every window is open, else waits (journaled and
    /// reported) for the first instant they all are.
    fn install_when_open(&mut self, now: Timestamp) {
        let windows = self.windows();
        match Window::next_open_all(&windows, now) {
            Some(at) if at <= now => self.advance_to(now, JobState::Staging),
            Some(until) => {
                if self.record.state == (JobState::WaitingForWindow { until }) {
                    self.report(); // still waiting: say so again
                } else {
                    self.enter(now, JobState::WaitingForWindow { until });
                }
                self.timer = Some(until.min(now.saturating_add(WINDOW_REPORT_INTERVAL)));
            }
            None => {
                let list: Vec<String> = windows.iter().map(|w| format!("`{w}`")).collect();
                let message = format!(
                    "the agent's and the rollout's maintenance windows ({}) are never open at the same time; \
                     change the agent's maintenance_window or the rollout's window",
                    list.join(" and ")
                );
                self.delete_download();
                self.fail(now, FailureClass::Preflight, message, None);
            }
        }
    }

    /// Enters a step state and starts its step.
    fn advance_to(&mut self, now: Timestamp, state: JobState) {
        let step = match state {
            JobState::Staging => Step::Stage,
            JobState::Preflight => Step::Preflight,
            JobState::BackingUp => Step::Backup,
            JobState::Installing => Step::Switch,
            JobState::Detecting => Step::Detect,
            JobState::HealthChecking { .. } => Step::Health,
            JobState::Committing => Step::Commit,
            _ => return self.enter(now, state),
        };
        self.failures = 0;
        self.enter(now, state);
        self.run_step(step);
    }

    /// Emits the action of `step` and waits for its answer.
    fn run_step(&mut self, step: Step) {
        let Some(package) = self.package() else { return };
        let action = match step {
            Step::Stage => JobAction::Stage { package },
            Step::Preflight => JobAction::Preflight { package, baseline: self.active_before() },
            Step::Backup => {
                let paths = self.meta().map(|m| m.backup_paths.clone()).unwrap_or_default();
                JobAction::Backup { package, paths }
            }
            Step::Switch => JobAction::Switch { package },
            Step::Detect => JobAction::Detect { package, rule: self.meta().and_then(|m| m.detect.clone()) },
            Step::Health => {
                let Some(plan) = self.health_plan() else { return };
                JobAction::CheckHealth { package, check: plan.check, timeout: plan.timeout }
            }
            Step::Commit => JobAction::Commit { package, backup: self.record.backup_taken },
            Step::RollBack => {
                JobAction::RollBack { package, to: self.active_before(), restore_backup: self.record.backup_taken }
            }
        };
        self.awaiting = Some(Awaiting::Step(step));
        self.actions.push_back(action);
    }

    /// Routes a step's result: on success `next`, on a transient failure of
    /// a repeatable step a retry, otherwise the step's failure path.
    fn step_done(
        &mut self,
        now: Timestamp,
        step: Step,
        result: Result<(), StepFailure>,
        next: impl FnOnce(&mut Job, Timestamp),
    ) {
        self.awaiting = None;
        let failure = match result {
            Ok(()) => return next(self, now),
            Err(f) => f,
        };
        let repeatable = matches!(step, Step::Stage | Step::Backup | Step::RollBack);
        if failure.transient && repeatable && self.failures < MAX_TRANSIENT_RETRIES {
            return self.retry_later(now);
        }
        let message = self.gave_up(failure);
        match step {
            Step::Stage | Step::Backup => {
                self.delete_download();
                self.fail(now, FailureClass::Install, message, None);
            }
            Step::Preflight => {
                self.delete_download();
                self.fail(now, FailureClass::Preflight, message, None);
            }
            Step::Switch => self.start_rollback(now, FailureClass::Install, message),
            Step::Detect => self.start_rollback(now, FailureClass::Detection, message),
            Step::Health => self.start_rollback(now, FailureClass::Health, message),
            Step::RollBack => {
                let active = self.record.active_after.clone();
                let why = match &self.record.state {
                    JobState::RollingBack { class, message: cause } => format!(" ({} failure: {cause})", class.name()),
                    _ => String::new(),
                };
                let to = self.active_before().unwrap_or_else(|| "no version".into());
                self.rollback_failed(now, format!("rolling back to {to} failed: {message}{why}"), active);
            }
            Step::Commit => {}
        }
    }

    /// Schedules the current step (or download) again after a doubling delay.
    fn retry_later(&mut self, now: Timestamp) {
        self.failures += 1;
        self.timer = Some(now.saturating_add(doubled(STEP_RETRY, self.failures - 1)));
    }

    /// The failure message, saying so if retries were used up.
    fn gave_up(&self, failure: StepFailure) -> String {
        if failure.transient && self.failures > 0 {
            format!("{} (gave up after {} retries)", failure.message, self.failures)
        } else {
            failure.message
        }
    }

    /// A declared health check, or a script package (whose `check` hook is
    /// its health check), gets a health phase; anything else is committed
    /// once detected.
    fn health_plan(&self) -> Option<HealthPlan> {
        let meta = self.meta()?;
        match &meta.health {
            Some(spec) => Some(HealthPlan {
                check: Some(spec.check.clone()),
                probation: Duration::from_secs(u64::from(spec.probation_secs)),
                interval: secs_or(spec.interval_secs, DEFAULT_HEALTH_INTERVAL),
                timeout: secs_or(spec.timeout_secs, DEFAULT_HEALTH_TIMEOUT),
            }),
            None if meta.installer == InstallerKind::Script => Some(HealthPlan {
                check: None,
                probation: Duration::ZERO,
                interval: DEFAULT_HEALTH_INTERVAL,
                timeout: DEFAULT_HEALTH_TIMEOUT,
            }),
            None => None,
        }
    }

    fn after_detection(&mut self, now: Timestamp) {
        match self.health_plan() {
            Some(plan) => {
                let until = now.saturating_add(plan.probation);
                self.advance_to(now, JobState::HealthChecking { until });
            }
            None => self.advance_to(now, JobState::Committing),
        }
    }

    /// One passing run: commit once probation is over, else run again later.
    fn after_health_check(&mut self, now: Timestamp) {
        let JobState::HealthChecking { until } = self.record.state else { return };
        if now >= until {
            return self.advance_to(now, JobState::Committing);
        }
        let interval = self.health_plan().map_or(DEFAULT_HEALTH_INTERVAL, |p| p.interval);
        self.timer = Some(now.saturating_add(interval).min(until));
    }

    fn start_rollback(&mut self, now: Timestamp, class: FailureClass, message: String) {
        self.failures = 0;
        self.enter(now, JobState::RollingBack { class, message: bounded_message(message) });
        self.run_step(Step::RollBack);
    }

    fn after_rollback(&mut self, now: Timestamp) {
        let JobState::RollingBack { class, message } = self.record.state.clone() else { return };
        self.enter(now, JobState::RolledBack { class, message });
        self.discard_backup();
        self.delete_download();
    }

    fn discard_backup(&mut self) {
        if let Some(package) = self.package().filter(|_| self.record.backup_taken) {
            self.actions.push_back(JobAction::DiscardBackup { package });
        }
    }

    /// Quarantines the package (before journaling why), then ends the job.
    fn rollback_failed(&mut self, now: Timestamp, message: String, active: Option<String>) {
        let message = bounded_message(message);
        if let Some(package) = self.package() {
            self.actions.push_back(JobAction::Quarantine { name: package.name, reason: message.clone() });
        }
        self.record.active_after = active;
        self.enter(now, JobState::RollbackFailed { message });
        self.delete_download();
    }

    fn cancel(&mut self, now: Timestamp) {
        if matches!(self.awaiting, Some(Awaiting::Fetch { .. })) {
            self.actions.push_back(JobAction::CancelFetch);
        }
        self.awaiting = None;
        self.delete_download();
        self.fail(now, FailureClass::Download, "cancelled by the controller".into(), None);
    }

    /// Ends the job before any switch. `active_now` overrides the last known
    /// active version when someone just looked.
    fn fail(&mut self, now: Timestamp, class: FailureClass, message: String, active_now: Option<Option<String>>) {
        if let Some(active) = active_now {
            self.record.active_after = active;
        }
        self.enter(now, JobState::Failed { class, message: bounded_message(message) });
        self.discard_backup();
    }

    fn delete_download(&mut self) {
        if let Some(package) = self.package() {
            self.actions.push_back(JobAction::DeleteDownload { digest: package.sha256 });
        }
    }

    fn package(&self) -> Option<PackageRef> {
        self.record.package.clone()
    }

    /// Changes state: journal first, then tell the controller (if the state
    /// is one it hears about).
    fn enter(&mut self, now: Timestamp, state: JobState) {
        self.set_state(now, state);
        self.report();
    }

    fn set_state(&mut self, now: Timestamp, state: JobState) {
        self.record.state = state;
        self.record.since = now;
        self.persist();
    }

    fn persist(&mut self) {
        self.actions.push_back(JobAction::Persist(Box::new(self.record.clone())));
    }

    fn report(&mut self) {
        let state = match &self.record.state {
            JobState::Received => InstallState::Received,
            JobState::Downloading { offset } => {
                let total = self.meta().map_or(0, |m| m.size);
                InstallState::Downloading { offset: *offset, total }
            }
            JobState::VerifyingContent => InstallState::Verifying,
            JobState::WaitingForWindow { until } => InstallState::WaitingForWindow { until: *until },
            JobState::Staging => InstallState::Installing,
            JobState::HealthChecking { .. } => InstallState::HealthChecking,
            JobState::Succeeded => InstallState::Succeeded,
            JobState::RollingBack { .. } => InstallState::RollingBack,
            JobState::RolledBack { class, message } => {
                InstallState::RolledBack { class: *class, message: message.clone() }
            }
            JobState::RollbackFailed { message } => InstallState::RollbackFailed { message: message.clone() },
            JobState::Failed { class, message } => InstallState::Failed { class: *class, message: message.clone() },
            // Steps inside "verifying" or "installing" as the controller sees it.
            JobState::Waiting { .. }
            | JobState::VerifyingMetadata
            | JobState::Preflight
            | JobState::BackingUp
            | JobState::Installing
            | JobState::Detecting
            | JobState::Committing => return,
        };
        let active_after = match &self.record.state {
            JobState::Received => None,
            _ => self.record.active_after.clone(),
        };
        self.actions.push_back(JobAction::Report(ReportDraft {
            assignment: self.record.id,
            state,
            at: self.record.since,
            active_before: self.active_before(),
            active_after,
        }));
    }

    fn active_before(&self) -> Option<String> {
        self.record.baseline.as_ref().and_then(|b| b.active.clone())
    }
}

/// `base · 2^n`, saturating.
/// Why downloaded content of `sha256` and `size` is not the content that
/// `meta` (verified release metadata) names, or `None` if it is.
pub fn content_mismatch(meta: &ReleaseMetadata, sha256: Sha256Digest, size: u64) -> Option<String> {
    if size != meta.size {
        Some(format!("content size mismatch: expected {} bytes, got {size}", meta.size))
    } else if sha256 != meta.sha256 {
        Some(format!("content sha256 mismatch: expected {}, got {sha256}", meta.sha256))
    } else {
        None
    }
}

fn doubled(base: Duration, n: u32) -> Duration {
    base.saturating_mul(1u32.checked_shl(n).unwrap_or(u32::MAX))
}

fn secs_or(secs: u32, default: Duration) -> Duration {
    if secs == 0 { default } else { Duration::from_secs(u64::from(secs)) }
}
