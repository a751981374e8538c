//! The QUIC endpoint agents connect to.
//!
//! Each accepted connection has already passed mutual TLS (see [`crate::pki`]).
//! [`session`] then maps the certificate to an agent and runs the control
//! stream; [`content`] serves content streams; [`transport`] sizes each
//! connection.

pub mod content;
pub mod frames;
pub mod session;
pub mod transport;

use crate::server::Services;
use std::sync::Arc;
use tracing::{debug, info};

/// Accepts connections until `shutdown` resolves, then closes the endpoint.
pub async fn serve(endpoint: quinn::Endpoint, services: Arc<Services>, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    loop {
        let incoming = tokio::select! {
            incoming = endpoint.accept() => incoming,
            () = &mut shutdown => break,
        };
        let Some(incoming) = incoming else { break };
        let services = services.clone();
        tokio::spawn(async move {
            let remote = incoming.remote_address();
            match incoming.await {
                Ok(connection) => session::run(connection, services).await,
                // Unknown CAs, missing client certificates and wrong ALPNs end here.
                Err(e) => info!(%remote, error = %e, "QUIC handshake refused"),
            }
            debug!(%remote, "connection finished");
        });
    }
    endpoint.close(quinn::VarInt::from_u32(0), b"controller shutting down");
}
