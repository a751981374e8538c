//! `flotte-agent`: the command line. Parses flags, installs the only tracing
//! subscriber (stderr), and hands over to the library.
//!
//! Exit codes: 0 success, 1 runtime failure, 2 usage error, 78 an error a
//! restart cannot fix (bad config, unwritable state directory; see
//! `AgentError::needs_admin`).

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use flotte_agent::config::{AgentConfig, Overrides};
use flotte_agent::enroll::{EnrollOptions, enroll};
use flotte_agent::error::{AgentError, EXIT_NEEDS_ADMIN};
use flotte_agent::quarantine::Quarantine;
use flotte_agent::service::systemd::{DEFAULT_UNIT_DIR, Systemd, UNIT_NAME};
use flotte_agent::service::{HostServiceManager, Registration, ServiceManager};
use flotte_agent::state_dir::{DEFAULT_STATE_DIR, StateDir};
use std::path::PathBuf;
use std::process::ExitCode;
use tracing_subscriber::EnvFilter;

/// The Flotte workstation agent.
#[derive(Debug, Parser)]
#[command(name = "flotte-agent", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Join a fleet: trade a one-time token for a client certificate.
    Enroll {
        /// The controller's HTTPS API, e.g. `ctl.example.org:8443` or `[::1]:8443`.
        #[arg(long, value_name = "HOST:PORT")]
        controller: String,
        /// The one-time enrollment token from `flottectl agents token`.
        #[arg(long, value_name = "T", env = "FLOTTE_ENROLL_TOKEN", hide_env_values = true)]
        token: String,
        /// PEM file of the controller CA; the only certificate trusted.
        #[arg(long, value_name = "FILE")]
        ca: PathBuf,
        /// The fleet's TUF root.json from the admin (`flottectl trust init`);
        /// the release root of trust, pinned here.
        #[arg(long, value_name = "FILE")]
        trust_root: PathBuf,
        /// Where the identity and enrollment are stored.
        #[arg(long, value_name = "DIR", default_value = DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
        /// Enroll under this name instead of the OS hostname.
        #[arg(long, env = "FLOTTE_HOSTNAME")]
        hostname: Option<String>,
    },
    /// Connect to the controller and carry out assignments until stopped.
    Run {
        /// Optional TOML file with `state_dir`, `install_root`, `log_level`.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// State directory (overrides the config file).
        #[arg(long, value_name = "DIR")]
        state_dir: Option<PathBuf>,
        /// Install root of the archive installer (overrides the config file).
        #[arg(long = "root", value_name = "DIR")]
        root: Option<PathBuf>,
        /// Report this name instead of the OS hostname (overrides the config file).
        #[arg(long, env = "FLOTTE_HOSTNAME")]
        hostname: Option<String>,
        /// The local socket `flotte` talks to (overrides `[pull] socket`).
        #[arg(long, value_name = "PATH")]
        socket: Option<PathBuf>,
    },
    /// Packages refused on this host since a rollback failed.
    #[command(subcommand)]
    Quarantine(QuarantineCommand),
    /// The systemd unit, for hosts without the Debian package.
    #[command(subcommand)]
    Service(ServiceCommand),
}

#[derive(Debug, Subcommand)]
enum ServiceCommand {
    /// Write flotte-agent.service (ExecStart = this executable) and enable it.
    Install {
        /// The config file the service reads.
        #[arg(long, value_name = "FILE", default_value = "/etc/flotte/agent.toml")]
        config: PathBuf,
        #[arg(long, value_name = "DIR", default_value = DEFAULT_UNIT_DIR)]
        unit_dir: PathBuf,
        /// Only write the file; do not call systemctl.
        #[arg(long)]
        no_enable: bool,
    },
    /// Stop and disable the service and remove the unit file.
    Uninstall {
        #[arg(long, value_name = "DIR", default_value = DEFAULT_UNIT_DIR)]
        unit_dir: PathBuf,
        /// Only remove the file; do not call systemctl.
        #[arg(long)]
        no_disable: bool,
    },
}

#[derive(Debug, Subcommand)]
enum QuarantineCommand {
    /// List quarantined packages and why.
    List {
        #[arg(long, value_name = "DIR", default_value = DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
    },
    /// Accept pushes of NAME again (after repairing the host). Takes effect
    /// at the next assignment, without restarting the agent.
    Clear {
        name: String,
        #[arg(long, value_name = "DIR", default_value = DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", describe(&e));
            match e.downcast_ref::<AgentError>() {
                Some(agent_error) if agent_error.needs_admin() => ExitCode::from(EXIT_NEEDS_ADMIN),
                _ => ExitCode::FAILURE,
            }
        }
    }
}

/// The error and its causes, skipping a cause whose text the message
/// already contains (our error variants print their source themselves).
fn describe(error: &anyhow::Error) -> String {
    let mut text = error.to_string();
    for cause in error.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text = format!("{text}: {cause}");
        }
    }
    text
}

fn dispatch(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Service(ServiceCommand::Install { config, unit_dir, no_enable }) => {
            let exe = std::env::current_exe().context("cannot find this executable")?;
            let config = std::path::absolute(&config).context("config path")?;
            let registration = Registration { exe: &exe, config: &config, enable: !no_enable };
            let path = Systemd { unit_dir }.install(&registration)?;
            println!("wrote {}; it starts once the host is enrolled (systemctl start flotte-agent)", path.display());
            Ok(())
        }
        Command::Service(ServiceCommand::Uninstall { unit_dir, no_disable }) => {
            if (Systemd { unit_dir: unit_dir.clone() }).uninstall(!no_disable)? {
                println!("removed {}", unit_dir.join(UNIT_NAME).display());
            } else {
                println!("no {UNIT_NAME} in {}", unit_dir.display());
            }
            Ok(())
        }
        Command::Quarantine(QuarantineCommand::List { state_dir }) => {
            let entries = Quarantine::new(&StateDir::new(&state_dir)).list()?;
            if entries.is_empty() {
                println!("no package is quarantined");
            }
            for e in entries {
                println!("{}\tsince {} (assignment {})\t{}", e.package, e.since, e.assignment, e.reason);
            }
            Ok(())
        }
        Command::Quarantine(QuarantineCommand::Clear { name, state_dir }) => {
            if Quarantine::new(&StateDir::new(&state_dir)).clear(&name)? {
                println!("{name} is no longer quarantined; the next assignment of it will be installed");
            } else {
                println!("{name} was not quarantined");
            }
            Ok(())
        }
        Command::Enroll { controller, token, ca, trust_root, state_dir, hostname } => {
            init_logging("info");
            let opts = EnrollOptions { controller, token, ca, state: StateDir::new(&state_dir), hostname, trust_root };
            let e = enroll(&opts)?;
            println!(
                "enrolled as {} with controller {} (QUIC port {}); TUF root {} pinned; state in {}",
                e.agent_id,
                e.controller,
                e.quic_port,
                opts.trust_root.display(),
                state_dir.display()
            );
            Ok(())
        }
        Command::Run { config, state_dir, root, hostname, socket } => {
            let socket = socket.map(|s| std::path::absolute(&s)).transpose().context("socket path")?;
            let overrides = Overrides { state_dir, install_root: root, hostname, socket };
            let config = AgentConfig::load(config.as_deref(), overrides)?;
            init_logging(&config.log_level);
            // One thread runs the whole select loop: an idle agent is one
            // sleeping thread, not one per core. Installer calls, fsyncs of
            // downloads and inventory collection go to the blocking pool
            // (spawn_blocking), whose threads exit after 10 s of idleness,
            // so the loop (and the watchdog task) never waits on them.
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .thread_keep_alive(std::time::Duration::from_secs(10))
                .build()
                .context("cannot start the async runtime")?;
            runtime.block_on(async {
                let agent = flotte_agent::Agent::open(config)?;
                // State is loaded: tell the service manager we are up, and
                // keep its watchdog fed while the runtime is alive.
                let manager = HostServiceManager::default();
                manager.ready();
                if let Some(interval) = manager.watchdog_interval() {
                    let manager = manager.clone();
                    tokio::spawn(async move {
                        let mut tick = tokio::time::interval(interval);
                        loop {
                            tick.tick().await;
                            manager.watchdog();
                        }
                    });
                }
                agent.run(Box::pin(shutdown_signal())).await;
                manager.stopping();
                anyhow::Ok(())
            })
        }
    }
}

/// `RUST_LOG` wins over the configured level, so a running fleet can be
/// debugged without editing its config.
fn init_logging(level: &str) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let subscriber = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr);
    if HostServiceManager::default().logs_to_system_log() {
        // The system log stamps each line itself; colours would be noise there.
        subscriber.with_ansi(false).without_time().init();
    } else {
        subscriber.init();
    }
}

/// Completes on SIGTERM or ctrl-c.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM; only ctrl-c stops the agent");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
