//! The TUF repository resources: the controller's online keys, uploads of
//! roots and targets roles signed offline, and the metadata files.

use super::{ApiResult, ApiState, Failure};
use crate::tuf::repository::{self, Accepted, UploadError};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use flotte_protocol::api::{OnlineKeysView, TufRoleView, TufUploadView};
use tracing::info;

pub(super) async fn online_keys(State(state): State<ApiState>) -> ApiResult<OnlineKeysView> {
    Ok(Json(state.services.tuf_keys.view()))
}

pub(super) async fn status(State(state): State<ApiState>) -> ApiResult<Vec<TufRoleView>> {
    let services = &state.services;
    Ok(Json(repository::status(&services.store, services.now())?))
}

/// Prepares the next online keys for a rotation (see
/// [`crate::tuf::online`]); the current ones sign until a root names them.
pub(super) async fn next_online_keys(State(state): State<ApiState>) -> ApiResult<OnlineKeysView> {
    let next = state.services.tuf_keys.prepare_next()?;
    info!("next online TUF keys prepared; they sign once a root names them");
    Ok(Json(next))
}

pub(super) async fn upload_root(State(state): State<ApiState>, body: Bytes) -> ApiResult<TufUploadView> {
    let services = &state.services;
    let accepted = repository::upload_root(services, &body, services.now()).map_err(refusal)?;
    info!(version = accepted.version, "TUF root accepted");
    view(&state, accepted)
}

pub(super) async fn upload_role(
    State(state): State<ApiState>,
    Path(role): Path<String>,
    body: Bytes,
) -> ApiResult<TufUploadView> {
    let services = &state.services;
    let accepted = repository::upload_targets(services, &role, &body, services.now()).map_err(refusal)?;
    info!(%role, version = accepted.version, releases = accepted.releases.len(), "TUF targets role accepted");
    for r in &accepted.releases {
        info!(release = %r.label(), sha256 = %r.sha256, %role, "release published");
    }
    view(&state, accepted)
}

pub(super) async fn metadata(State(state): State<ApiState>, Path(file): Path<String>) -> Result<Response, Failure> {
    match repository::file(&state.services.store, &file)? {
        Some(bytes) => Ok(([(header::CONTENT_TYPE, "application/json")], bytes).into_response()),
        None => Err(Failure::new(StatusCode::NOT_FOUND, format!("no TUF metadata file {file:?}"))),
    }
}

fn view(state: &ApiState, accepted: Accepted) -> ApiResult<TufUploadView> {
    let releases = repository::views(&state.services, &accepted)?;
    Ok(Json(TufUploadView { role: accepted.role, version: accepted.version, releases }))
}

fn refusal(e: UploadError) -> Failure {
    match e {
        UploadError::Refused(e) => Failure::new(StatusCode::UNPROCESSABLE_ENTITY, format!("metadata refused: {e}")),
        UploadError::Invalid { reason, hint } => {
            let f = Failure::new(StatusCode::UNPROCESSABLE_ENTITY, format!("metadata refused: {reason}"));
            match hint {
                Some(h) => f.hint(h),
                None => f,
            }
        }
        UploadError::Store(e) => Failure::internal(e),
    }
}
