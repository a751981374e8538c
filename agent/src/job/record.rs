//! What a job journals: its state, the facts it needs after a restart, and
//! the table that says what a restart does in each state.
//!
//! Guarantees:
//! - Every state names the checkpoint it marks ([`JobState::checkpoint`]):
//!   the last step known to be complete when that record is on disk. The
//!   crash hooks and the tests use these names.
//! - [`JobState::on_restart`] is total: every state, terminal or not, has
//!   exactly one recovery, and no state that may have switched the active
//!   version is ever resumed forward without its commit being journaled.

use flotte_protocol::messages::{FailureClass, InstallState, Report};
use flotte_protocol::window::Window;
use flotte_protocol::{AssignmentId, InstallerKind, ReleaseRef, Sha256Digest, Timestamp};
use serde::{Deserialize, Serialize};

/// Where a job stands; journaled with every change, before the side effect
/// the change announces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Journaled, not started.
    Received,
    /// Verified and held until `until` (maintenance windows, consent).
    Waiting { until: Timestamp },
    /// The signature is being checked.
    VerifyingMetadata,
    /// Content is being fetched; `offset` is where the current attempt began.
    Downloading { offset: u64 },
    /// All bytes are on disk; size and sha256 are being compared.
    VerifyingContent,
    /// The content matched the signed metadata and is kept; the install
    /// waits for its maintenance windows, which next open together at `until`.
    WaitingForWindow { until: Timestamp },
    /// The content matched the signed metadata; the installer is staging it
    /// next to the active version.
    Staging,
    /// Staged; checks that must pass before anything changes are running
    /// (rollback possible, package not quarantined).
    Preflight,
    /// The release's backup paths are being saved.
    BackingUp,
    /// The switch to the new version is about to happen or happening.
    Installing,
    /// Switched; the detection rule is being checked.
    Detecting,
    /// Detected; the health check must keep passing until `until`.
    HealthChecking { until: Timestamp },
    /// Every check passed; the backup and old download are being discarded.
    Committing,
    /// The new version is active and committed.
    Succeeded,
    /// The new version is being abandoned for the baseline.
    RollingBack { class: FailureClass, message: String },
    /// The baseline is active again.
    RolledBack { class: FailureClass, message: String },
    /// The baseline could not be restored; the package is quarantined.
    RollbackFailed { message: String },
    /// Ended before the switch; the previous version stays active.
    Failed { class: FailureClass, message: String },
}

/// What a restarted agent does with a job it finds in a given state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// Nothing: the job is over (its last report is still in the outbox
    /// until acknowledged).
    Done,
    /// Verify again and carry on; a download resumes from its bytes on disk.
    Resume,
    /// Like `Resume`, but the interrupted step ran installer code on the
    /// host, so the restart counts toward the loop guard.
    ResumeRisky,
    /// The switch may have happened and the new version was never
    /// committed: roll back to the baseline.
    RollBack,
    /// Every check passed before the stop: finish the commit.
    FinishCommit,
    /// Roll back again (rollback is idempotent).
    RetryRollback,
}

impl JobState {
    /// Whether the job is over.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            JobState::Succeeded
                | JobState::Failed { .. }
                | JobState::RolledBack { .. }
                | JobState::RollbackFailed { .. }
        )
    }

    /// Whether the controller may still cancel: nothing on the host has
    /// been touched yet.
    pub fn cancellable(&self) -> bool {
        matches!(
            self,
            JobState::Received
                | JobState::Waiting { .. }
                | JobState::VerifyingMetadata
                | JobState::Downloading { .. }
                | JobState::VerifyingContent
                | JobState::WaitingForWindow { .. }
        )
    }

    /// Whether no download has started yet, so a hold still applies.
    pub fn before_download(&self) -> bool {
        matches!(self, JobState::Received | JobState::Waiting { .. } | JobState::VerifyingMetadata)
    }

    /// The checkpoint a journal record in this state marks: what is known
    /// to be complete. Crash hooks are named `after:<checkpoint>`.
    pub fn checkpoint(&self) -> &'static str {
        match self {
            JobState::Received => "received",
            JobState::Waiting { .. } => "waiting",
            JobState::VerifyingMetadata => "verifying-metadata",
            JobState::Downloading { .. } => "downloading",
            JobState::VerifyingContent => "downloaded",
            JobState::WaitingForWindow { .. } => "awaiting-window",
            JobState::Staging => "verified",
            JobState::Preflight => "staged",
            JobState::BackingUp => "preflight-passed",
            JobState::Installing => "backed-up",
            JobState::Detecting => "switched",
            JobState::HealthChecking { .. } => "detected",
            JobState::Committing => "health-checked",
            JobState::Succeeded => "committed",
            JobState::RollingBack { .. } => "rolling-back",
            JobState::RolledBack { .. } => "rolled-back",
            JobState::RollbackFailed { .. } => "rollback-failed",
            JobState::Failed { .. } => "failed",
        }
    }

    /// The restart table.
    pub fn on_restart(&self) -> Recovery {
        match self {
            JobState::Received
            | JobState::Waiting { .. }
            | JobState::VerifyingMetadata
            | JobState::Downloading { .. }
            | JobState::VerifyingContent
            | JobState::WaitingForWindow { .. } => Recovery::Resume,
            JobState::Staging | JobState::Preflight | JobState::BackingUp => Recovery::ResumeRisky,
            JobState::Installing | JobState::Detecting | JobState::HealthChecking { .. } => Recovery::RollBack,
            JobState::Committing => Recovery::FinishCommit,
            JobState::RollingBack { .. } => Recovery::RetryRollback,
            JobState::Succeeded
            | JobState::RolledBack { .. }
            | JobState::RollbackFailed { .. }
            | JobState::Failed { .. } => Recovery::Done,
        }
    }
}

/// The durable part of a job (`jobs/<id>.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRecord {
    pub id: AssignmentId,
    /// Exactly as the controller sent it; verified again after every restart.
    pub release: ReleaseRef,
    pub issued_at: Timestamp,
    /// When this agent first stored the assignment; orders the run queue.
    pub received_at: Timestamp,
    pub state: JobState,
    /// When `state` was entered: the `at` of its report.
    pub since: Timestamp,
    /// The active version when work began; kept so that a job resumed after
    /// a crash mid-install still reports the true "before", and so that a
    /// rollback knows where to go.
    pub baseline: Option<Baseline>,
    /// The active version as this job last knew it (the baseline until the
    /// switch, then what the installer reported).
    pub active_after: Option<String>,
    /// Copied from the verified metadata, so that a restart can roll back or
    /// quarantine without trusting the release again. Never used to install.
    #[serde(default)]
    pub package: Option<PackageRef>,
    /// Agent restarts found this job in a risky state (the loop guard).
    #[serde(default)]
    pub restarts: u32,
    /// Whether the release's backup paths were saved and must be restored
    /// on rollback.
    #[serde(default)]
    pub backup_taken: bool,
    /// Do not start downloading before this time (the waiting hook).
    #[serde(default)]
    pub not_before: Option<Timestamp>,
    /// Whether the agent's maintenance window applies (a required install:
    /// a push or a deadline; not one a user started).
    #[serde(default)]
    pub windowed: bool,
    /// The rollout's maintenance window a deadline install must also wait for.
    #[serde(default)]
    pub rollout_window: Option<Window>,
}

/// The active version of the package before the job changed anything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Baseline {
    pub active: Option<String>,
}

/// Which package a job installs, from its verified metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageRef {
    pub name: String,
    pub version: String,
    pub installer: InstallerKind,
    /// The content digest: names the downloaded file.
    pub sha256: Sha256Digest,
}

impl PackageRef {
    /// `name@version`.
    pub fn label(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }
}

/// A report without its sequence number, which the outbox assigns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportDraft {
    pub assignment: AssignmentId,
    pub state: InstallState,
    pub at: Timestamp,
    pub active_before: Option<String>,
    pub active_after: Option<String>,
}

impl ReportDraft {
    /// The wire report with sequence number `seq`.
    pub fn with_seq(self, seq: u64) -> Report {
        Report {
            seq,
            assignment: self.assignment,
            state: self.state,
            at: self.at,
            active_before: self.active_before,
            active_after: self.active_after,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One example of every state, in the order a job passes them.
    fn all_states() -> Vec<JobState> {
        let t = Timestamp::EPOCH;
        let class = FailureClass::Health;
        vec![
            JobState::Received,
            JobState::Waiting { until: t },
            JobState::VerifyingMetadata,
            JobState::Downloading { offset: 0 },
            JobState::VerifyingContent,
            JobState::WaitingForWindow { until: t },
            JobState::Staging,
            JobState::Preflight,
            JobState::BackingUp,
            JobState::Installing,
            JobState::Detecting,
            JobState::HealthChecking { until: t },
            JobState::Committing,
            JobState::Succeeded,
            JobState::RollingBack { class, message: String::new() },
            JobState::RolledBack { class, message: String::new() },
            JobState::RollbackFailed { message: String::new() },
            JobState::Failed { class, message: String::new() },
        ]
    }

    #[test]
    fn the_restart_table() {
        use Recovery::*;
        let expected = [
            ("received", Resume),
            ("waiting", Resume),
            ("verifying-metadata", Resume),
            ("downloading", Resume),
            ("downloaded", Resume),
            ("awaiting-window", Resume),
            ("verified", ResumeRisky),
            ("staged", ResumeRisky),
            ("preflight-passed", ResumeRisky),
            ("backed-up", RollBack),
            ("switched", RollBack),
            ("detected", RollBack),
            ("health-checked", FinishCommit),
            ("committed", Done),
            ("rolling-back", RetryRollback),
            ("rolled-back", Done),
            ("rollback-failed", Done),
            ("failed", Done),
        ];
        let got: Vec<_> = all_states().iter().map(|s| (s.checkpoint(), s.on_restart())).collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn only_states_before_any_host_change_can_be_cancelled_and_done_means_terminal() {
        for state in all_states() {
            let before_stage = matches!(state.on_restart(), Recovery::Resume);
            assert_eq!(state.cancellable(), before_stage, "{state:?}");
            assert_eq!(state.is_terminal(), state.on_restart() == Recovery::Done, "{state:?}");
        }
    }

    #[test]
    fn records_without_the_newer_fields_still_load() {
        let json = r#"{"id":4,"release":{"name":"app","version":"1.0"},"issued_at":"1970-01-01T00:00:00.005Z",
            "received_at":"1970-01-01T00:00:00.006Z","state":{"downloading":{"offset":9}},
            "since":"1970-01-01T00:00:00.006Z","baseline":null,"active_after":null}"#;
        let record: JobRecord = serde_json::from_str(json).unwrap();
        assert_eq!((record.restarts, record.backup_taken, record.package), (0, false, None));
        assert_eq!((record.windowed, record.rollout_window), (false, None));
    }
}
