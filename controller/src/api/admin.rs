//! Admin resources: tokens, agents, content, releases,
//! deployments and per-agent status. Every handler here runs behind the
//! admin-token check in [`super::router`].

use super::{ApiResult, ApiState, Failure};
use crate::content::UploadError;
use crate::secrets;
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use flotte_protocol::api::{
    AgentView, AssignmentView, DeploymentView, ReleaseView, ReportView, TokenRequest, TokenResponse,
};
use flotte_protocol::{AgentId, Sha256Digest};
use http_body_util::BodyExt;
use std::time::Duration;
use tracing::info;

/// Longest enrollment-token lifetime: 30 days.
const MAX_TOKEN_TTL: u64 = 30 * 24 * 3600;

pub(super) async fn create_token(
    State(state): State<ApiState>,
    Json(req): Json<TokenRequest>,
) -> ApiResult<TokenResponse> {
    if req.ttl_seconds == 0 || req.ttl_seconds > MAX_TOKEN_TTL {
        return Err(Failure::new(StatusCode::BAD_REQUEST, format!("ttl must be between 1 s and {MAX_TOKEN_TTL} s")));
    }
    let now = state.services.now();
    let expires_at = now.saturating_add(Duration::from_secs(req.ttl_seconds));
    let token = secrets::new_token("fet_");
    state.services.store.add_enrollment_token(&secrets::token_hash(&token), now, expires_at)?;
    Ok(Json(TokenResponse { token, expires_at }))
}

pub(super) async fn list_agents(State(state): State<ApiState>) -> ApiResult<Vec<AgentView>> {
    let mut agents = state.services.store.list_agents()?;
    for agent in &mut agents {
        agent.online = state.services.hub.is_online(&agent.id);
    }
    Ok(Json(agents))
}

pub(super) async fn agent_reports(State(state): State<ApiState>, Path(id): Path<String>) -> ApiResult<Vec<ReportView>> {
    Ok(Json(state.services.store.reports_for(&AgentId(id))?))
}

pub(super) async fn upload_content(
    State(state): State<ApiState>,
    Path(sha256): Path<String>,
    body: Body,
) -> Result<StatusCode, Failure> {
    let digest: Sha256Digest = sha256.parse().map_err(|e| Failure::new(StatusCode::BAD_REQUEST, format!("{e}")))?;
    let services = &state.services;
    if services.content.size(&digest).is_some() {
        // Already stored. Read the body anyway: answering before the client
        // has finished sending makes HTTP/1.1 close the connection under it,
        // which the client sees as a failed upload.
        let mut body = body;
        let mut seen = 0u64;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| Failure::new(StatusCode::BAD_REQUEST, format!("upload interrupted: {e}")))?;
            seen += frame.data_ref().map_or(0, |d| d.len() as u64);
            if seen > services.config.max_package_size {
                break;
            }
        }
        return Ok(StatusCode::OK);
    }
    let mut upload = services.content.begin_upload(services.config.max_package_size).await?;
    let mut body = body;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| Failure::new(StatusCode::BAD_REQUEST, format!("upload interrupted: {e}")))?;
        if let Ok(chunk) = frame.into_data() {
            upload.write(&chunk).await.map_err(upload_failure)?;
        }
    }
    let size = upload.commit(&digest).await.map_err(upload_failure)?;
    info!(%digest, size, "content stored");
    Ok(StatusCode::CREATED)
}

fn upload_failure(e: UploadError) -> Failure {
    match e {
        UploadError::TooLarge { .. } => Failure::new(StatusCode::PAYLOAD_TOO_LARGE, e.to_string())
            .hint("raise max_package_size in controller.toml if this package is legitimate"),
        UploadError::DigestMismatch { .. } => Failure::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
        UploadError::Storage(e) => Failure::internal(e),
    }
}

pub(super) async fn list_releases(State(state): State<ApiState>) -> ApiResult<Vec<ReleaseView>> {
    Ok(Json(state.services.store.list_releases()?))
}

pub(super) async fn list_deployments(State(state): State<ApiState>) -> ApiResult<Vec<DeploymentView>> {
    Ok(Json(state.services.store.list_deployments()?))
}

pub(super) async fn list_assignments(State(state): State<ApiState>) -> ApiResult<Vec<AssignmentView>> {
    Ok(Json(state.services.store.list_assignments()?))
}
