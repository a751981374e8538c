//! A bare QUIC client for tests that must speak to the controller the way
//! an attacker or a broken peer would: without the agent's code.

use anyhow::{Context, Result};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

/// A client identity: certificate chain PEM and private key PEM.
pub struct Identity {
    pub cert_pem: String,
    pub key_pem: String,
}

impl Identity {
    /// An identity an enrolled agent stored in its state directory.
    pub fn from_agent_state(state_dir: &Path) -> Result<Self> {
        Ok(Identity {
            cert_pem: std::fs::read_to_string(state_dir.join("identity/agent.crt"))?,
            key_pem: std::fs::read_to_string(state_dir.join("identity/agent.key"))?,
        })
    }

    /// A certificate from a CA the controller has never seen.
    pub fn from_foreign_ca() -> Result<Self> {
        let ca_key = rcgen::KeyPair::generate()?;
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let key = rcgen::KeyPair::generate()?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, &issuer)?;
        Ok(Identity { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
    }
}

/// Connects to the controller's QUIC endpoint, trusting its CA, presenting
/// `identity` (or no certificate at all).
pub async fn connect(addr: SocketAddr, ca_path: &Path, identity: Option<&Identity>) -> Result<quinn::Connection> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_file(ca_path).context("CA")?)?;
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots);
    let mut tls = match identity {
        Some(id) => {
            let chain = CertificateDer::pem_slice_iter(id.cert_pem.as_bytes()).collect::<Result<Vec<_>, _>>()?;
            builder.with_client_auth_cert(chain, PrivateKeyDer::from_pem_slice(id.key_pem.as_bytes())?)?
        }
        None => builder.with_no_client_auth(),
    };
    tls.alpn_protocols = vec![flotte_protocol::ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)?;
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse()?)?;
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    Ok(endpoint.connect(addr, "localhost")?.await?)
}

/// Whether the server rejected the connection: either the handshake failed,
/// or the connection dies before a stream can be used.
pub async fn is_refused(connection: Result<quinn::Connection>) -> bool {
    let Ok(connection) = connection else { return true };
    // With TLS 1.3 the client may finish its side before the server has
    // checked the client certificate; the refusal then arrives as a close.
    let attempt = async {
        let (mut send, mut recv) = connection.open_bi().await?;
        send.write_all(&[0, 0, 0, 0]).await?;
        let mut buf = [0u8; 1];
        recv.read_exact(&mut buf).await?;
        anyhow::Ok(())
    };
    attempt.await.is_err() && connection.close_reason().is_some()
}
