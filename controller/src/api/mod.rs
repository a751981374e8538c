//! The HTTPS/JSON API: enrollment for agents, administration for
//! `flottectl`, dashboards and pipelines. Resource shapes live in
//! `flotte_protocol::api`.
//!
//! Guarantees:
//! - Every route except `POST /v1/enroll` requires a valid admin token; a
//!   request without one gets 401 and changes nothing.
//! - Errors are JSON [`ApiError`] bodies that say what was wrong and, where
//!   possible, how to fix it.

mod admin;
mod enroll;
mod rollback;
mod rollouts;
pub mod serve;
mod tags;
mod tuf;

use crate::server::Services;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use flotte_protocol::api::ApiError;
use std::sync::Arc;

/// Shared handler state.
#[derive(Clone)]
struct ApiState {
    services: Arc<Services>,
    /// Told to enrolling agents.
    quic_port: u16,
}

/// Builds the router.
pub fn router(services: Arc<Services>, quic_port: u16) -> Router {
    let state = ApiState { services, quic_port };
    let admin = Router::new()
        .route("/v1/enrollment-tokens", post(admin::create_token))
        .route("/v1/agents", get(admin::list_agents))
        .route("/v1/agents/{id}/reports", get(admin::agent_reports))
        .route("/v1/content/{sha256}", put(admin::upload_content).layer(DefaultBodyLimit::disable()))
        .route("/v1/releases", get(admin::list_releases))
        .route("/v1/tuf/online-keys", get(tuf::online_keys))
        .route("/v1/tuf/online-keys/next", post(tuf::next_online_keys))
        .route("/v1/tuf/status", get(tuf::status))
        .route("/v1/tuf/root", put(tuf::upload_root).layer(DefaultBodyLimit::max(flotte_protocol::tuf::MAX_ROOT_LEN)))
        .route(
            "/v1/tuf/roles/{role}",
            put(tuf::upload_role).layer(DefaultBodyLimit::max(flotte_protocol::tuf::MAX_TARGETS_LEN)),
        )
        .route("/v1/tuf/metadata/{file}", get(tuf::metadata))
        .route("/v1/deployments", get(admin::list_deployments).post(rollouts::deploy))
        .route("/v1/rollouts", get(rollouts::list).post(rollouts::create))
        .route("/v1/rollouts/{id}", get(rollouts::show))
        .route("/v1/rollouts/{id}/rollback", post(rollback::rollback))
        .route("/v1/rollouts/{id}/{command}", post(rollouts::command))
        .route("/v1/agents/{id}/tags", post(tags::change))
        .route("/v1/assignments", get(admin::list_assignments))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_admin));
    Router::new()
        .route("/v1/enroll", post(enroll::enroll))
        .merge(admin)
        .fallback(|| async { Failure::new(StatusCode::NOT_FOUND, "no such API resource") })
        .with_state(state)
}

/// Who made an admin request, for the audit log: `admin:` and the first
/// hex digits of the token's hash (never the token).
#[derive(Debug, Clone)]
struct Actor(String);

async fn require_admin(State(state): State<ApiState>, mut request: Request, next: Next) -> Response {
    let token = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let hash = token.map(crate::secrets::token_hash);
    let valid = match &hash {
        Some(hash) => state.services.store.is_admin_token(hash).unwrap_or(false),
        None => false,
    };
    if let (true, Some(hash)) = (valid, &hash) {
        request.extensions_mut().insert(Actor(format!("admin:{}", &hash[..12])));
    } else {
        return Failure::new(StatusCode::UNAUTHORIZED, "missing or invalid admin token")
            .hint("pass `Authorization: Bearer <token>`; flottectl reads it from its config file or FLOTTE_TOKEN")
            .into_response();
    }
    next.run(request).await
}

/// An error response.
#[derive(Debug)]
struct Failure {
    status: StatusCode,
    body: ApiError,
}

impl Failure {
    fn new(status: StatusCode, error: impl Into<String>) -> Self {
        Failure { status, body: ApiError { error: error.into(), hint: None } }
    }

    fn hint(mut self, hint: impl Into<String>) -> Self {
        self.body.hint = Some(hint.into());
        self
    }

    fn internal(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "internal error in API handler");
        Failure::new(StatusCode::INTERNAL_SERVER_ERROR, format!("internal error: {e}"))
    }
}

impl From<crate::error::ControllerError> for Failure {
    fn from(e: crate::error::ControllerError) -> Self {
        Failure::internal(e)
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

type ApiResult<T> = Result<Json<T>, Failure>;
