//! The setup the fleet scenarios share: a real controller process in a
//! temporary directory on disk, TUF trust (`trust init`), packages, and a
//! simulated fleet enrolled with it whose state lives on a tmpfs.

use crate::footprint;
use crate::sim::{self, Fleet, Identity, Installer};
use anyhow::{Context, Result};
use flotte_controller::client::AdminClient;
use flotte_controller::ctl::{keys, package, sample, trust};
use flotte_controller::lab::harness::{Binaries, ControllerProcess};
use flotte_protocol::SecretKey;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A controller and what the scenarios need around it.
pub struct Site {
    pub controller: ControllerProcess,
    pub client: AdminClient,
    /// The TUF targets key releases are signed with.
    pub key: SecretKey,
    /// What `flottectl trust init` made (root.json for enrollment).
    pub trust: trust::Initialized,
    /// Controller data, packages and logs (on disk, like a real controller).
    pub dir: tempfile::TempDir,
    /// The simulated agents' state and install roots (tmpfs when there is one).
    pub sim_dir: tempfile::TempDir,
}

impl Site {
    /// `flotte-controller init` and `run` from `bins`, with `extra_config`
    /// appended to its `controller.toml`, and TUF trust with one root key.
    pub fn start(bins: &Binaries, extra_config: &str) -> Result<Site> {
        let dir = tempfile::Builder::new().prefix("flotte-bench-").tempdir()?;
        let shm = Path::new("/dev/shm");
        let sim_base = if shm.is_dir() { shm.to_path_buf() } else { std::env::temp_dir() };
        let sim_dir = tempfile::Builder::new().prefix("flotte-sim-").tempdir_in(sim_base)?;
        let controller = ControllerProcess::init_and_start(bins, dir.path(), extra_config)?;
        let client = controller.client()?;
        let trust = trust::init(&client, &dir.path().join("offline-keys"), 1, 1)?;
        let key = keys::load_secret(&trust.targets_key)?;
        Ok(Site { controller, client, key, trust, dir, sim_dir })
    }

    /// The controller process id (found by its data directory).
    pub fn controller_pid(&self) -> Result<u32> {
        footprint::find_pid(&self.controller.data_dir)
    }

    /// Builds the sample package padded to about `bytes` and publishes it
    /// as `name@version`; returns its path.
    pub fn publish(&self, name: &str, version: &str, bytes: u64) -> Result<PathBuf> {
        let padding = usize::try_from(bytes.saturating_sub(1024)).context("package too large")?;
        let path = sample::build(self.dir.path(), name, version, padding)?;
        package::publish(&self.client, &self.key, &path, name, version)?;
        Ok(path)
    }

    /// Enrolls `count` simulated agents through the real enrollment path.
    pub fn enroll(&self, count: usize) -> Result<Vec<Identity>> {
        let parallel = 8;
        let ca = self.controller.ca_path();
        let with = sim::EnrollWith { api: self.controller.api_addr, ca: &ca, trust_root: &self.trust.root };
        sim::enroll_fleet(&self.client, with, &self.sim_dir.path().join("state"), "sim", count, parallel)
    }

    /// Starts the simulated fleet against this controller.
    pub fn fleet(&self, identities: Vec<Identity>, installer: Installer, spread: Duration, act: bool) -> Result<Fleet> {
        let options = sim::Options {
            controller: self.controller.quic_addr,
            installer,
            start_spread: spread,
            act_on_assignments: act,
        };
        Fleet::start(identities, options, 2)
    }

    /// An archive installer rooted in the simulator's tmpfs directory.
    pub fn archive_installer(&self) -> Installer {
        Installer::Archive { root: self.sim_dir.path().join("roots") }
    }
}

/// Resets the peak RSS (VmHWM) of `pid` to its current RSS, so a later
/// reading is the peak of what follows (Linux ≥ 4.0, own processes).
pub fn reset_peak_rss(pid: u32) -> Result<()> {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").context("cannot reset the peak RSS")
}
