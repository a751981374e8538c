//! Baselines for the `peers` benchmark: the tools admins push software with
//! today, run on this machine against the same package Flotte delivers.
//!
//! Every simulated host is its own loopback address (`127.0.0.{i+2}`) of one
//! `sshd` listening on `0.0.0.0:PORT`, so that connections are not shared
//! between hosts (Ansible would multiplex every host of one address through
//! one ControlMaster). Each host "installs" into its own directory.
//!
//! The work per host is what a Flotte agent does: receive the file, check
//! its sha256 against the expected digest, unpack the archive. Baselines:
//! - [`SshHosts::scp_fanout`] runs `scp`, then `ssh` with `sha256sum -c`
//!   and `tar -x`, for all hosts concurrently;
//! - [`SshHosts::ansible_fanout`] runs `ansible-core` (`copy`, then
//!   `command`) with `forks=N`, pipelining and ControlPersist.
//!
//! Nothing here is timed against a limit; callers print ratios.

use anyhow::{Context, Result, bail, ensure};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian's OpenSSH server lives.
const SSHD: &str = "/usr/sbin/sshd";
const SFTP_SERVER: &str = "/usr/lib/openssh/sftp-server";
/// The Ansible the benchmark measures, from PyPI.
const ANSIBLE_CORE: &str = "ansible-core==2.17.*";

/// The loopback address of simulated host `i`.
pub fn host_address(i: usize) -> String {
    format!("127.0.0.{}", i + 2)
}

/// Fails with the one command that installs what is missing.
pub fn check_openssh() -> Result<()> {
    if Path::new(SSHD).is_file() && Path::new(SFTP_SERVER).is_file() {
        return Ok(());
    }
    bail!("the peers benchmark needs the OpenSSH server; install it with: apt-get install -y openssh-server")
}

/// A running `sshd` that accepts one generated key for root, and the
/// directory the simulated hosts install into.
pub struct SshHosts {
    dir: tempfile::TempDir,
    port: u16,
    sshd: Child,
}

impl SshHosts {
    /// Generates keys and starts `sshd` on `0.0.0.0:port`.
    pub fn start(port: u16) -> Result<Self> {
        check_openssh()?;
        let dir = tempfile::tempdir()?;
        let d = dir.path();
        for key in ["host_key", "client_key"] {
            let status = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(d.join(key))
                .status()
                .context("ssh-keygen")?;
            ensure!(status.success(), "ssh-keygen failed: {status}");
        }
        std::fs::copy(d.join("client_key.pub"), d.join("authorized_keys"))?;
        let config = format!(
            "Port {port}\nListenAddress 0.0.0.0\nHostKey {dir}/host_key\nAuthorizedKeysFile {dir}/authorized_keys\n\
             PidFile {dir}/sshd.pid\nPermitRootLogin prohibit-password\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nUseDNS no\nMaxStartups 1000\n\
             MaxSessions 1000\nSubsystem sftp {SFTP_SERVER}\n",
            dir = d.display()
        );
        std::fs::write(d.join("sshd_config"), config)?;
        // sshd insists on its privilege-separation directory.
        std::fs::create_dir_all("/run/sshd")?;
        let sshd = Command::new(SSHD)
            .args(["-D", "-f"])
            .arg(d.join("sshd_config"))
            .arg("-E")
            .arg(d.join("sshd.log"))
            .spawn()
            .context("cannot start sshd")?;
        let hosts = SshHosts { dir, port, sshd };
        hosts.wait_ready()?;
        Ok(hosts)
    }

    /// Polls until a real ssh login answers (sshd has no readiness signal).
    fn wait_ready(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ok = self.ssh(0).arg("true").stderr(Stdio::null()).status().is_ok_and(|s| s.success());
            if ok {
                return Ok(());
            }
            ensure!(Instant::now() < deadline, "sshd did not accept a login within 20 s");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn ssh_options(&self) -> Vec<String> {
        let key = self.dir.path().join("client_key");
        [
            "-i",
            &key.display().to_string(),
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=ERROR",
            "-o",
            "BatchMode=yes",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    fn ssh(&self, host: usize) -> Command {
        let mut c = Command::new("ssh");
        c.args(self.ssh_options()).args(["-p", &self.port.to_string()]).arg(format!("root@{}", host_address(host)));
        c
    }

    /// Host `i`'s install directory (created on first use by the commands).
    pub fn host_dir(&self, host: usize) -> PathBuf {
        self.dir.path().join(format!("host-{host:03}"))
    }

    /// The shell command a host runs after receiving `file`: verify the
    /// digest, unpack into `install/`.
    fn install_command(dir: &Path, sha256: &str) -> String {
        let file = dir.join("package.tar.gz");
        format!(
            "echo '{sha256}  {file}' | sha256sum -c --quiet - && mkdir -p {install} && tar -xzf {file} -C {install}",
            file = file.display(),
            install = dir.join("install").display()
        )
    }

    fn reset_hosts(&self, hosts: usize) -> Result<()> {
        for i in 0..hosts {
            let dir = self.host_dir(i);
            if dir.exists() {
                std::fs::remove_dir_all(&dir)?;
            }
            std::fs::create_dir_all(&dir)?;
        }
        Ok(())
    }

    /// Pushes `package` (sha256 `sha256`) to `hosts` hosts at once with scp,
    /// then verifies and unpacks it on each over ssh. Returns the wall time
    /// until every host is done; fails if any host failed.
    pub fn scp_fanout(&self, hosts: usize, package: &Path, sha256: &str) -> Result<Duration> {
        self.reset_hosts(hosts)?;
        let started = Instant::now();
        let results: Vec<Result<()>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..hosts)
                .map(|i| {
                    scope.spawn(move || -> Result<()> {
                        let dir = self.host_dir(i);
                        let copy = Command::new("scp")
                            .args(self.ssh_options())
                            .args(["-q", "-P", &self.port.to_string()])
                            .arg(package)
                            .arg(format!("root@{}:{}", host_address(i), dir.join("package.tar.gz").display()))
                            .status()?;
                        ensure!(copy.success(), "scp to host {i} failed: {copy}");
                        let install = self.ssh(i).arg(Self::install_command(&dir, sha256)).status()?;
                        ensure!(install.success(), "install on host {i} failed: {install}");
                        Ok(())
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err(anyhow::anyhow!("panicked")))).collect()
        });
        let took = started.elapsed();
        for r in results {
            r?;
        }
        self.check_installed(hosts)?;
        Ok(took)
    }

    /// The same with Ansible: `copy`, then `command`, over `forks = hosts`
    /// connections with pipelining and ControlPersist. `ansible_playbook`
    /// is the venv's `ansible-playbook` (see [`ensure_ansible`]).
    pub fn ansible_fanout(
        &self,
        hosts: usize,
        package: &Path,
        sha256: &str,
        ansible_playbook: &Path,
    ) -> Result<Duration> {
        self.reset_hosts(hosts)?;
        let d = self.dir.path();
        let inventory: String = (0..hosts)
            .map(|i| {
                format!(
                    "host{i:03} ansible_host={} ansible_port={} ansible_user=root dest={}\n",
                    host_address(i),
                    self.port,
                    self.host_dir(i).display()
                )
            })
            .collect();
        std::fs::write(d.join("inventory"), inventory)?;
        let config = format!(
            "[defaults]\nforks = {hosts}\nhost_key_checking = False\ninterpreter_python = /usr/bin/python3\n\
             private_key_file = {key}\nstdout_callback = minimal\nlocal_tmp = {dir}/ansible-local\n\
             remote_tmp = {dir}/ansible-remote\n\n[ssh_connection]\npipelining = True\n\
             ssh_args = -o ControlMaster=auto -o ControlPersist=60s -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR\n\
             control_path_dir = {dir}/cp\n",
            key = d.join("client_key").display(),
            dir = d.display()
        );
        std::fs::write(d.join("ansible.cfg"), config)?;
        let install = Self::install_command(Path::new("{{ dest }}"), sha256);
        let playbook = format!(
            "- hosts: all\n  gather_facts: false\n  tasks:\n    - copy:\n        src: {src}\n        \
             dest: \"{{{{ dest }}}}/package.tar.gz\"\n        mode: \"0600\"\n    - command:\n        \
             argv: [sh, -c, \"{install}\"]\n",
            src = package.display(),
            install = install.replace('"', "\\\"")
        );
        std::fs::write(d.join("playbook.yml"), playbook)?;
        let started = Instant::now();
        let output = Command::new(ansible_playbook)
            .arg("-i")
            .arg(d.join("inventory"))
            .arg(d.join("playbook.yml"))
            .env("ANSIBLE_CONFIG", d.join("ansible.cfg"))
            .output()
            .context("cannot run ansible-playbook")?;
        let took = started.elapsed();
        ensure!(
            output.status.success(),
            "ansible-playbook failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        self.check_installed(hosts)?;
        Ok(took)
    }

    /// Every host unpacked something: the baseline did the whole job.
    fn check_installed(&self, hosts: usize) -> Result<()> {
        for i in 0..hosts {
            let install = self.host_dir(i).join("install");
            let entries = std::fs::read_dir(&install).with_context(|| format!("{}", install.display()))?.count();
            ensure!(entries > 0, "host {i} has an empty install directory");
        }
        Ok(())
    }
}

impl Drop for SshHosts {
    fn drop(&mut self) {
        let _ = self.sshd.kill();
        let _ = self.sshd.wait();
    }
}

/// The venv's `ansible-playbook`, installing `ansible-core` from PyPI into
/// `venv` first if it is not there.
pub fn ensure_ansible(venv: &Path) -> Result<PathBuf> {
    let playbook = venv.join("bin/ansible-playbook");
    if playbook.is_file() {
        return Ok(playbook);
    }
    let python = std::env::var("FLOTTE_BENCH_PYTHON").unwrap_or_else(|_| "python3".into());
    let status = Command::new(&python).args(["-m", "venv"]).arg(venv).status().context("python3 -m venv")?;
    ensure!(status.success(), "cannot create a venv at {}", venv.display());
    let status = Command::new(venv.join("bin/pip"))
        .args(["install", "--quiet", "--disable-pip-version-check", ANSIBLE_CORE])
        .status()
        .context("pip install ansible-core")?;
    ensure!(status.success(), "pip install {ANSIBLE_CORE} failed");
    Ok(playbook)
}
