//! Reading the agent's PEM identity: the controller CA, the client
//! certificate and the private key.
//!
//! Guarantee: a file that holds no certificate (or no key) is an error that
//! names the file; an empty trust store is never built.

use crate::error::{AgentError, Result};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;

/// Every certificate in the PEM file at `path`, at least one.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let bytes = std::fs::read(path).map_err(AgentError::io("read certificate", path))?;
    parse_certs(&bytes, path)
}

/// The certificates in `pem`; `path` names the source in errors.
pub fn parse_certs(pem: &[u8], path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| AgentError::Pem { path: path.to_path_buf(), reason: format!("invalid PEM: {e}") })?;
    if certs.is_empty() {
        return Err(AgentError::Pem { path: path.to_path_buf(), reason: "no certificate found".into() });
    }
    Ok(certs)
}

/// The private key in the PEM file at `path`.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    let bytes = std::fs::read(path).map_err(AgentError::io("read private key", path))?;
    PrivateKeyDer::from_pem_slice(&bytes)
        .map_err(|e| AgentError::Pem { path: path.to_path_buf(), reason: format!("no usable private key: {e}") })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_without_certificates_are_named_in_the_error() {
        let err = parse_certs(b"not pem", Path::new("/x/ca.pem")).unwrap_err().to_string();
        assert!(err.contains("/x/ca.pem") && err.contains("no certificate"), "{err}");
    }

    #[test]
    fn generated_certificates_and_keys_parse() {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["ctl".into()]).unwrap().self_signed(&key).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (c, k) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        assert_eq!(load_certs(&c).unwrap().len(), 1);
        assert!(load_key(&k).is_ok());
    }
}
