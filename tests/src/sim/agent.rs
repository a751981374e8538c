//! One simulated agent: connect, say `Hello`, act on assignments, report,
//! reconnect with backoff. See the module documentation of `sim`.

use super::enroll::Identity;
use super::{Installer, Observer, Options};
use flotte_agent::AgentError;
use flotte_agent::backoff::Backoff;
use flotte_agent::download::{self, Outcome};
use flotte_agent::job::{MAX_TRANSIENT_RETRIES, STEP_RETRY};
use flotte_agent::session::{MIN_PROTOCOL_VERSION, Session};
use flotte_agent::slow_retrieval::MinRate;
use flotte_installers::{ArchiveInstaller, Installer as _, Package};
use flotte_protocol::messages::{
    AgentMessage, Assignment, ControllerMessage, FailureClass, Hello, InstallState, Inventory, Report,
};
use flotte_protocol::{AssignmentId, PROTOCOL_VERSION, ReleaseMetadata, Timestamp, VerifyError};
use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::watch;

pub(super) struct Context {
    pub index: usize,
    pub identity: Identity,
    pub options: Arc<Options>,
    pub endpoint: quinn::Endpoint,
    pub observer: Arc<Observer>,
    pub stop: watch::Receiver<bool>,
}

/// What the agent remembers across sessions (in memory only).
#[derive(Default)]
struct Memory {
    seq: u64,
    unacked: BTreeMap<u64, Report>,
    handled: HashSet<AssignmentId>,
    /// Active version per package.
    active: BTreeMap<String, String>,
}

pub(super) async fn run(mut ctx: Context) {
    let seed = Backoff::seed_from_environment() ^ (ctx.index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut backoff = Backoff::new(seed);
    let spread = ctx.options.start_spread.as_millis() as u64;
    if spread > 0 && !pause(&mut ctx.stop, Duration::from_millis(seed % spread)).await {
        return;
    }
    let mut memory = Memory::default();
    loop {
        match connect(&ctx).await {
            Ok(mut session) => {
                backoff.reset();
                ctx.observer.on_connected(ctx.index);
                let ended = online(&mut ctx, &mut session, &mut memory).await;
                ctx.observer.on_disconnected(ctx.index, session.connection());
                match ended {
                    None => return session.abandon("simulator stopping"),
                    Some(e) => {
                        tracing::debug!(agent = %ctx.identity.name, error = %e, "session ended");
                        session.abandon("session ended");
                    }
                }
            }
            Err(e) => {
                ctx.observer.connect_failures.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(agent = %ctx.identity.name, error = %e, "not connected");
            }
        }
        if !pause(&mut ctx.stop, backoff.next_delay()).await {
            return;
        }
    }
}

/// Sleeps for `delay`; false if the fleet is stopping.
async fn pause(stop: &mut watch::Receiver<bool>, delay: Duration) -> bool {
    let stopped = tokio::select! {
        () = tokio::time::sleep(delay) => false,
        // An error means the fleet is gone: stop too.
        _ = stop.wait_for(|s| *s) => true,
    };
    !stopped && !*stop.borrow()
}

async fn connect(ctx: &Context) -> Result<Session, AgentError> {
    let id = &ctx.identity;
    let connection =
        flotte_agent::quic::connect_on(&ctx.endpoint, &id.client, ctx.options.controller, &id.server_name).await?;
    let hello = Hello {
        protocol_version: PROTOCOL_VERSION,
        min_protocol_version: MIN_PROTOCOL_VERSION,
        agent_version: format!("{}-sim", env!("CARGO_PKG_VERSION")),
        inventory: Inventory {
            hostname: id.name.clone(),
            os: "linux".into(),
            os_version: "flotte-sim".into(),
            kernel: "sim".into(),
            arch: std::env::consts::ARCH.into(),
            ..Inventory::default()
        },
    };
    Session::handshake(ctx.endpoint.clone(), connection, hello).await
}

/// Runs one session; `None` when the fleet stops, else why the session ended.
async fn online(ctx: &mut Context, session: &mut Session, memory: &mut Memory) -> Option<AgentError> {
    for report in memory.unacked.values() {
        if let Err(e) = session.send(&AgentMessage::Report(report.clone())).await {
            return Some(e);
        }
    }
    loop {
        let message = tokio::select! {
            m = session.next() => m,
            _ = ctx.stop.wait_for(|s| *s) => return None,
        };
        let result = match message {
            Ok(ControllerMessage::Assign(assignment)) => handle(ctx, session, memory, assignment).await,
            Ok(ControllerMessage::Ack { seq }) => {
                memory.unacked.retain(|s, _| *s > seq);
                Ok(())
            }
            Ok(ControllerMessage::Cancel { .. }) => Ok(()),
            Ok(other) => Err(AgentError::Unexpected { expected: "Assign, Ack or Cancel", got: format!("{other:?}") }),
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            return Some(e);
        }
    }
}

/// Acts on one assignment; an error ends the session (a redelivered
/// assignment whose download was cut off starts again).
async fn handle(
    ctx: &Context,
    session: &mut Session,
    memory: &mut Memory,
    assignment: Assignment,
) -> Result<(), AgentError> {
    if !memory.handled.insert(assignment.id) {
        return Ok(());
    }
    ctx.observer.update(ctx.index, |t| t.assigned = Some((assignment.id, Instant::now())));
    if !ctx.options.act_on_assignments {
        return Ok(());
    }
    let id = assignment.id;
    report(session, memory, id, InstallState::Received, None, None).await?;
    // Like the agent's job: metadata that could not be had is asked for
    // again, with a doubling delay, before it counts as a verdict.
    let mut attempt = 0;
    let verified = loop {
        let connection = Some(session.connection().clone());
        match ctx.identity.verifier.verify(connection, assignment.release.clone(), now()).await {
            Ok(v) => break v,
            Err(VerifyError::Unavailable { .. }) if attempt < MAX_TRANSIENT_RETRIES => {
                tokio::time::sleep(STEP_RETRY * 2u32.pow(attempt)).await;
                attempt += 1;
            }
            Err(e) => {
                let verdict = Err((FailureClass::Verification, e.to_string()));
                return finish(ctx, session, memory, id, "", None, verdict).await;
            }
        }
    };
    let meta = verified.metadata().clone();
    let before = memory.active.get(&meta.name).cloned();
    let downloading = InstallState::Downloading { offset: 0, total: meta.size };
    report(session, memory, id, downloading, before.clone(), before.clone()).await?;
    let outcome = fetch(ctx, session, &meta).await;
    let (sha256, size) = match outcome {
        Outcome::Done { sha256, size } => (sha256, size),
        Outcome::Interrupted(reason) => {
            memory.handled.remove(&id);
            return Err(AgentError::Stream { stream: "content", reason });
        }
        Outcome::Failed { message, .. } => {
            return finish(ctx, session, memory, id, &meta.name, before, Err((FailureClass::Download, message))).await;
        }
    };
    report(session, memory, id, InstallState::Verifying, before.clone(), before.clone()).await?;
    if let Some(mismatch) = flotte_agent::job::content_mismatch(&meta, sha256, size) {
        return finish(ctx, session, memory, id, &meta.name, before, Err((FailureClass::Verification, mismatch))).await;
    }
    ctx.observer.bytes.fetch_add(size, Ordering::Relaxed);
    report(session, memory, id, InstallState::Installing, before.clone(), before.clone()).await?;
    let installed = install(ctx, &meta).await;
    finish(ctx, session, memory, id, &meta.name, before, installed.map_err(|e| (FailureClass::Install, e))).await
}

/// Fetches the release's content into the installer's sink.
async fn fetch(ctx: &Context, session: &Session, meta: &ReleaseMetadata) -> Outcome {
    let connection = session.connection();
    match &ctx.options.installer {
        Installer::Null => {
            let sink = &mut std::io::sink();
            download::fetch_into(connection, "/dev/null".as_ref(), meta.sha256, meta.size, MinRate::DEFAULT, sink).await
        }
        Installer::Archive { root } => {
            let path = download_path(root, &ctx.identity.name);
            let file =
                std::fs::create_dir_all(root.join(&ctx.identity.name)).and_then(|()| std::fs::File::create(&path));
            match file {
                Ok(mut file) => {
                    download::fetch_into(connection, &path, meta.sha256, meta.size, MinRate::DEFAULT, &mut file).await
                }
                Err(e) => Outcome::Failed { message: format!("{}: {e}", path.display()), transient: true },
            }
        }
    }
}

fn download_path(root: &std::path::Path, agent: &str) -> PathBuf {
    root.join(agent).join("download.part")
}

/// Installs verified content; the version that is now active.
async fn install(ctx: &Context, meta: &ReleaseMetadata) -> Result<String, String> {
    let Installer::Archive { root } = &ctx.options.installer else { return Ok(meta.version.clone()) };
    let (root, agent) = (root.clone(), ctx.identity.name.clone());
    let (name, version) = (meta.name.clone(), meta.version.clone());
    let work = move || {
        let artifact = download_path(&root, &agent);
        let installer = ArchiveInstaller::new(root.join(&agent));
        let package = Package { name: &name, version: &version, artifact: &artifact };
        let result = installer.stage(&package).and_then(|staged| installer.activate(staged));
        let _ = std::fs::remove_file(&artifact);
        result.map(|_| version.clone()).map_err(|e| e.to_string())
    };
    tokio::task::spawn_blocking(work).await.unwrap_or_else(|e| Err(format!("installer panicked: {e}")))
}

/// Sends the terminal report and records the outcome.
async fn finish(
    ctx: &Context,
    session: &mut Session,
    memory: &mut Memory,
    id: AssignmentId,
    package: &str,
    before: Option<String>,
    result: Result<String, (FailureClass, String)>,
) -> Result<(), AgentError> {
    let ok = result.is_ok();
    let (state, after) = match result {
        Ok(version) => (InstallState::Succeeded, Some(version)),
        Err((class, message)) => (InstallState::Failed { class, message }, before.clone()),
    };
    if let (true, Some(version)) = (ok, &after) {
        memory.active.insert(package.to_string(), version.clone());
    }
    ctx.observer.update(ctx.index, |t| t.finished = Some((Instant::now(), ok)));
    report(session, memory, id, state, before, after).await
}

async fn report(
    session: &mut Session,
    memory: &mut Memory,
    assignment: AssignmentId,
    state: InstallState,
    active_before: Option<String>,
    active_after: Option<String>,
) -> Result<(), AgentError> {
    memory.seq += 1;
    let report = Report { seq: memory.seq, assignment, state, at: now(), active_before, active_after };
    memory.unacked.insert(report.seq, report.clone());
    session.send(&AgentMessage::Report(report)).await
}

fn now() -> Timestamp {
    Timestamp::from_system_time(SystemTime::now())
}
