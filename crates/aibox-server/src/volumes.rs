//! `/v1/volumes` and `/v1/workspaces`: the REST handlers of
//! `crate::control::volumes` and `crate::control::workspaces`. Each is
//! named by its name (unique among the caller's) or its id.

use crate::auth::Principal;
use crate::control::volumes as control;
use crate::error::ApiResult;
use crate::{ApiJson, AppState};
use aibox_types::api::{
    CloneRequest, VolumeList, VolumeQuery, VolumeRequest, VolumeSnapshotRequest, VolumeView,
};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;

pub async fn create(
    State(state): State<AppState>,
    who: Principal,
    ApiJson(req): ApiJson<VolumeRequest>,
) -> ApiResult<(StatusCode, Json<VolumeView>)> {
    let v = control::create(&state, &who, req).await?;
    Ok((StatusCode::CREATED, Json(v)))
}

pub async fn list(
    State(state): State<AppState>,
    who: Principal,
    Query(q): Query<VolumeQuery>,
) -> ApiResult<Json<VolumeList>> {
    control::list(&state, &who, q).await.map(Json)
}

pub async fn get(
    State(state): State<AppState>,
    who: Principal,
    Path(volume): Path<String>,
) -> ApiResult<Json<VolumeView>> {
    control::get(&state, &who, &volume).await.map(Json)
}

pub async fn delete(
    State(state): State<AppState>,
    who: Principal,
    Path(volume): Path<String>,
) -> ApiResult<StatusCode> {
    control::remove(&state, &who, &volume).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn snapshot(
    State(state): State<AppState>,
    who: Principal,
    Path(volume): Path<String>,
    ApiJson(req): ApiJson<VolumeSnapshotRequest>,
) -> ApiResult<(StatusCode, Json<VolumeView>)> {
    let v = control::snapshot(&state, &who, &volume, req).await?;
    Ok((StatusCode::CREATED, Json(v)))
}

pub async fn delete_snapshot(
    State(state): State<AppState>,
    who: Principal,
    Path((volume, snapshot)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    control::remove_snapshot(&state, &who, &volume, &snapshot).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn clone(
    State(state): State<AppState>,
    who: Principal,
    Path(volume): Path<String>,
    ApiJson(req): ApiJson<CloneRequest>,
) -> ApiResult<(StatusCode, Json<VolumeView>)> {
    let v = control::clone(&state, &who, &volume, req).await?;
    Ok((StatusCode::CREATED, Json(v)))
}

/// `/v1/workspaces`: the REST handlers of `crate::control::workspaces`.
pub mod workspaces {
    use crate::auth::Principal;
    use crate::control::workspaces as control;
    use crate::error::ApiResult;
    use crate::{ApiJson, AppState};
    use aibox_types::api::{
        WorkspaceList, WorkspaceRequest, WorkspaceSnapshotRequest, WorkspaceView,
    };
    use axum::extract::{Path, State};
    use axum::http::StatusCode;
    use axum::Json;

    pub async fn create(
        State(state): State<AppState>,
        who: Principal,
        ApiJson(req): ApiJson<WorkspaceRequest>,
    ) -> ApiResult<(StatusCode, Json<WorkspaceView>)> {
        let v = control::create(&state, &who, req).await?;
        Ok((StatusCode::CREATED, Json(v)))
    }

    pub async fn list(
        State(state): State<AppState>,
        who: Principal,
    ) -> ApiResult<Json<WorkspaceList>> {
        control::list(&state, &who).await.map(Json)
    }

    pub async fn get(
        State(state): State<AppState>,
        who: Principal,
        Path(workspace): Path<String>,
    ) -> ApiResult<Json<WorkspaceView>> {
        control::get(&state, &who, &workspace).await.map(Json)
    }

    pub async fn delete(
        State(state): State<AppState>,
        who: Principal,
        Path(workspace): Path<String>,
    ) -> ApiResult<StatusCode> {
        control::remove(&state, &who, &workspace).await?;
        Ok(StatusCode::NO_CONTENT)
    }

    pub async fn snapshot(
        State(state): State<AppState>,
        who: Principal,
        Path(workspace): Path<String>,
        ApiJson(req): ApiJson<WorkspaceSnapshotRequest>,
    ) -> ApiResult<(StatusCode, Json<WorkspaceView>)> {
        let v = control::snapshot(&state, &who, &workspace, req).await?;
        Ok((StatusCode::CREATED, Json(v)))
    }
}
