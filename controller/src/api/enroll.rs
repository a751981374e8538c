//! `POST /v1/enroll`: an agent trades a one-time token and its public key
//! for a client certificate.
//!
//! The certificate is issued before the token is checked, but it is worth
//! nothing until the store registers its fingerprint, which happens in the
//! same transaction that consumes the token.

use super::{ApiResult, ApiState, Failure};
use crate::secrets;
use crate::store::{AgentRecord, TokenUse};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use flotte_protocol::AgentId;
use flotte_protocol::api::{EnrollRequest, EnrollResponse};
use tracing::info;

const MAX_HOSTNAME_LEN: usize = 253;

pub(super) async fn enroll(
    State(state): State<ApiState>,
    Json(request): Json<EnrollRequest>,
) -> ApiResult<EnrollResponse> {
    let services = &state.services;
    let hostname = request.hostname.trim();
    if hostname.is_empty() || hostname.len() > MAX_HOSTNAME_LEN || hostname.chars().any(char::is_control) {
        return Err(Failure::new(StatusCode::BAD_REQUEST, "hostname must be 1 to 253 printable characters"));
    }
    let agent = AgentRecord { id: AgentId(format!("agt-{}", secrets::random_hex(8))), hostname: hostname.into() };
    let cert = services
        .ca
        .issue_agent_cert(&agent.id.0, &request.public_key)
        .map_err(|e| Failure::new(StatusCode::BAD_REQUEST, e.to_string()))?;
    let now = services.now();
    let hint = "create a new one with `flottectl agents token`";
    match services.store.enroll(&secrets::token_hash(&request.token), &agent, &cert.fingerprint, now)? {
        TokenUse::Accepted => {}
        TokenUse::Unknown => return Err(Failure::new(StatusCode::UNAUTHORIZED, "unknown enrollment token").hint(hint)),
        TokenUse::AlreadyUsed => {
            return Err(Failure::new(StatusCode::UNAUTHORIZED, "enrollment token already used").hint(hint));
        }
        TokenUse::Expired => return Err(Failure::new(StatusCode::UNAUTHORIZED, "enrollment token expired").hint(hint)),
    }
    info!(agent = %agent.id, hostname, "agent enrolled");
    join_dynamic_rollouts(services, &agent.id, now)?;
    Ok(Json(EnrollResponse { agent_id: agent.id, certificate_pem: cert.pem, quic_port: state.quic_port }))
}

/// A new agent joins every unfinished rollout whose dynamic target
/// (all, tags, inventory filter) it matches.
fn join_dynamic_rollouts(
    services: &crate::server::Services,
    agent: &AgentId,
    now: flotte_protocol::Timestamp,
) -> Result<(), Failure> {
    Ok(crate::rollout::driver::join_matching(services, agent, now)?)
}
