//! `/v1/sandboxes`: the REST handlers of the sandbox use cases (parse the
//! request, call `crate::control::sandboxes`, render the answer), and the
//! file reads and writes, which stream.

use crate::auth::Principal;
use crate::control::access::running;
use crate::control::sandboxes::{self as control, Created};
use crate::error::{ApiError, ApiResult};
use crate::{ApiJson, AppState};
use aibox_types::api::{
    CreateRequest, ExecRequest, ExecResult, ListQuery, NetworkRequest, SandboxList, SandboxView,
    TimeoutRequest,
};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Json;
use serde_json::{json, Value};

/// The `Idempotency-Key` header: 1-255 visible characters.
pub(crate) fn idempotency_key(headers: &HeaderMap) -> ApiResult<Option<String>> {
    headers
        .get("idempotency-key")
        .map(|v| {
            v.to_str()
                .ok()
                .filter(|s| !s.is_empty() && s.len() <= 255)
                .map(str::to_string)
                .ok_or_else(|| {
                    ApiError::invalid("Idempotency-Key must be 1-255 visible characters")
                })
        })
        .transpose()
}

pub async fn create(
    State(state): State<AppState>,
    who: Principal,
    headers: HeaderMap,
    ApiJson(req): ApiJson<CreateRequest>,
) -> ApiResult<(StatusCode, Json<SandboxView>)> {
    let key = idempotency_key(&headers)?;
    let (created, view) = control::create(&state, &who, req, key).await?;
    let status = match created {
        Created::New => StatusCode::CREATED,
        Created::Earlier => StatusCode::OK,
    };
    Ok((status, Json(view)))
}

pub async fn list(
    State(state): State<AppState>,
    who: Principal,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<SandboxList>> {
    control::list(&state, &who, q).map(Json)
}

/// One sandbox, with live usage (CPU, memory, pids) while it runs.
pub async fn get(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<SandboxView>> {
    control::get(&state, &who, &id).await.map(Json)
}

pub async fn delete(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    control::delete(&state, &who, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn pause(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<SandboxView>> {
    control::freeze(&state, &who, &id, true).await.map(Json)
}

pub async fn resume(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<SandboxView>> {
    control::freeze(&state, &who, &id, false).await.map(Json)
}

pub async fn set_timeout(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<TimeoutRequest>,
) -> ApiResult<Json<SandboxView>> {
    control::set_timeout(&state, &who, &id, body).map(Json)
}

/// Replace a sandbox's egress policy; new connections see it at once.
pub async fn set_network(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<NetworkRequest>,
) -> ApiResult<Json<SandboxView>> {
    control::set_network(&state, &who, &id, body)
        .await
        .map(Json)
}

pub async fn exec(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ExecRequest>,
) -> ApiResult<Json<ExecResult>> {
    control::exec(&state, &who, &id, body).await.map(Json)
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileQuery {
    pub path: String,
    /// Octal permission bits for uploads, e.g. `755`.
    pub mode: Option<String>,
}

fn check_path(p: &str) -> ApiResult<()> {
    crate::control::files::abs(p).map(drop)
}

pub async fn read_file(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    Query(q): Query<FileQuery>,
) -> ApiResult<Response> {
    let row = running(&state, &who, &id)?;
    check_path(&q.path)?;
    let engine = state.engine();
    crate::streaming::respond("application/octet-stream", move |start, out| {
        // A size of 0 may be a kernel file's (/proc) whose content the
        // size does not count: then no length is promised.
        engine.read_file_to(
            &row.id,
            &q.path,
            &mut |size| start((size > 0).then_some(size)),
            out,
        )
    })
    .await
}

pub async fn write_file(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    Query(q): Query<FileQuery>,
    body: axum::body::Body,
) -> ApiResult<Json<Value>> {
    let row = running(&state, &who, &id)?;
    check_path(&q.path)?;
    let mode = crate::control::files::octal(q.mode.as_deref())?;
    let engine = state.engine();
    let max = state.config().max_body;
    let mut reader = crate::streaming::BodyReader::new(body, max);
    let seen = reader.state();
    let path = q.path.clone();
    let sid = row.id.clone();
    let written =
        crate::fairness::spawn_blocking(move || engine.write_file(&sid, &path, &mut reader, mode))
            .await
            .map_err(|e| ApiError::internal("write task", e))?;
    if let Some(e) = crate::streaming::too_large(&seen, max) {
        return Err(e);
    }
    written?;
    let len = seen.bytes.load(std::sync::atomic::Ordering::SeqCst);
    state.audit(
        &who.id,
        "file.write",
        Some(&row.id),
        json!({"path": q.path, "bytes": len}),
    );
    Ok(Json(json!({"path": q.path, "size": len})))
}
