//! Enrolling simulated agents through the real enrollment path: a one-time
//! token from the admin API per agent, then `flotte_agent::enroll::enroll`
//! (a fresh P-256 key, `POST /v1/enroll` over HTTPS trusting only the
//! controller CA, the CA-signed certificate written to the agent's state
//! directory), then `flotte_agent::quic::client_config` reads that state
//! directory exactly as `flotte-agent run` does. Enrollment pins the TUF
//! root the admin gave (`root.json`); each agent verifies releases through
//! its own TUF store, like `flotte-agent run`.
//!
//! Guarantee: every [`Identity`] returned belongs to an agent the
//! controller enrolled; any failure fails the whole enrollment.

use anyhow::{Context, Result, anyhow};
use flotte_agent::enroll::{EnrollOptions, enroll};
use flotte_agent::state_dir::StateDir;
use flotte_agent::tuf_store::TufStore;
use flotte_agent::verify::Verifier;
use flotte_controller::client::AdminClient;
use flotte_protocol::AgentId;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// One simulated agent's identity, held in memory.
#[derive(Clone)]
pub struct Identity {
    pub name: String,
    pub agent_id: AgentId,
    /// The agent's QUIC client configuration (CA root, its certificate and key).
    pub client: quinn::ClientConfig,
    /// Its TUF client over the metadata it trusts (pinned root first).
    pub verifier: Verifier,
    /// The controller host it enrolled with (the TLS server name).
    pub server_name: String,
    /// The controller's QUIC port, from the enrollment answer.
    pub quic_port: u16,
}

/// The controller agents enroll with, and the trust an admin hands them.
#[derive(Debug, Clone, Copy)]
pub struct EnrollWith<'a> {
    /// The controller's HTTPS API.
    pub api: SocketAddr,
    /// PEM file of the controller CA.
    pub ca: &'a Path,
    /// The TUF `root.json` to pin.
    pub trust_root: &'a Path,
}

/// Enrolls `count` agents named `{prefix}-{i:05}` as `with` says, keeping
/// their state directories under `root`. Runs `parallel` enrollments at once.
pub fn enroll_fleet(
    client: &AdminClient,
    with: EnrollWith<'_>,
    root: &Path,
    prefix: &str,
    count: usize,
    parallel: usize,
) -> Result<Vec<Identity>> {
    let next = AtomicUsize::new(0);
    let done: Mutex<Vec<Option<Identity>>> = Mutex::new(vec![None; count]);
    let failure: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..parallel.clamp(1, count.max(1)) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count || failure.lock().unwrap().is_some() {
                        return;
                    }
                    let name = format!("{prefix}-{i:05}");
                    match enroll_one(client, with, &root.join(&name), &name) {
                        Ok(identity) => done.lock().unwrap()[i] = Some(identity),
                        Err(e) => {
                            failure.lock().unwrap().get_or_insert(e.context(format!("enrolling {name}")));
                            return;
                        }
                    }
                }
            });
        }
    });
    if let Some(e) = failure.into_inner().unwrap() {
        return Err(e);
    }
    done.into_inner().unwrap().into_iter().map(|i| i.ok_or_else(|| anyhow!("an agent was not enrolled"))).collect()
}

fn enroll_one(client: &AdminClient, with: EnrollWith<'_>, dir: &Path, name: &str) -> Result<Identity> {
    let token = client.create_enrollment_token(Duration::from_secs(3600))?.token;
    let state = StateDir::new(dir);
    let options = EnrollOptions {
        controller: with.api.to_string(),
        token,
        ca: with.ca.to_path_buf(),
        state: state.clone(),
        hostname: Some(name.to_string()),
        trust_root: with.trust_root.to_path_buf(),
    };
    let enrollment = enroll(&options).context("flotte-agent enroll")?;
    let client = flotte_agent::quic::client_config(&state)?;
    Ok(Identity {
        name: name.to_string(),
        agent_id: enrollment.agent_id.clone(),
        client,
        verifier: Verifier::new(TufStore::open(&state.tuf_dir())?),
        server_name: enrollment.controller.clone(),
        quic_port: enrollment.quic_port,
    })
}
