//! Real processes on loopback: a controller and agents started from the
//! built binaries, each with its own directories. The lab and the
//! integration tests drive Flotte through this, so both exercise exactly
//! what an admin would run.
//!
//! Waiting is always for an observable condition (a line on stdout, a state
//! in the API) with a deadline, never a fixed sleep.

use crate::client::AdminClient;
use anyhow::{Context, Result, bail};
use flotte_protocol::api::{AgentView, AssignmentView};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The built `flotte-controller` and `flotte-agent` executables.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub controller: PathBuf,
    pub agent: PathBuf,
}

impl Binaries {
    /// Finds the binaries next to the running executable (`target/<profile>/`),
    /// or one level up (test executables live in `target/<profile>/deps/`).
    pub fn locate() -> Result<Self> {
        let exe = std::env::current_exe().context("cannot find the running executable")?;
        let mut dirs = vec![];
        if let Some(dir) = exe.parent() {
            dirs.push(dir.to_path_buf());
            if let Some(up) = dir.parent() {
                dirs.push(up.to_path_buf());
            }
        }
        for dir in &dirs {
            let (controller, agent) = (dir.join("flotte-controller"), dir.join("flotte-agent"));
            if controller.is_file() && agent.is_file() {
                return Ok(Binaries { controller, agent });
            }
        }
        bail!(
            "flotte-controller and flotte-agent not found in {dirs:?}; build them first with `cargo build --workspace`"
        )
    }
}

/// Sends SIGTERM and waits, or SIGKILL when `hard`.
fn stop(child: &mut Child, hard: bool) -> Option<std::process::ExitStatus> {
    if hard {
        let _ = child.kill();
    } else if let Ok(pid) = i32::try_from(child.id()) {
        // SAFETY: kill(2) on a pid we own; no memory is involved.
        #[allow(unsafe_code)]
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
    }
    child.wait().ok()
}

/// Replaces top-level `key = value` lines of a TOML file with those in
/// `overrides` (appending keys that are not there yet).
fn override_config(path: &Path, overrides: &str) -> Result<()> {
    let key_of = |line: &str| line.split_once('=').map(|(k, _)| k.trim().to_string());
    let new_keys: Vec<String> = overrides.lines().filter_map(key_of).collect();
    let text = std::fs::read_to_string(path)?;
    let mut kept: Vec<&str> = text.lines().filter(|l| key_of(l).is_none_or(|k| !new_keys.contains(&k))).collect();
    // Top-level keys must come before any [table]; ours has none, so append.
    kept.extend(overrides.lines());
    std::fs::write(path, kept.join("\n") + "\n")?;
    Ok(())
}

/// A controller process with its data directory.
pub struct ControllerProcess {
    bins: Binaries,
    pub data_dir: PathBuf,
    pub admin_config: PathBuf,
    pub api_addr: SocketAddr,
    pub quic_addr: SocketAddr,
    /// Extra environment of the next [`ControllerProcess::start`].
    pub env: Vec<(String, String)>,
    child: Option<Child>,
    log: PathBuf,
}

impl ControllerProcess {
    /// `flotte-controller init` in `dir/controller`, then `run` on
    /// ephemeral loopback ports.
    pub fn init_and_start(bins: &Binaries, dir: &Path, extra_config: &str) -> Result<Self> {
        let data_dir = dir.join("controller");
        let admin_config = dir.join("flottectl.toml");
        let status = Command::new(&bins.controller)
            .args(["init", "--listen", "127.0.0.1:0", "--hostname", "localhost", "--hostname", "127.0.0.1"])
            .arg("--data-dir")
            .arg(&data_dir)
            .arg("--admin-config")
            .arg(&admin_config)
            .stdout(Stdio::null())
            .status()
            .context("cannot run flotte-controller init")?;
        if !status.success() {
            bail!("flotte-controller init failed with {status}");
        }
        if !extra_config.is_empty() {
            override_config(&data_dir.join("controller.toml"), extra_config)?;
        }
        let mut c = ControllerProcess {
            bins: bins.clone(),
            log: dir.join("controller.log"),
            data_dir,
            admin_config,
            api_addr: "127.0.0.1:0".parse()?,
            quic_addr: "127.0.0.1:0".parse()?,
            env: Vec::new(),
            child: None,
        };
        c.start()?;
        Ok(c)
    }

    /// Starts (or restarts) the process on the same addresses as before,
    /// and waits for its readiness line.
    pub fn start(&mut self) -> Result<()> {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log)?;
        let mut child = Command::new(&self.bins.controller)
            .arg("run")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--listen")
            .arg(self.api_addr.to_string())
            .arg("--quic-listen")
            .arg(self.quic_addr.to_string())
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .context("cannot start flotte-controller")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let ready: serde_json::Value = serde_json::from_str(line.trim())
            .with_context(|| format!("controller did not report readiness (see {})", self.log.display()))?;
        self.api_addr = ready["api"].as_str().context("ready line without api")?.parse()?;
        self.quic_addr = ready["quic"].as_str().context("ready line without quic")?.parse()?;
        self.child = Some(child);
        Ok(())
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop(&mut child, true);
        }
    }

    /// SIGTERM, as `systemctl stop` sends, and the exit status.
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        self.child.take().and_then(|mut child| stop(&mut child, false))
    }

    /// An admin client with the token `init` wrote.
    pub fn client(&self) -> Result<AdminClient> {
        let profile = crate::ctl::profile::Profile::load(&self.admin_config)?;
        let ca = std::fs::read(&profile.ca)?;
        Ok(AdminClient::new(&format!("https://{}", self.api_addr), Some(profile.token), &ca)?)
    }

    pub fn ca_path(&self) -> PathBuf {
        self.data_dir.join("ca.crt")
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }
}

impl Drop for ControllerProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop(&mut child, false);
        }
    }
}

/// An enrolled agent process.
pub struct AgentProcess {
    bins: Binaries,
    pub name: String,
    pub state_dir: PathBuf,
    pub root: PathBuf,
    /// The local socket `flotte` talks to (`run --socket`).
    pub socket: PathBuf,
    /// Extra environment of the next [`AgentProcess::start`] (crash hooks).
    pub env: Vec<(String, String)>,
    /// `--config` file of the next start, if [`AgentProcess::configure`] wrote one.
    config: Option<PathBuf>,
    child: Option<Child>,
    log: PathBuf,
}

impl AgentProcess {
    /// An agent named `name` living in `dir/name`, not yet enrolled.
    pub fn new(bins: &Binaries, dir: &Path, name: &str) -> Self {
        let agent_dir = dir.join(name);
        AgentProcess {
            bins: bins.clone(),
            name: name.into(),
            state_dir: agent_dir.join("state"),
            root: agent_dir.join("root"),
            socket: agent_dir.join("agent.sock"),
            env: Vec::new(),
            config: None,
            child: None,
            log: agent_dir.join("agent.log"),
        }
    }

    /// Writes `toml` as this agent's config file (`hook_timeout`,
    /// `dpkg_admindir`…), used from the next start on.
    pub fn configure(&mut self, toml: &str) -> Result<()> {
        let path = self.state_dir.parent().unwrap_or(&self.state_dir).join("agent.toml");
        std::fs::write(&path, toml)?;
        self.config = Some(path);
        Ok(())
    }

    /// Enrolls a new agent named `name` with a fresh token, then starts it.
    pub fn enroll_and_start(bins: &Binaries, controller: &ControllerProcess, dir: &Path, name: &str) -> Result<Self> {
        let token = controller.client()?.create_enrollment_token(Duration::from_secs(600))?.token;
        let mut agent = AgentProcess::new(bins, dir, name);
        let output = agent.enroll(controller, &token)?;
        if !output.status.success() {
            bail!("flotte-agent enroll failed: {}", String::from_utf8_lossy(&output.stderr));
        }
        agent.start()?;
        Ok(agent)
    }

    /// The TUF root this agent was given at enrollment.
    pub fn trust_root(&self) -> PathBuf {
        self.state_dir.parent().unwrap_or(&self.state_dir).join("trust-root.json")
    }

    /// Runs `flotte-agent enroll` for this agent and returns its output. The
    /// harness plays the admin who hands the agent the TUF root: it reads the
    /// controller's newest root over the admin API.
    pub fn enroll(&self, controller: &ControllerProcess, token: &str) -> Result<std::process::Output> {
        std::fs::create_dir_all(&self.root)?;
        let root = controller.client()?.tuf_metadata("root.json")?.context("the controller has no TUF root yet")?;
        std::fs::write(self.trust_root(), root)?;
        self.enroll_with_root(controller, token, &self.trust_root())
    }

    /// Runs `flotte-agent enroll` with `trust_root` as the TUF root.
    pub fn enroll_with_root(
        &self,
        controller: &ControllerProcess,
        token: &str,
        trust_root: &Path,
    ) -> Result<std::process::Output> {
        std::fs::create_dir_all(&self.root)?;
        Command::new(&self.bins.agent)
            .arg("enroll")
            .arg("--controller")
            .arg(controller.api_addr.to_string())
            .arg("--token")
            .arg(token)
            .arg("--ca")
            .arg(controller.ca_path())
            .arg("--trust-root")
            .arg(trust_root)
            .arg("--state-dir")
            .arg(&self.state_dir)
            .env("FLOTTE_HOSTNAME", &self.name)
            .output()
            .context("cannot run flotte-agent enroll")
    }

    /// Starts the service process (again), with [`AgentProcess::env`].
    pub fn start(&mut self) -> Result<()> {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log)?;
        let mut command = Command::new(&self.bins.agent);
        command.arg("run").arg("--state-dir").arg(&self.state_dir).arg("--root").arg(&self.root);
        command.arg("--socket").arg(&self.socket);
        if let Some(config) = &self.config {
            command.arg("--config").arg(config);
        }
        let child = command
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
            .env("FLOTTE_HOSTNAME", &self.name)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("cannot start flotte-agent")?;
        self.child = Some(child);
        Ok(())
    }

    /// Waits until the process exits by itself (a crash hook fired) and
    /// returns how it ended.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<std::process::ExitStatus> {
        let name = self.name.clone();
        let child = self.child.as_mut().with_context(|| format!("{name} is not running"))?;
        let status = wait_for(&format!("{name} to exit"), timeout, || Ok(child.try_wait()?))?;
        self.child = None;
        Ok(status)
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// SIGKILL, as a crash or power loss would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop(&mut child, true);
        }
    }

    /// SIGTERM, as a shutdown would; waits for the process to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop(&mut child, false);
        }
    }

    /// The version the `current` symlink points at, read from disk.
    pub fn active_version(&self, package: &str) -> Option<String> {
        let link = self.root.join("packages").join(package).join("current");
        std::fs::read_link(link).ok().map(|t| t.to_string_lossy().into_owned())
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop(&mut child, false);
        }
    }
}

/// Polls `probe` every 50 ms until it returns `Some`, or fails after `timeout`
/// with `what` in the message.
pub fn wait_for<T>(what: &str, timeout: Duration, mut probe: impl FnMut() -> Result<Option<T>>) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe()? {
            return Ok(value);
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until `count` agents are online.
pub fn wait_online(client: &AdminClient, count: usize, timeout: Duration) -> Result<Vec<AgentView>> {
    wait_for(&format!("{count} agents online"), timeout, || {
        let agents = client.agents()?;
        Ok((agents.iter().filter(|a| a.online).count() >= count).then_some(agents))
    })
}

/// Waits until every assignment of `deployment` reached a terminal state.
pub fn wait_deployment_done(client: &AdminClient, deployment: u64, timeout: Duration) -> Result<Vec<AssignmentView>> {
    wait_for(&format!("deployment {deployment} to finish"), timeout, || {
        let mine: Vec<_> = client.assignments()?.into_iter().filter(|a| a.deployment == deployment).collect();
        // A rollout creates its assignments after it is accepted: none yet is not done.
        let done = !mine.is_empty() && mine.iter().all(|a| a.state.as_ref().is_some_and(|s| s.is_terminal()));
        Ok(done.then_some(mine))
    })
}
