//! The integration-test harness: a small DSL over real processes, so tests
//! read like the behaviour they specify:
//!
//! ```ignore
//! let lab = Lab::start()?;                    // controller on loopback, TUF root uploaded
//! let key = lab.trusted_key()?;               // the targets key (offline, in the lab dir)
//! let mut agents = lab.agents(3)?;            // enrolled, running, online
//! let d = lab.publish_and_deploy(&key, "hello", "1.0.0")?;
//! lab.wait_done(d)?;
//! ```
//!
//! Processes come from `flotte_controller::lab::harness`, the same code the
//! `flottectl lab` command runs. [`packages`] builds real packages (hostile
//! archives, script packages, `.deb`s), [`tmpfs`] a disk that fills up, and
//! [`relay`] a UDP relay that slows the link (`Lab::agent_through`).
//!
//! The agent binary the tests run is built with the `failpoints` feature
//! (this crate depends on `flotte-agent` with it, and `cargo build
//! --workspace` unifies features), so `FLOTTE_FAILPOINT=after:<checkpoint>`
//! in an agent's [`AgentProcess::env`] makes it abort at that point.

pub mod bench;
pub mod fake_clock;
pub mod footprint;
pub mod packages;
pub mod relay;
pub mod sim;
pub mod tmpfs;

use anyhow::{Context, Result};
use flotte_agent::enrollment::Enrollment;
use flotte_agent::state_dir::StateDir;
use flotte_controller::client::AdminClient;
use flotte_controller::ctl::{keys, package, sample, trust};
use flotte_controller::lab::harness::{self, Binaries, ControllerProcess};
use flotte_protocol::api::{AssignmentView, DeployRequest, ReportView, RolloutRequest, Target};
use flotte_protocol::messages::InstallState;
use flotte_protocol::{AgentId, HealthCheck, HealthSpec, SecretKey};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use flotte_controller::ctl::package::ReleaseSpec;
pub use harness::{AgentProcess, wait_for};

/// Generous deadline for anything that should take well under a second.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// A controller in a temporary directory, plus what tests need around it.
pub struct Lab {
    pub bins: Binaries,
    pub controller: ControllerProcess,
    pub client: AdminClient,
    /// Kept alive for the test's duration; deleted afterwards.
    pub dir: tempfile::TempDir,
    /// What `flottectl trust init` created (1 root key, threshold 1).
    pub trust: trust::Initialized,
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
        let trust = trust::init(&client, &dir.path().join("offline-keys"), 1, 1)?;
        Ok(Lab { bins, controller, client, dir, trust, next_agent: 0 })
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The targets key the root trusts (kept outside the controller's data
    /// directory, as an admin keeps it).
    pub fn trusted_key(&self) -> Result<SecretKey> {
        keys::load_secret(&self.trust.targets_key)
    }

    /// The root key (threshold 1).
    pub fn root_key(&self) -> Result<SecretKey> {
        keys::load_secret(&self.trust.root_keys[0])
    }

    /// A new key that no TUF role trusts.
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

    /// Enrolls one agent, writes its config file with what `config` returns
    /// for it (it may name the agent's own directories), starts it and
    /// waits until it is online.
    pub fn agent_with(&mut self, config: impl FnOnce(&AgentProcess) -> String) -> Result<AgentProcess> {
        let mut agent = self.enroll_configured(config)?;
        agent.start()?;
        harness::wait_online(&self.client, self.next_agent, DEADLINE)?;
        Ok(agent)
    }

    /// Like [`Lab::agent_with`], but the agent reaches the controller's QUIC
    /// port only through `relay` (its enrollment record names the relay's
    /// port, as if the controller were behind it; enrollment itself is
    /// direct).
    pub fn agent_through(
        &mut self,
        relay: &relay::Relay,
        config: impl FnOnce(&AgentProcess) -> String,
    ) -> Result<AgentProcess> {
        let mut agent = self.enroll_configured(config)?;
        let state = StateDir::new(&agent.state_dir);
        let mut enrollment = Enrollment::load(&state)?;
        anyhow::ensure!(relay.addr().ip().is_loopback(), "the relay must listen on loopback");
        enrollment.quic_port = relay.addr().port();
        enrollment.save(&state)?;
        agent.start()?;
        harness::wait_online(&self.client, self.next_agent, DEADLINE)?;
        Ok(agent)
    }

    /// Enrolls the next agent and writes its config file; does not start it.
    fn enroll_configured(&mut self, config: impl FnOnce(&AgentProcess) -> String) -> Result<AgentProcess> {
        self.next_agent += 1;
        let name = format!("agent-{:02}", self.next_agent);
        let token = self.client.create_enrollment_token(Duration::from_secs(600))?.token;
        let mut agent = AgentProcess::new(&self.bins, self.dir.path(), &name);
        let output = agent.enroll(&self.controller, &token)?;
        anyhow::ensure!(output.status.success(), "enroll failed: {}", String::from_utf8_lossy(&output.stderr));
        let text = config(&agent);
        agent.configure(&text)?;
        Ok(agent)
    }

    /// Signs and publishes the file at `path` as `name@version` with `spec`.
    pub fn publish_file(
        &self,
        key: &SecretKey,
        path: &Path,
        name: &str,
        version: &str,
        spec: &ReleaseSpec,
    ) -> Result<()> {
        package::publish_with(&self.client, key, path, name, version, spec)?;
        Ok(())
    }

    /// Builds the sample package and publishes it with `spec`.
    pub fn publish_spec(&self, key: &SecretKey, name: &str, version: &str, spec: &ReleaseSpec) -> Result<PathBuf> {
        let path = sample::build(self.dir.path(), name, version, 0)?;
        self.publish_file(key, &path, name, version, spec)?;
        Ok(path)
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

    /// Runs the real `flottectl` binary against this lab's controller.
    pub fn flottectl(&self, args: &[&str]) -> Result<std::process::Output> {
        let exe = self.bins.agent.with_file_name("flottectl");
        std::process::Command::new(&exe)
            .arg("--config")
            .arg(&self.controller.admin_config)
            .arg("--url")
            .arg(format!("https://{}", self.controller.api_addr))
            .args(args)
            .output()
            .with_context(|| format!("cannot run {}", exe.display()))
    }

    /// Signs with `key` (targets) that `name@version` may replace active
    /// versions up to `up_to`, as `flottectl package allow-rollback` does.
    pub fn allow_rollback(&self, key: &SecretKey, name: &str, version: &str, up_to: &str) -> Result<()> {
        trust::authorise_rollback(&self.client, key, "targets", name, version, up_to)?;
        Ok(())
    }

    pub fn deploy_all(&self, name: &str, version: &str) -> Result<u64> {
        let request = DeployRequest { name: name.into(), version: version.into(), target: Target::All };
        Ok(self.client.deploy(&request)?.id)
    }

    /// Aborts the rollout behind `deployment` unless it completed: a
    /// big-bang deployment with a failure halts, and a halted rollout of one
    /// version blocks rollouts of the package's other versions.
    pub fn close(&self, deployment: u64) -> Result<()> {
        let phase = self.client.rollout(deployment)?.phase;
        if phase != "completed" && phase != "aborted" {
            self.client.rollout_command(deployment, "abort")?;
        }
        Ok(())
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

    /// The last report the controller stored for `agent`.
    pub fn last_report(&self, agent: &AgentProcess) -> Result<ReportView> {
        self.reports(agent)?.pop().with_context(|| format!("no report from {}", agent.name))
    }

    /// Waits until the controller stored a report from `agent` in state
    /// `state` (by name, e.g. `"health_checking"`) for an assignment of
    /// `deployment`.
    pub fn wait_report(&self, agent: &AgentProcess, deployment: u64, state: &str) -> Result<ReportView> {
        wait_for(&format!("{} to report {state}", agent.name), DEADLINE, || {
            let Some(id) = self.find_assignment(deployment, agent)?.map(|a| a.id) else { return Ok(None) };
            Ok(self.reports(agent)?.into_iter().find(|r| r.assignment == id && r.state.name() == state))
        })
    }

    /// The assignment of `deployment` on `agent`, if the rollout created it yet.
    pub fn find_assignment(&self, deployment: u64, agent: &AgentProcess) -> Result<Option<AssignmentView>> {
        let all = self.client.assignments()?;
        Ok(all.into_iter().find(|a| a.deployment == deployment && a.hostname == agent.name))
    }

    /// The assignment of `deployment` on `agent`.
    pub fn assignment(&self, deployment: u64, agent: &AgentProcess) -> Result<AssignmentView> {
        self.find_assignment(deployment, agent)?
            .with_context(|| format!("no assignment of deployment {deployment} on {}", agent.name))
    }

    /// Waits until the assignment of `deployment` on `agent` exists and is terminal.
    pub fn wait_assignment(&self, deployment: u64, agent: &AgentProcess) -> Result<AssignmentView> {
        wait_for(&format!("{} to finish deployment {deployment}", agent.name), DEADLINE, || {
            let a = self.find_assignment(deployment, agent)?;
            Ok(a.filter(|a| a.state.as_ref().is_some_and(InstallState::is_terminal)))
        })
    }

    /// The controller's SQLite database, for tests that play a compromised
    /// controller.
    pub fn database(&self) -> PathBuf {
        self.controller.data_dir.join("controller.db")
    }
}

/// A push rollout of `hello@version` to every agent in `waves` that
/// tolerates nothing: every agent must succeed, no failure is allowed, no
/// soak, an hour's silence deadline. Tests change what they exercise.
pub fn strict_rollout(version: &str, waves: &str) -> RolloutRequest {
    RolloutRequest {
        waves: waves.into(),
        success_threshold: 100.0,
        max_failures: "0".into(),
        silence_seconds: 3600,
        ..RolloutRequest::new("hello", version, Target::All)
    }
}

/// The failure message of a terminal assignment (failed, rolled back or
/// rollback failed), or a description of why there is none.
pub fn failure_message(a: &AssignmentView) -> String {
    match a.state.as_ref().and_then(InstallState::failure) {
        Some((_, message)) => message.to_string(),
        None => format!("(not failed: {:?})", a.state),
    }
}

/// The sample package's own health check (`bin/hello --check`, which fails
/// where the install root holds the unhealthy marker), on `probation`
/// seconds of probation with a run every second.
pub fn sample_health(probation: u32) -> ReleaseSpec {
    let argv = sample::HEALTH_COMMAND.split(' ').map(str::to_string).collect();
    ReleaseSpec {
        health: Some(HealthSpec {
            check: HealthCheck::Command { argv, expect_exit: 0 },
            probation_secs: probation,
            interval_secs: 1,
            timeout_secs: 10,
        }),
        ..ReleaseSpec::default()
    }
}

/// Makes the sample package's health check fail on `agent`.
pub fn make_unhealthy(agent: &AgentProcess) -> Result<()> {
    Ok(std::fs::write(agent.root.join(sample::UNHEALTHY_MARKER), "broken on purpose\n")?)
}

/// What `<root>/packages/<name>/current/VERSION` says, trimmed: proves the
/// active tree is complete, not just that the link points somewhere.
pub fn active_content(agent: &AgentProcess, name: &str) -> Option<String> {
    let path = agent.root.join("packages").join(name).join("current/VERSION");
    std::fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

/// Names in `<root>/packages/<name>` that are neither a version directory
/// nor `current`: staging or temporary leftovers.
pub fn leftovers(agent: &AgentProcess, name: &str) -> Vec<String> {
    let dir = agent.root.join("packages").join(name);
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    entries.filter_map(|e| e.ok()?.file_name().into_string().ok()).filter(|n| n.starts_with('.')).collect()
}
