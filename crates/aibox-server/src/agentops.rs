//! The REST handlers of file and process operations beyond plain
//! read/write (list, stat, mkdir, delete, rename, tar upload/download;
//! background processes): parse, call `crate::control::{files,
//! processes}`, render. Tar transfers stream here, through the same
//! checks.

use crate::auth::Principal;
use crate::control::access::running;
use crate::control::files::{self, abs, with_agent};
use crate::control::processes;
use crate::error::ApiResult;
use crate::{ApiJson, AppState};
use aibox_types::api::{
    FileList, FileStat, KillRequest, MkdirRequest, PathQuery, ProcInfo, ProcessExit, ProcessList,
    RenameRequest, StartRequest, Started, StdinQuery, WaitQuery,
};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use serde::Deserialize;
use serde_json::json;

pub async fn list(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    Query(q): Query<PathQuery>,
) -> ApiResult<Json<FileList>> {
    files::list(&state, &who, &id, &q.path, q.recursive)
        .await
        .map(Json)
}

pub async fn stat(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    Query(q): Query<PathQuery>,
) -> ApiResult<Json<FileStat>> {
    files::stat(&state, &who, &id, &q.path).await.map(Json)
}

pub async fn delete(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    Query(q): Query<PathQuery>,
) -> ApiResult<StatusCode> {
    files::delete(&state, &who, &id, &q.path, q.recursive).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn mkdir(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<MkdirRequest>,
) -> ApiResult<(StatusCode, Json<FileStat>)> {
    let st = files::mkdir(&state, &who, &id, body).await?;
    Ok((StatusCode::CREATED, Json(st)))
}

pub async fn rename(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<RenameRequest>,
) -> ApiResult<StatusCode> {
    files::rename(&state, &who, &id, body).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TarQuery {
    pub path: String,
}

pub async fn tar_download(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    Query(q): Query<TarQuery>,
) -> ApiResult<Response> {
    let row = running(&state, &who, &id)?;
    let path = abs(&q.path)?;
    let engine = state.engine();
    crate::streaming::respond("application/x-tar", move |start, out| {
        let agent = engine.agent(&row.id)?;
        Ok(agent.tar_download_to(&path, None, &mut || start(None), out)?)
    })
    .await
}

pub async fn tar_upload(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    Query(q): Query<TarQuery>,
    body: axum::body::Body,
) -> ApiResult<StatusCode> {
    let row = running(&state, &who, &id)?;
    let path = abs(&q.path)?;
    let max = state.config().max_body;
    let mut reader = crate::streaming::BodyReader::new(body, max);
    let seen = reader.state();
    let p2 = path.clone();
    let done = with_agent(&state, &row.id, move |a| {
        a.tar_upload(&p2, &mut reader, None)
    })
    .await;
    if let Some(e) = crate::streaming::too_large(&seen, max) {
        return Err(e);
    }
    done?;
    let len = seen.bytes.load(std::sync::atomic::Ordering::SeqCst);
    state.audit(
        &who.id,
        "file.tar_upload",
        Some(&row.id),
        json!({"path": path, "bytes": len}),
    );
    Ok(StatusCode::NO_CONTENT)
}

// ---- background processes

pub async fn start(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<StartRequest>,
) -> ApiResult<(StatusCode, Json<Started>)> {
    let s = processes::start(&state, &who, &id, body).await?;
    Ok((StatusCode::CREATED, Json(s)))
}

pub async fn procs(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<ProcessList>> {
    processes::list(&state, &who, &id).await.map(Json)
}

pub async fn proc_get(
    State(state): State<AppState>,
    who: Principal,
    Path((id, pid)): Path<(String, u64)>,
) -> ApiResult<Json<ProcInfo>> {
    processes::get(&state, &who, &id, pid).await.map(Json)
}

pub async fn proc_wait(
    State(state): State<AppState>,
    who: Principal,
    Path((id, pid)): Path<(String, u64)>,
    Query(q): Query<WaitQuery>,
) -> ApiResult<Json<ProcessExit>> {
    processes::wait(&state, &who, &id, pid, q.timeout_ms)
        .await
        .map(Json)
}

pub async fn proc_kill(
    State(state): State<AppState>,
    who: Principal,
    Path((id, pid)): Path<(String, u64)>,
    ApiJson(body): ApiJson<KillRequest>,
) -> ApiResult<StatusCode> {
    processes::kill(&state, &who, &id, pid, body.signal).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn proc_stdin(
    State(state): State<AppState>,
    who: Principal,
    Path((id, pid)): Path<(String, u64)>,
    Query(q): Query<StdinQuery>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    processes::stdin(&state, &who, &id, pid, body.to_vec(), q.close).await?;
    Ok(StatusCode::NO_CONTENT)
}
