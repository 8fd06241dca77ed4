//! `/v1/keys`: the REST handlers of `crate::control::keys` (admin only).

use crate::auth::Principal;
use crate::control::keys as control;
use crate::error::ApiResult;
use crate::{ApiJson, AppState};
use aibox_types::api::{KeyList, KeyPatch, KeyRequest, KeyView, NewKey};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;

pub async fn create(
    State(state): State<AppState>,
    who: Principal,
    ApiJson(req): ApiJson<KeyRequest>,
) -> ApiResult<(StatusCode, Json<NewKey>)> {
    Ok((
        StatusCode::CREATED,
        Json(control::create(&state, &who, req)?),
    ))
}

pub async fn list(State(state): State<AppState>, who: Principal) -> ApiResult<Json<KeyList>> {
    control::list(&state, &who).map(Json)
}

/// `PATCH /v1/keys/{id}`: set or clear a key's own ceiling. Requests the
/// key makes from then on are held to it (sandboxes it already has keep
/// running; their next restore or network change is checked).
pub async fn update(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    ApiJson(patch): ApiJson<KeyPatch>,
) -> ApiResult<Json<KeyView>> {
    control::update(&state, &who, &id, patch).map(Json)
}

pub async fn revoke(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    control::revoke(&state, &who, &id)?;
    Ok(StatusCode::NO_CONTENT)
}
