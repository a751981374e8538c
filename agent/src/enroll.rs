//! `flotte-agent enroll`: trade a one-time token for a client certificate.
//!
//! Guarantees:
//! - The private key is generated here and never leaves the host; only its
//!   public half is sent.
//! - The HTTPS request trusts only the CA given with `--ca`, not the system
//!   roots, and the controller's certificate must match the host name given.
//! - Nothing is written unless the controller accepted; `enrollment.toml` is
//!   written last, so it exists only next to a complete identity.
//! - An existing enrollment is never overwritten.
//! - The TUF root the admin gave (`--trust-root`) must verify against its
//!   own keys before anything is sent; it is pinned in the state directory,
//!   and every later root must chain from it. The controller's word is not
//!   taken for it: a root fetched from the controller would let whoever
//!   holds the controller (and its CA key) pick the agent's root of trust.

use crate::durable;
use crate::enrollment::Enrollment;
use crate::error::{AgentError, Result};
use crate::identity;
use crate::inventory;
use crate::state_dir::StateDir;
use crate::tuf_store::TufStore;
use flotte_protocol::api::{ApiError, EnrollRequest, EnrollResponse};
use flotte_protocol::tuf::{self, TrustedMetadataSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How long the whole enrollment request may take.
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);

/// Inputs of `flotte-agent enroll`.
#[derive(Debug, Clone)]
pub struct EnrollOptions {
    /// `HOST:PORT` of the controller's HTTPS API.
    pub controller: String,
    /// The one-time enrollment token.
    pub token: String,
    /// PEM file of the controller CA.
    pub ca: PathBuf,
    pub state: StateDir,
    /// Enroll under this name instead of the OS hostname.
    pub hostname: Option<String>,
    /// The TUF `root.json` the admin distributes (`flottectl trust init`).
    pub trust_root: PathBuf,
}

/// A controller address split into host and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    /// Host name or IP address, without brackets.
    pub host: String,
    pub port: u16,
}

impl HostPort {
    /// Parses `HOST:PORT`, `1.2.3.4:PORT` or `[v6]:PORT`.
    pub fn parse(value: &str) -> Result<Self> {
        let bad = || AgentError::ControllerAddress { value: value.to_string() };
        let (host, port) = value.rsplit_once(':').ok_or_else(bad)?;
        let host = match host.strip_prefix('[') {
            Some(rest) => rest.strip_suffix(']').ok_or_else(bad)?,
            None if host.contains(':') => return Err(bad()),
            None => host,
        };
        let port: u16 = port.parse().map_err(|_| bad())?;
        if host.is_empty() || port == 0 {
            return Err(bad());
        }
        Ok(HostPort { host: host.to_string(), port })
    }

    /// The host as it goes into a URL (IPv6 addresses in brackets).
    pub fn url_host(&self) -> String {
        if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() }
    }
}

/// Enrolls this host and stores its identity in the state directory.
pub fn enroll(opts: &EnrollOptions) -> Result<Enrollment> {
    let target = HostPort::parse(&opts.controller)?;
    if let Ok(existing) = Enrollment::load(&opts.state) {
        return Err(AgentError::AlreadyEnrolled {
            path: opts.state.enrollment(),
            agent_id: existing.agent_id.to_string(),
        });
    }
    let root = read_trust_root(&opts.trust_root)?;
    let ca_pem = std::fs::read(&opts.ca).map_err(AgentError::io("read CA certificate", &opts.ca))?;
    let ca = identity::parse_certs(&ca_pem, &opts.ca)?;

    let key = rcgen::KeyPair::generate()?;
    let request = EnrollRequest {
        token: opts.token.clone(),
        hostname: inventory::hostname(opts.hostname.as_deref()),
        public_key: key.public_key_raw().to_vec(),
    };
    let response = post_enroll(&target, &ca, &request)?;
    identity::parse_certs(response.certificate_pem.as_bytes(), &opts.state.agent_cert())?;

    let state = &opts.state;
    durable::create_dir(&state.identity_dir())?;
    durable::write(&state.agent_key(), key.serialize_pem().as_bytes(), durable::PRIVATE)?;
    durable::write(&state.agent_cert(), response.certificate_pem.as_bytes(), durable::STATE)?;
    durable::write(&state.ca_cert(), &ca_pem, durable::STATE)?;
    TufStore::open(&state.tuf_dir())?.save(tuf::ROOT, &root)?;
    let enrollment = Enrollment {
        agent_id: response.agent_id,
        controller: target.host,
        quic_port: response.quic_port,
        hostname: opts.hostname.clone(),
    };
    enrollment.save(state)?;
    Ok(enrollment)
}

/// Reads `path` (at most the root size limit) and checks that it is a root
/// signed by its own threshold.
fn read_trust_root(path: &std::path::Path) -> Result<Vec<u8>> {
    use std::io::Read as _;
    let file = std::fs::File::open(path).map_err(AgentError::io("open TUF root", path))?;
    let mut bytes = Vec::new();
    file.take(tuf::MAX_ROOT_LEN as u64 + 1).read_to_end(&mut bytes).map_err(AgentError::io("read TUF root", path))?;
    TrustedMetadataSet::new(&bytes)
        .map_err(|e| AgentError::TrustRoot { path: path.to_path_buf(), reason: e.to_string() })?;
    Ok(bytes)
}

fn post_enroll(
    target: &HostPort,
    ca: &[rustls_pki_types::CertificateDer<'static>],
    request: &EnrollRequest,
) -> Result<EnrollResponse> {
    use ureq::tls::{Certificate, RootCerts, TlsConfig, TlsProvider};
    let roots: Vec<Certificate<'static>> = ca.iter().map(|c| Certificate::from_der(c.as_ref()).to_owned()).collect();
    let tls =
        TlsConfig::builder().provider(TlsProvider::Rustls).root_certs(RootCerts::Specific(Arc::new(roots))).build();
    let agent = ureq::Agent::config_builder()
        .tls_config(tls)
        .http_status_as_error(false)
        .timeout_global(Some(HTTP_TIMEOUT))
        .build()
        .new_agent();

    let url = format!("https://{}:{}/v1/enroll", target.url_host(), target.port);
    let mut response =
        agent.post(&url).send_json(request).map_err(|e| AgentError::Http { url: url.clone(), source: Box::new(e) })?;
    let status = response.status();
    if status.is_success() {
        return response
            .body_mut()
            .read_json::<EnrollResponse>()
            .map_err(|e| AgentError::BadResponse { status: status.as_u16(), detail: e.to_string() });
    }
    let body = response.body_mut().read_to_string().unwrap_or_default();
    Err(match serde_json::from_str::<ApiError>(&body) {
        Ok(api) if status.is_client_error() => {
            AgentError::EnrollRefused { status: status.as_u16(), error: api.error, hint: api.hint }
        }
        Ok(api) => AgentError::BadResponse { status: status.as_u16(), detail: api.error },
        Err(_) => AgentError::BadResponse { status: status.as_u16(), detail: body.chars().take(200).collect() },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controller_addresses_parse_with_names_v4_and_v6() {
        assert_eq!(HostPort::parse("ctl.example:8443").unwrap(), HostPort { host: "ctl.example".into(), port: 8443 });
        assert_eq!(HostPort::parse("10.0.0.1:1").unwrap().host, "10.0.0.1");
        let v6 = HostPort::parse("[::1]:4433").unwrap();
        assert_eq!((v6.host.as_str(), v6.url_host().as_str()), ("::1", "[::1]"));
        for bad in ["ctl", "ctl:", ":80", "ctl:0", "ctl:x", "::1:80", "[::1:80", "ctl:70000"] {
            assert!(HostPort::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn a_refusal_reads_like_the_controller_said_it() {
        let e = AgentError::EnrollRefused {
            status: 409,
            error: "enrollment token already used".into(),
            hint: Some("ask for a new token".into()),
        };
        assert_eq!(e.to_string(), "enrollment refused: enrollment token already used (hint: ask for a new token)");
    }
}
