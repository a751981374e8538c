//! The QUIC endpoint agents connect to.
//!
//! [`admission`] decides which connection attempts get a handshake, and
//! when: at once, after a wait for a free slot, or not at all. Each
//! accepted connection has passed mutual TLS (see [`crate::pki`]).
//! [`session`] then maps the certificate to an agent and runs the control
//! stream; [`content`] serves content streams; [`transport`] sizes each
//! connection.

pub mod admission;
pub mod content;
pub mod frames;
pub mod session;
pub mod transport;

use crate::server::Services;
use admission::{Admission, HANDSHAKE_TIMEOUT, MAX_WAIT, Slot, Verdict, WaitingRoom};
use std::sync::Arc;
use tokio::time::Instant;
use tracing::{debug, info};

/// Accepts connections until `shutdown` resolves, then closes the endpoint.
pub async fn serve(endpoint: quinn::Endpoint, services: Arc<Services>, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    let admission = Admission::new(services.config.max_handshakes);
    let mut room: WaitingRoom<quinn::Incoming> = WaitingRoom::new(MAX_WAIT);
    loop {
        let now = Instant::now();
        for incoming in room.expired(now) {
            debug!(remote = %incoming.remote_address(), "QUIC connection refused: waited {MAX_WAIT:?} for a handshake slot");
            incoming.refuse();
        }
        while !room.is_empty() {
            let Some(slot) = admission.slot_for_waiting() else { break };
            if let Some((arrived, incoming)) = room.leave() {
                handshake(incoming, arrived, slot, &services);
            }
        }
        let next_expiry = room.next_expiry();
        let incoming = tokio::select! {
            incoming = endpoint.accept() => incoming,
            () = admission.freed(), if !room.is_empty() => continue,
            () = tokio::time::sleep_until(next_expiry.unwrap_or(now)), if next_expiry.is_some() => continue,
            () = &mut shutdown => break,
        };
        let Some(incoming) = incoming else { break };
        let remote = incoming.remote_address();
        match admission.admit(incoming.remote_address_validated(), room.len()) {
            Ok(slot) => handshake(incoming, Instant::now(), slot, &services),
            Err(Verdict::Retry) => {
                debug!(%remote, in_flight = admission.in_flight(), "QUIC address validation asked for");
                // Fails only for an address already validated, which is never retried.
                let _ = incoming.retry();
            }
            Err(Verdict::Wait) => room.enter(Instant::now(), incoming),
            Err(_refuse) => {
                debug!(%remote, in_flight = admission.in_flight(), waiting = room.len(), "QUIC connection refused: too many handshakes");
                incoming.refuse();
            }
        }
    }
    for (_, incoming) in std::iter::from_fn(|| room.leave()) {
        incoming.refuse();
    }
    endpoint.close(quinn::VarInt::from_u32(0), b"controller shutting down");
}

/// Runs the handshake of an attempt that arrived at `arrived`, holding
/// `slot` until it ends, then the agent's session.
fn handshake(incoming: quinn::Incoming, arrived: Instant, slot: Slot, services: &Arc<Services>) {
    let services = services.clone();
    let remote = incoming.remote_address();
    tokio::spawn(async move {
        let handshake = tokio::time::timeout_at(arrived + HANDSHAKE_TIMEOUT, incoming).await;
        drop(slot);
        match handshake {
            Ok(Ok(connection)) => session::run(connection, services).await,
            // Unknown CAs, missing client certificates and wrong ALPNs end here.
            Ok(Err(e)) => info!(%remote, error = %e, "QUIC handshake refused"),
            Err(_) => info!(%remote, "QUIC handshake abandoned after {HANDSHAKE_TIMEOUT:?}"),
        }
        debug!(%remote, "connection finished");
    });
}
