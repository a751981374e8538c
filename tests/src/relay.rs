//! A userspace UDP relay between one agent and the controller, for faults
//! the kernel here cannot make (netem is missing): the agent talks to
//! [`Relay::addr`], the relay to the controller's QUIC port.
//!
//! Client → server datagrams always pass. Server → client datagrams follow
//! the [`Mode`], switchable while traffic flows:
//! - [`Mode::Pass`]: forwarded at once.
//! - [`Mode::Drip`]: at most one datagram per interval, from a queue of
//!   [`DRIP_QUEUE`] datagrams; more are dropped, as a slow bottleneck link
//!   drops them. QUIC stays connected (acks and keep-alives still flow) but
//!   its throughput falls to about one packet per interval.
//!
//! Guarantees: only loopback sockets; the relay serves the last client
//! address it heard from; dropping the [`Relay`] stops its threads.

use anyhow::{Context as _, Result};
use std::collections::VecDeque;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Datagrams a dripping relay holds before it drops.
pub const DRIP_QUEUE: usize = 16;
/// How often blocked threads look at the stop flag.
const POLL: Duration = Duration::from_millis(50);
/// Larger than any QUIC datagram.
const MAX_DATAGRAM: usize = 65_536;

/// What happens to server → client datagrams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Pass,
    Drip { interval: Duration },
}

/// Counters, for tests that want to see the relay did its job; a datagram
/// is counted just before it is sent, so a receiver that saw it sees it counted.
#[derive(Debug, Default)]
pub struct Counters {
    pub to_server: AtomicU64,
    pub to_client: AtomicU64,
    pub dropped: AtomicU64,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    stop: AtomicBool,
    counters: Counters,
}

struct State {
    mode: Mode,
    /// Server → client datagrams waiting for their drip slot.
    queue: VecDeque<Vec<u8>>,
    /// The agent's address, once it sent something.
    client: Option<SocketAddr>,
}

/// A running relay.
pub struct Relay {
    addr: SocketAddr,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl Relay {
    /// Listens on a fresh loopback port and forwards to `server`, in [`Mode::Pass`].
    pub fn start(server: SocketAddr) -> Result<Self> {
        let listen = UdpSocket::bind("127.0.0.1:0").context("bind the relay's listening socket")?;
        let upstream = UdpSocket::bind("127.0.0.1:0").context("bind the relay's upstream socket")?;
        upstream.connect(server).with_context(|| format!("connect the relay to {server}"))?;
        listen.set_read_timeout(Some(POLL))?;
        upstream.set_read_timeout(Some(POLL))?;
        let addr = listen.local_addr()?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State { mode: Mode::Pass, queue: VecDeque::new(), client: None }),
            changed: Condvar::new(),
            stop: AtomicBool::new(false),
            counters: Counters::default(),
        });
        let listen = Arc::new(listen);
        let upstream = Arc::new(upstream);
        let threads = vec![
            spawn("relay-up", {
                let (shared, listen, upstream) = (Arc::clone(&shared), Arc::clone(&listen), Arc::clone(&upstream));
                move || client_to_server(&shared, &listen, &upstream)
            })?,
            spawn("relay-down", {
                let (shared, listen, upstream) = (Arc::clone(&shared), Arc::clone(&listen), Arc::clone(&upstream));
                move || server_to_client(&shared, &listen, &upstream)
            })?,
            spawn("relay-drip", {
                let shared = Arc::clone(&shared);
                move || drip(&shared, &listen)
            })?,
        ];
        Ok(Relay { addr, shared, threads })
    }

    /// Where the agent must send.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Switches server → client forwarding; queued datagrams go out at once
    /// when switching to [`Mode::Pass`].
    pub fn set_mode(&self, mode: Mode) {
        let mut state = self.shared.state.lock().unwrap_or_else(|p| p.into_inner());
        state.mode = mode;
        self.shared.changed.notify_all();
    }

    pub fn counters(&self) -> &Counters {
        &self.shared.counters
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.changed.notify_all();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

fn spawn(name: &str, body: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>> {
    std::thread::Builder::new().name(name.into()).spawn(body).context("spawn a relay thread")
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)
}

fn client_to_server(shared: &Shared, listen: &UdpSocket, upstream: &UdpSocket) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    while !shared.stop.load(Ordering::SeqCst) {
        match listen.recv_from(&mut buf) {
            Ok((n, from)) => {
                shared.state.lock().unwrap_or_else(|p| p.into_inner()).client = Some(from);
                shared.counters.to_server.fetch_add(1, Ordering::Relaxed);
                let _ = upstream.send(&buf[..n]);
            }
            Err(e) if is_timeout(&e) => {}
            // ICMP errors (the controller restarting) surface here; keep going.
            Err(_) => {}
        }
    }
}

fn server_to_client(shared: &Shared, listen: &UdpSocket, upstream: &UdpSocket) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    while !shared.stop.load(Ordering::SeqCst) {
        let n = match upstream.recv(&mut buf) {
            Ok(n) => n,
            Err(_) => continue,
        };
        let mut state = shared.state.lock().unwrap_or_else(|p| p.into_inner());
        let Some(client) = state.client else { continue };
        match state.mode {
            Mode::Pass if state.queue.is_empty() => {
                drop(state);
                shared.counters.to_client.fetch_add(1, Ordering::Relaxed);
                let _ = listen.send_to(&buf[..n], client);
            }
            _ if state.queue.len() >= DRIP_QUEUE => {
                shared.counters.dropped.fetch_add(1, Ordering::Relaxed);
            }
            _ => {
                state.queue.push_back(buf[..n].to_vec());
                shared.changed.notify_all();
            }
        }
    }
}

/// Sends queued datagrams: one per interval while dripping, all at once
/// after a switch to pass.
fn drip(shared: &Shared, listen: &UdpSocket) {
    let mut next_slot = Instant::now();
    let mut state = shared.state.lock().unwrap_or_else(|p| p.into_inner());
    while !shared.stop.load(Ordering::SeqCst) {
        let now = Instant::now();
        let due = match state.mode {
            Mode::Pass => !state.queue.is_empty(),
            Mode::Drip { .. } => !state.queue.is_empty() && now >= next_slot,
        };
        if !due {
            let wait = match state.mode {
                Mode::Drip { .. } if !state.queue.is_empty() => next_slot.saturating_duration_since(now),
                _ => POLL,
            };
            state = shared.changed.wait_timeout(state, wait.min(POLL)).unwrap_or_else(|p| p.into_inner()).0;
            continue;
        }
        let (Some(datagram), Some(client)) = (state.queue.pop_front(), state.client) else { continue };
        if let Mode::Drip { interval } = state.mode {
            next_slot = now + interval;
        }
        drop(state);
        shared.counters.to_client.fetch_add(1, Ordering::Relaxed);
        let _ = listen.send_to(&datagram, client);
        state = shared.state.lock().unwrap_or_else(|p| p.into_inner());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An echo server on loopback, and a client socket talking to it through a relay.
    fn echo_through_relay() -> Result<(Relay, UdpSocket, JoinHandle<()>, Arc<AtomicBool>)> {
        let server = UdpSocket::bind("127.0.0.1:0")?;
        server.set_read_timeout(Some(POLL))?;
        let relay = Relay::start(server.local_addr()?)?;
        let stop = Arc::new(AtomicBool::new(false));
        let echo = std::thread::spawn({
            let stop = Arc::clone(&stop);
            move || {
                let mut buf = [0u8; 64];
                while !stop.load(Ordering::SeqCst) {
                    if let Ok((n, from)) = server.recv_from(&mut buf) {
                        // Three answers to each datagram.
                        for _ in 0..3 {
                            let _ = server.send_to(&buf[..n], from);
                        }
                    }
                }
            }
        });
        let client = UdpSocket::bind("127.0.0.1:0")?;
        client.connect(relay.addr())?;
        client.set_read_timeout(Some(Duration::from_secs(5)))?;
        Ok((relay, client, echo, stop))
    }

    #[test]
    fn a_dripping_relay_holds_answers_back_until_their_slot_and_passing_flushes_them() -> Result<()> {
        let (relay, client, echo, stop) = echo_through_relay()?;
        let mut buf = [0u8; 64];
        client.send(b"ping")?;
        for _ in 0..3 {
            assert_eq!(client.recv(&mut buf)?, 4, "pass mode forwards everything");
        }

        // One datagram an hour: the first answer goes out, the others wait.
        relay.set_mode(Mode::Drip { interval: Duration::from_secs(3600) });
        client.send(b"drip")?;
        assert_eq!(client.recv(&mut buf)?, 4);
        client.set_read_timeout(Some(Duration::from_millis(300)))?;
        let held = client.recv(&mut buf).expect_err("a second answer within its hour");
        assert!(is_timeout(&held), "{held}");

        relay.set_mode(Mode::Pass);
        client.set_read_timeout(Some(Duration::from_secs(10)))?;
        for _ in 0..2 {
            assert_eq!(client.recv(&mut buf)?, 4, "switching to pass flushes the queue");
        }
        assert_eq!(relay.counters().to_server.load(Ordering::Relaxed), 2);
        assert_eq!(relay.counters().to_client.load(Ordering::Relaxed), 6);
        stop.store(true, Ordering::SeqCst);
        echo.join().ok();
        Ok(())
    }
}
