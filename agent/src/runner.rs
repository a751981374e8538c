//! The tokio shell around the pure cores: it keeps a connection to the
//! controller, feeds control messages, task results and timers into the
//! [`JobTable`], and carries out the actions the jobs ask for.
//!
//! Guarantees:
//! - Jobs keep moving while the controller is unreachable (verification,
//!   installs, journaling); only downloads wait for a connection.
//! - Actions run in the order a job emitted them, so a journal write always
//!   completes before the side effect that follows it.
//! - At most one download task exists at a time, and an old attempt is
//!   stopped (and awaited) before a new one starts, so two writers never
//!   share a part file.
//! - Reconnects back off exponentially with full jitter; after every
//!   `Welcome` all unacknowledged reports are sent again and the running
//!   job resumes.
//! - Shutdown closes the connection with code 0.
//! - Timers (download and step retries, holds, maintenance-window openings,
//!   health-check runs during probation) fire whether or not the controller
//!   is reachable, and within `WALL_CLOCK_RECHECK` of their wall-clock
//!   time even if the clock stepped or the host slept meanwhile.
//! - The local socket for `flotte` is served from the same loop ([`pull`]):
//!   its requests are handled between other events, never concurrently
//!   with a job step. If the socket cannot be bound the agent logs why and
//!   runs without it (push installs and deadline installs still work).
//! - With the `failpoints` feature, `after:<checkpoint>` aborts the process
//!   right after the journal write that first reaches that checkpoint.

mod pull;

use crate::backoff::Backoff;
use crate::catalog::Catalog;
use crate::config::AgentConfig;
use crate::download::{self, Outcome};
use crate::durable;
use crate::enrollment::Enrollment;
use crate::error::{AgentError, Result};
use crate::failpoint;
use crate::install::Backends;
use crate::inventory;
use crate::job::{JobAction, JobEvent, JobRecord, Origin, StepFailure};
use crate::jobs::JobTable;
use crate::journal::Journal;
use crate::local::server::{Listener, LocalCall};
use crate::outbox::Outbox;
use crate::quarantine::{self, Quarantine};
use crate::quic;
use crate::session::{self, MIN_PROTOCOL_VERSION, Session};
use crate::state_dir::StateDir;
use crate::tuf_store::TufStore;
use crate::verify::Verifier;
use flotte_protocol::messages::{AgentMessage, ControllerMessage, Hello, Inventory};
use flotte_protocol::{AssignmentId, InstallerKind, PROTOCOL_VERSION, Sha256Digest, Timestamp};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Longest sleep before a pending timer is checked against the wall clock
/// again: timers are wall-clock times (a maintenance window opens at 00:00
/// local), but tokio sleeps on the monotonic clock, which neither follows a
/// clock step nor counts a suspend. Only while a timer is pending.
const WALL_CLOCK_RECHECK: Duration = Duration::from_secs(10);

/// Clock difference to the controller worth a warning.
const SKEW_WARNING: Duration = Duration::from_secs(300);

type Events = mpsc::UnboundedSender<(AssignmentId, JobEvent)>;

/// The running agent.
pub struct Agent {
    config: AgentConfig,
    state: StateDir,
    enrollment: Enrollment,
    /// Verifies releases through TUF (root pinned at enrollment).
    verifier: Verifier,
    backends: Arc<Backends>,
    quarantine: Quarantine,
    client: quinn::ClientConfig,
    journal: Journal,
    /// The checkpoint each job last journaled, so a crash hook fires once
    /// per checkpoint reached, not on every rewrite of the same state.
    checkpoints: BTreeMap<AssignmentId, &'static str>,
    outbox: Outbox,
    jobs: JobTable,
    /// Results of background work (downloads, installer calls) come back here.
    events_tx: Events,
    events_rx: mpsc::UnboundedReceiver<(AssignmentId, JobEvent)>,
    /// The one running download, so it can be stopped on cancel or link loss.
    fetch: Option<FetchTask>,
    /// The current session, if connected.
    link: Option<Session>,
    /// Set when sending on the link failed; the session loop ends on it.
    link_error: Option<AgentError>,
    backoff: Backoff,
    /// Digest of the inventory the controller last received (in `Hello` or
    /// `Inventory`) on the current session; `None` while offline.
    sent_inventory: Option<Sha256Digest>,
    /// Pull offers and what users installed from them.
    catalog: Catalog,
    /// Allowed requests from the local socket; `None` without a socket.
    local_calls: Option<mpsc::Receiver<LocalCall>>,
    /// The socket listener task, stopped when the agent is dropped.
    local_task: Option<JoinHandle<()>>,
    /// Offers whose content a prefetch was started for on this session.
    prefetched: std::collections::BTreeSet<AssignmentId>,
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(task) = self.local_task.take() {
            task.abort();
        }
    }
}

/// The next allowed local request; never resolves without a socket.
async fn next_call(calls: &mut Option<mpsc::Receiver<LocalCall>>) -> LocalCall {
    match calls {
        Some(rx) => match rx.recv().await {
            Some(call) => call,
            None => std::future::pending().await,
        },
        None => std::future::pending().await,
    }
}

struct FetchTask {
    id: AssignmentId,
    attempt: u32,
    handle: JoinHandle<()>,
}

enum Input {
    Shutdown,
    Control(Result<ControllerMessage>),
    Job((AssignmentId, JobEvent)),
    Timeout,
    InventoryCheck,
    Local(LocalCall),
}

impl Agent {
    /// Loads the enrollment, identity, journal and outbox from the state
    /// directory. Fails if the agent is not enrolled or a file is unusable.
    pub fn open(config: AgentConfig) -> Result<Agent> {
        let state = StateDir::new(&config.state_dir);
        let enrollment = Enrollment::load(&state)?;
        state.check_writable()?;
        let client = quic::client_config(&state)?;
        let journal = Journal::open(&state)?;
        let outbox = Outbox::load(&state.outbox())?;
        let records = journal.load_all()?;
        let checkpoints = records.iter().map(|r: &JobRecord| (r.id, r.state.checkpoint())).collect();
        let jobs = JobTable::restore(records, config.maintenance_window.clone());
        let backends = Backends::new(&config, &state).map_err(|e| AgentError::Installer { reason: e.to_string() })?;
        let mut catalog = Catalog::load(&state.catalog())?;
        catalog.forget_taken(|id| jobs.contains(id))?;
        if let Some(removal) = catalog.removal().cloned() {
            tracing::info!(package = %removal.name, "finishing a removal a restart interrupted");
            match backends.uninstall(removal.installer, &removal.name) {
                Ok(_) => catalog.end_removal()?,
                Err(e) => {
                    tracing::error!(package = %removal.name, error = %e, "cannot finish the removal");
                    catalog.abandon_removal()?;
                }
            }
        }
        let (local_calls, local_task) = match Listener::bind(&config.pull.socket) {
            Ok(listener) => {
                tracing::info!(socket = %listener.path().display(), "serving flotte on the local socket");
                let (tx, rx) = mpsc::channel(16);
                let policy = config.pull.policy.clone();
                (Some(rx), Some(tokio::spawn(listener.serve(policy, tx))))
            }
            Err(e) => {
                tracing::error!(error = %e, "no local socket: `flotte` cannot reach this agent");
                (None, None)
            }
        };
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        if failpoint::ENABLED {
            tracing::warn!("this agent was built with crash hooks (feature `failpoints`); do not deploy it");
        }
        Ok(Agent {
            verifier: Verifier::new(TufStore::open(&state.tuf_dir())?),
            quarantine: Quarantine::new(&state),
            config,
            state,
            enrollment,
            backends: Arc::new(backends),
            client,
            journal,
            checkpoints,
            outbox,
            jobs,
            events_tx,
            events_rx,
            fetch: None,
            link: None,
            link_error: None,
            backoff: Backoff::new(Backoff::seed_from_environment()),
            sent_inventory: None,
            catalog,
            local_calls,
            local_task,
            prefetched: Default::default(),
        })
    }

    /// Runs until `shutdown` completes.
    pub async fn run(mut self, mut shutdown: impl Future<Output = ()> + Unpin) {
        let e = &self.enrollment;
        tracing::info!(agent_id = %e.agent_id, controller = %e.controller, quic_port = e.quic_port, "agent starting");
        if let Some(window) = &self.config.maintenance_window {
            tracing::info!(%window, "required installs wait for the maintenance window");
        }
        self.jobs.resume(now());
        self.drive().await;
        loop {
            let inventory = self.inventory().await;
            let inventory_digest = inventory::digest(&inventory);
            let hello = Hello {
                protocol_version: PROTOCOL_VERSION,
                min_protocol_version: MIN_PROTOCOL_VERSION,
                agent_version: env!("CARGO_PKG_VERSION").to_string(),
                inventory,
            };
            tracing::debug!(controller = %self.enrollment.controller, port = self.enrollment.quic_port, "connecting");
            let open = Session::open(
                self.client.clone(),
                self.enrollment.controller.clone(),
                self.enrollment.quic_port,
                hello,
            );
            let error = match self.offline(open, &mut shutdown).await {
                None => return,
                Some(Ok(session)) => {
                    self.backoff.reset();
                    self.sent_inventory = Some(inventory_digest);
                    match self.online(session, &mut shutdown).await {
                        None => return,
                        Some(e) => e,
                    }
                }
                Some(Err(e)) => e,
            };
            match error {
                AgentError::Refused { .. } => tracing::error!(error = %error, "not connected"),
                AgentError::UntrustedController { .. } => {
                    tracing::error!(error = %error, "SECURITY: controller certificate rejected; not connected")
                }
                _ => tracing::warn!(error = %error, "not connected"),
            }
            let delay = self.backoff.next_delay();
            tracing::info!(delay_ms = delay.as_millis() as u64, "reconnecting after a delay");
            if self.offline(tokio::time::sleep(delay), &mut shutdown).await.is_none() {
                return;
            }
        }
    }

    /// Awaits `fut` while jobs keep working; `None` if shutdown came first.
    async fn offline<F: Future>(
        &mut self,
        fut: F,
        shutdown: &mut (impl Future<Output = ()> + Unpin),
    ) -> Option<F::Output> {
        let mut fut = std::pin::pin!(fut);
        loop {
            let wake = self.wake_at();
            let sleep = wake.map_or(Duration::ZERO, |at| at.saturating_since(now()).min(WALL_CLOCK_RECHECK));
            tokio::select! {
                out = &mut fut => return Some(out),
                () = &mut *shutdown => return None,
                Some(event) = self.events_rx.recv() => self.on_job_event(event).await,
                call = next_call(&mut self.local_calls) => self.on_local(call).await,
                () = tokio::time::sleep(sleep), if wake.is_some() => self.on_timeout().await,
            }
        }
    }

    /// Serves one session; returns why it ended, `None` for shutdown.
    async fn online(
        &mut self,
        session: Session,
        shutdown: &mut (impl Future<Output = ()> + Unpin),
    ) -> Option<AgentError> {
        let welcome = &session.welcome;
        tracing::info!(agent_id = %welcome.agent_id, protocol = welcome.protocol_version, "connected");
        if welcome.agent_id != self.enrollment.agent_id {
            tracing::warn!(enrolled = %self.enrollment.agent_id, seen = %welcome.agent_id, "controller knows this agent by another id");
        }
        let skew = now().saturating_since(welcome.server_time).max(welcome.server_time.saturating_since(now()));
        if skew > SKEW_WARNING {
            tracing::warn!(skew_s = skew.as_secs(), "clock differs from the controller's");
        }
        self.link = Some(session);
        for report in self.outbox.pending().to_vec() {
            self.send(&AgentMessage::Report(report)).await;
        }
        self.jobs.resume(now());
        self.drive().await;
        self.prefetched.clear();
        self.prefetch().await;
        let mut inventory_check = tokio::time::Instant::now() + self.config.inventory_interval;
        loop {
            if let Some(error) = self.link_error.take() {
                self.go_offline(None).await;
                return Some(error);
            }
            let wake = self.wake_at();
            let Some(link) = self.link.as_mut() else {
                return Some(AgentError::Stream { stream: "control", reason: "no session".into() });
            };
            let sleep = wake.map_or(Duration::ZERO, |at| at.saturating_since(now()).min(WALL_CLOCK_RECHECK));
            let input = tokio::select! {
                () = &mut *shutdown => Input::Shutdown,
                message = link.next() => Input::Control(message),
                Some(event) = self.events_rx.recv() => Input::Job(event),
                call = next_call(&mut self.local_calls) => Input::Local(call),
                () = tokio::time::sleep(sleep), if wake.is_some() => Input::Timeout,
                () = tokio::time::sleep_until(inventory_check) => Input::InventoryCheck,
            };
            match input {
                Input::Shutdown => {
                    tracing::info!("shutting down");
                    self.go_offline(Some("agent shutting down")).await;
                    return None;
                }
                Input::Control(Ok(message)) => self.on_message(message).await,
                Input::Control(Err(error)) => self.link_error = Some(error),
                Input::Job(event) => self.on_job_event(event).await,
                Input::Local(call) => self.on_local(call).await,
                Input::Timeout => self.on_timeout().await,
                Input::InventoryCheck => {
                    inventory_check = tokio::time::Instant::now() + self.config.inventory_interval;
                    self.send_inventory_if_changed().await;
                }
            }
        }
    }

    /// The earliest time a job or a deadline install wants the loop.
    fn wake_at(&self) -> Option<Timestamp> {
        self.jobs.poll_timeout().into_iter().chain(self.catalog_timeout()).min()
    }

    async fn on_timeout(&mut self) {
        self.jobs.handle_timeout(now());
        self.drive().await;
        self.escalate_due().await;
    }

    /// Stops the download (it needs the link), then closes the link: with
    /// code 0 and `close_reason` on shutdown, abandoned with code 1 otherwise.
    async fn go_offline(&mut self, close_reason: Option<&str>) {
        if let Some(task) = self.fetch.take() {
            task.handle.abort();
            let _ = task.handle.await;
            let event = JobEvent::FetchInterrupted { attempt: task.attempt, reason: "connection closed".into() };
            self.jobs.handle(now(), task.id, event);
        }
        match (self.link.take(), close_reason) {
            (Some(link), Some(reason)) => link.close(reason).await,
            (Some(link), None) => link.abandon("control stream failed"),
            (None, _) => {}
        }
        self.sent_inventory = None;
        self.drive().await;
    }

    async fn on_message(&mut self, message: ControllerMessage) {
        match message {
            ControllerMessage::Assign(assignment) => {
                tracing::info!(assignment = %assignment.id, "assignment received");
                self.jobs.assign(now(), assignment, Origin::Push);
                self.drive().await;
            }
            ControllerMessage::Cancel { assignment } if self.jobs.contains(assignment) => {
                tracing::info!(%assignment, "assignment cancelled by the controller");
                self.jobs.handle(now(), assignment, JobEvent::Cancel);
                self.drive().await;
            }
            ControllerMessage::Cancel { assignment } if self.catalog.contains(assignment) => {
                self.withdraw(assignment).await
            }
            ControllerMessage::Cancel { assignment } => tracing::warn!(%assignment, "cancel for an unknown assignment"),
            ControllerMessage::Ack { seq } => {
                if let Err(e) = self.outbox.ack(seq) {
                    tracing::error!(error = %e, seq, "cannot record the acknowledgement");
                }
            }
            ControllerMessage::Refused { reason } => self.link_error = Some(AgentError::Refused { reason }),
            ControllerMessage::Offer(offer) => self.on_offer(offer).await,
            other @ ControllerMessage::Welcome(_) => tracing::warn!(message = session::kind(&other), "ignoring"),
        }
    }

    async fn on_job_event(&mut self, (id, event): (AssignmentId, JobEvent)) {
        let ends_fetch = match &event {
            JobEvent::Fetched { attempt, .. } => Some(*attempt),
            JobEvent::FetchInterrupted { attempt, reason } => {
                tracing::warn!(assignment = %id, attempt, reason, "download interrupted");
                Some(*attempt)
            }
            JobEvent::FetchFailed { attempt, failure } => {
                tracing::error!(assignment = %id, attempt, error = %failure.message, "download failed");
                Some(*attempt)
            }
            _ => None,
        };
        if ends_fetch.is_some() && self.fetch.as_ref().map(|t| (t.id, Some(t.attempt))) == Some((id, ends_fetch)) {
            self.fetch = None;
        }
        let installed = matches!(event, JobEvent::Switched { .. } | JobEvent::RolledBack { .. });
        self.jobs.handle(now(), id, event);
        self.drive().await;
        if ends_fetch.is_some() {
            self.prefetch().await;
        }
        if installed {
            self.send_inventory_if_changed().await;
        }
    }

    /// Carries out every queued job action.
    async fn drive(&mut self) {
        while let Some((id, action)) = self.jobs.poll_action() {
            self.execute(id, action).await;
        }
    }

    async fn execute(&mut self, id: AssignmentId, action: JobAction) {
        match action {
            JobAction::Persist(record) => self.persist(&record),
            JobAction::Report(draft) => {
                let (report, saved) = self.outbox.push(draft);
                if let Err(e) = saved {
                    tracing::error!(error = %e, seq = report.seq, "cannot store the report; sending it anyway");
                }
                tracing::info!(assignment = %id, seq = report.seq, state = report.state.name(), "report");
                self.send(&AgentMessage::Report(report)).await;
            }
            JobAction::VerifyMetadata(release) => {
                let (verifier, connection, tx) = (self.verifier.clone(), self.connection(), self.events_tx.clone());
                tokio::spawn(async move {
                    let result = verifier.verify(connection, release, now()).await;
                    match &result {
                        Ok(v) => {
                            let label = v.metadata().label();
                            tracing::info!(assignment = %id, release = %label, role = v.role(), "release verified");
                        }
                        Err(e) => tracing::error!(assignment = %id, error = %e, "release failed verification"),
                    }
                    let _ = tx.send((id, JobEvent::MetadataChecked(result)));
                });
            }
            JobAction::LookUpPackage { name } => {
                let kind = self.jobs.get(id).and_then(|j| j.record().package.as_ref()).map(|p| p.installer);
                let quarantine = self.quarantine.clone();
                let unknown = JobEvent::PackageLooked { active: None, quarantine: None };
                self.on_installer(id, unknown, move |backends| {
                    let active = backends.active_version(kind.unwrap_or(InstallerKind::Archive), &name);
                    let quarantine = match quarantine.get(&name) {
                        Ok(entry) => entry.map(|e| e.reason),
                        Err(e) => Some(format!("its quarantine entry cannot be read: {e}")),
                    };
                    JobEvent::PackageLooked { active, quarantine }
                });
            }
            JobAction::Fetch { attempt, digest, size } => self.start_fetch(id, attempt, digest, size).await,
            JobAction::CancelFetch => {
                if let Some(task) = self.fetch.take_if(|t| t.id == id) {
                    task.handle.abort();
                    let _ = task.handle.await;
                }
            }
            JobAction::DeleteDownload { digest } => {
                if let Err(e) = durable::remove(&self.state.download(&digest)) {
                    tracing::warn!(error = %e, "cannot delete the download");
                }
            }
            JobAction::Stage { package } => {
                tracing::info!(assignment = %id, package = %package.label(), "staging");
                self.on_installer(id, JobEvent::Staged(Err(crashed())), move |b| b.stage(&package));
            }
            JobAction::Preflight { package, baseline } => {
                self.on_installer(id, JobEvent::PreflightChecked(Err(crashed())), move |b| {
                    b.preflight(&package, baseline.as_deref())
                });
            }
            JobAction::Backup { package, paths } => {
                tracing::info!(assignment = %id, package = %package.label(), paths = paths.len(), "backing up");
                self.on_installer(id, JobEvent::BackedUp(Err(crashed())), move |b| b.backup(&package, &paths));
            }
            JobAction::Switch { package } => {
                tracing::info!(assignment = %id, package = %package.label(), "switching");
                let panicked = JobEvent::Switched { result: Err(crashed()), active: None };
                self.on_installer(id, panicked, move |b| b.switch(&package));
            }
            JobAction::Detect { package, rule } => {
                self.on_installer(id, JobEvent::Detected(Err(crashed())), move |b| b.detect(&package, rule.as_ref()));
            }
            JobAction::CheckHealth { package, check, timeout } => {
                self.on_installer(id, JobEvent::HealthChecked(Err(crashed())), move |b| {
                    b.check_health(&package, check.as_ref(), timeout)
                });
            }
            JobAction::Commit { package, backup } => {
                self.on_installer(id, JobEvent::Committed, move |b| b.commit(&package, backup));
            }
            JobAction::RollBack { package, to, restore_backup } => {
                tracing::warn!(assignment = %id, package = %package.label(), to = ?to, "rolling back");
                let panicked = JobEvent::RolledBack { result: Err(crashed()), active: None };
                self.on_installer(id, panicked, move |b| b.roll_back(&package, to.as_deref(), restore_backup));
            }
            JobAction::DiscardBackup { package } => {
                let backends = Arc::clone(&self.backends);
                let _ = tokio::task::spawn_blocking(move || backends.discard_backup(&package)).await;
            }
            JobAction::Quarantine { name, reason } => {
                tracing::error!(assignment = %id, package = %name, %reason, "quarantining the package");
                let entry = quarantine::Entry { package: name, assignment: id, since: now(), reason };
                if let Err(e) = self.quarantine.add(&entry) {
                    tracing::error!(assignment = %id, error = %e, "cannot record the quarantine");
                }
            }
        }
    }

    /// Journals `record`; then, with crash hooks, aborts if its checkpoint
    /// is armed and newly reached.
    fn persist(&mut self, record: &JobRecord) {
        if let Err(e) = self.journal.save(record) {
            tracing::error!(assignment = %record.id, error = %e, "cannot journal the job");
        }
        let checkpoint = record.state.checkpoint();
        if self.checkpoints.insert(record.id, checkpoint) != Some(checkpoint) {
            tracing::debug!(assignment = %record.id, checkpoint, "journaled");
            failpoint::hit(&format!("after:{checkpoint}"));
        }
    }

    /// Runs an installer call on a blocking thread; its event (or
    /// `on_panic`) comes back through the event channel.
    fn on_installer(
        &self,
        id: AssignmentId,
        on_panic: JobEvent,
        call: impl FnOnce(&Backends) -> JobEvent + Send + 'static,
    ) {
        let backends = Arc::clone(&self.backends);
        let tx = self.events_tx.clone();
        tokio::spawn(async move {
            let event = tokio::task::spawn_blocking(move || call(&backends)).await.unwrap_or(on_panic);
            let _ = tx.send((id, event));
        });
    }

    async fn start_fetch(&mut self, id: AssignmentId, attempt: u32, digest: flotte_protocol::Sha256Digest, size: u64) {
        if let Some(old) = self.fetch.take() {
            old.handle.abort();
            let _ = old.handle.await;
        }
        // Without a link only a file that is already complete can be had.
        let connection = self.connection();
        let path = self.state.download(&digest);
        let limit = self.config.download_bandwidth_limit;
        let min = self.config.download_min_rate;
        let tx = self.events_tx.clone();
        let handle = tokio::spawn(async move {
            let started = tx.clone();
            let on_start = move |offset| {
                tracing::info!(assignment = %id, offset, size, "downloading");
                let _ = started.send((id, JobEvent::FetchStarted { attempt, offset }));
            };
            let event = match download::fetch(connection.as_ref(), path, digest, size, limit, min, on_start).await {
                Outcome::Done { sha256, size } => JobEvent::Fetched { attempt, sha256, size },
                Outcome::Interrupted(reason) => JobEvent::FetchInterrupted { attempt, reason },
                Outcome::Failed { message, transient } => {
                    JobEvent::FetchFailed { attempt, failure: StepFailure { message, transient } }
                }
            };
            let _ = tx.send((id, event));
        });
        self.fetch = Some(FetchTask { id, attempt, handle });
    }

    /// The controller connection, if the session is up.
    fn connection(&self) -> Option<quinn::Connection> {
        match (&self.link, &self.link_error) {
            (Some(link), None) => Some(link.connection().clone()),
            _ => None,
        }
    }

    /// Sends on the control stream if connected; a failure ends the session.
    async fn send(&mut self, message: &AgentMessage) {
        if self.link_error.is_some() {
            return;
        }
        let Some(link) = self.link.as_mut() else { return };
        if let Err(e) = link.send(message).await {
            self.link_error = Some(e);
        }
    }

    /// Recollects the inventory and sends it if the controller's copy is
    /// stale. Does nothing while offline: the next `Hello` carries it.
    async fn send_inventory_if_changed(&mut self) {
        let Some(sent) = self.sent_inventory else { return };
        let inventory = self.inventory().await;
        let digest = inventory::digest(&inventory);
        if digest == sent {
            tracing::debug!("inventory unchanged");
            return;
        }
        tracing::info!("inventory changed; sending it");
        self.send(&AgentMessage::Inventory(inventory)).await;
        if self.link_error.is_none() {
            self.sent_inventory = Some(digest);
        }
    }

    async fn inventory(&self) -> Inventory {
        let backends = Arc::clone(&self.backends);
        let root = self.config.install_root.clone();
        let hostname = self.config.hostname.clone().or_else(|| self.enrollment.hostname.clone());
        let options = inventory::Options { dpkg_packages: self.config.report_dpkg_packages };
        tokio::task::spawn_blocking(move || inventory::collect(backends.archive(), &root, hostname.as_deref(), options))
            .await
            .unwrap_or_default()
    }
}

/// The failure of a step whose installer call panicked.
fn crashed() -> StepFailure {
    StepFailure::permanent("the installer stopped unexpectedly (panic); see the agent log")
}

fn now() -> Timestamp {
    Timestamp::from_system_time(SystemTime::now())
}
