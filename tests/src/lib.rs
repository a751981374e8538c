//! The integration-test harness: a small DSL over real processes, so tests
//! read like the behaviour they specify:
//!
//! ```ignore
//! let lab = Lab::start()?;                    // controller on loopback
//! let key = lab.trusted_key()?;               // registered signing key
//! let mut agents = lab.agents(3)?;            // enrolled, running, online
//! let d = lab.publish_and_deploy(&key, "hello", "1.0.0")?;
//! lab.wait_done(d)?;
//! ```
//!
//! Processes come from `flotte_controller::lab::harness`, the same code the
//! `flottectl lab` command runs.

use anyhow::{Context, Result};
use flotte_controller::client::AdminClient;
use flotte_controller::ctl::{keys, package, sample};
use flotte_controller::lab::harness::{self, AgentProcess, Binaries, ControllerProcess};
use flotte_protocol::api::{AssignmentView, DeployRequest, ReportView, Target};
use flotte_protocol::messages::InstallState;
use flotte_protocol::{AgentId, SecretKey};
use std::path::PathBuf;
use std::time::Duration;

pub use harness::wait_for;

/// Generous deadline for anything that should take well under a second.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// A controller in a temporary directory, plus what tests need around it.
pub struct Lab {
    pub bins: Binaries,
    pub controller: ControllerProcess,
    pub client: AdminClient,
    /// Kept alive for the test's duration; deleted afterwards.
    pub dir: tempfile::TempDir,
    next_agent: usize,
}

impl Lab {
    pub fn start() -> Result<Self> {
        Self::start_with_config("")
    }

    /// Starts a controller whose `controller.toml` has `extra` appended.
    pub fn start_with_config(extra: &str) -> Result<Self> {
        let bins = Binaries::locate()?;
        // FLOTTE_KEEP_TEST_DIRS=1 keeps every test's data and logs for a post-mortem.
        let keep = std::env::var_os("FLOTTE_KEEP_TEST_DIRS").is_some();
        let dir = tempfile::Builder::new().prefix("flotte-it-").disable_cleanup(keep).tempdir()?;
        let controller = ControllerProcess::init_and_start(&bins, dir.path(), extra)?;
        let client = controller.client()?;
        Ok(Lab { bins, controller, client, dir, next_agent: 0 })
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A new signing key, registered with the controller.
    pub fn trusted_key(&self) -> Result<SecretKey> {
        let key = self.untrusted_key()?;
        self.client.add_key(&key.public_key())?;
        Ok(key)
    }

    /// A new signing key the controller has never heard of.
    pub fn untrusted_key(&self) -> Result<SecretKey> {
        let path = self.path(&format!("key-{}.key", flotte_controller::secrets::random_hex(4)));
        Ok(keys::generate(&path)?.0)
    }

    /// Enrolls and starts `n` agents and waits until all are online.
    pub fn agents(&mut self, n: usize) -> Result<Vec<AgentProcess>> {
        let mut agents = Vec::new();
        for _ in 0..n {
            self.next_agent += 1;
            let name = format!("agent-{:02}", self.next_agent);
            agents.push(AgentProcess::enroll_and_start(&self.bins, &self.controller, self.dir.path(), &name)?);
        }
        harness::wait_online(&self.client, self.next_agent, DEADLINE)?;
        Ok(agents)
    }

    /// Builds a sample package with `padding` extra bytes and publishes it.
    pub fn publish_padded(&self, key: &SecretKey, name: &str, version: &str, padding: usize) -> Result<PathBuf> {
        let path = sample::build(self.dir.path(), name, version, padding)?;
        package::publish(&self.client, key, &path, name, version)?;
        Ok(path)
    }

    pub fn publish(&self, key: &SecretKey, name: &str, version: &str) -> Result<PathBuf> {
        self.publish_padded(key, name, version, 0)
    }

    pub fn deploy_all(&self, name: &str, version: &str) -> Result<u64> {
        let request = DeployRequest { name: name.into(), version: version.into(), target: Target::All };
        Ok(self.client.deploy(&request)?.id)
    }

    /// Waits until every assignment of `deployment` is terminal.
    pub fn wait_done(&self, deployment: u64) -> Result<Vec<AssignmentView>> {
        harness::wait_deployment_done(&self.client, deployment, DEADLINE)
    }

    /// The agent id the controller knows `agent` by.
    pub fn agent_id(&self, agent: &AgentProcess) -> Result<AgentId> {
        let agents = self.client.agents()?;
        let found = agents.into_iter().find(|a| a.hostname == agent.name);
        Ok(found.with_context(|| format!("{} is not enrolled", agent.name))?.id)
    }

    /// Every report the controller stored for `agent`, in order.
    pub fn reports(&self, agent: &AgentProcess) -> Result<Vec<ReportView>> {
        Ok(self.client.reports(&self.agent_id(agent)?)?)
    }

    /// The controller's SQLite database, for tests that play a compromised
    /// controller.
    pub fn database(&self) -> PathBuf {
        self.controller.data_dir.join("controller.db")
    }
}

/// The failure message of a terminal assignment, or a description of why
/// there is none.
pub fn failure_message(a: &AssignmentView) -> String {
    match &a.state {
        Some(InstallState::Failed { message, .. }) => message.clone(),
        other => format!("(not failed: {other:?})"),
    }
}
