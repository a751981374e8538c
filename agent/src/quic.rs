//! The QUIC client: TLS 1.3 only, the enrolled CA as the only trust anchor,
//! the enrolled certificate as client identity, the Flotte ALPN, no 0-RTT.
//!
//! Guarantees: the connection is made only to a server whose certificate
//! chains to `identity/ca.crt` and names the enrolled controller host; early
//! data is disabled in the TLS config and `into_0rtt` is never called.
//! A server certificate this agent rejects is reported as
//! [`AgentError::UntrustedController`], never as a plain connection failure.

use crate::error::{AgentError, Result};
use crate::identity;
use crate::state_dir::StateDir;
use quinn::crypto::rustls::QuicClientConfig;
use quinn::{Connection, Endpoint, IdleTimeout, TransportConfig, VarInt};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// Keep-alive ping interval; well under the idle timeout.
pub const KEEP_ALIVE: Duration = Duration::from_secs(10);
/// A connection silent for this long is dead.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// A handshake unanswered for this long has failed. A controller that is
/// down does not answer at all (UDP: no connection refused), so this bounds
/// each attempt; the backoff between attempts spreads a fleet's retries.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Kernel buffer of the agent's UDP socket, each way: a download at full
/// speed must not lose datagrams while the agent is busy hashing (Linux's
/// default is 208 KiB; the kernel caps the request at `net.core.rmem_max`).
pub const SOCKET_BUFFER: usize = 2 << 20;

/// A client endpoint on a fresh UDP socket bound to `bind`, with `buffer`
/// bytes of kernel buffer asked for each way (best effort: the kernel may
/// grant less).
pub fn client_endpoint(bind: SocketAddr, buffer: usize) -> std::io::Result<Endpoint> {
    let socket = std::net::UdpSocket::bind(bind)?;
    let state = quinn::udp::UdpSocketState::new((&socket).into())?;
    // Best effort, as documented: a smaller buffer still works.
    let _ = state.set_recv_buffer_size((&socket).into(), buffer);
    let _ = state.set_send_buffer_size((&socket).into(), buffer);
    Endpoint::new(quinn::EndpointConfig::default(), None, socket, Arc::new(quinn::TokioRuntime))
}

/// Builds the client configuration from the enrolled identity.
pub fn client_config(state: &StateDir) -> Result<quinn::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for ca in identity::load_certs(&state.ca_cert())? {
        roots.add(ca).map_err(|e| tls_error(format!("{}: {e}", state.ca_cert().display())))?;
    }
    let chain = identity::load_certs(&state.agent_cert())?;
    let key = identity::load_key(&state.agent_key())?;
    client_config_with(roots, chain, key)
}

/// Builds the client configuration from an identity already in memory: the
/// controller CA as the only root, the agent's certificate chain and key.
/// [`client_config`] reads them from the state directory; the fleet
/// simulator keeps thousands of identities in memory.
pub fn client_config_with(
    roots: rustls::RootCertStore,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<quinn::ClientConfig> {
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
    let endpoint = client_endpoint(bind, SOCKET_BUFFER)
        .map_err(|e| AgentError::Connection { addr, reason: format!("cannot bind {bind}: {e}") })?;
    let connection = connect_on(&endpoint, config, addr, host).await?;
    Ok((endpoint, connection))
}

/// Connects through an existing `endpoint` to `addr`, whose certificate
/// must name `server_name`, and completes the handshake within
/// [`CONNECT_TIMEOUT`]. Many connections may share one endpoint (the fleet
/// simulator runs thousands of agents over one UDP socket).
pub async fn connect_on(
    endpoint: &Endpoint,
    config: &quinn::ClientConfig,
    addr: SocketAddr,
    server_name: &str,
) -> Result<Connection> {
    let conn_err = |reason: String| AgentError::Connection { addr, reason };
    let connecting = endpoint.connect_with(config.clone(), addr, server_name).map_err(|e| conn_err(e.to_string()))?;
    let answered = tokio::time::timeout(CONNECT_TIMEOUT, connecting).await;
    answered.map_err(|_| conn_err(format!("no answer within {CONNECT_TIMEOUT:?}")))?.map_err(|e| match e {
        quinn::ConnectionError::TransportError(t) if rejected_by_us(t.code) => {
            AgentError::UntrustedController { addr, reason: t.to_string() }
        }
        other => conn_err(other.to_string()),
    })
}

/// A TLS failure raised by this side of the handshake (QUIC crypto error
/// codes are 0x100 + the TLS alert). The only certificate this client
/// checks is the server's; a rejection of the agent's own certificate by
/// the server arrives as `ConnectionClosed` instead.
fn rejected_by_us(code: quinn::TransportErrorCode) -> bool {
    (0x100..0x200).contains(&u64::from(code))
}

fn tls_error(reason: String) -> AgentError {
    AgentError::TlsConfig { reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_tls_failures_count_as_a_rejected_controller() {
        // 48 = unknown_ca: the server's certificate is not from our CA.
        assert!(rejected_by_us(quinn::TransportErrorCode::crypto(48)));
        assert!(rejected_by_us(quinn::TransportErrorCode::crypto(42)));
        assert!(!rejected_by_us(quinn::TransportErrorCode::PROTOCOL_VIOLATION));
        assert!(!rejected_by_us(quinn::TransportErrorCode::CONNECTION_REFUSED));
    }
}
