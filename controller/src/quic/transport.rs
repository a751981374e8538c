//! The QUIC transport settings of the agent endpoint, sized for tens of
//! thousands of mostly idle agents (measured by `flotte-bench scale`, see
//! docs/BENCHMARKS.md).
//!
//! What an idle connection costs is mostly what its peer is *allowed* to
//! do: quinn sets up state for every stream the agent may open, and the
//! receive windows bound what the controller buffers from each agent.
//! Agents send only small frames upstream (the largest is a `Hello` with a
//! full dpkg inventory, under the 1 MiB frame cap, which flows through a
//! small window in steps), and open at most two streams at once: the
//! control stream and one content stream. The send window bounds only
//! content in flight and is allocated as content is written, so it stays
//! at quinn's default: it costs an idle agent nothing and keeps a single
//! download fast on a link with latency. What a content stream buffers is
//! refcounted slices of the shared content cache (`content::cache`), not
//! copies: a 1 MiB send window left the controller's peak RSS where it was
//! (86.0 against 86.5 MiB, `flotte-bench fanout --agents 100 --size-mib 30`).
//!
//! Keep-alives come from the agents (`flotte_agent::quic::KEEP_ALIVE`); the
//! controller sends none, so an idle fleet costs it one received packet
//! and one acknowledgement per agent per keep-alive interval.

use std::net::UdpSocket;
use std::time::Duration;

/// A connection with no traffic (agents keep it alive) for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Streams an agent may have open at once: control, content, and slack
/// for a content stream that is still closing while the next opens.
pub const MAX_BIDI_STREAMS: u32 = 4;
/// Flow-control window of one stream from an agent.
pub const STREAM_RECEIVE_WINDOW: u32 = 64 * 1024;
/// Flow-control window of everything from one agent.
pub const RECEIVE_WINDOW: u32 = 256 * 1024;

/// Shortest gap between two stateless resets the endpoint sends: none.
/// After a controller crash, every agent learns that its connection is gone
/// from the reset its next keep-alive provokes. quinn's default allows one
/// reset every 20 ms, and it compares against the arrival time of the whole
/// batch of datagrams read at once, so any gap at all drops most of a burst
/// of keep-alives without a reset: with 500 µs, 3,000 agents provoked
/// 20,135 ignored packets and 13% of 10,000 agents waited out the idle
/// timeout; with none, 9,999 of 10,000 noticed by a reset, 99% within
/// 11.7 s of the restart (`flotte-bench scale`, docs/BENCHMARKS.md).
/// Unlimited resets are safe here: a reset is always smaller than the
/// packet that provoked it, so it cannot amplify; only connection ids that
/// pass this controller's keyed check are answered (see `server::bind_quic`),
/// so random packets provoke nothing; and a reset loop between two
/// endpoints shrinks to nothing by itself.
pub const MIN_RESET_INTERVAL: Duration = Duration::ZERO;

/// Datagrams buffered for one connection attempt while it waits for a
/// handshake slot (`quic::admission`): an agent's Initial and its
/// retransmissions, a few KiB. quinn's default is 10 MiB.
pub const WAITING_BUFFER: u64 = 64 * 1024;
/// Datagrams buffered for all waiting attempts together (quinn's default:
/// 100 MiB); beyond it, further datagrams for waiting attempts are dropped
/// and their agents retransmit.
pub const WAITING_BUFFER_TOTAL: u64 = 32 << 20;

/// Kernel buffer of the endpoint's UDP socket, each way. Every agent's
/// datagrams land in this one socket; at Linux's default of 208 KiB a burst
/// of handshakes or acknowledgements from a busy fleet overflows it while
/// the endpoint is busy, and the datagrams are lost (measured with
/// `flotte-bench`, docs/BENCHMARKS.md). The kernel caps what it grants at
/// `net.core.rmem_max` / `wmem_max`.
pub const SOCKET_BUFFER: usize = 8 << 20;
/// A granted receive buffer below this is worth a warning: it is the
/// kernel's default cap, not a tuned one.
pub const MIN_SOCKET_BUFFER: usize = 1 << 20;

/// Asks for [`SOCKET_BUFFER`] both ways on `socket`; returns the receive
/// buffer the kernel granted (which may be less).
pub fn size_socket_buffers(socket: &UdpSocket) -> std::io::Result<usize> {
    let state = quinn::udp::UdpSocketState::new(socket.into())?;
    state.set_recv_buffer_size(socket.into(), SOCKET_BUFFER)?;
    state.set_send_buffer_size(socket.into(), SOCKET_BUFFER)?;
    // Linux reports twice what was granted (the other half is its bookkeeping).
    Ok(state.recv_buffer_size(socket.into())? / 2)
}

/// The transport configuration of the agent endpoint.
pub fn agent_transport() -> quinn::TransportConfig {
    let mut transport = quinn::TransportConfig::default();
    transport
        .max_idle_timeout(quinn::IdleTimeout::try_from(IDLE_TIMEOUT).ok())
        .keep_alive_interval(None)
        .max_concurrent_bidi_streams(MAX_BIDI_STREAMS.into())
        .max_concurrent_uni_streams(0u32.into())
        .stream_receive_window(STREAM_RECEIVE_WINDOW.into())
        .receive_window(RECEIVE_WINDOW.into())
        .datagram_receive_buffer_size(None);
    transport
}
