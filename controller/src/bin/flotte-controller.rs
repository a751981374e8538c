//! `flotte-controller`: initialize a data directory, or run the controller.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use flotte_controller::config::ControllerConfig;
use flotte_controller::ctl::profile::Profile;
use flotte_controller::datadir::{DataDir, write_atomic};
use flotte_controller::pki::Ca;
use flotte_controller::store::Store;
use flotte_controller::{secrets, server, service};
use flotte_protocol::Timestamp;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::SystemTime;

/// The Flotte controller: pushes signed packages to agents over QUIC.
#[derive(Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a data directory: CA, server certificate, database, admin token.
    Init {
        /// Where the controller keeps its state [default: the config file's
        /// data_dir, else /var/lib/flotte-controller].
        #[arg(long, env = "FLOTTE_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// A config file outside the data directory (e.g.
        /// /etc/flotte/controller.toml). If it exists, its values are the
        /// defaults and it is left as it is; if not, it is written.
        #[arg(long)]
        config: Option<PathBuf>,
        /// TCP address of the HTTPS API; QUIC uses the same UDP address
        /// [default: the config file's, else 0.0.0.0:7443].
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// A name or IP address agents and admins use to reach the
        /// controller (repeatable). Default: localhost, 127.0.0.1 and this host's name.
        #[arg(long = "hostname")]
        hostnames: Vec<String>,
        /// Where to write flottectl's config (URL, admin token, CA), mode 0600.
        #[arg(long)]
        admin_config: Option<PathBuf>,
    },
    /// Run the controller.
    Run {
        /// Where the controller keeps its state [default: the config file's
        /// data_dir, else /var/lib/flotte-controller].
        #[arg(long, env = "FLOTTE_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// Read this config file instead of DATA/controller.toml.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Override the API address from controller.toml.
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Override the QUIC address from controller.toml.
        #[arg(long)]
        quic_listen: Option<SocketAddr>,
    },
}

fn main() -> std::process::ExitCode {
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr);
    if service::logging_to_journal() {
        // journald stamps each line itself; colours would be noise there.
        subscriber.with_ansi(false).without_time().init();
    } else {
        subscriber.init();
    }
    match real_main(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn real_main(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Init { data_dir, config, listen, hostnames, admin_config } => {
            init(data_dir, config, listen, hostnames, admin_config)
        }
        Command::Run { data_dir, config, listen, quic_listen } => run(data_dir, config, listen, quic_listen),
    }
}

/// Default data directory, as the Debian package lays it out.
const DEFAULT_DATA_DIR: &str = "/var/lib/flotte-controller";
/// Default API (and QUIC) address.
const DEFAULT_LISTEN: &str = "0.0.0.0:7443";

/// The data directory: the flag, else the config file's, else the default.
fn data_dir_of(flag: Option<PathBuf>, file: Option<&ControllerConfig>) -> PathBuf {
    flag.or_else(|| file.and_then(|c| c.data_dir.clone())).unwrap_or_else(|| DEFAULT_DATA_DIR.into())
}

fn init(
    data_dir: Option<PathBuf>,
    config_file: Option<PathBuf>,
    listen: Option<SocketAddr>,
    mut hostnames: Vec<String>,
    admin_config: Option<PathBuf>,
) -> Result<()> {
    // An existing --config file is the admin's (a dpkg conffile): read, never rewritten.
    let existing = match &config_file {
        Some(path) if path.exists() => Some(ControllerConfig::load(path)?),
        _ => None,
    };
    let data_dir = data_dir_of(data_dir, existing.as_ref());
    let listen = match (listen, &existing) {
        (Some(l), _) => l,
        (None, Some(c)) => c.listen,
        (None, None) => DEFAULT_LISTEN.parse()?,
    };
    if hostnames.is_empty() {
        hostnames = existing.as_ref().map(|c| c.hostnames.clone()).unwrap_or_default();
    }
    if hostnames.is_empty() {
        hostnames = vec!["localhost".into(), "127.0.0.1".into()];
        if let Some(h) = sysinfo::System::host_name().filter(|h| !hostnames.contains(h)) {
            hostnames.push(h);
        }
    }
    let dir = DataDir::new(&data_dir);
    if config_file.is_some() && dir.server_cert().exists() {
        anyhow::bail!("{} is already initialized (it has a server certificate)", data_dir.display());
    }
    dir.create()?;
    let ca = Ca::create(&dir)?;
    ca.issue_server_cert(&dir, &hostnames)?;
    let now = Timestamp::from_system_time(SystemTime::now());
    let store = Store::open(&dir.database())?;
    let token = secrets::new_token("fat_");
    store.add_admin_token(&secrets::token_hash(&token), now)?;
    let config = ControllerConfig {
        data_dir: None,
        listen,
        quic_listen: None,
        hostnames: hostnames.clone(),
        max_package_size: 4 << 30,
        content_rate_limit: 0,
        content_cache_size: flotte_controller::content::cache::DEFAULT_CAPACITY,
    };
    let ca_path = std::fs::canonicalize(dir.ca_cert())?;
    let profile = Profile { url: format!("https://{}:{}", hostnames[0], listen.port()), token, ca: ca_path.clone() };
    let profile_path = admin_config.unwrap_or_else(Profile::default_path);
    profile
        .save(&profile_path)
        .context("cannot save the admin token; nothing is initialized, fix this and run init again")?;
    // The config file marks the directory as initialized, so it is written
    // last: if anything above failed, `init` can simply run again.
    let next = match (&config_file, &existing) {
        (None, _) => {
            write_atomic(&dir.config(), config.to_toml().as_bytes(), 0o644)?;
            format!("flotte-controller run --data-dir {}", data_dir.display())
        }
        (Some(path), existing) => {
            if existing.is_none() {
                let data_dir = Some(std::path::absolute(&data_dir)?);
                let file = ControllerConfig { data_dir, ..config };
                write_atomic(path, file.to_toml().as_bytes(), 0o644)?;
            }
            format!("flotte-controller run --config {}", path.display())
        }
    };
    println!("initialized {}", data_dir.display());
    println!("  CA certificate (give to agents): {}", ca_path.display());
    println!("  server certificate names:        {}", hostnames.join(", "));
    println!("  flottectl config (admin token):  {}", profile_path.display());
    println!("next: {next}");
    Ok(())
}

fn run(
    data_dir: Option<PathBuf>,
    config_file: Option<PathBuf>,
    listen: Option<SocketAddr>,
    quic_listen: Option<SocketAddr>,
) -> Result<()> {
    let (dir, mut config) = match config_file {
        None => {
            let dir = DataDir::new(data_dir_of(data_dir, None));
            dir.ensure_initialized()?;
            let config = ControllerConfig::load(&dir.config())?;
            (dir, config)
        }
        Some(path) => {
            let config = ControllerConfig::load(&path)?;
            let dir = DataDir::new(data_dir_of(data_dir, Some(&config)));
            if !dir.server_cert().is_file() {
                anyhow::bail!(
                    "data directory {} is not initialized; run `flotte-controller init --config {}` first",
                    dir.root().display(),
                    path.display()
                );
            }
            (dir, config)
        }
    };
    if let Some(listen) = listen {
        config.listen = listen;
    }
    if let Some(q) = quic_listen {
        config.quic_listen = Some(q);
    }
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(server::run(dir, config, shutdown_signal(), |bound| {
        // One machine-readable line on stdout tells supervisors and tests
        // that both sockets are bound, and where; systemd hears it too.
        println!("{{\"api\":\"{}\",\"quic\":\"{}\"}}", bound.api_addr, bound.quic_addr);
        service::ready();
        service::spawn_watchdog();
    }))?;
    service::stopping();
    Ok(())
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
