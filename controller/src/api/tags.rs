//! `POST /v1/agents/{id}/tags`: add and remove an agent's tags. A newly
//! tagged agent joins the unfinished rollouts whose target it now matches.

use super::{Actor, ApiResult, ApiState, Failure};
use crate::rollout::driver::join_matching;
use crate::rollout::tags::check_tag;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use flotte_protocol::api::{TagRequest, TagsView};

pub(super) async fn change(
    State(state): State<ApiState>,
    Extension(actor): Extension<Actor>,
    Path(name): Path<String>,
    Json(req): Json<TagRequest>,
) -> ApiResult<TagsView> {
    let services = &state.services;
    let agent =
        services.store.list_agents()?.into_iter().find(|a| a.id.0 == name || a.hostname == name).ok_or_else(|| {
            Failure::new(StatusCode::NOT_FOUND, format!("unknown agent {name:?}"))
                .hint("`flottectl agents list` shows enrolled agents by id and hostname")
        })?;
    for tag in req.add.iter().chain(&req.remove) {
        check_tag(tag).map_err(|e| Failure::new(StatusCode::BAD_REQUEST, e.to_string()))?;
    }
    let tags = services.store.change_tags(&agent.id, &req.add, &req.remove)?;
    if !req.add.is_empty() || !req.remove.is_empty() {
        let now = services.now();
        let detail = format!("{} ({}): +[{}] -[{}]", agent.hostname, agent.id, req.add.join(","), req.remove.join(","));
        services.store.audit(&actor.0, "agent.tag", &detail, now)?;
        join_matching(services, &agent.id, now)?;
    }
    Ok(Json(TagsView { agent: agent.id, hostname: agent.hostname, tags }))
}
