//! The `scale` scenario's baseline: a bare quinn 0.11 server with the
//! controller's mutual TLS and quinn's *default* transport settings, which
//! accepts connections and holds them, and nothing else. The same enrolled
//! identities connect to it over the agent's own client code (keep-alive
//! included) and sit idle; its RSS per connection is what a QUIC connection
//! costs before Flotte adds anything.
//!
//! The server runs in its own process (`flotte-bench bare-quinn-server`,
//! hidden), so its RSS is its own; [`BareServer`] starts and stops it.

use crate::footprint;
use crate::sim::Identity;
use anyhow::{Context, Result, bail};
use flotte_controller::datadir::DataDir;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Serves until killed: binds 127.0.0.1:0 with the controller's QUIC TLS
/// configuration from `data_dir` and quinn's default transport, writes the
/// port to `port_file`, and holds every connection until its peer leaves.
pub fn serve(data_dir: &Path, port_file: &Path) -> Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let mut config = flotte_controller::pki::quic_server_config(&DataDir::new(data_dir))?;
        config.transport_config(Arc::new(quinn::TransportConfig::default()));
        let endpoint = quinn::Endpoint::server(config, "127.0.0.1:0".parse()?)?;
        let tmp = port_file.with_extension("tmp");
        std::fs::write(&tmp, endpoint.local_addr()?.port().to_string())?;
        std::fs::rename(&tmp, port_file)?;
        while let Some(incoming) = endpoint.accept().await {
            tokio::spawn(async move {
                if let Ok(connection) = incoming.await {
                    connection.closed().await;
                }
            });
        }
        anyhow::Ok(())
    })
}

/// A running bare server process.
pub struct BareServer {
    child: Child,
    pub addr: SocketAddr,
}

impl BareServer {
    /// Starts `flotte-bench bare-quinn-server` over the controller's
    /// `data_dir`, and waits for its port. The executable is this one when
    /// this is `flotte-bench`, else the `flotte-bench` next to `bin_dir`'s
    /// binaries (the tests' `target/<profile>`).
    pub fn start(bin_dir: &Path, data_dir: &Path, scratch: &Path) -> Result<BareServer> {
        let this = std::env::current_exe()?;
        let exe =
            if this.file_stem().is_some_and(|s| s == "flotte-bench") { this } else { bin_dir.join("flotte-bench") };
        let port_file = scratch.join("bare-quinn.port");
        let _ = std::fs::remove_file(&port_file);
        let child = Command::new(&exe)
            .arg("bare-quinn-server")
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--port-file")
            .arg(&port_file)
            .spawn()
            .with_context(|| format!("cannot start the bare quinn server {}", exe.display()))?;
        let mut server = BareServer { child, addr: "127.0.0.1:0".parse()? };
        let started = Instant::now();
        let port = loop {
            if let Ok(text) = std::fs::read_to_string(&port_file) {
                break text.trim().parse::<u16>().context("bare server port")?;
            }
            if let Some(status) = server.child.try_wait()? {
                bail!("the bare quinn server exited at start: {status}");
            }
            if started.elapsed() > Duration::from_secs(30) {
                bail!("the bare quinn server did not start within 30 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        server.addr.set_port(port);
        Ok(server)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for BareServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the baseline measured.
pub struct Baseline {
    pub rss_per_connection_kib: f64,
    /// Server CPU seconds per connection-hour of the agents' keep-alives.
    pub cpu_per_connection_hour: f64,
    pub connect_time: Duration,
}

/// How long each phase of the baseline takes.
#[derive(Debug, Clone, Copy)]
pub struct Phases {
    /// First connection attempts are spread over this.
    pub spread: Duration,
    /// Wait after everyone connected, before the RSS is read.
    pub settle: Duration,
    /// CPU is measured over this idle period.
    pub idle: Duration,
    /// Longest wait for everyone to connect.
    pub timeout: Duration,
}

/// Connects every identity to a fresh bare server (first attempts spread
/// over `phases.spread`, failed ones retried after a second), waits
/// `phases.settle`, and measures the server's RSS per connection, then its
/// CPU over `phases.idle`. `controller_data` is the controller's data
/// directory, for its certificate and CA; `bin_dir` is where the release
/// binaries are (see [`BareServer::start`]).
pub fn measure(
    bin_dir: &Path,
    identities: &[Identity],
    controller_data: &Path,
    scratch: &Path,
    phases: Phases,
) -> Result<Baseline> {
    let Phases { spread, settle, idle, timeout } = phases;
    let server = BareServer::start(bin_dir, controller_data, scratch)?;
    let empty = footprint::sample(server.pid())?;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let n = identities.len();
    let connected = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let endpoints = (0..super::site::SIM_ENDPOINTS)
        .map(|_| {
            let _guard = runtime.enter();
            flotte_agent::quic::client_endpoint("0.0.0.0:0".parse()?, 4 * flotte_agent::quic::SOCKET_BUFFER)
                .context("cannot bind a client socket")
        })
        .collect::<Result<Vec<_>>>()?;
    for (i, identity) in identities.iter().enumerate() {
        let endpoint = endpoints[i % endpoints.len()].clone();
        let (client, name) = (identity.client.clone(), identity.server_name.clone());
        let (connected, mut stop) = (connected.clone(), stop_rx.clone());
        let (addr, delay) = (server.addr, spread.mul_f64(i as f64 / n as f64));
        runtime.spawn(async move {
            tokio::time::sleep(delay).await;
            let connection = loop {
                match flotte_agent::quic::connect_on(&endpoint, &client, addr, &name).await {
                    Ok(c) => break c,
                    Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
                }
            };
            connected.fetch_add(1, Ordering::SeqCst);
            let _ = stop.wait_for(|s| *s).await;
            connection.close(0u32.into(), b"baseline done");
        });
    }
    while connected.load(Ordering::SeqCst) < n {
        if started.elapsed() > timeout {
            bail!("bare quinn baseline: {} of {n} connected after {timeout:?}", connected.load(Ordering::SeqCst));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let connect_time = started.elapsed();
    std::thread::sleep(settle);
    let full = footprint::sample(server.pid())?;
    std::thread::sleep(idle);
    let idle_end = footprint::sample(server.pid())?;
    let _ = stop_tx.send(true);
    runtime.shutdown_timeout(Duration::from_secs(2));
    let connection_hours = n as f64 * idle.as_secs_f64() / 3600.0;
    Ok(Baseline {
        rss_per_connection_kib: full.rss_kib.saturating_sub(empty.rss_kib) as f64 / n as f64,
        cpu_per_connection_hour: (idle_end.cpu_seconds() - full.cpu_seconds()) / connection_hours,
        connect_time,
    })
}
