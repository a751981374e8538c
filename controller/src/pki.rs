//! The controller's public-key infrastructure: its own CA, the server
//! certificate agents and admins verify, and the client certificates that
//! identify agents.
//!
//! Guarantees:
//! - Only TLS 1.3 is offered, on QUIC and HTTPS alike. 0-RTT is off
//!   (`max_early_data_size` stays 0).
//! - The QUIC endpoint *requires* a client certificate issued by this CA;
//!   anything else fails the handshake.
//! - An agent is identified by the SHA-256 fingerprint of its certificate,
//!   which the store maps to an agent id. Message fields are never trusted
//!   for identity.

use crate::datadir::{DataDir, write_atomic};
use crate::error::ControllerError;
use flotte_protocol::Sha256Digest;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PublicKeyData, SignatureAlgorithm,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::sync::Arc;

/// The parameters of the CA certificate. They are a pure function, so the
/// issuer can be rebuilt from the stored key alone without parsing X.509.
fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Flotte");
    dn.push(DnType::CommonName, "Flotte controller CA");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    params
}

/// The controller's certificate authority.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    /// Creates a new CA key and certificate in `dir` (key mode 0600).
    pub fn create(dir: &DataDir) -> Result<Self, ControllerError> {
        let key = KeyPair::generate()?;
        let cert = ca_params().self_signed(&key)?;
        write_atomic(&dir.ca_key(), key.serialize_pem().as_bytes(), 0o600)?;
        write_atomic(&dir.ca_cert(), cert.pem().as_bytes(), 0o644)?;
        Ok(Ca { issuer: Issuer::new(ca_params(), key) })
    }

    pub fn load(dir: &DataDir) -> Result<Self, ControllerError> {
        let pem =
            std::fs::read_to_string(dir.ca_key()).map_err(ControllerError::io("cannot read CA key", dir.ca_key()))?;
        Ok(Ca { issuer: Issuer::new(ca_params(), KeyPair::from_pem(&pem)?) })
    }

    /// Issues the TLS server certificate for `hostnames` (DNS names or IP
    /// addresses) and stores it in `dir`.
    pub fn issue_server_cert(&self, dir: &DataDir, hostnames: &[String]) -> Result<(), ControllerError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(hostnames.to_vec())?;
        params.distinguished_name.push(DnType::CommonName, "Flotte controller");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &self.issuer)?;
        write_atomic(&dir.server_key(), key.serialize_pem().as_bytes(), 0o600)?;
        write_atomic(&dir.server_cert(), cert.pem().as_bytes(), 0o644)
    }

    /// Issues a client certificate for an enrolling agent. The agent keeps
    /// its private key; only the public point crosses the network.
    pub fn issue_agent_cert(&self, agent_id: &str, public_key: &[u8]) -> Result<IssuedCert, ControllerError> {
        let key = AgentPublicKey::new(public_key)?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, agent_id);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(IssuedCert { pem: cert.pem(), fingerprint: fingerprint(cert.der()) })
    }
}

/// A freshly issued agent certificate.
pub struct IssuedCert {
    pub pem: String,
    /// SHA-256 of the DER, the agent's identity at every handshake.
    pub fingerprint: String,
}

/// An agent's ECDSA P-256 public key, as an uncompressed SEC1 point.
struct AgentPublicKey(Vec<u8>);

impl AgentPublicKey {
    fn new(raw: &[u8]) -> Result<Self, ControllerError> {
        if raw.len() != 65 || raw[0] != 0x04 {
            return Err(ControllerError::Other(format!(
                "agent public key must be an uncompressed P-256 point (65 bytes starting 0x04), got {} bytes",
                raw.len()
            )));
        }
        Ok(AgentPublicKey(raw.to_vec()))
    }
}

impl PublicKeyData for AgentPublicKey {
    fn der_bytes(&self) -> &[u8] {
        &self.0
    }
    fn algorithm(&self) -> &'static SignatureAlgorithm {
        &PKCS_ECDSA_P256_SHA256
    }
}

/// The SHA-256 fingerprint (hex) of a DER certificate.
pub fn fingerprint(der: &[u8]) -> String {
    Sha256Digest::of(der).to_hex()
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn load_server_identity(
    dir: &DataDir,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), ControllerError> {
    let bad = |p: std::path::PathBuf| {
        move |e: rustls::pki_types::pem::Error| ControllerError::Corrupt(format!("{}: {e}", p.display()))
    };
    let chain = CertificateDer::pem_file_iter(dir.server_cert())
        .map_err(bad(dir.server_cert()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(bad(dir.server_cert()))?;
    let key = PrivateKeyDer::from_pem_file(dir.server_key()).map_err(bad(dir.server_key()))?;
    Ok((chain, key))
}

fn ca_roots(dir: &DataDir) -> Result<rustls::RootCertStore, ControllerError> {
    let ca = CertificateDer::from_pem_file(dir.ca_cert())
        .map_err(|e| ControllerError::Corrupt(format!("{}: {e}", dir.ca_cert().display())))?;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca)?;
    Ok(roots)
}

/// TLS for the HTTPS API: server authentication only (admins use a token,
/// agents enrolling use a one-time token).
pub fn https_server_config(dir: &DataDir) -> Result<rustls::ServerConfig, ControllerError> {
    let (chain, key) = load_server_identity(dir)?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// QUIC for agents: mutual TLS 1.3 with this CA, ALPN `flotte/1`, no 0-RTT,
/// and small per-connection limits so idle agents stay cheap
/// ([`crate::quic::transport`]).
pub fn quic_server_config(dir: &DataDir) -> Result<quinn::ServerConfig, ControllerError> {
    let (chain, key) = load_server_identity(dir)?;
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(ca_roots(dir)?), provider())
        .build()
        .map_err(|e| ControllerError::Other(format!("client verifier: {e}")))?;
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    tls.alpn_protocols = vec![flotte_protocol::ALPN.to_vec()];
    tls.max_early_data_size = 0;
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
        .map_err(|e| ControllerError::Other(format!("QUIC TLS config: {e}")))?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let transport = crate::quic::transport::agent_transport();
    config
        .transport_config(Arc::new(transport))
        .incoming_buffer_size(crate::quic::transport::WAITING_BUFFER)
        .incoming_buffer_size_total(crate::quic::transport::WAITING_BUFFER_TOTAL);
    Ok(config)
}

/// Client-side roots for talking to this controller (used by tests and the
/// lab, which hold the CA file).
pub fn client_roots(ca_pem: &[u8]) -> Result<rustls::RootCertStore, ControllerError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(cert.map_err(|e| ControllerError::Corrupt(format!("CA certificate: {e}")))?)?;
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_certificates_need_an_uncompressed_p256_point() {
        let dir = tempfile::tempdir().unwrap();
        let dd = DataDir::new(dir.path());
        let ca = Ca::create(&dd).unwrap();
        assert!(ca.issue_agent_cert("a", &[4u8; 10]).is_err());
        let agent_key = KeyPair::generate().unwrap();
        let a = ca.issue_agent_cert("agt-1", agent_key.public_key_raw()).unwrap();
        let b = ca.issue_agent_cert("agt-2", agent_key.public_key_raw()).unwrap();
        assert_ne!(a.fingerprint, b.fingerprint);
        assert!(a.pem.starts_with("-----BEGIN CERTIFICATE-----"));
    }

    #[test]
    fn a_reloaded_ca_and_its_certificates_build_tls_configs() {
        let dir = tempfile::tempdir().unwrap();
        let dd = DataDir::new(dir.path());
        Ca::create(&dd).unwrap();
        let ca = Ca::load(&dd).unwrap();
        ca.issue_server_cert(&dd, &["localhost".into(), "127.0.0.1".into()]).unwrap();
        // Building the verifier-backed QUIC config parses everything we wrote.
        quic_server_config(&dd).unwrap();
        https_server_config(&dd).unwrap();
        let roots = client_roots(&std::fs::read(dd.ca_cert()).unwrap()).unwrap();
        assert_eq!(roots.len(), 1);
    }
}
