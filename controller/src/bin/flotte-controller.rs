//! `flotte-controller`: initialize a data directory, or run the controller.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use flotte_controller::config::ControllerConfig;
use flotte_controller::ctl::profile::Profile;
use flotte_controller::datadir::{DataDir, write_atomic};
use flotte_controller::pki::Ca;
use flotte_controller::store::Store;
use flotte_controller::{secrets, server};
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
        /// Where the controller keeps its state.
        #[arg(long, env = "FLOTTE_DATA_DIR", default_value = "/var/lib/flotte-controller")]
        data_dir: PathBuf,
        /// TCP address of the HTTPS API; QUIC uses the same UDP address.
        #[arg(long, default_value = "0.0.0.0:7443")]
        listen: SocketAddr,
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
        #[arg(long, env = "FLOTTE_DATA_DIR", default_value = "/var/lib/flotte-controller")]
        data_dir: PathBuf,
        /// Override the API address from controller.toml.
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Override the QUIC address from controller.toml.
        #[arg(long)]
        quic_listen: Option<SocketAddr>,
    },
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
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
        Command::Init { data_dir, listen, hostnames, admin_config } => init(data_dir, listen, hostnames, admin_config),
        Command::Run { data_dir, listen, quic_listen } => run(data_dir, listen, quic_listen),
    }
}

fn init(
    data_dir: PathBuf,
    listen: SocketAddr,
    mut hostnames: Vec<String>,
    admin_config: Option<PathBuf>,
) -> Result<()> {
    if hostnames.is_empty() {
        hostnames = vec!["localhost".into(), "127.0.0.1".into()];
        if let Some(h) = sysinfo::System::host_name().filter(|h| !hostnames.contains(h)) {
            hostnames.push(h);
        }
    }
    let dir = DataDir::new(&data_dir);
    dir.create()?;
    let ca = Ca::create(&dir)?;
    ca.issue_server_cert(&dir, &hostnames)?;
    let now = Timestamp::from_system_time(SystemTime::now());
    let store = Store::open(&dir.database())?;
    let token = secrets::new_token("fat_");
    store.add_admin_token(&secrets::token_hash(&token), now)?;
    let config = ControllerConfig {
        listen,
        quic_listen: None,
        hostnames: hostnames.clone(),
        max_package_size: 4 << 30,
        content_rate_limit: 0,
    };
    let ca_path = std::fs::canonicalize(dir.ca_cert())?;
    let profile = Profile { url: format!("https://{}:{}", hostnames[0], listen.port()), token, ca: ca_path.clone() };
    let profile_path = admin_config.unwrap_or_else(Profile::default_path);
    profile
        .save(&profile_path)
        .context("cannot save the admin token; nothing is initialized, fix this and run init again")?;
    // The config file marks the directory as initialized, so it is written
    // last: if anything above failed, `init` can simply run again.
    write_atomic(&dir.config(), config.to_toml().as_bytes(), 0o644)?;
    println!("initialized {}", data_dir.display());
    println!("  CA certificate (give to agents): {}", ca_path.display());
    println!("  server certificate names:        {}", hostnames.join(", "));
    println!("  flottectl config (admin token):  {}", profile_path.display());
    println!("next: flotte-controller run --data-dir {}", data_dir.display());
    Ok(())
}

fn run(data_dir: PathBuf, listen: Option<SocketAddr>, quic_listen: Option<SocketAddr>) -> Result<()> {
    let dir = DataDir::new(&data_dir);
    dir.ensure_initialized()?;
    let mut config = ControllerConfig::load(&dir.config())?;
    if let Some(listen) = listen {
        config.listen = listen;
    }
    if let Some(q) = quic_listen {
        config.quic_listen = Some(q);
    }
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(server::run(dir, config, shutdown_signal(), |bound| {
        // One machine-readable line on stdout tells supervisors and tests
        // that both sockets are bound, and where.
        println!("{{\"api\":\"{}\",\"quic\":\"{}\"}}", bound.api_addr, bound.quic_addr);
    }))?;
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
