//! The job state machine driven by a deterministic simulated shell.

use super::*;
use flotte_protocol::tuf::TargetFile;
use flotte_protocol::tuf::release::{Platform, authorise_rollback, target_entry, target_name, verified_release};
use flotte_protocol::{AssignmentId, HealthSpec};
use std::collections::BTreeMap;

const CONTENT: &[u8] = b"pretend this is a tarball";

/// A release as a test hands it to a job: the name the assignment carries
/// and the targets entry the agent's verified TUF metadata lists for it
/// (`None`: not listed).
#[derive(Debug, Clone)]
struct TestRelease {
    reference: ReleaseRef,
    entry: Option<serde_json::Value>,
}

fn listed(meta: ReleaseMetadata) -> TestRelease {
    let entry = target_entry(&meta, &Platform::default());
    TestRelease { reference: ReleaseRef { name: meta.name, version: meta.version }, entry: Some(entry) }
}

fn metadata(name: &str) -> ReleaseMetadata {
    let (size, created_at) = (CONTENT.len() as u64, Timestamp::from_unix_millis(1));
    ReleaseMetadata::new(name, "2.0", Sha256Digest::of(CONTENT), size, InstallerKind::Archive, created_at)
}

/// A release with a health check on probation for `probation` seconds and
/// one backup path.
fn checked_metadata(probation: u32) -> ReleaseMetadata {
    ReleaseMetadata {
        health: Some(HealthSpec {
            check: HealthCheck::FileExists { path: "ready".into() },
            probation_secs: probation,
            interval_secs: 10,
            timeout_secs: 0,
        }),
        detect: Some(DetectRule::FileExists { path: "VERSION".into() }),
        backup_paths: vec!["/etc/app".into()],
        ..metadata("app")
    }
}

fn assignment(release: TestRelease) -> Assignment {
    Assignment { id: AssignmentId(7), release: release.reference, issued_at: Timestamp::from_unix_millis(2) }
}

fn good_release() -> TestRelease {
    listed(metadata("app"))
}

fn checked_release(probation: u32) -> TestRelease {
    listed(checked_metadata(probation))
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
    /// The file is already complete on disk: no request is made.
    OnDisk,
    NotFound,
    DiskFull,
}

/// A deterministic stand-in for the tokio shell: answers every action at
/// once, keeps the "host" (active version, quarantine) and records it all.
struct Sim {
    now: Timestamp,
    /// The targets entries the simulated TUF metadata lists, by target name.
    targets: BTreeMap<String, serde_json::Value>,
    /// How many more verifications find the metadata unavailable.
    unavailable: u32,
    active: Option<String>,
    quarantined: BTreeMap<String, String>,
    fetches: VecDeque<Fetch>,
    /// Scripted failures per step, consumed one per call; a missing entry succeeds.
    failures: BTreeMap<&'static str, VecDeque<StepFailure>>,
    /// "Crash" when a record with this checkpoint is about to be journaled:
    /// it is written, then nothing more happens.
    crash_at: Option<&'static str>,
    /// The last record journaled before the crash.
    crashed: Option<JobRecord>,
    /// A complete download is on disk (what an unscripted fetch finds).
    on_disk: bool,
    log: Vec<JobAction>,
}

impl Sim {
    fn new() -> Self {
        Sim {
            now: Timestamp::from_unix_millis(1_000),
            targets: BTreeMap::from([(
                target_name("app", "2.0"),
                target_entry(&metadata("app"), &Platform::default()),
            )]),
            unavailable: 0,
            active: Some("1.0".into()),
            quarantined: BTreeMap::new(),
            fetches: VecDeque::from([Fetch::Complete { from: 0, content: CONTENT.to_vec() }]),
            failures: BTreeMap::new(),
            crash_at: None,
            crashed: None,
            on_disk: false,
            log: vec![],
        }
    }

    /// Lists `release` in the simulated targets (or unlists its name).
    fn list(&mut self, release: &TestRelease) {
        let name = target_name(&release.reference.name, &release.reference.version);
        match &release.entry {
            Some(entry) => self.targets.insert(name, entry.clone()),
            None => self.targets.remove(&name),
        };
    }

    /// What the agent's verifier answers for `release`.
    fn verify(&self, release: &ReleaseRef) -> Result<VerifiedRelease, VerifyError> {
        let name = target_name(&release.name, &release.version);
        let entry = self.targets.get(&name).ok_or_else(|| VerifyError::NotInTargets { target: name.clone() })?;
        let file: TargetFile = serde_json::from_value(entry.clone())
            .map_err(|e| VerifyError::Target { target: name.clone(), reason: e.to_string() })?;
        verified_release(&name, &file, "targets", &Platform::this_host())
    }

    fn fail_step(&mut self, step: &'static str, failures: impl IntoIterator<Item = StepFailure>) {
        self.failures.entry(step).or_default().extend(failures);
    }

    fn outcome(&mut self, step: &'static str) -> Result<(), StepFailure> {
        match self.failures.get_mut(step).and_then(VecDeque::pop_front) {
            Some(f) => Err(f),
            None => Ok(()),
        }
    }

    fn feed(&mut self, job: &mut Job, event: JobEvent) {
        job.handle(self.now, event);
        self.run(job);
    }

    /// Moves the clock to the job's next timeout and fires it.
    fn tick(&mut self, job: &mut Job) -> bool {
        let Some(at) = job.poll_timeout().filter(|_| self.crashed.is_none()) else { return false };
        self.now = self.now.max(at);
        job.handle_timeout(self.now);
        self.run(job);
        true
    }

    /// Ticks until the job has no timer left (or `max` ticks).
    fn settle(&mut self, job: &mut Job) {
        for _ in 0..1000 {
            if !self.tick(job) {
                return;
            }
        }
        panic!("job never settled: {:?}", job.state());
    }

    fn run(&mut self, job: &mut Job) {
        while let Some(action) = job.poll_action() {
            if self.crashed.is_some() {
                continue; // the process is gone
            }
            if let JobAction::Persist(record) = &action {
                if Some(record.state.checkpoint()) == self.crash_at {
                    self.crashed = Some(*record.clone());
                    continue;
                }
            }
            self.log.push(action.clone());
            let events = match action {
                JobAction::VerifyMetadata(_) if self.unavailable > 0 => {
                    self.unavailable -= 1;
                    let reason = "cannot fetch timestamp.json: connection lost".to_string();
                    vec![JobEvent::MetadataChecked(Err(VerifyError::Unavailable { reason }))]
                }
                JobAction::VerifyMetadata(r) => vec![JobEvent::MetadataChecked(self.verify(&r))],
                JobAction::LookUpPackage { name } => vec![JobEvent::PackageLooked {
                    active: self.active.clone(),
                    quarantine: self.quarantined.get(&name).cloned(),
                }],
                JobAction::Fetch { attempt, .. } => match self
                    .fetches
                    .pop_front()
                    .or(self.on_disk.then_some(Fetch::OnDisk))
                {
                    Some(Fetch::Complete { from, content }) => {
                        self.on_disk = true;
                        vec![
                            JobEvent::FetchStarted { attempt, offset: from },
                            JobEvent::Fetched {
                                attempt,
                                sha256: Sha256Digest::of(&content),
                                size: content.len() as u64,
                            },
                        ]
                    }
                    Some(Fetch::Interrupt { from }) => vec![
                        JobEvent::FetchStarted { attempt, offset: from },
                        JobEvent::FetchInterrupted { attempt, reason: "connection lost".into() },
                    ],
                    Some(Fetch::OnDisk) => vec![JobEvent::Fetched {
                        attempt,
                        sha256: Sha256Digest::of(CONTENT),
                        size: CONTENT.len() as u64,
                    }],
                    Some(Fetch::DiskFull) => vec![JobEvent::FetchFailed {
                        attempt,
                        failure: StepFailure::transient("write download: No space left on device"),
                    }],
                    Some(Fetch::NotFound) | None => {
                        vec![JobEvent::FetchFailed { attempt, failure: StepFailure::permanent("content not found") }]
                    }
                },
                JobAction::Stage { .. } => vec![JobEvent::Staged(self.outcome("stage"))],
                JobAction::Preflight { .. } => vec![JobEvent::PreflightChecked(self.outcome("preflight"))],
                JobAction::Backup { .. } => vec![JobEvent::BackedUp(self.outcome("backup"))],
                JobAction::Switch { package } => {
                    let result = self.outcome("switch");
                    if result.is_ok() {
                        self.active = Some(package.version);
                    }
                    vec![JobEvent::Switched { result, active: self.active.clone() }]
                }
                JobAction::Detect { .. } => vec![JobEvent::Detected(self.outcome("detect"))],
                JobAction::CheckHealth { .. } => vec![JobEvent::HealthChecked(self.outcome("health"))],
                JobAction::Commit { .. } => vec![JobEvent::Committed],
                JobAction::RollBack { to, .. } => {
                    let result = self.outcome("rollback");
                    if result.is_ok() {
                        self.active = to;
                    }
                    vec![JobEvent::RolledBack { result, active: self.active.clone() }]
                }
                JobAction::Quarantine { name, reason } => {
                    self.quarantined.insert(name, reason);
                    vec![]
                }
                JobAction::DeleteDownload { .. } => {
                    self.on_disk = false;
                    vec![]
                }
                JobAction::Persist(_)
                | JobAction::Report(_)
                | JobAction::CancelFetch
                | JobAction::DiscardBackup { .. } => vec![],
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

    fn states(&self) -> Vec<&'static str> {
        self.reports().iter().map(|r| r.state.name()).collect()
    }

    fn last_report(&self) -> ReportDraft {
        self.reports().pop().expect("a report")
    }

    fn count(&self, f: impl Fn(&JobAction) -> bool) -> usize {
        self.log.iter().filter(|a| f(a)).count()
    }

    fn did_fetch_or_install(&self) -> bool {
        self.count(|a| matches!(a, JobAction::Fetch { .. } | JobAction::Stage { .. } | JobAction::Switch { .. })) > 0
    }

    /// Where the first action matching `f` is in the log.
    fn position(&self, f: impl Fn(&JobAction) -> bool) -> usize {
        self.log.iter().position(f).expect("action present")
    }
}

fn start(sim: &mut Sim, release: TestRelease) -> Job {
    sim.list(&release);
    let mut job = Job::new(sim.now, assignment(release), Origin::Push);
    sim.run(&mut job);
    sim.feed(&mut job, JobEvent::Resume);
    job
}

/// Runs a job to the end, ticking through timers.
fn run_to_end(sim: &mut Sim, release: TestRelease) -> Job {
    let mut job = start(sim, release);
    sim.settle(&mut job);
    job
}

#[test]
fn a_good_release_is_journaled_downloaded_verified_and_installed_in_order() {
    let mut sim = Sim::new();
    let job = run_to_end(&mut sim, good_release());
    assert_eq!(sim.states(), ["received", "downloading", "verifying", "installing", "succeeded"]);
    let total = CONTENT.len() as u64;
    assert_eq!(sim.reports()[1].state, InstallState::Downloading { offset: 0, total });
    let last = sim.last_report();
    assert_eq!((last.active_before.as_deref(), last.active_after.as_deref()), (Some("1.0"), Some("2.0")));
    assert!(matches!(sim.log[0], JobAction::Persist(_)), "journaled before anything else");
    for step in [
        sim.position(|a| matches!(a, JobAction::Stage { .. })),
        sim.position(|a| matches!(a, JobAction::Switch { .. })),
        sim.position(|a| matches!(a, JobAction::Commit { .. })),
    ] {
        let before = &sim.log[..step];
        let last_persist = before.iter().rposition(|a| matches!(a, JobAction::Persist(_))).unwrap();
        assert!(
            before[last_persist..].iter().all(|a| matches!(a, JobAction::Persist(_) | JobAction::Report(_))),
            "a step follows its journal write: {:?}",
            &sim.log[last_persist..=step]
        );
    }
    assert_eq!(sim.count(|a| matches!(a, JobAction::Backup { .. } | JobAction::CheckHealth { .. })), 0);
    assert!(matches!(sim.log.last(), Some(JobAction::DeleteDownload { .. })));
    assert_eq!(job.state(), &JobState::Succeeded);
}

#[test]
fn a_checked_release_backs_up_detects_and_stays_healthy_through_probation() {
    let mut sim = Sim::new();
    let start_time = sim.now;
    let job = run_to_end(&mut sim, checked_release(30));
    assert_eq!(sim.states(), ["received", "downloading", "verifying", "installing", "health_checking", "succeeded"]);
    let backup = sim.position(|a| matches!(a, JobAction::Backup { .. }));
    let switch = sim.position(|a| matches!(a, JobAction::Switch { .. }));
    let detect = sim.position(|a| matches!(a, JobAction::Detect { rule: Some(_), .. }));
    assert!(backup < switch && switch < detect, "backup, then switch, then detection");
    // Probation of 30 s with a run every 10 s: at 0, 10, 20 and 30 s.
    assert_eq!(sim.count(|a| matches!(a, JobAction::CheckHealth { .. })), 4);
    assert_eq!(sim.now, start_time.saturating_add(Duration::from_secs(30)));
    assert!(sim.log.contains(&JobAction::Commit { package: job.record().package.clone().unwrap(), backup: true }));
    assert_eq!(job.state(), &JobState::Succeeded);
    assert_eq!(job.poll_timeout(), None);
}

#[test]
fn a_health_failure_during_probation_rolls_back_to_the_baseline() {
    let mut sim = Sim::new();
    let failure = StepFailure::permanent("health check: ready does not exist");
    // The first run passes, the second fails.
    let mut job = start(&mut sim, checked_release(30));
    assert!(matches!(job.state(), JobState::HealthChecking { .. }));
    sim.fail_step("health", [failure.clone()]);
    sim.settle(&mut job);

    assert_eq!(
        sim.states(),
        ["received", "downloading", "verifying", "installing", "health_checking", "rolling_back", "rolled_back"]
    );
    let last = sim.last_report();
    assert_eq!(last.state, InstallState::RolledBack { class: FailureClass::Health, message: failure.message });
    assert_eq!((last.active_before.as_deref(), last.active_after.as_deref()), (Some("1.0"), Some("1.0")));
    assert!(
        sim.log
            .iter()
            .any(|a| matches!(a, JobAction::RollBack { to: Some(v), restore_backup: true, .. } if v == "1.0"))
    );
    assert_eq!(sim.count(|a| matches!(a, JobAction::CheckHealth { .. })), 2, "no retry of a health failure");
    assert_eq!(sim.active.as_deref(), Some("1.0"));
    assert!(job.is_terminal());
}

#[test]
fn detection_and_switch_failures_roll_back_with_their_own_class() {
    for (step, class) in [("detect", FailureClass::Detection), ("switch", FailureClass::Install)] {
        let mut sim = Sim::new();
        sim.fail_step(step, [StepFailure::permanent(format!("{step} broke"))]);
        run_to_end(&mut sim, checked_release(0));
        let last = sim.last_report();
        assert_eq!(last.state, InstallState::RolledBack { class, message: format!("{step} broke") }, "{step}");
        assert_eq!(last.active_after.as_deref(), Some("1.0"));
        assert_eq!(sim.count(|a| matches!(a, JobAction::CheckHealth { .. })), 0, "{step}");
    }
}

#[test]
fn a_failed_rollback_quarantines_the_package_before_journaling_and_blocks_the_next_job() {
    let mut sim = Sim::new();
    sim.fail_step("health", [StepFailure::permanent("unhealthy")]);
    sim.fail_step("rollback", [StepFailure::permanent("previous version 1.0 is gone")]);
    let job = run_to_end(&mut sim, checked_release(0));
    let JobState::RollbackFailed { message } = job.state() else { panic!("{:?}", job.state()) };
    assert!(message.contains("previous version 1.0 is gone") && message.contains("unhealthy"), "{message}");
    let last = sim.last_report();
    assert!(matches!(last.state, InstallState::RollbackFailed { .. }));
    assert_eq!(last.active_after.as_deref(), Some("2.0"), "the report says what the agent found active");
    let quarantine = sim.position(|a| matches!(a, JobAction::Quarantine { .. }));
    assert!(
        matches!(&sim.log[quarantine + 1], JobAction::Persist(r) if matches!(r.state, JobState::RollbackFailed { .. })),
        "quarantine is written before the journal says so"
    );

    // The next push of the same package is refused before any download.
    let before = sim.log.len();
    let mut next = Job::new(sim.now, Assignment { id: AssignmentId(8), ..assignment(good_release()) }, Origin::Push);
    sim.run(&mut next);
    sim.feed(&mut next, JobEvent::Resume);
    let JobState::Failed { class: FailureClass::Preflight, message } = next.state() else {
        panic!("{:?}", next.state())
    };
    assert!(message.contains("quarantine clear app"), "{message}");
    assert!(!sim.log[before..].iter().any(|a| matches!(a, JobAction::Fetch { .. })));
}

#[test]
fn a_transient_stage_failure_is_retried_with_backoff_then_fails_cleanly() {
    let mut sim = Sim::new();
    let full = StepFailure::transient("write packages/app/.staging: No space left on device");
    sim.fail_step("stage", [full.clone(), full.clone()]);
    let t0 = sim.now;
    let job = run_to_end(&mut sim, good_release());
    assert_eq!(job.state(), &JobState::Succeeded, "two failures fit the retry budget");
    assert_eq!(sim.count(|a| matches!(a, JobAction::Stage { .. })), 3);
    assert_eq!(sim.now, t0.saturating_add(STEP_RETRY * 3), "1 s, then 2 s");

    let mut sim = Sim::new();
    sim.fail_step("stage", vec![full.clone(); 10]);
    let job = run_to_end(&mut sim, good_release());
    assert_eq!(sim.count(|a| matches!(a, JobAction::Stage { .. })), 1 + MAX_TRANSIENT_RETRIES as usize);
    let JobState::Failed { class: FailureClass::Install, message } = job.state() else { panic!("{:?}", job.state()) };
    assert!(message.contains("No space left") && message.contains("gave up after 3 retries"), "{message}");
    assert_eq!(sim.last_report().active_after.as_deref(), Some("1.0"));
    assert_eq!(sim.count(|a| matches!(a, JobAction::Switch { .. } | JobAction::RollBack { .. })), 0);
}

#[test]
fn permanent_failures_are_not_retried() {
    let cases = [
        ("stage", FailureClass::Install, "unsafe archive entry \"../x\""),
        ("preflight", FailureClass::Preflight, "no kept version 1.0 to roll back to"),
        ("backup", FailureClass::Install, "cannot read /etc/app"),
    ];
    for (step, class, message) in cases {
        let mut sim = Sim::new();
        sim.fail_step(step, [StepFailure::permanent(message)]);
        let job = run_to_end(&mut sim, checked_release(0));
        assert_eq!(job.state(), &JobState::Failed { class, message: message.into() }, "{step}");
        let last = sim.last_report();
        assert_eq!((last.active_before.as_deref(), last.active_after.as_deref()), (Some("1.0"), Some("1.0")));
        assert_eq!(sim.count(|a| matches!(a, JobAction::Switch { .. })), 0, "{step}: nothing switched");
        assert!(sim.log.iter().any(|a| matches!(a, JobAction::DeleteDownload { .. })), "{step}");
    }
}

#[test]
fn a_full_disk_while_downloading_is_retried_then_reported_as_a_download_failure() {
    let mut sim = Sim::new();
    sim.fetches = VecDeque::from(vec![Fetch::DiskFull; 10]);
    let job = run_to_end(&mut sim, good_release());
    let JobState::Failed { class: FailureClass::Download, message } = job.state() else { panic!("{:?}", job.state()) };
    assert!(message.contains("No space left"), "{message}");
    assert_eq!(sim.count(|a| matches!(a, JobAction::Fetch { .. })), 1 + MAX_TRANSIENT_RETRIES as usize);
}

/// The crash table, step by step: run a job until it journals `checkpoint`,
/// "crash" (keep only the journal and the host), restore and resume. Either
/// the new version ends committed or the baseline is active, and the last
/// report says which.
#[test]
fn a_restart_after_every_checkpoint_ends_in_exactly_old_or_exactly_new() {
    let expectations = [
        ("received", "2.0", "succeeded"),
        ("downloading", "2.0", "succeeded"),
        ("downloaded", "2.0", "succeeded"),
        ("verified", "2.0", "succeeded"),
        ("staged", "2.0", "succeeded"),
        ("preflight-passed", "2.0", "succeeded"),
        ("backed-up", "1.0", "rolled_back"),
        ("switched", "1.0", "rolled_back"),
        ("detected", "1.0", "rolled_back"),
        ("health-checked", "2.0", "succeeded"),
        ("committed", "2.0", "succeeded"),
        ("rolling-back", "1.0", "rolled_back"),
    ];
    for (checkpoint, active, last_state) in expectations {
        let mut sim = Sim::new();
        if checkpoint == "rolling-back" {
            sim.fail_step("health", [StepFailure::permanent("unhealthy")]);
        }
        sim.crash_at = Some(checkpoint);
        let mut job = run_to_end(&mut sim, checked_release(0));
        assert!(!job.is_terminal() || checkpoint == "committed", "{checkpoint}: the old process died mid-job");
        let record = sim.crashed.take().unwrap_or_else(|| panic!("{checkpoint} never journaled"));
        assert_eq!(record.state.checkpoint(), checkpoint);
        sim.crash_at = None;

        job = Job::restore(serde_json::from_str(&serde_json::to_string(&record).unwrap()).unwrap());
        sim.feed(&mut job, JobEvent::Resume);
        sim.settle(&mut job);
        // The controller re-sends every assignment it has no final report
        // for when the agent reconnects; that covers a crash between the
        // final journal write and its report.
        sim.feed(&mut job, JobEvent::Redelivered);
        assert!(job.is_terminal(), "{checkpoint}: {:?}", job.state());
        assert_eq!(sim.active.as_deref(), Some(active), "host after a crash at {checkpoint}");
        let last = sim.last_report();
        assert_eq!(last.state.name(), last_state, "after a crash at {checkpoint}");
        assert_eq!(last.active_after.as_deref(), Some(active), "{checkpoint}: the report tells the truth");
        assert_eq!(last.active_before.as_deref(), Some("1.0"), "{checkpoint}");
        if checkpoint == "rolling-back" {
            assert!(matches!(last.state, InstallState::RolledBack { class: FailureClass::Health, .. }));
        } else if last_state == "rolled_back" {
            assert!(matches!(last.state, InstallState::RolledBack { class: FailureClass::Interrupted, .. }));
        }
        let switches = sim.count(|a| matches!(a, JobAction::Switch { .. }));
        assert!(switches <= 1, "{checkpoint}: the new version is switched to at most once");
    }
}

#[test]
fn a_job_that_keeps_crashing_the_agent_gives_up_instead_of_looping() {
    // Staging crashes the agent every time.
    let mut sim = Sim::new();
    sim.crash_at = Some("verified");
    run_to_end(&mut sim, checked_release(0));
    let mut record = sim.crashed.take().unwrap();
    for restart in 1..=MAX_RESTARTS + 1 {
        let mut job = Job::restore(record.clone());
        sim.feed(&mut job, JobEvent::Resume);
        sim.settle(&mut job);
        if restart <= MAX_RESTARTS {
            record = sim.crashed.take().unwrap_or_else(|| panic!("restart {restart}: {:?}", job.state()));
            assert_eq!(record.restarts, restart);
        } else {
            let JobState::Failed { class: FailureClass::Interrupted, message } = job.state() else {
                panic!("{:?}", job.state())
            };
            assert!(message.contains("stopped 4 times"), "{message}");
        }
    }
    assert_eq!(sim.active.as_deref(), Some("1.0"), "never switched");

    // A rollback that keeps crashing ends in quarantine.
    let mut sim = Sim::new();
    sim.fail_step("health", [StepFailure::permanent("unhealthy")]);
    sim.crash_at = Some("rolling-back");
    run_to_end(&mut sim, checked_release(0));
    let mut record = sim.crashed.take().unwrap();
    record.restarts = MAX_RESTARTS;
    sim.crash_at = None;
    let mut job = Job::restore(record);
    sim.active = Some("1.0".into()); // the crashing attempts did switch back
    sim.feed(&mut job, JobEvent::Resume);
    assert!(matches!(job.state(), JobState::RollbackFailed { .. }), "{:?}", job.state());
    assert!(sim.quarantined.contains_key("app"));
    assert_eq!(sim.last_report().active_after.as_deref(), Some("1.0"), "the report says what is active now");
}

#[test]
fn a_restart_in_a_switch_window_rolls_back_without_trusting_the_release_again() {
    let mut sim = Sim::new();
    sim.crash_at = Some("switched");
    run_to_end(&mut sim, checked_release(0));
    let record = sim.crashed.take().unwrap();
    sim.crash_at = None;
    // Even if the release is no longer listed, the host goes back.
    sim.targets.clear();
    let before = sim.log.len();
    let mut job = Job::restore(record);
    sim.feed(&mut job, JobEvent::Resume);
    assert!(!sim.log[before..].iter().any(|a| matches!(a, JobAction::VerifyMetadata(_))));
    assert!(matches!(job.state(), JobState::RolledBack { class: FailureClass::Interrupted, .. }));
    assert_eq!(sim.active.as_deref(), Some("1.0"));
}

#[test]
fn a_release_that_fails_verification_is_never_fetched_or_installed() {
    let mut contradicting = good_release();
    if let Some(entry) = contradicting.entry.as_mut() {
        entry["length"] = serde_json::json!(CONTENT.len() + 1);
    }
    let not_listed = TestRelease { entry: None, ..good_release() };
    let other_target =
        TestRelease { reference: ReleaseRef { name: "app".into(), version: "9.9".into() }, ..good_release() };
    let traversal = listed(metadata("../etc"));
    let bad_spec = listed(ReleaseMetadata {
        health: Some(HealthSpec {
            check: HealthCheck::Http { url: "http://example.org/".into() },
            probation_secs: 0,
            interval_secs: 0,
            timeout_secs: 0,
        }),
        ..metadata("app")
    });
    let cases = [
        ("length contradicts the release", contradicting),
        ("not listed", not_listed),
        ("entry of another version", other_target),
        ("bad name", traversal),
        ("bad spec", bad_spec),
    ];
    for (what, release) in cases {
        let mut sim = Sim::new();
        sim.list(&release);
        let expected = match sim.verify(&release.reference) {
            Err(e) => e.to_string(),
            Ok(v) => {
                format!("signed release metadata has an invalid spec: {}", v.metadata().validate_spec().unwrap_err())
            }
        };
        let mut job = start(&mut sim, release);
        // Whatever arrives afterwards, nothing may be fetched or installed.
        for e in [
            JobEvent::Resume,
            JobEvent::PackageLooked { active: None, quarantine: None },
            JobEvent::Fetched { attempt: 1, sha256: Sha256Digest::of(CONTENT), size: CONTENT.len() as u64 },
            JobEvent::Staged(Ok(())),
            JobEvent::Switched { result: Ok(()), active: Some("2.0".into()) },
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
                JobAction::LookUpPackage { name } => Some(name.as_str()),
                _ => None,
            })
            .collect();
        // The lookup follows the claimed name, which at worst reads
        // another package's link; an invalid name is not even looked up.
        let expected_lookups: &[&str] = match what {
            "bad name" => &[],
            _ => &["app"],
        };
        assert_eq!(looked_up, expected_lookups, "{what}");
        let reported_active = sim.last_report().active_after;
        let expected_active = (what != "bad name").then(|| "1.0".to_string());
        assert_eq!(reported_active, expected_active, "{what}: the report names what stays active");
        assert_eq!(
            job.state(),
            &JobState::Failed { class: FailureClass::Verification, message: expected.clone() },
            "{what}"
        );
    }
}

/// Release `app@version`, with a signed rollback authorisation up to
/// `rollback_up_to` if one is given.
fn app_at(version: &str, rollback_up_to: Option<&str>) -> TestRelease {
    let mut release = listed(ReleaseMetadata { version: version.into(), ..metadata("app") });
    if let (Some(entry), Some(up_to)) = (release.entry.as_mut(), rollback_up_to) {
        authorise_rollback(&target_name("app", version), entry, up_to).unwrap();
    }
    release
}

#[test]
fn downgrade_refused() {
    // (what, active version, release installed over it, expected outcome)
    let refused = |needle: &'static str| Err(needle);
    let cases: [(&str, &str, TestRelease, Result<(), &str>); 6] = [
        ("an upgrade", "1.0", app_at("2.0", None), Ok(())),
        ("a reinstall of the active version", "2.0", app_at("2.0", None), Ok(())),
        ("a downgrade without authorisation", "2.0", app_at("1.0", None), refused("no signed rollback authorisation")),
        (
            "a downgrade under a pre-release",
            "2.0",
            app_at("2.0~rc1", None),
            refused("no signed rollback authorisation"),
        ),
        ("an authorised downgrade", "2.0", app_at("1.0", Some("2.0")), Ok(())),
        ("a downgrade past the authorisation", "3.0", app_at("1.0", Some("2.0")), refused("up to 2.0 only")),
    ];
    for (what, active, release, expected) in cases {
        let mut sim = Sim::new();
        sim.active = Some(active.into());
        let job = run_to_end(&mut sim, release);
        match expected {
            Ok(()) => assert_eq!(job.state(), &JobState::Succeeded, "{what}"),
            Err(needle) => {
                let JobState::Failed { class, message } = job.state() else { panic!("{what}: {:?}", job.state()) };
                assert_eq!(*class, FailureClass::Verification, "{what}");
                assert!(message.contains(needle) && message.contains(active), "{what}: {message}");
                assert!(!sim.did_fetch_or_install(), "{what}: nothing is fetched or installed");
                let last = sim.last_report();
                assert_eq!(last.active_after.as_deref(), Some(active), "{what}: the report says what still runs");
            }
        }
    }
}

#[test]
fn a_restored_job_checks_the_downgrade_against_its_journaled_baseline() {
    // The job began, authorised, while 2.0 was active, and the agent
    // stopped while it was downloading 1.0.
    let mut sim = Sim::new();
    sim.active = Some("2.0".into());
    let mut record = start(&mut sim, app_at("1.0", Some("2.0"))).record().clone();
    record.state = JobState::Downloading { offset: 0 };
    // Before it restarted, the admin withdrew the authorisation. The
    // restored job does not look the active version up again (this host
    // now says 1.0): the journaled baseline, 2.0, is what it is checked against.
    let mut sim = Sim::new();
    sim.list(&app_at("1.0", None));
    let mut job = Job::restore(record);
    sim.feed(&mut job, JobEvent::Resume);
    sim.settle(&mut job);
    assert!(matches!(job.state(), JobState::Failed { class: FailureClass::Verification, .. }), "{:?}", job.state());
    assert!(!sim.did_fetch_or_install());
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
    let mut job = run_to_end(&mut sim, good_release());
    let final_report = sim.last_report();
    let before = sim.log.len();
    sim.feed(&mut job, JobEvent::Redelivered);
    assert_eq!(sim.log[before..], [JobAction::Report(final_report)]);
}

#[test]
fn an_interrupted_download_resumes_from_its_offset_after_a_growing_delay() {
    let mut sim = Sim::new();
    sim.fetches = VecDeque::from([
        Fetch::Interrupt { from: 0 },
        Fetch::Interrupt { from: 0 },
        Fetch::Complete { from: 10, content: CONTENT.to_vec() },
    ]);
    let mut job = start(&mut sim, good_release());
    assert!(matches!(job.state(), JobState::Downloading { .. }));
    let first = job.poll_timeout().unwrap();
    assert_eq!(first, sim.now.saturating_add(FETCH_RETRY));
    let shown = Interruption { reason: "connection lost".into(), retry_at: first };
    assert_eq!(job.interruption(), Some(&shown), "why and until when, for `flotte status`");
    job.handle_timeout(Timestamp::from_unix_millis(first.as_unix_millis() - 1));
    assert_eq!(job.poll_action(), None, "not before the delay");
    sim.tick(&mut job);
    let second = job.poll_timeout().unwrap();
    assert_eq!(second, sim.now.saturating_add(FETCH_RETRY * 2), "no progress: the delay doubles");
    sim.settle(&mut job);
    let total = CONTENT.len() as u64;
    assert!(sim.reports().iter().any(|r| r.state == InstallState::Downloading { offset: 10, total }));
    assert_eq!(job.state(), &JobState::Succeeded);
    assert_eq!(job.interruption(), None, "forgotten once the content is fetched");
}

#[test]
fn a_job_restored_while_downloading_verifies_again_and_keeps_its_baseline() {
    let mut sim = Sim::new();
    sim.fetches = VecDeque::from([Fetch::Interrupt { from: 0 }]);
    let job = start(&mut sim, good_release());
    let record = job.record().clone();
    let back: JobRecord = serde_json::from_str(&serde_json::to_string(&record).unwrap()).unwrap();
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
    assert!(!sim.log.iter().any(|a| matches!(a, JobAction::LookUpPackage { .. })));
    let total = CONTENT.len() as u64;
    assert_eq!(sim.reports()[0].state, InstallState::Downloading { offset: 12, total });
    assert_eq!(sim.last_report().active_before.as_deref(), Some("1.0"));
    assert_eq!(job.record().restarts, 0, "a restart while downloading is not risky");
}

#[test]
fn a_job_restored_after_staging_reuses_the_bytes_on_disk() {
    let mut sim = Sim::new();
    sim.crash_at = Some("staged");
    run_to_end(&mut sim, good_release());
    let record = sim.crashed.take().unwrap();
    sim.crash_at = None;
    sim.fetches = VecDeque::from([Fetch::OnDisk]);
    let before = sim.reports().len();
    let mut job = Job::restore(record);
    sim.feed(&mut job, JobEvent::Resume);
    assert_eq!(job.state(), &JobState::Succeeded);
    assert_eq!(job.record().restarts, 1, "counted toward the loop guard");
    assert_eq!(sim.states()[before..], ["verifying", "installing", "succeeded"], "nothing was downloaded again");
}

#[test]
fn events_of_a_stale_download_attempt_are_ignored() {
    let mut sim = Sim::new();
    sim.fetches = VecDeque::from([Fetch::Interrupt { from: 0 }]);
    let mut job = start(&mut sim, good_release());
    job.handle(sim.now, JobEvent::Resume); // attempt 2 starts
    let Some(JobAction::Fetch { attempt: 2, .. }) = job.poll_action() else { panic!("no second attempt") };
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
            assert_eq!(*message, format!("content sha256 mismatch: expected {}, got {got}", metadata("app").sha256));
        }
        assert!(sim.log.iter().any(|a| matches!(a, JobAction::DeleteDownload { .. })));
        assert!(!sim.log.iter().any(|a| matches!(a, JobAction::Stage { .. })));
        assert_eq!(sim.last_report().active_after.as_deref(), Some("1.0"), "previous version stays active");
    }
}

#[test]
fn missing_content_is_a_download_failure() {
    let mut sim = Sim::new();
    sim.fetches = VecDeque::from([Fetch::NotFound]);
    let job = start(&mut sim, good_release());
    assert_eq!(job.state(), &JobState::Failed { class: FailureClass::Download, message: "content not found".into() });
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
    let mut job = Job::new(sim.now, assignment(good_release()), Origin::Push);
    sim.run(&mut job);
    job.handle(sim.now, JobEvent::Resume);
    job.handle(sim.now, JobEvent::MetadataChecked(sim.verify(&good_release().reference)));
    job.handle(sim.now, JobEvent::PackageLooked { active: None, quarantine: None });
    job.handle(sim.now, JobEvent::Fetched { attempt: 1, sha256: Sha256Digest::of(CONTENT), size: 25 });
    assert_eq!(job.state(), &JobState::Staging);
    job.handle(sim.now, JobEvent::Cancel);
    assert_eq!(job.state(), &JobState::Staging, "too late to cancel");
}

#[test]
fn a_hold_delays_the_download_until_its_time_even_across_a_restart() {
    let mut sim = Sim::new();
    let until = sim.now.saturating_add(Duration::from_secs(3600));
    let mut job = Job::new(sim.now, assignment(good_release()), Origin::Push);
    sim.run(&mut job);
    job.handle(sim.now, JobEvent::Hold { until });
    sim.feed(&mut job, JobEvent::Resume);
    assert_eq!(job.state(), &JobState::Waiting { until });
    assert_eq!(job.poll_timeout(), Some(until));
    assert!(!sim.did_fetch_or_install());

    let mut job = Job::restore(job.record().clone());
    sim.feed(&mut job, JobEvent::Resume);
    assert_eq!(job.state(), &JobState::Waiting { until }, "still held after a restart");
    sim.settle(&mut job);
    assert_eq!(sim.now, until);
    assert_eq!(job.state(), &JobState::Succeeded);
}

#[test]
fn a_first_install_that_fails_its_health_check_removes_the_new_version() {
    let mut sim = Sim::new();
    sim.active = None;
    sim.fail_step("health", [StepFailure::permanent("unhealthy")]);
    run_to_end(&mut sim, checked_release(0));
    assert!(sim.log.iter().any(|a| matches!(a, JobAction::RollBack { to: None, .. })));
    let last = sim.last_report();
    assert!(matches!(last.state, InstallState::RolledBack { .. }));
    assert_eq!((last.active_before, last.active_after), (None, None));
}

#[test]
fn long_failure_messages_are_bounded_in_the_report() {
    let mut sim = Sim::new();
    let tail = "hook output line\n".repeat(1000);
    sim.fail_step("stage", [StepFailure::permanent(format!("install hook exited with 1: {tail}"))]);
    run_to_end(&mut sim, good_release());
    let InstallState::Failed { message, .. } = sim.last_report().state else { panic!() };
    assert!(message.len() <= flotte_protocol::messages::MAX_REPORT_MESSAGE);
    assert!(message.starts_with("install hook exited with 1") && message.ends_with("hook output line\n"));
}

#[test]
fn a_script_package_without_a_declared_check_still_runs_its_check_hook() {
    let mut sim = Sim::new();
    let release = listed(ReleaseMetadata { installer: InstallerKind::Script, ..metadata("app") });
    sim.fail_step("health", [StepFailure::permanent("check hook of app 2.0 failed: exited with status 3")]);
    run_to_end(&mut sim, release);
    assert!(sim.log.iter().any(|a| matches!(a, JobAction::CheckHealth { check: None, .. })));
    assert!(matches!(sim.last_report().state, InstallState::RolledBack { class: FailureClass::Health, .. }));
}

#[test]
fn a_rolled_back_job_discards_its_backup_but_a_failed_rollback_keeps_it() {
    let mut sim = Sim::new();
    sim.fail_step("health", [StepFailure::permanent("unhealthy")]);
    run_to_end(&mut sim, checked_release(0));
    assert_eq!(sim.count(|a| matches!(a, JobAction::DiscardBackup { .. })), 1);

    let mut sim = Sim::new();
    sim.fail_step("health", [StepFailure::permanent("unhealthy")]);
    sim.fail_step("rollback", [StepFailure::permanent("broken")]);
    run_to_end(&mut sim, checked_release(0));
    assert_eq!(sim.count(|a| matches!(a, JobAction::DiscardBackup { .. })), 0, "kept for the admin");
}

#[test]
fn metadata_that_cannot_be_fetched_is_asked_for_again_and_then_refused() {
    let mut sim = Sim::new();
    sim.unavailable = MAX_TRANSIENT_RETRIES;
    run_to_end(&mut sim, good_release());
    assert_eq!(sim.count(|a| matches!(a, JobAction::VerifyMetadata(_))), MAX_TRANSIENT_RETRIES as usize + 1);
    assert_eq!(sim.last_report().state, InstallState::Succeeded);

    let mut sim = Sim::new();
    sim.unavailable = MAX_TRANSIENT_RETRIES + 1;
    run_to_end(&mut sim, good_release());
    assert!(!sim.did_fetch_or_install());
    let InstallState::Failed { class: FailureClass::Verification, message } = sim.last_report().state else {
        panic!("{:?}", sim.last_report())
    };
    assert!(message.contains("TUF metadata unavailable") && message.contains("connection lost"), "{message}");
}

/// UTC time from RFC 3339.
fn at(s: &str) -> Timestamp {
    Timestamp::parse_rfc3339(s).unwrap()
}

fn window(spec: &str) -> Window {
    spec.parse().unwrap()
}

/// A job of `origin` on an agent whose maintenance window is `agent_window`,
/// received and resumed at `now`.
fn start_windowed(sim: &mut Sim, now: &str, origin: Origin, agent_window: Option<&str>) -> Job {
    sim.now = at(now);
    sim.list(&good_release());
    let mut job = Job::new(sim.now, assignment(good_release()), origin);
    job.set_agent_window(agent_window.map(window));
    sim.run(&mut job);
    sim.feed(&mut job, JobEvent::Resume);
    job
}

fn staged(sim: &Sim) -> bool {
    sim.count(|a| matches!(a, JobAction::Stage { .. })) > 0
}

#[test]
fn a_required_install_waits_for_its_maintenance_windows_after_downloading_and_verifying() {
    let weekend = Some("sat,sun 00:00-06:00 UTC");
    let deadline = |w: Option<&str>| Origin::Deadline { rollout_window: w.map(window) };
    // 2026-12-04 is a Friday.
    let friday = "2026-12-04T15:00:00Z";
    /// (what, origin, agent window, now, when it installs: None = at once)
    type Case = (&'static str, Origin, Option<&'static str>, &'static str, Option<&'static str>);
    let table: Vec<Case> = vec![
        ("push, window closed", Origin::Push, weekend, friday, Some("2026-12-05T00:00:00Z")),
        ("push, window open", Origin::Push, weekend, "2026-12-05T01:00:00Z", None),
        ("push, no window configured", Origin::Push, None, friday, None),
        ("a user's install ignores the window", Origin::User, weekend, friday, None),
        ("deadline: agent window only", deadline(None), weekend, friday, Some("2026-12-05T00:00:00Z")),
        (
            "deadline: both must be open",
            deadline(Some("daily 04:00-08:00")),
            weekend,
            friday,
            Some("2026-12-05T04:00:00Z"),
        ),
        (
            "deadline: rollout window only",
            deadline(Some("daily 04:00-08:00")),
            None,
            friday,
            Some("2026-12-05T04:00:00Z"),
        ),
        ("deadline: both open now", deadline(Some("daily 04:00-08:00")), weekend, "2026-12-05T05:00:00Z", None),
    ];
    for (what, origin, agent_window, now, opens) in table {
        let mut sim = Sim::new();
        let mut job = start_windowed(&mut sim, now, origin, agent_window);
        let fetched = sim.count(|a| matches!(a, JobAction::Fetch { .. }));
        assert_eq!(fetched, 1, "{what}: downloads at once");
        let Some(opens) = opens.map(at) else {
            assert_eq!(job.state(), &JobState::Succeeded, "{what}: installs at once");
            assert!(!sim.states().contains(&"waiting_for_window"), "{what}");
            continue;
        };
        assert_eq!(job.state(), &JobState::WaitingForWindow { until: opens }, "{what}");
        assert_eq!(sim.states(), ["received", "downloading", "verifying", "waiting_for_window"], "{what}");
        assert_eq!(sim.last_report().state, InstallState::WaitingForWindow { until: opens }, "{what}");
        assert_eq!(sim.last_report().active_after.as_deref(), Some("1.0"), "{what}: the old version stays");
        assert!(!staged(&sim), "{what}: nothing on the host changes before the window");
        assert!(matches!(sim.log.last(), Some(JobAction::Report(_))), "{what}: journaled, then reported");
        let reminder = sim.now.saturating_add(WINDOW_REPORT_INTERVAL);
        assert_eq!(job.poll_timeout(), Some(opens.min(reminder)), "{what}: the next timeout is the opening");
        // Early: nothing happens.
        job.handle_timeout(Timestamp::from_unix_millis(opens.min(reminder).as_unix_millis() - 1000));
        sim.run(&mut job);
        assert!(!staged(&sim), "{what}");
        // At the opening (after a reminder, for a long wait): installs, exactly then.
        while !staged(&sim) {
            assert!(sim.tick(&mut job), "{what}: a timer is pending");
            assert!(sim.now <= opens, "{what}");
        }
        assert_eq!(sim.now, opens, "{what}");
        assert_eq!(job.state(), &JobState::Succeeded, "{what}");
        assert_eq!(sim.count(|a| matches!(a, JobAction::Fetch { .. })), 1, "{what}: downloaded once");
    }
}

#[test]
fn a_restart_while_waiting_for_the_window_verifies_again_and_keeps_waiting() {
    let mut sim = Sim::new();
    let job = start_windowed(&mut sim, "2026-12-04T15:00:00Z", Origin::Push, Some("sat,sun 00:00-06:00 UTC"));
    let opens = at("2026-12-05T00:00:00Z");
    let record: JobRecord = serde_json::from_str(&serde_json::to_string(job.record()).unwrap()).unwrap();
    assert_eq!(record.state, JobState::WaitingForWindow { until: opens });
    assert!(record.windowed, "journaled: the window applies after a restart");

    sim.now = at("2026-12-04T18:00:00Z");
    sim.log.clear();
    let mut job = Job::restore(record);
    job.set_agent_window(Some(window("sat,sun 00:00-06:00 UTC")));
    sim.feed(&mut job, JobEvent::Resume);
    assert!(sim.count(|a| matches!(a, JobAction::VerifyMetadata(_))) == 1, "verified again");
    assert_eq!(job.state(), &JobState::WaitingForWindow { until: opens });
    assert!(!staged(&sim), "still waiting");
    sim.settle(&mut job);
    assert_eq!(sim.now, opens);
    assert_eq!(job.state(), &JobState::Succeeded);
}

#[test]
fn a_window_missed_while_the_agent_slept_is_waited_for_again() {
    let mut sim = Sim::new();
    let mut job = start_windowed(&mut sim, "2026-12-04T15:00:00Z", Origin::Push, Some("sat 00:00-06:00 UTC"));
    // The host was suspended through the whole window: the timer fires late.
    sim.now = at("2026-12-05T07:00:00Z");
    job.handle_timeout(sim.now);
    sim.run(&mut job);
    let next = at("2026-12-12T00:00:00Z");
    assert_eq!(job.state(), &JobState::WaitingForWindow { until: next });
    assert_eq!(sim.last_report().state, InstallState::WaitingForWindow { until: next });
    assert!(!staged(&sim));
}

#[test]
fn a_job_waiting_for_its_window_can_be_cancelled_and_windows_that_never_meet_fail_it() {
    let mut sim = Sim::new();
    let mut job = start_windowed(&mut sim, "2026-12-04T15:00:00Z", Origin::Push, Some("sat,sun 00:00-06:00 UTC"));
    sim.feed(&mut job, JobEvent::Cancel);
    assert!(matches!(job.state(), JobState::Failed { class: FailureClass::Download, .. }));
    assert!(matches!(sim.log.iter().rev().nth(2), Some(JobAction::DeleteDownload { .. })), "{:?}", sim.log);

    let mut sim = Sim::new();
    let origin = Origin::Deadline { rollout_window: Some(window("sun 00:00-06:00")) };
    let job = start_windowed(&mut sim, "2026-12-04T15:00:00Z", origin, Some("sat 00:00-06:00 UTC"));
    let JobState::Failed { class, message } = job.state() else { panic!("{:?}", job.state()) };
    assert_eq!(*class, FailureClass::Preflight);
    assert!(message.contains("never open at the same time"), "{message}");
    assert!(!staged(&sim));
}

#[test]
fn a_long_wait_for_the_window_is_reported_again_every_interval() {
    let mut sim = Sim::new();
    // Pushed on Monday morning; the window opens on Saturday.
    let mut job = start_windowed(&mut sim, "2026-11-30T08:00:00Z", Origin::Push, Some("sat,sun 00:00-06:00 UTC"));
    let opens = at("2026-12-05T00:00:00Z");
    let mut reminders = vec![];
    while job.state() != &JobState::Succeeded {
        let waited = sim.reports().len();
        assert!(sim.tick(&mut job), "a timer is pending");
        if sim.now < opens {
            assert!(!staged(&sim));
            assert_eq!(sim.reports().len(), waited + 1, "one more report at {}", sim.now);
            assert_eq!(sim.last_report().state, InstallState::WaitingForWindow { until: opens });
            reminders.push(sim.now);
        }
    }
    assert_eq!(sim.now, opens);
    let first = at("2026-11-30T20:00:00Z");
    assert_eq!(reminders.first(), Some(&first));
    assert_eq!(reminders.len(), 9, "every 12 h from Monday 20:00 to Friday 20:00: {reminders:?}");
    // Only the first report journaled a state change.
    let waits =
        sim.count(|a| matches!(a, JobAction::Persist(r) if matches!(r.state, JobState::WaitingForWindow { .. })));
    assert_eq!(waits, 1);
}
