//! Snapshots: `POST /v1/sandboxes/{id}/snapshots` takes one; `/v1/snapshots`
//! lists, shows and deletes them; `/v1/snapshots/{id}/restore` makes a new
//! sandbox from one and `/v1/snapshots/{id}/fork` makes N. The REST
//! handlers of `crate::control::snapshots`.
//!
//! Guarantees (docs/api.md): the sandbox is frozen while its filesystem is
//! copied, so a snapshot is consistent across files; its running processes
//! and host mounts are not part of it. A snapshot outlives its sandbox and
//! belongs to the key that took it. A restore starts from the source's
//! spec, which the request's fields override.

use crate::auth::Principal;
use crate::control::sandboxes::Created;
use crate::control::snapshots as control;
use crate::error::{ApiError, ApiResult};
use crate::AppState;
use aibox_types::api::{
    CreateRequest, Forked, SandboxView, SnapshotList, SnapshotQuery, SnapshotRequest, SnapshotView,
    MAX_FORK,
};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde_json::Value;

/// A JSON body that may be left out (empty: the defaults).
fn optional_json<T: serde::de::DeserializeOwned + Default>(body: &[u8]) -> ApiResult<T> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    crate::error::parse_json(body)
}

pub async fn create(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<SnapshotView>)> {
    let body: SnapshotRequest = optional_json(&body)?;
    let v = control::create(&state, &who, &id, body).await?;
    Ok((StatusCode::CREATED, Json(v)))
}

pub async fn list(
    State(state): State<AppState>,
    who: Principal,
    Query(q): Query<SnapshotQuery>,
) -> ApiResult<Json<SnapshotList>> {
    control::list(&state, &who, q).map(Json)
}

pub async fn get(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<SnapshotView>> {
    control::get(&state, &who, &id).map(Json)
}

pub async fn delete(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    control::delete(&state, &who, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A new sandbox from a snapshot (the body: `POST /v1/sandboxes` fields
/// that override the snapshot's spec).
pub async fn restore(
    State(state): State<AppState>,
    who: Principal,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<SandboxView>)> {
    control::owned(&state, &who, &id)?;
    let req: CreateRequest = optional_json(&body)?;
    let key = crate::sandboxes::idempotency_key(&headers)?;
    let (created, v) = control::restore(&state, &who, &id, req, key).await?;
    let status = match created {
        Created::New => StatusCode::CREATED,
        Created::Earlier => StatusCode::OK,
    };
    Ok((status, Json(v)))
}

/// `count` sandboxes from one snapshot, all or none (the body: `count`
/// and the restore fields).
pub async fn fork(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Forked>)> {
    control::owned(&state, &who, &id)?;
    let mut body: Value = optional_json(&body)?;
    if !body.is_object() {
        return Err(ApiError::invalid("the body must be a JSON object"));
    }
    let count = match body.as_object_mut().and_then(|o| o.remove("count")) {
        Some(c) => c.as_u64().ok_or_else(|| {
            ApiError::invalid(format!("count must be an integer from 1 to {MAX_FORK}"))
        })?,
        None => return Err(ApiError::invalid("count is required")),
    };
    let req: CreateRequest =
        crate::error::parse_json(&serde_json::to_vec(&body).unwrap_or_default())?;
    let sandboxes = control::fork(&state, &who, &id, req, count).await?;
    Ok((StatusCode::CREATED, Json(Forked { sandboxes })))
}
