//! One install job as a pure state machine (the quinn-proto model): events
//! go in through [`Job::handle`] and [`Job::handle_timeout`], work comes out
//! of [`Job::poll_action`]. No IO and no clock: the shell passes `now`.
//!
//! ```text
//! Received → VerifyingMetadata → Downloading(offset) → VerifyingContent → Installing → Succeeded
//!                  └───────────────────┴────────────────────────┴──────────────┴──→ Failed{class, message}
//! ```
//!
//! Guarantees:
//! - No `Fetch` or `Install` action is ever emitted for a release that did
//!   not pass [`JobEvent::MetadataChecked`] with `Ok`; the digest, size,
//!   name and version they carry come only from the verified metadata.
//! - Every state change emits [`JobAction::Persist`] before the action that
//!   acts on it, so the shell journals a transition before its side effect.
//! - A terminal job never changes again; late or stale events (an old
//!   download attempt, a result nobody waits for) are ignored.
//! - After a restart ([`Job::restore`]) the signed release is verified again:
//!   verified metadata is never read back from disk.

use flotte_protocol::messages::{Assignment, FailureClass, InstallState, Report};
use flotte_protocol::{
    AssignmentId, ReleaseMetadata, Sha256Digest, SignedRelease, Timestamp, VerifiedRelease, VerifyError,
};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::time::Duration;

/// How long an interrupted download waits before it is tried again on a
/// live connection (a reconnect retries at once).
pub const FETCH_RETRY: Duration = Duration::from_secs(5);

/// Where a job stands; journaled with every change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Journaled, not started.
    Received,
    /// The signature is being checked.
    VerifyingMetadata,
    /// Content is being fetched; `offset` is where the current attempt began.
    Downloading { offset: u64 },
    /// Size and sha256 of the downloaded bytes are being compared.
    VerifyingContent,
    /// The installer has the verified bytes.
    Installing,
    /// The new version is active.
    Succeeded,
    /// Ended without installing; the previous version stays active.
    Failed { class: FailureClass, message: String },
}

impl JobState {
    /// Whether the job is over.
    pub fn is_terminal(&self) -> bool {
        matches!(self, JobState::Succeeded | JobState::Failed { .. })
    }
}

/// The durable part of a job (`jobs/<id>.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRecord {
    pub id: AssignmentId,
    /// Exactly as the controller sent it; verified again after every restart.
    pub release: SignedRelease,
    pub issued_at: Timestamp,
    /// When this agent first stored the assignment; orders the run queue.
    pub received_at: Timestamp,
    pub state: JobState,
    /// When `state` was entered: the `at` of its report.
    pub since: Timestamp,
    /// The active version when work began; kept so that a job resumed after
    /// a crash mid-install still reports the true "before".
    pub baseline: Option<Baseline>,
    /// The active version when the job ended (terminal states only).
    pub active_after: Option<String>,
}

/// The active version of the package before the job changed anything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Baseline {
    pub active: Option<String>,
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

/// Input to a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobEvent {
    /// The job may work now: it is first in line, or the controller link came
    /// back (an interrupted download is retried at once).
    Resume,
    /// The controller delivered the same assignment again.
    Redelivered,
    /// The controller cancelled the assignment.
    Cancel,
    /// Result of [`JobAction::VerifyMetadata`].
    MetadataChecked(Result<VerifiedRelease, VerifyError>),
    /// Result of [`JobAction::LookUpActive`].
    ActiveVersion(Option<String>),
    /// A download attempt is about to request bytes from `offset` on.
    FetchStarted { attempt: u32, offset: u64 },
    /// All bytes are on disk and fsynced; digest and length as hashed.
    Fetched { attempt: u32, sha256: Sha256Digest, size: u64 },
    /// The attempt stopped for a reason that may pass (connection lost,
    /// timeout); the bytes so far stay on disk.
    FetchInterrupted { attempt: u32, reason: String },
    /// The content cannot be had (not found, bad range, local file error).
    FetchFailed { attempt: u32, message: String },
    /// The installer activated the version; `active_after` is what is active now.
    Installed { active_after: Option<String> },
    /// The installer failed; `active_now` is what is still active.
    InstallFailed { message: String, active_now: Option<String> },
}

/// Work the shell carries out for a job, in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobAction {
    /// Write [`Job::record`] durably.
    Persist,
    /// Queue this report in the outbox.
    Report(ReportDraft),
    /// Verify the signed release; answer with [`JobEvent::MetadataChecked`].
    VerifyMetadata(SignedRelease),
    /// Read the active version of `name`; answer with [`JobEvent::ActiveVersion`].
    LookUpActive { name: String },
    /// Download `size` bytes of `digest`, resuming what is on disk; answer
    /// with the `Fetch*` events carrying `attempt`.
    Fetch { attempt: u32, digest: Sha256Digest, size: u64 },
    /// Stop the running download attempt, if any, and wait until it stopped.
    CancelFetch,
    /// Delete the downloaded file of `digest`.
    DeleteDownload { digest: Sha256Digest },
    /// Stage and activate the downloaded, verified content; answer with
    /// [`JobEvent::Installed`] or [`JobEvent::InstallFailed`].
    Install { name: String, version: String, digest: Sha256Digest, active_before: Option<String> },
}

/// Which answer the job waits for; at most one at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Awaiting {
    Verify,
    ActiveVersion,
    /// The release was refused; what is active is still worth reporting.
    ActiveVersionAfterRefusal,
    Fetch {
        attempt: u32,
    },
    Install,
}

/// One assignment on this agent.
#[derive(Debug)]
pub struct Job {
    record: JobRecord,
    /// Set only from a successful verification in this process.
    verified: Option<ReleaseMetadata>,
    awaiting: Option<Awaiting>,
    /// Download attempts so far; tells a stale attempt's events apart.
    attempts: u32,
    /// When an interrupted download is tried again.
    retry_at: Option<Timestamp>,
    /// Why verification refused the release, while the active version is looked up.
    refusal: Option<String>,
    actions: VecDeque<JobAction>,
}

impl Job {
    /// A newly received assignment: journal it, then report `Received`.
    pub fn new(now: Timestamp, assignment: Assignment) -> Self {
        let record = JobRecord {
            id: assignment.id,
            release: assignment.release,
            issued_at: assignment.issued_at,
            received_at: now,
            state: JobState::Received,
            since: now,
            baseline: None,
            active_after: None,
        };
        let mut job = Job::restore(record);
        job.actions.push_back(JobAction::Persist);
        job.report();
        job
    }

    /// A job read back from the journal. It does nothing until [`JobEvent::Resume`].
    pub fn restore(record: JobRecord) -> Self {
        Job {
            record,
            verified: None,
            awaiting: None,
            attempts: 0,
            retry_at: None,
            refusal: None,
            actions: VecDeque::new(),
        }
    }

    pub fn id(&self) -> AssignmentId {
        self.record.id
    }

    /// What [`JobAction::Persist`] writes.
    pub fn record(&self) -> &JobRecord {
        &self.record
    }

    pub fn state(&self) -> &JobState {
        &self.record.state
    }

    pub fn is_terminal(&self) -> bool {
        self.record.state.is_terminal()
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
            (JobEvent::Cancel, awaiting) if awaiting != Some(Awaiting::Install) => self.cancel(now),
            (JobEvent::MetadataChecked(result), Some(Awaiting::Verify)) => self.metadata_checked(now, result),
            (JobEvent::ActiveVersion(active), Some(Awaiting::ActiveVersionAfterRefusal)) => {
                self.awaiting = None;
                let message = self.refusal.take().unwrap_or_default();
                self.fail(now, FailureClass::Verification, message, Some(active));
            }
            (JobEvent::ActiveVersion(active), Some(Awaiting::ActiveVersion)) => {
                self.record.baseline = Some(Baseline { active });
                self.awaiting = None;
                self.begin_download(now);
            }
            (JobEvent::FetchStarted { attempt, offset }, Some(Awaiting::Fetch { attempt: a })) if a == attempt => {
                self.enter(now, JobState::Downloading { offset });
            }
            (JobEvent::Fetched { attempt, sha256, size }, Some(Awaiting::Fetch { attempt: a })) if a == attempt => {
                self.awaiting = None;
                self.check_content(now, sha256, size);
            }
            (JobEvent::FetchInterrupted { attempt, .. }, Some(Awaiting::Fetch { attempt: a })) if a == attempt => {
                self.awaiting = None;
                self.retry_at = Some(now.saturating_add(FETCH_RETRY));
            }
            (JobEvent::FetchFailed { attempt, message }, Some(Awaiting::Fetch { attempt: a })) if a == attempt => {
                self.awaiting = None;
                self.delete_download();
                self.fail(now, FailureClass::Download, message, None);
            }
            (JobEvent::Installed { active_after }, Some(Awaiting::Install)) => {
                self.awaiting = None;
                self.record.active_after = active_after;
                self.enter(now, JobState::Succeeded);
                self.delete_download();
            }
            (JobEvent::InstallFailed { message, active_now }, Some(Awaiting::Install)) => {
                self.awaiting = None;
                self.delete_download();
                self.fail(now, FailureClass::Install, message, Some(active_now));
            }
            // Duplicates, stale attempts and answers nobody asked for.
            _ => {}
        }
    }

    /// The next piece of work, in order.
    pub fn poll_action(&mut self) -> Option<JobAction> {
        self.actions.pop_front()
    }

    /// When [`Job::handle_timeout`] wants to be called.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        if self.awaiting.is_none() && matches!(self.record.state, JobState::Downloading { .. }) {
            self.retry_at
        } else {
            None
        }
    }

    /// Retries an interrupted download once its delay has passed.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        if self.poll_timeout().is_some_and(|at| at <= now) {
            self.start_fetch();
        }
    }

    fn resume(&mut self, now: Timestamp) {
        if self.verified.is_none() {
            self.enter(now, JobState::VerifyingMetadata);
            self.awaiting = Some(Awaiting::Verify);
            self.actions.push_back(JobAction::VerifyMetadata(self.record.release.clone()));
        } else if matches!(self.record.state, JobState::Downloading { .. }) {
            self.start_fetch();
        }
    }

    fn metadata_checked(&mut self, now: Timestamp, result: Result<VerifiedRelease, VerifyError>) {
        self.awaiting = None;
        let verified = match result {
            Ok(v) => v,
            Err(e) => return self.refuse(now, e),
        };
        let name = verified.metadata().name.clone();
        self.verified = Some(verified.metadata().clone());
        if self.record.baseline.is_none() {
            self.awaiting = Some(Awaiting::ActiveVersion);
            self.actions.push_back(JobAction::LookUpActive { name });
        } else {
            self.begin_download(now);
        }
    }

    /// Ends a job whose release failed verification. The report still tells
    /// the controller which version stays active: the name the *unverified*
    /// metadata claims is used for nothing but reading that package's
    /// `current` link, and only if it is a valid package name.
    fn refuse(&mut self, now: Timestamp, error: VerifyError) {
        let claimed =
            flotte_protocol::frame::decode_exact::<ReleaseMetadata>("release metadata", &self.record.release.metadata)
                .ok()
                .map(|m| m.name)
                .filter(|name| flotte_protocol::release::validate_name("package name", name).is_ok());
        match claimed {
            Some(name) if self.record.baseline.is_none() => {
                self.refusal = Some(error.to_string());
                self.awaiting = Some(Awaiting::ActiveVersionAfterRefusal);
                self.actions.push_back(JobAction::LookUpActive { name });
            }
            _ => self.fail(now, FailureClass::Verification, error.to_string(), None),
        }
    }

    /// Journals `Downloading`; the report follows when an attempt says
    /// where it starts ([`JobEvent::FetchStarted`]).
    fn begin_download(&mut self, now: Timestamp) {
        self.set_state(now, JobState::Downloading { offset: 0 });
        self.start_fetch();
    }

    fn start_fetch(&mut self) {
        let Some(meta) = &self.verified else { return };
        self.attempts += 1;
        self.retry_at = None;
        self.awaiting = Some(Awaiting::Fetch { attempt: self.attempts });
        self.actions.push_back(JobAction::Fetch { attempt: self.attempts, digest: meta.sha256, size: meta.size });
    }

    fn check_content(&mut self, now: Timestamp, sha256: Sha256Digest, size: u64) {
        let Some(meta) = self.verified.clone() else { return };
        self.enter(now, JobState::VerifyingContent);
        let mismatch = if size != meta.size {
            Some(format!("content size mismatch: expected {} bytes, got {size}", meta.size))
        } else if sha256 != meta.sha256 {
            Some(format!("content sha256 mismatch: expected {}, got {sha256}", meta.sha256))
        } else {
            None
        };
        if let Some(message) = mismatch {
            self.delete_download();
            return self.fail(now, FailureClass::Verification, message, None);
        }
        self.enter(now, JobState::Installing);
        self.awaiting = Some(Awaiting::Install);
        self.actions.push_back(JobAction::Install {
            name: meta.name,
            version: meta.version,
            digest: meta.sha256,
            active_before: self.active_before(),
        });
    }

    fn cancel(&mut self, now: Timestamp) {
        if matches!(self.awaiting, Some(Awaiting::Fetch { .. })) {
            self.actions.push_back(JobAction::CancelFetch);
        }
        self.awaiting = None;
        self.delete_download();
        self.fail(now, FailureClass::Download, "cancelled by the controller".into(), None);
    }

    /// Ends the job. `active_now` overrides the baseline as "after" when the
    /// installer said what is active.
    fn fail(&mut self, now: Timestamp, class: FailureClass, message: String, active_now: Option<Option<String>>) {
        self.record.active_after = active_now.unwrap_or_else(|| self.active_before());
        self.enter(now, JobState::Failed { class, message });
    }

    fn delete_download(&mut self) {
        if let Some(meta) = &self.verified {
            self.actions.push_back(JobAction::DeleteDownload { digest: meta.sha256 });
        }
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
        self.actions.push_back(JobAction::Persist);
    }

    fn report(&mut self) {
        let state = match &self.record.state {
            JobState::Received => InstallState::Received,
            JobState::VerifyingMetadata => return,
            JobState::Downloading { offset } => {
                let total = self.verified.as_ref().map_or(0, |m| m.size);
                InstallState::Downloading { offset: *offset, total }
            }
            JobState::VerifyingContent => InstallState::Verifying,
            JobState::Installing => InstallState::Installing,
            JobState::Succeeded => InstallState::Succeeded,
            JobState::Failed { class, message } => InstallState::Failed { class: *class, message: message.clone() },
        };
        let active_after = if self.is_terminal() { self.record.active_after.clone() } else { self.active_before() };
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

#[cfg(test)]
mod tests {
    use super::*;
    use flotte_protocol::{InstallerKind, ReleaseVerifier, SecretKey, TrustedKeys};

    const CONTENT: &[u8] = b"pretend this is a tarball";

    fn signer() -> SecretKey {
        SecretKey::from_seed([1; 32])
    }

    fn metadata(name: &str) -> ReleaseMetadata {
        ReleaseMetadata {
            name: name.into(),
            version: "2.0".into(),
            sha256: Sha256Digest::of(CONTENT),
            size: CONTENT.len() as u64,
            installer: InstallerKind::Archive,
            created_at: Timestamp::from_unix_millis(1),
        }
    }

    fn assignment(release: SignedRelease) -> Assignment {
        Assignment { id: AssignmentId(7), release, issued_at: Timestamp::from_unix_millis(2) }
    }

    fn good_release() -> SignedRelease {
        signer().sign_release(&metadata("app"))
    }

    /// How the simulated shell answers one `Fetch`.
    #[derive(Clone)]
    enum Fetch {
        /// Starts at `from`, then delivers bytes that hash to `content`.
        Complete {
            from: u64,
            content: Vec<u8>,
        },
        /// Starts at `from`, then the link drops.
        Interrupt {
            from: u64,
        },
        NotFound,
    }

    /// A deterministic stand-in for the tokio shell: answers every action at
    /// once and records them all.
    struct Sim {
        now: Timestamp,
        trusted: TrustedKeys,
        active: Option<String>,
        fetches: VecDeque<Fetch>,
        install: Result<(), String>,
        log: Vec<JobAction>,
    }

    impl Sim {
        fn new() -> Self {
            Sim {
                now: Timestamp::from_unix_millis(1_000),
                trusted: TrustedKeys::new([signer().public_key()]),
                active: Some("1.0".into()),
                fetches: VecDeque::from([Fetch::Complete { from: 0, content: CONTENT.to_vec() }]),
                install: Ok(()),
                log: vec![],
            }
        }

        fn feed(&mut self, job: &mut Job, event: JobEvent) {
            job.handle(self.now, event);
            self.run(job);
        }

        fn run(&mut self, job: &mut Job) {
            while let Some(action) = job.poll_action() {
                self.log.push(action.clone());
                let events = match action {
                    JobAction::VerifyMetadata(s) => vec![JobEvent::MetadataChecked(self.trusted.verify(&s, self.now))],
                    JobAction::LookUpActive { .. } => vec![JobEvent::ActiveVersion(self.active.clone())],
                    JobAction::Fetch { attempt, .. } => match self.fetches.pop_front() {
                        Some(Fetch::Complete { from, content }) => vec![
                            JobEvent::FetchStarted { attempt, offset: from },
                            JobEvent::Fetched {
                                attempt,
                                sha256: Sha256Digest::of(&content),
                                size: content.len() as u64,
                            },
                        ],
                        Some(Fetch::Interrupt { from }) => vec![
                            JobEvent::FetchStarted { attempt, offset: from },
                            JobEvent::FetchInterrupted { attempt, reason: "connection lost".into() },
                        ],
                        Some(Fetch::NotFound) | None => {
                            vec![JobEvent::FetchFailed { attempt, message: "content not found".into() }]
                        }
                    },
                    JobAction::Install { version, .. } => vec![match &self.install {
                        Ok(()) => JobEvent::Installed { active_after: Some(version) },
                        Err(m) => JobEvent::InstallFailed { message: m.clone(), active_now: self.active.clone() },
                    }],
                    _ => vec![],
                };
                for e in events {
                    job.handle(self.now, e);
                }
            }
        }

        fn reports(&self) -> Vec<ReportDraft> {
            self.log
                .iter()
                .filter_map(|a| match a {
                    JobAction::Report(r) => Some(r.clone()),
                    _ => None,
                })
                .collect()
        }

        fn states(&self) -> Vec<InstallState> {
            self.reports().into_iter().map(|r| r.state).collect()
        }

        fn did_fetch_or_install(&self) -> bool {
            self.log.iter().any(|a| matches!(a, JobAction::Fetch { .. } | JobAction::Install { .. }))
        }
    }

    fn start(sim: &mut Sim, release: SignedRelease) -> Job {
        let mut job = Job::new(sim.now, assignment(release));
        sim.run(&mut job);
        sim.feed(&mut job, JobEvent::Resume);
        job
    }

    #[test]
    fn a_good_release_is_journaled_downloaded_verified_and_installed_in_order() {
        let mut sim = Sim::new();
        let job = start(&mut sim, good_release());
        let total = CONTENT.len() as u64;
        assert_eq!(
            sim.states(),
            vec![
                InstallState::Received,
                InstallState::Downloading { offset: 0, total },
                InstallState::Verifying,
                InstallState::Installing,
                InstallState::Succeeded,
            ]
        );
        let last = sim.reports().pop().unwrap();
        assert_eq!((last.active_before.as_deref(), last.active_after.as_deref()), (Some("1.0"), Some("2.0")));
        assert_eq!(sim.log[0], JobAction::Persist, "journaled before anything else");
        let install = sim.log.iter().position(|a| matches!(a, JobAction::Install { .. })).unwrap();
        assert_eq!(sim.log[install - 2], JobAction::Persist);
        assert!(matches!(sim.log.last(), Some(JobAction::DeleteDownload { .. })));
        assert_eq!(job.state(), &JobState::Succeeded);
    }

    #[test]
    fn a_release_that_fails_verification_is_never_fetched_or_installed() {
        let other = SecretKey::from_seed([2; 32]);
        let mut tampered = good_release();
        tampered.metadata[3] ^= 1;
        let mut unsigned = good_release();
        unsigned.signatures.clear();
        let traversal = signer().sign_release(&metadata("../etc"));
        let cases = [
            ("tampered", tampered),
            ("unsigned", unsigned),
            ("unknown key", other.sign_release(&metadata("app"))),
            ("bad name", traversal),
        ];
        for (what, release) in cases {
            let mut sim = Sim::new();
            let expected = sim.trusted.verify(&release, sim.now).unwrap_err().to_string();
            let mut job = start(&mut sim, release);
            // Whatever arrives afterwards, nothing may be fetched or installed.
            for e in [
                JobEvent::Resume,
                JobEvent::ActiveVersion(None),
                JobEvent::Fetched { attempt: 1, sha256: Sha256Digest::of(CONTENT), size: CONTENT.len() as u64 },
                JobEvent::Installed { active_after: Some("2.0".into()) },
                JobEvent::Redelivered,
            ] {
                sim.feed(&mut job, e);
            }
            job.handle_timeout(Timestamp::from_unix_millis(u64::MAX));
            sim.run(&mut job);
            assert!(!sim.did_fetch_or_install(), "{what}: {:?}", sim.log);
            // The only thing an unverified name may do is name the package
            // whose active version the failure report states.
            let looked_up: Vec<&str> = sim
                .log
                .iter()
                .filter_map(|a| match a {
                    JobAction::LookUpActive { name } => Some(name.as_str()),
                    _ => None,
                })
                .collect();
            // A tampered byte lands in the name here ("app" → "apq"): the
            // lookup follows the claim, which at worst reads another link.
            let expected_lookups: &[&str] = match what {
                "bad name" => &[],
                "tampered" => &["apq"],
                _ => &["app"],
            };
            assert_eq!(looked_up, expected_lookups, "{what}");
            let reported_active = sim.reports().pop().unwrap().active_after;
            let expected_active = (what != "bad name").then(|| "1.0".to_string());
            assert_eq!(reported_active, expected_active, "{what}: the report names what stays active");
            assert_eq!(
                job.state(),
                &JobState::Failed { class: FailureClass::Verification, message: expected.clone() },
                "{what}"
            );
        }
    }

    #[test]
    fn redelivery_is_ignored_while_running_and_repeats_the_final_report_when_done() {
        let mut sim = Sim::new();
        sim.fetches = VecDeque::from([Fetch::Interrupt { from: 0 }]);
        let mut job = start(&mut sim, good_release());
        let before = sim.log.len();
        sim.feed(&mut job, JobEvent::Redelivered);
        assert_eq!(sim.log.len(), before, "a running job does not start again");

        let mut sim = Sim::new();
        let mut job = start(&mut sim, good_release());
        let final_report = sim.reports().pop().unwrap();
        let before = sim.log.len();
        sim.feed(&mut job, JobEvent::Redelivered);
        assert_eq!(sim.log[before..], [JobAction::Report(final_report)]);
        assert!(!sim.log[before..].iter().any(|a| matches!(a, JobAction::Install { .. })));
    }

    #[test]
    fn an_interrupted_download_resumes_from_its_offset_after_the_retry_delay() {
        let mut sim = Sim::new();
        sim.fetches =
            VecDeque::from([Fetch::Interrupt { from: 0 }, Fetch::Complete { from: 10, content: CONTENT.to_vec() }]);
        let mut job = start(&mut sim, good_release());
        assert!(matches!(job.state(), JobState::Downloading { .. }));
        let retry = job.poll_timeout().unwrap();
        assert_eq!(retry, sim.now.saturating_add(FETCH_RETRY));
        job.handle_timeout(Timestamp::from_unix_millis(retry.as_unix_millis() - 1));
        assert_eq!(job.poll_action(), None, "not before the delay");
        sim.now = retry;
        job.handle_timeout(retry);
        sim.run(&mut job);
        let total = CONTENT.len() as u64;
        assert!(sim.states().contains(&InstallState::Downloading { offset: 10, total }), "{:?}", sim.states());
        assert_eq!(job.state(), &JobState::Succeeded);
    }

    #[test]
    fn a_job_restored_from_the_journal_verifies_again_and_keeps_its_baseline() {
        let mut sim = Sim::new();
        sim.fetches = VecDeque::from([Fetch::Interrupt { from: 0 }]);
        let job = start(&mut sim, good_release());
        let record = job.record().clone();
        let json = serde_json::to_string(&record).unwrap();
        let back: JobRecord = serde_json::from_str(&json).unwrap();
        assert_eq!(back, record);

        // After the "restart" the host already runs something else: the
        // report must still name the version active when the job began.
        let mut sim = Sim::new();
        sim.active = Some("9.9".into());
        sim.fetches = VecDeque::from([Fetch::Complete { from: 12, content: CONTENT.to_vec() }]);
        let mut job = Job::restore(back);
        assert_eq!(job.poll_action(), None, "a restored job waits for Resume");
        sim.feed(&mut job, JobEvent::Resume);
        assert!(matches!(sim.log[1], JobAction::VerifyMetadata(_)), "{:?}", sim.log);
        assert!(!sim.log.iter().any(|a| matches!(a, JobAction::LookUpActive { .. })));
        let total = CONTENT.len() as u64;
        assert_eq!(sim.states()[0], InstallState::Downloading { offset: 12, total });
        assert_eq!(sim.reports().pop().unwrap().active_before.as_deref(), Some("1.0"));
    }

    #[test]
    fn events_of_a_stale_download_attempt_are_ignored() {
        let mut sim = Sim::new();
        sim.fetches = VecDeque::from([Fetch::Interrupt { from: 0 }]);
        let mut job = start(&mut sim, good_release());
        job.handle(sim.now, JobEvent::Resume); // attempt 2 starts
        let JobAction::Fetch { attempt: 2, .. } = job.poll_action().unwrap() else { panic!("no second attempt") };
        job.handle(sim.now, JobEvent::Fetched { attempt: 1, sha256: Sha256Digest::of(CONTENT), size: 25 });
        job.handle(sim.now, JobEvent::FetchInterrupted { attempt: 1, reason: "old".into() });
        assert_eq!(job.poll_action(), None);
        assert!(matches!(job.state(), JobState::Downloading { .. }));
    }

    #[test]
    fn content_that_does_not_match_the_signed_metadata_fails_verification_and_is_deleted() {
        let cases = [
            (b"pretend this is a tarbalL".to_vec(), "content sha256 mismatch: expected "),
            (b"short".to_vec(), "content size mismatch: expected 25 bytes, got 5"),
        ];
        for (content, expected) in cases {
            let mut sim = Sim::new();
            sim.fetches = VecDeque::from([Fetch::Complete { from: 0, content: content.clone() }]);
            let job = start(&mut sim, good_release());
            let JobState::Failed { class: FailureClass::Verification, message } = job.state() else {
                panic!("{:?}", job.state())
            };
            assert!(message.starts_with(expected), "{message}");
            if content.len() == CONTENT.len() {
                let got = Sha256Digest::of(&content);
                assert_eq!(
                    *message,
                    format!("content sha256 mismatch: expected {}, got {got}", metadata("app").sha256)
                );
            }
            assert!(sim.log.iter().any(|a| matches!(a, JobAction::DeleteDownload { .. })));
            assert!(!sim.log.iter().any(|a| matches!(a, JobAction::Install { .. })));
            let last = sim.reports().pop().unwrap();
            assert_eq!(last.active_after.as_deref(), Some("1.0"), "previous version stays active");
        }
    }

    #[test]
    fn an_install_failure_reports_the_old_version_as_still_active() {
        let mut sim = Sim::new();
        sim.install = Err("unsafe archive entry \"../x\"".into());
        let job = start(&mut sim, good_release());
        let last = sim.reports().pop().unwrap();
        assert_eq!(
            last.state,
            InstallState::Failed { class: FailureClass::Install, message: "unsafe archive entry \"../x\"".into() }
        );
        assert_eq!((last.active_before.as_deref(), last.active_after.as_deref()), (Some("1.0"), Some("1.0")));
        assert!(job.is_terminal());
    }

    #[test]
    fn missing_content_is_a_download_failure() {
        let mut sim = Sim::new();
        sim.fetches = VecDeque::from([Fetch::NotFound]);
        let job = start(&mut sim, good_release());
        assert_eq!(
            job.state(),
            &JobState::Failed { class: FailureClass::Download, message: "content not found".into() }
        );
    }

    #[test]
    fn cancel_stops_a_download_but_not_an_install() {
        let mut sim = Sim::new();
        sim.fetches = VecDeque::from([Fetch::Interrupt { from: 0 }]);
        let mut job = start(&mut sim, good_release());
        job.handle(sim.now, JobEvent::Resume);
        assert!(matches!(job.poll_action(), Some(JobAction::Fetch { .. })));
        sim.feed(&mut job, JobEvent::Cancel);
        let tail: Vec<_> = sim.log.iter().rev().take(4).rev().cloned().collect();
        assert_eq!(tail[0], JobAction::CancelFetch);
        assert!(matches!(tail[1], JobAction::DeleteDownload { .. }));
        assert!(matches!(job.state(), JobState::Failed { class: FailureClass::Download, .. }));

        let mut sim = Sim::new();
        let mut job = Job::new(sim.now, assignment(good_release()));
        sim.run(&mut job);
        job.handle(sim.now, JobEvent::Resume);
        job.handle(sim.now, JobEvent::MetadataChecked(sim.trusted.verify(&good_release(), sim.now)));
        job.handle(sim.now, JobEvent::ActiveVersion(None));
        job.handle(sim.now, JobEvent::Fetched { attempt: 1, sha256: Sha256Digest::of(CONTENT), size: 25 });
        assert_eq!(job.state(), &JobState::Installing);
        job.handle(sim.now, JobEvent::Cancel);
        assert_eq!(job.state(), &JobState::Installing, "too late to cancel");
    }
}
