//! A blocking client for the admin API, used by `flottectl`, the lab and
//! the integration tests.
//!
//! It trusts only the controller's CA (never the system roots) and speaks
//! TLS 1.3. Errors from the API keep the server's message and hint.

use flotte_protocol::api::{
    AgentView, ApiError, AssignmentView, DeployRequest, DeploymentView, OnlineKeysView, ReleaseView, ReportView,
    RolloutRequest, RolloutView, TokenRequest, TokenResponse, TufRoleView, TufUploadView,
};
use flotte_protocol::{AgentId, Sha256Digest};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Why an API call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the controller at {url}: {source}")]
    Transport { url: String, source: ureq::Error },
    #[error("controller refused the request ({status}): {}{}", .body.error, .body.hint.as_deref().map(|h| format!(" (hint: {h})")).unwrap_or_default())]
    Api { status: u16, body: ApiError },
    #[error("unexpected response from the controller: {0}")]
    Decode(String),
    #[error("cannot read the CA certificate: {0}")]
    Ca(String),
    #[error("cannot read {path}: {source}")]
    File { path: String, source: std::io::Error },
}

impl ClientError {
    /// The HTTP status, if the controller answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// A connection profile for one controller.
pub struct AdminClient {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
}

impl AdminClient {
    /// `base` is e.g. `https://localhost:7443`; `ca_pem` the controller's CA.
    pub fn new(base: &str, token: Option<String>, ca_pem: &[u8]) -> Result<Self, ClientError> {
        let cert = ureq::tls::Certificate::from_pem(ca_pem).map_err(|e| ClientError::Ca(e.to_string()))?.to_owned();
        let tls =
            ureq::tls::TlsConfig::builder().root_certs(ureq::tls::RootCerts::Specific(Arc::new(vec![cert]))).build();
        let agent = ureq::Agent::config_builder()
            .tls_config(tls)
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(10)))
            // No connection reuse: a pooled connection the server has just
            // closed makes a non-idempotent request (an upload, a publish)
            // fail half-way with "peer disconnected". A TLS handshake per
            // admin request is cheap next to that.
            .max_idle_connections(0)
            .max_idle_connections_per_host(0)
            .build()
            .into();
        Ok(AdminClient { base: base.trim_end_matches('/').to_string(), token, agent })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn auth(&self) -> String {
        format!("Bearer {}", self.token.as_deref().unwrap_or(""))
    }

    /// GETs are idempotent, so one that fails in transport (typically a
    /// pooled keep-alive connection the server has since closed, e.g. after
    /// a controller restart) is tried once more on a fresh connection.
    fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let url = self.url(path);
        let call = || {
            let mut req = self.agent.get(&url);
            if self.token.is_some() {
                req = req.header("Authorization", &self.auth());
            }
            req.call()
        };
        let response =
            call().or_else(|_| call()).map_err(|source| ClientError::Transport { url: url.clone(), source })?;
        decode(response)
    }

    fn post<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T, ClientError> {
        let url = self.url(path);
        let mut req = self.agent.post(&url);
        if self.token.is_some() {
            req = req.header("Authorization", &self.auth());
        }
        decode(req.send_json(body).map_err(|source| ClientError::Transport { url, source })?)
    }

    pub fn create_enrollment_token(&self, ttl: Duration) -> Result<TokenResponse, ClientError> {
        self.post("/v1/enrollment-tokens", &TokenRequest { ttl_seconds: ttl.as_secs().max(1) })
    }

    pub fn agents(&self) -> Result<Vec<AgentView>, ClientError> {
        self.get("/v1/agents")
    }

    pub fn reports(&self, agent: &AgentId) -> Result<Vec<ReportView>, ClientError> {
        self.get(&format!("/v1/agents/{}/reports", agent.0))
    }

    /// The controller's online TUF keys (timestamp, snapshot).
    pub fn tuf_online_keys(&self) -> Result<OnlineKeysView, ClientError> {
        self.get("/v1/tuf/online-keys")
    }

    /// Every stored TUF role with its expiry, and warnings.
    pub fn tuf_status(&self) -> Result<Vec<TufRoleView>, ClientError> {
        self.get("/v1/tuf/status")
    }

    /// Prepares (or returns the already prepared) next online keys, which
    /// the controller adopts once an uploaded root names them.
    pub fn tuf_next_online_keys(&self) -> Result<OnlineKeysView, ClientError> {
        self.post("/v1/tuf/online-keys/next", &serde_json::json!({}))
    }

    /// Uploads a root (the first, or the next of the chain).
    pub fn upload_root(&self, bytes: &[u8]) -> Result<TufUploadView, ClientError> {
        self.put_bytes("/v1/tuf/root", bytes)
    }

    /// Uploads a targets role (`targets` or a delegated role) signed offline.
    pub fn upload_role(&self, role: &str, bytes: &[u8]) -> Result<TufUploadView, ClientError> {
        let role = flotte_protocol::tuf::path::quote(role, "");
        self.put_bytes(&format!("/v1/tuf/roles/{role}"), bytes)
    }

    /// A TUF metadata file (`root.json` is the newest root); `None` if the
    /// repository has none.
    pub fn tuf_metadata(&self, file: &str) -> Result<Option<Vec<u8>>, ClientError> {
        let url = self.url(&format!("/v1/tuf/metadata/{}", flotte_protocol::tuf::path::quote(file, ".")));
        let response = self
            .agent
            .get(&url)
            .header("Authorization", &self.auth())
            .call()
            .map_err(|source| ClientError::Transport { url, source })?;
        if response.status().as_u16() == 404 {
            return Ok(None);
        }
        let mut response = check(response)?;
        let bytes = response
            .body_mut()
            .with_config()
            .limit(flotte_protocol::tuf::MAX_TARGETS_LEN as u64)
            .read_to_vec()
            .map_err(|e| ClientError::Decode(e.to_string()))?;
        Ok(Some(bytes))
    }

    fn put_bytes<T: DeserializeOwned>(&self, path: &str, bytes: &[u8]) -> Result<T, ClientError> {
        let url = self.url(path);
        let response = self
            .agent
            .put(&url)
            .header("Authorization", &self.auth())
            .header("Content-Type", "application/json")
            .send(bytes)
            .map_err(|source| ClientError::Transport { url, source })?;
        decode(response)
    }

    /// Streams a file to the content store under its digest.
    pub fn upload_content(&self, digest: &Sha256Digest, path: &Path) -> Result<(), ClientError> {
        let url = self.url(&format!("/v1/content/{digest}"));
        let file_err = |source| ClientError::File { path: path.display().to_string(), source };
        let mut file = std::fs::File::open(path).map_err(file_err)?;
        let len = file.metadata().map_err(file_err)?.len();
        let response = self
            .agent
            .put(&url)
            .header("Authorization", &self.auth())
            .header("Content-Length", &len.to_string())
            .send(ureq::SendBody::from_reader(&mut file))
            .map_err(|source| ClientError::Transport { url, source })?;
        check(response).map(|_| ())
    }

    pub fn releases(&self) -> Result<Vec<ReleaseView>, ClientError> {
        self.get("/v1/releases")
    }

    pub fn deploy(&self, request: &DeployRequest) -> Result<DeploymentView, ClientError> {
        self.post("/v1/deployments", request)
    }

    pub fn assignments(&self) -> Result<Vec<AssignmentView>, ClientError> {
        self.get("/v1/assignments")
    }

    pub fn create_rollout(&self, request: &RolloutRequest) -> Result<RolloutView, ClientError> {
        self.post("/v1/rollouts", request)
    }

    pub fn rollouts(&self) -> Result<Vec<RolloutView>, ClientError> {
        self.get("/v1/rollouts")
    }

    pub fn rollout(&self, id: u64) -> Result<RolloutView, ClientError> {
        self.get(&format!("/v1/rollouts/{id}"))
    }

    /// `command` is `pause`, `resume`, `approve` or `abort`.
    pub fn rollout_command(&self, id: u64, command: &str) -> Result<RolloutView, ClientError> {
        self.post(&format!("/v1/rollouts/{id}/{command}"), &serde_json::json!({}))
    }

    /// Rolls back every agent that committed rollout `id` to its previous version.
    pub fn rollback(
        &self,
        id: u64,
        request: &flotte_protocol::api::RollbackRequest,
    ) -> Result<flotte_protocol::api::RollbackView, ClientError> {
        self.post(&format!("/v1/rollouts/{id}/rollback"), request)
    }

    /// Adds and removes tags of an agent (by id or hostname).
    pub fn change_tags(
        &self,
        agent: &str,
        request: &flotte_protocol::api::TagRequest,
    ) -> Result<flotte_protocol::api::TagsView, ClientError> {
        self.post(&format!("/v1/agents/{agent}/tags"), request)
    }
}

fn check(response: ureq::http::Response<ureq::Body>) -> Result<ureq::http::Response<ureq::Body>, ClientError> {
    let status = response.status().as_u16();
    if (200..300).contains(&status) {
        return Ok(response);
    }
    let mut response = response;
    let body = response
        .body_mut()
        .read_json::<ApiError>()
        .unwrap_or_else(|e| ApiError { error: format!("HTTP {status} without an error body ({e})"), hint: None });
    Err(ClientError::Api { status, body })
}

fn decode<T: DeserializeOwned>(response: ureq::http::Response<ureq::Body>) -> Result<T, ClientError> {
    check(response)?.body_mut().read_json::<T>().map_err(|e| ClientError::Decode(e.to_string()))
}
