//! The QUIC client: TLS 1.3 only, the enrolled CA as the only trust anchor,
//! the enrolled certificate as client identity, the Flotte ALPN, no 0-RTT.
//!
//! Guarantees: the connection is made only to a server whose certificate
//! chains to `identity/ca.crt` and names the enrolled controller host; early
//! data is disabled in the TLS config and `into_0rtt` is never called.

use crate::error::{AgentError, Result};
use crate::identity;
use crate::state_dir::StateDir;
use quinn::crypto::rustls::QuicClientConfig;
use quinn::{Connection, Endpoint, IdleTimeout, TransportConfig, VarInt};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// Keep-alive ping interval; well under the idle timeout.
pub const KEEP_ALIVE: Duration = Duration::from_secs(10);
/// A connection silent for this long is dead.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Builds the client configuration from the enrolled identity.
pub fn client_config(state: &StateDir) -> Result<quinn::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for ca in identity::load_certs(&state.ca_cert())? {
        roots.add(ca).map_err(|e| tls_error(format!("{}: {e}", state.ca_cert().display())))?;
    }
    let chain = identity::load_certs(&state.agent_cert())?;
    let key = identity::load_key(&state.agent_key())?;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| tls_error(e.to_string()))?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| tls_error(format!("agent certificate and key: {e}")))?;
    tls.alpn_protocols = vec![flotte_protocol::ALPN.to_vec()];
    tls.enable_early_data = false;

    let crypto = QuicClientConfig::try_from(tls).map_err(|e| tls_error(e.to_string()))?;
    let mut transport = TransportConfig::default();
    transport
        .keep_alive_interval(Some(KEEP_ALIVE))
        .max_idle_timeout(Some(IdleTimeout::try_from(IDLE_TIMEOUT).map_err(|e| tls_error(e.to_string()))?))
        // Bounded buffers: one stream holds at most 2 MiB, the connection 8 MiB.
        .stream_receive_window(VarInt::from_u32(2 << 20))
        .receive_window(VarInt::from_u32(8 << 20));
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(Arc::new(transport));
    Ok(config)
}

/// Resolves `host`, connects and completes the handshake. The endpoint is
/// returned too so that it can be drained on shutdown.
pub async fn connect(config: &quinn::ClientConfig, host: &str, port: u16) -> Result<(Endpoint, Connection)> {
    let resolve_err = |reason: String| AgentError::Resolve { host: host.to_string(), reason };
    let addr = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| resolve_err(e.to_string()))?
        .next()
        .ok_or_else(|| resolve_err("no address".into()))?;
    let bind: SocketAddr =
        if addr.is_ipv6() { (Ipv6Addr::UNSPECIFIED, 0).into() } else { (Ipv4Addr::UNSPECIFIED, 0).into() };
    let conn_err = |reason: String| AgentError::Connection { addr, reason };
    let endpoint = Endpoint::client(bind).map_err(|e| conn_err(format!("cannot bind {bind}: {e}")))?;
    let connecting = endpoint.connect_with(config.clone(), addr, host).map_err(|e| conn_err(e.to_string()))?;
    let connection = connecting.await.map_err(|e| conn_err(e.to_string()))?;
    Ok((endpoint, connection))
}

fn tls_error(reason: String) -> AgentError {
    AgentError::TlsConfig { reason }
}
