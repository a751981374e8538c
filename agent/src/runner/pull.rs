//! The agent's pull side, as part of its event loop: offers from the
//! controller go into the [`Catalog`]; requests from the local socket list
//! it, install from it and remove what users installed; deadlines make
//! offers required.
//!
//! Guarantees:
//! - An offer is verified (its release looked up in the TUF-verified
//!   targets) before it is stored or shown, and the catalog keeps the
//!   verified metadata it shows; one that fails is reported `failed`
//!   (verification) and dropped. The install verifies it again, as a job.
//! - A pull install — by a user or by a deadline — is an ordinary job built
//!   from the offer (`JobTable::assign`), so it takes exactly the verified,
//!   journaled path of a push and reports under the offer's assignment id.
//!   The job is journaled before the offer leaves the catalog.
//! - A deadline install happens at the deadline, or at the next opening of
//!   the rollout's maintenance window after it, whether or not the
//!   controller is reachable: the content of an offer with a deadline is
//!   downloaded ahead of time ([`Agent::prefetch`]), through the same one
//!   download slot jobs use and only while no job downloads, so the job the
//!   deadline creates finds it complete and needs no connection. Offers
//!   without a deadline are not downloaded until a user installs them.
//! - The job a deadline (or a push's notice) creates is a required install:
//!   it waits for the agent's `maintenance_window` *and* the rollout's
//!   window (both open at once) before it changes anything. A user's
//!   `flotte install` is the user's choice and installs at once, whatever
//!   the windows say.
//! - A withdrawn offer (`Cancel`: its rollout was aborted) leaves the
//!   catalog, so neither a user nor its deadline installs it any more.
//! - `remove` applies only to packages a user installed with `flotte
//!   install` from a plain pull offer (software an admin requires, by a
//!   push or a deadline, is the admin's to remove), goes
//!   through the installer's `uninstall`, and is recorded in the catalog
//!   before it runs so that a crash does not leave it half-done.

use super::{Agent, now};
use crate::catalog::{self, Entry, Pulled, Removal};
use crate::job::{Job, JobState, Origin};
use crate::local::policy::Caller;
use crate::local::server::LocalCall;
use crate::local::wire::{Answer, Available, ErrorCode, Installed, JobView, Listing, Request, Status};
use crate::notify;
use flotte_protocol::messages::{AgentMessage, Assignment, FailureClass, InstallState, Offer};
use flotte_protocol::{AssignmentId, ReleaseMetadata, Timestamp};
use std::time::Duration;

/// The download attempt number of a prefetch; no job ever waits for it, so
/// its events are ignored by jobs.
const PREFETCH_ATTEMPT: u32 = u32::MAX;

/// How long finished installs stay in `flotte status`.
const RECENT: Duration = Duration::from_secs(24 * 3600);

fn error(code: ErrorCode, message: impl Into<String>) -> Answer {
    Answer::Error { code, message: message.into() }
}

impl Agent {
    /// `ControllerMessage::Offer`: verify, store, report `offered`.
    pub(super) async fn on_offer(&mut self, offer: Offer) {
        let id = offer.assignment;
        if self.jobs.contains(id) || self.catalog.contains(id) {
            return; // Redelivered after a reconnect; nothing new.
        }
        let meta = match self.verifier.verify(self.connection(), offer.release.clone(), now()).await {
            Ok(v) => v.metadata().clone(),
            Err(e) => {
                tracing::error!(assignment = %id, error = %e, "offered release failed verification; not offered");
                let state = InstallState::Failed { class: FailureClass::Verification, message: e.to_string() };
                self.report_offer(id, state).await;
                return;
            }
        };
        match self.catalog.insert(offer, meta.clone(), now()) {
            Ok(_) => {
                tracing::info!(assignment = %id, release = %meta.label(), "release offered to this host's users");
                self.report_offer(id, InstallState::Offered).await;
                self.tell_users(id);
                self.prefetch().await;
            }
            Err(e) => {
                tracing::error!(assignment = %id, error = %e, "cannot store the offer; it comes again on reconnect")
            }
        }
    }

    /// `Cancel` for an offer nobody took (its rollout was aborted): drop it
    /// and report it ended without an install.
    pub(super) async fn withdraw(&mut self, id: AssignmentId) {
        match self.catalog.take(id) {
            Ok(_) => {
                tracing::info!(assignment = %id, "offer withdrawn by the controller");
                let message = "withdrawn: the rollout was aborted before this host installed it".to_string();
                self.report_offer(id, InstallState::Failed { class: FailureClass::Preflight, message }).await;
            }
            Err(e) => tracing::error!(assignment = %id, error = %e, "cannot drop the withdrawn offer"),
        }
    }

    /// Starts downloading the content of the next offer with a deadline
    /// whose content is not complete on disk, if the download slot is free
    /// and the controller reachable. Each offer is tried once per session.
    pub(super) async fn prefetch(&mut self) {
        if self.fetch.is_some() || self.link.is_none() || self.link_error.is_some() {
            return;
        }
        let now = now();
        let next = self.catalog.offers().filter(|e| catalog::install_time(e, now).is_some()).find_map(|e| {
            if self.prefetched.contains(&e.offer.assignment) {
                return None;
            }
            let meta = &e.release;
            let have = std::fs::metadata(self.state.download(&meta.sha256)).map_or(0, |m| m.len());
            (have != meta.size).then_some((e.offer.assignment, meta.clone()))
        });
        let Some((id, meta)) = next else { return };
        self.prefetched.insert(id);
        tracing::info!(assignment = %id, release = %meta.label(), "downloading ahead of the offer's deadline");
        self.start_fetch(id, PREFETCH_ATTEMPT, meta.sha256, meta.size).await;
    }

    async fn report_offer(&mut self, assignment: AssignmentId, state: InstallState) {
        let draft = crate::job::ReportDraft { assignment, state, at: now(), active_before: None, active_after: None };
        let (report, saved) = self.outbox.push(draft);
        if let Err(e) = saved {
            tracing::error!(error = %e, seq = report.seq, "cannot store the report; sending it anyway");
        }
        self.send(&AgentMessage::Report(report)).await;
    }

    /// When the next deadline install is due, if any.
    pub(super) fn catalog_timeout(&self) -> Option<Timestamp> {
        let now = now();
        // An offer whose job exists is taken (it leaves the catalog unless
        // writing the catalog failed); never wake for it again.
        let open = self.catalog.offers().filter(|e| !self.jobs.contains(e.offer.assignment));
        open.filter_map(|e| catalog::install_time(e, now)).min()
    }

    /// Installs every offer whose deadline install is due.
    pub(super) async fn escalate_due(&mut self) {
        let now = now();
        let due: Vec<AssignmentId> = self
            .catalog
            .offers()
            .filter(|e| !self.jobs.contains(e.offer.assignment))
            .filter(|e| catalog::install_time(e, now).is_some_and(|t| t <= now))
            .map(|e| e.offer.assignment)
            .collect();
        for id in due {
            tracing::info!(assignment = %id, "the offer's deadline passed: installing it as required");
            if let Err(e) = self.take_offer(id, true).await {
                tracing::error!(assignment = %id, error = %e, "cannot install the offer at its deadline");
            }
        }
    }

    /// Turns offer `id` into a job (journaled), then drops it from the
    /// catalog. A `required` install (its deadline or notice passed) waits
    /// for the agent's and the offer's maintenance windows; a user's does not.
    async fn take_offer(&mut self, id: AssignmentId, required: bool) -> crate::error::Result<()> {
        let Some(offer) = self.catalog.offers().find(|e| e.offer.assignment == id).map(|e| e.offer.clone()) else {
            return Ok(());
        };
        let origin = if required { Origin::Deadline { rollout_window: offer.window.clone() } } else { Origin::User };
        let assignment = Assignment { id, release: offer.release, issued_at: offer.issued_at };
        self.jobs.assign(now(), assignment, origin);
        self.drive().await;
        self.catalog.take(id)?;
        Ok(())
    }

    /// Serves one allowed request from the local socket.
    pub(super) async fn on_local(&mut self, call: LocalCall) {
        let LocalCall { caller, request, reply } = call;
        let answer = match request {
            Request::List => Answer::List(self.listing().await),
            Request::Status => Answer::Status(self.status()),
            Request::Job { assignment } => match self.jobs.get(AssignmentId(assignment)) {
                Some(job) => Answer::Job(self.job_view(job)),
                None => error(ErrorCode::NotFound, format!("no install {assignment} on this host")),
            },
            Request::Install { name } => self.install(&caller, &name).await,
            Request::Remove { name } => self.remove(&caller, &name).await,
            Request::Defer { name } => self.defer(&caller, &name).await,
        };
        let _ = reply.send(answer);
    }

    async fn listing(&self) -> Listing {
        let now = now();
        let mut available: Vec<Available> = self
            .catalog
            .offers()
            .map(|e| {
                let meta = &e.release;
                Available {
                    name: meta.name.clone(),
                    version: meta.version.clone(),
                    notes: e.offer.notes.clone(),
                    deadline: e.offer.deadline.map(|d| d.to_string()),
                    install_due: catalog::install_time(e, now).map(|t| t.to_string()),
                }
            })
            .collect();
        available.sort_by(|a, b| (&a.name, &a.version).cmp(&(&b.name, &b.version)));
        let installed = self
            .inventory()
            .await
            .packages
            .into_iter()
            .map(|p| Installed { pulled: self.catalog.is_pulled(&p.name), name: p.name, version: p.version })
            .collect();
        Listing { available, installed }
    }

    fn status(&self) -> Status {
        let now = now();
        let jobs = self
            .jobs
            .iter()
            .filter(|j| !j.is_terminal() || now.saturating_since(j.record().since) < RECENT)
            .map(|j| self.job_view(j))
            .collect();
        let mut notices = Vec::new();
        for entry in self.catalog.offers() {
            if let Some(notice) = self.notice(entry, now) {
                notices.push(notice);
            }
        }
        Status { connected: self.link.is_some(), jobs, notices }
    }

    fn job_view(&self, job: &Job) -> JobView {
        let record = job.record();
        let (name, version) = match &record.package {
            Some(p) => (p.name.clone(), p.version.clone()),
            None => (record.release.name.clone(), record.release.version.clone()),
        };
        let message = match &record.state {
            JobState::Failed { message, .. } | JobState::RolledBack { message, .. } => Some(message.clone()),
            JobState::RollbackFailed { message } => Some(message.clone()),
            JobState::WaitingForWindow { until } => {
                Some(format!("downloaded and verified; installs when the maintenance window opens, at {until}"))
            }
            JobState::Downloading { .. } => job.interruption().map(|i| {
                format!("the last download attempt stopped ({}); the next one is due at {}", i.reason, i.retry_at)
            }),
            _ => None,
        };
        JobView {
            assignment: record.id.0,
            name,
            version,
            state: state_name(&record.state),
            finished: job.is_terminal(),
            succeeded: record.state == JobState::Succeeded,
            message,
        }
    }

    /// The running job of package `name`, if any.
    fn running_job(&self, name: &str) -> Option<&Job> {
        self.jobs.iter().find(|j| {
            !j.is_terminal()
                && match &j.record().package {
                    Some(p) => p.name == name,
                    None => j.record().release.name == name,
                }
        })
    }

    async fn install(&mut self, caller: &Caller, name: &str) -> Answer {
        let Some((id, meta)) = self.entry_named(name) else {
            if let Some(job) = self.running_job(name) {
                return Answer::Started(self.job_view(job));
            }
            return error(
                ErrorCode::NotFound,
                format!("no release of {name:?} is offered to this host; `flotte list` shows what is"),
            );
        };
        if let Some(job) = self.running_job(name) {
            return error(
                ErrorCode::Busy,
                format!(
                    "{name} {} is being installed (install {}); try again when it is done",
                    job_view_version(job),
                    job.id()
                ),
            );
        }
        tracing::info!(caller = %caller.describe(), assignment = %id, release = %meta.label(), "user install");
        // Only software nobody requires is the user's to remove later.
        let optional =
            self.catalog.offers().any(|e| e.offer.assignment == id && catalog::install_time(e, now()).is_none());
        if optional {
            let by = caller.describe();
            let pulled = Pulled { assignment: id, version: meta.version.clone(), installer: meta.installer, by };
            if let Err(e) = self.catalog.record_pulled(name, pulled) {
                return error(ErrorCode::Internal, format!("cannot record the install: {e}"));
            }
        }
        if let Err(e) = self.take_offer(id, false).await {
            return error(ErrorCode::Internal, format!("cannot start the install: {e}"));
        }
        match self.jobs.get(id) {
            Some(job) => Answer::Started(self.job_view(job)),
            None => error(ErrorCode::Internal, "the install vanished"),
        }
    }

    /// What a user should know about an offer that will be installed
    /// without being asked: what changes, when, and how to defer.
    fn notice(&self, entry: &Entry, now: Timestamp) -> Option<String> {
        let at = catalog::install_time(entry, now)?;
        let meta = &entry.release;
        let left = entry.offer.deferrals.saturating_sub(entry.deferrals_used);
        let mut text = format!("{} {} will be installed at {at}", meta.name, meta.version);
        if let Some(deadline) = entry.offer.deadline {
            text.push_str(&format!(" (required from {deadline})"));
        }
        text.push_str(&format!("; install it now with `flotte install {}`", meta.name));
        if left > 0 {
            text.push_str(&format!(" or postpone it with `flotte defer {}` ({left} left)", meta.name));
        }
        Some(text)
    }

    /// Tells the users with a desktop session about offer `id`'s required
    /// install, if it has one (best effort; `flotte status` always says it).
    fn tell_users(&self, id: AssignmentId) {
        let Some(entry) = self.catalog.offers().find(|e| e.offer.assignment == id) else { return };
        if let Some(text) = self.notice(entry, now()) {
            notify::desktop("Software update", &text);
        }
    }

    /// The offer a user means by `name`: the newest verified one of that
    /// package not taken yet, with its metadata.
    fn entry_named(&self, name: &str) -> Option<(AssignmentId, ReleaseMetadata)> {
        self.catalog
            .offers()
            .filter(|e| !self.jobs.contains(e.offer.assignment) && e.release.name == name)
            .map(|e| (e.offer.assignment, e.release.clone()))
            .max_by_key(|(id, _)| *id)
    }

    async fn defer(&mut self, caller: &Caller, name: &str) -> Answer {
        let Some((id, _)) = self.entry_named(name) else {
            return error(ErrorCode::NotFound, format!("no install of {name:?} is waiting on this host"));
        };
        match self.catalog.defer(id, now()) {
            Ok(Ok((until, remaining))) => {
                tracing::info!(caller = %caller.describe(), assignment = %id, %until, remaining, "install deferred");
                self.report_offer(id, InstallState::Deferred { until, remaining }).await;
                Answer::Deferred { name: name.to_string(), until: until.to_string(), remaining }
            }
            Ok(Err(refusal)) => error(ErrorCode::Busy, format!("cannot defer {name}: {refusal}")),
            Err(e) => error(ErrorCode::Internal, format!("cannot record the deferral: {e}")),
        }
    }

    async fn remove(&mut self, caller: &Caller, name: &str) -> Answer {
        let Some(pulled) = self.catalog.pulled(name).cloned() else {
            return error(
                ErrorCode::Forbidden,
                format!(
                    "{name} was not installed with `flotte install`; software your administrator requires can only \
                     be removed by them"
                ),
            );
        };
        if self.running_job(name).is_some() {
            return error(ErrorCode::Busy, format!("{name} is being installed; try again when it is done"));
        }
        tracing::info!(caller = %caller.describe(), package = name, "user removal");
        let removal = Removal { name: name.to_string(), installer: pulled.installer };
        if let Err(e) = self.catalog.begin_removal(removal.clone()) {
            return error(ErrorCode::Internal, format!("cannot record the removal: {e}"));
        }
        let backends = std::sync::Arc::clone(&self.backends);
        let result = tokio::task::spawn_blocking(move || backends.uninstall(removal.installer, &removal.name))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r);
        let answer = match result {
            Ok(gone) => match self.catalog.end_removal() {
                Ok(()) => Answer::Removed { name: name.to_string(), version: gone },
                Err(e) => error(ErrorCode::Internal, format!("{name} was removed, but recording it failed: {e}")),
            },
            Err(e) => {
                let _ = self.catalog.abandon_removal();
                error(ErrorCode::Internal, format!("cannot remove {name}: {e}"))
            }
        };
        self.send_inventory_if_changed().await;
        answer
    }
}

fn job_view_version(job: &Job) -> String {
    job.record().package.as_ref().map_or_else(String::new, |p| p.version.clone())
}

/// `received`, `downloading`, `health_checking`, … (the journal's names).
fn state_name(state: &JobState) -> String {
    match serde_json::to_value(state) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(serde_json::Value::Object(map)) => map.keys().next().cloned().unwrap_or_default(),
        _ => String::new(),
    }
}
