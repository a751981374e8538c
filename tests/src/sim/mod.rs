//! The fleet simulator: N agents in one process, against a real controller.
//!
//! Each simulated agent has
//! - its own identity: a P-256 key and a certificate the controller's CA
//!   signed at enrollment, through the real enrollment path ([`enroll`]);
//! - its own QUIC connection, made with the agent's own client
//!   configuration (`flotte_agent::quic`), connect logic
//!   (`quic::connect_on`) and session code (`Session::handshake`: control
//!   stream, `Hello` / `Welcome`); the connections share a few UDP
//!   endpoints ([`Options::endpoints`], agent `i` on endpoint `i mod k`);
//! - the real verification path: the signature of every assignment is
//!   checked with the trusted keys from its enrollment
//!   (`TrustedKeys::verify`), the content is fetched and hashed while it
//!   streams (`flotte_agent::download::fetch_into`), and digest and size are
//!   compared with the verified metadata
//!   (`flotte_agent::job::content_mismatch`) before anything is installed;
//! - a configurable [`Installer`]: the real archive installer into a root
//!   of its own (put it on a tmpfs), or a null installer that discards the
//!   verified bytes (to isolate transport cost);
//! - reports through the real protocol (`Received`, `Downloading`,
//!   `Verifying`, `Installing`, then `Succeeded` or `Failed`), with
//!   per-agent sequence numbers, resent after a reconnect until acked, so
//!   the controller's rollout engine commits them;
//! - reconnects with the agent's own backoff (`flotte_agent::backoff`:
//!   exponential, full jitter).
//!
//! What it does not run: the agent's install state machine, journal and
//! outbox on disk (a simulated agent keeps its state in memory), and
//! inventory collection (every agent sends a fixed inventory with its own
//! host name). [`Observer`] records, per agent, when it connected, when it
//! received each assignment and when it finished, for the benchmarks.

mod agent;
pub mod enroll;

pub use enroll::{EnrollWith, Identity, enroll_fleet};

use anyhow::{Context, Result};
use flotte_protocol::AssignmentId;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What a simulated agent does with verified content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Installer {
    /// Discards it after verification.
    Null,
    /// Writes it to `<root>/<agent>/download.part`, then stages and
    /// activates it with the real archive installer under `<root>/<agent>`
    /// (and deletes the download).
    Archive { root: PathBuf },
}

/// How a simulated fleet behaves.
#[derive(Debug, Clone)]
pub struct Options {
    /// The controller's QUIC address.
    pub controller: SocketAddr,
    pub installer: Installer,
    /// Each agent waits a random delay up to this long before its first
    /// connection, as a fleet booting over a period would.
    pub start_spread: Duration,
    /// When false, an agent records each assignment it receives and does
    /// nothing else with it (no reports): for measuring push latency
    /// alone.
    pub act_on_assignments: bool,
    /// UDP endpoints (sockets) the agents share. One endpoint's receive
    /// path runs on one task, so a single one can limit a fast fleet.
    pub endpoints: usize,
}

/// Per-agent times, for the benchmarks.
#[derive(Debug, Clone, Default)]
pub struct AgentTimes {
    /// When the agent's latest session was welcomed.
    pub connected_at: Option<Instant>,
    /// Sessions welcomed so far.
    pub sessions: u64,
    /// The latest assignment received, and when it first arrived.
    pub assigned: Option<(AssignmentId, Instant)>,
    /// When the latest assignment ended, and whether it succeeded.
    pub finished: Option<(Instant, bool)>,
    /// When the latest session ended, and how the agent learnt of it.
    pub disconnected: Option<(Instant, SessionEnd)>,
}

/// How an agent learnt that its session was over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEnd {
    /// The controller answered with a stateless reset: it no longer knows
    /// the connection (it restarted).
    Reset,
    /// Nothing came back within the idle timeout.
    TimedOut,
    /// The controller closed it, or anything else.
    Other,
}

impl SessionEnd {
    fn of(connection: &quinn::Connection) -> SessionEnd {
        match connection.close_reason() {
            Some(quinn::ConnectionError::Reset) => SessionEnd::Reset,
            Some(quinn::ConnectionError::TimedOut) => SessionEnd::TimedOut,
            _ => SessionEnd::Other,
        }
    }
}

/// What the fleet has done so far.
#[derive(Debug, Default)]
pub struct Observer {
    times: Mutex<Vec<AgentTimes>>,
    connected: AtomicUsize,
    /// Content bytes received and verified by all agents.
    pub bytes: AtomicU64,
    /// Failed connection attempts.
    pub connect_failures: AtomicU64,
}

impl Observer {
    fn new(n: usize) -> Self {
        Observer { times: Mutex::new(vec![AgentTimes::default(); n]), ..Default::default() }
    }

    /// Agents with a live, welcomed session now.
    pub fn connected(&self) -> usize {
        self.connected.load(Ordering::SeqCst)
    }

    /// A copy of every agent's times.
    pub fn times(&self) -> Vec<AgentTimes> {
        self.times.lock().unwrap().clone()
    }

    fn update(&self, agent: usize, f: impl FnOnce(&mut AgentTimes)) {
        if let Some(t) = self.times.lock().unwrap().get_mut(agent) {
            f(t);
        }
    }

    fn on_connected(&self, agent: usize) {
        self.connected.fetch_add(1, Ordering::SeqCst);
        self.update(agent, |t| {
            t.connected_at = Some(Instant::now());
            t.sessions += 1;
        });
    }

    fn on_disconnected(&self, agent: usize, connection: &quinn::Connection) {
        self.connected.fetch_sub(1, Ordering::SeqCst);
        let end = SessionEnd::of(connection);
        self.update(agent, |t| t.disconnected = Some((Instant::now(), end)));
    }
}

/// A running simulated fleet. Dropping it stops every agent.
pub struct Fleet {
    runtime: Option<tokio::runtime::Runtime>,
    shutdown: tokio::sync::watch::Sender<bool>,
    pub observer: Arc<Observer>,
    endpoints: Vec<quinn::Endpoint>,
}

impl Fleet {
    /// Starts one task per identity on a runtime of `threads` worker
    /// threads, connecting through `options.endpoints` client endpoints.
    pub fn start(identities: Vec<Identity>, options: Options, threads: usize) -> Result<Fleet> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("flotte-sim")
            .enable_all()
            .build()?;
        let endpoints = runtime.block_on(async {
            (0..options.endpoints.max(1)).map(|_| client_endpoint(options.controller)).collect::<Result<Vec<_>>>()
        })?;
        let observer = Arc::new(Observer::new(identities.len()));
        let (shutdown, stop) = tokio::sync::watch::channel(false);
        let options = Arc::new(options);
        for (index, identity) in identities.into_iter().enumerate() {
            let ctx = agent::Context {
                index,
                identity,
                options: options.clone(),
                endpoint: endpoints[index % endpoints.len()].clone(),
                observer: observer.clone(),
                stop: stop.clone(),
            };
            runtime.spawn(agent::run(ctx));
        }
        Ok(Fleet { runtime: Some(runtime), shutdown, observer, endpoints })
    }

    /// Waits until `condition` holds on the observer, polling every 20 ms,
    /// for at most `timeout`.
    pub fn wait(&self, what: &str, timeout: Duration, condition: impl Fn(&Observer) -> bool) -> Result<Duration> {
        let started = Instant::now();
        while !condition(&self.observer) {
            if started.elapsed() > timeout {
                anyhow::bail!("simulated fleet: timed out after {timeout:?} waiting for {what}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(started.elapsed())
    }

    /// Stops every agent and closes their connections.
    pub fn stop(mut self) {
        self.shutdown_now();
    }

    fn shutdown_now(&mut self) {
        let _ = self.shutdown.send(true);
        for endpoint in &self.endpoints {
            endpoint.close(quinn::VarInt::from_u32(0), b"simulator stopping");
        }
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(2));
        }
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.shutdown_now();
    }
}

/// One client endpoint of the fleet. Each carries many agents, so it asks
/// for four times an agent's socket buffer.
fn client_endpoint(controller: SocketAddr) -> Result<quinn::Endpoint> {
    let bind: SocketAddr = if controller.is_ipv6() { "[::]:0".parse()? } else { "0.0.0.0:0".parse()? };
    flotte_agent::quic::client_endpoint(bind, 4 * flotte_agent::quic::SOCKET_BUFFER)
        .context("cannot bind the simulator's UDP socket")
}
