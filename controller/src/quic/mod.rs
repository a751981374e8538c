//! The QUIC endpoint agents connect to.
//!
//! [`admission`] decides which connection attempts get a handshake. Each
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
use admission::{Admission, HANDSHAKE_TIMEOUT, Verdict};
use std::sync::Arc;
use tracing::{debug, info};

/// Accepts connections until `shutdown` resolves, then closes the endpoint.
pub async fn serve(endpoint: quinn::Endpoint, services: Arc<Services>, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    let admission = Admission::new(services.config.max_handshakes);
    loop {
        let incoming = tokio::select! {
            incoming = endpoint.accept() => incoming,
            () = &mut shutdown => break,
        };
        let Some(incoming) = incoming else { break };
        let remote = incoming.remote_address();
        let (verdict, slot) = admission.admit(incoming.remote_address_validated());
        match verdict {
            Verdict::Accept => {}
            Verdict::Retry => {
                debug!(%remote, in_flight = admission.in_flight(), "QUIC address validation asked for");
                // Fails only for an address already validated, which is never retried.
                let _ = incoming.retry();
                continue;
            }
            Verdict::Refuse => {
                debug!(%remote, in_flight = admission.in_flight(), "QUIC connection refused: too many handshakes");
                incoming.refuse();
                continue;
            }
        }
        let services = services.clone();
        tokio::spawn(async move {
            let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, incoming).await;
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
    endpoint.close(quinn::VarInt::from_u32(0), b"controller shutting down");
}
