//! File and process operations beyond plain read/write, carried out by the
//! sandbox's agent (so every path is resolved inside the sandbox):
//! list, stat, mkdir, delete, rename, tar upload/download, and background
//! processes (start, list, get, wait, kill, stdin).

use crate::auth::Principal;
use crate::control::files::{abs, octal};
use crate::control::sandboxes::running;
use crate::error::{ApiError, ApiResult};
use crate::{ApiJson, AppState};
use aibox_protocol::ExecRequest;
use aibox_runtime::{AgentClient, ClientError};
use aibox_types::api::Cmd;
use aibox_types::User;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;

/// Run `f` with the sandbox's agent on the blocking pool.
async fn with_agent<T: Send + 'static>(
    state: &AppState,
    id: &str,
    f: impl FnOnce(AgentClient) -> Result<T, ClientError> + Send + 'static,
) -> ApiResult<T> {
    let engine = state.engine();
    let id = id.to_string();
    crate::fairness::spawn_blocking(move || -> ApiResult<T> { Ok(f(engine.agent(&id)?)?) })
        .await
        .map_err(|e| ApiError::internal("agent task", e))?
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathQuery {
    pub path: String,
    #[serde(default)]
    pub recursive: bool,
}

pub async fn list(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    Query(q): Query<PathQuery>,
) -> ApiResult<Json<Value>> {
    let row = running(&state, &who, &id)?;
    let path = abs(&q.path)?;
    let entries = with_agent(&state, &row.id, move |a| a.list(&path, q.recursive, None)).await?;
    Ok(Json(json!({ "entries": entries })))
}

pub async fn stat(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    Query(q): Query<PathQuery>,
) -> ApiResult<Json<Value>> {
    let row = running(&state, &who, &id)?;
    let path = abs(&q.path)?;
    let st = with_agent(&state, &row.id, move |a| a.stat(&path, None)).await?;
    Ok(Json(serde_json::to_value(st).unwrap_or(Value::Null)))
}

pub async fn delete(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    Query(q): Query<PathQuery>,
) -> ApiResult<StatusCode> {
    let row = running(&state, &who, &id)?;
    let path = abs(&q.path)?;
    let p2 = path.clone();
    with_agent(&state, &row.id, move |a| a.remove(&p2, q.recursive, None)).await?;
    state.audit(&who.id, "file.delete", Some(&row.id), json!({"path": path}));
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MkdirBody {
    pub path: String,
    /// Octal, e.g. "755".
    pub mode: Option<String>,
}

pub async fn mkdir(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<MkdirBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let row = running(&state, &who, &id)?;
    let path = abs(&body.path)?;
    let mode = octal(body.mode.as_deref())?;
    let p2 = path.clone();
    let st = with_agent(&state, &row.id, move |a| a.mkdir(&p2, mode, None)).await?;
    state.audit(&who.id, "file.mkdir", Some(&row.id), json!({"path": path}));
    Ok((
        StatusCode::CREATED,
        Json(serde_json::to_value(st).unwrap_or(Value::Null)),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenameBody {
    pub from: String,
    pub to: String,
}

pub async fn rename(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<RenameBody>,
) -> ApiResult<StatusCode> {
    let row = running(&state, &who, &id)?;
    let (from, to) = (abs(&body.from)?, abs(&body.to)?);
    let (f2, t2) = (from.clone(), to.clone());
    with_agent(&state, &row.id, move |a| a.rename(&f2, &t2, None)).await?;
    state.audit(
        &who.id,
        "file.rename",
        Some(&row.id),
        json!({"from": from, "to": to}),
    );
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartBody {
    pub cmd: Cmd,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    pub cwd: Option<String>,
    pub user: Option<User>,
    pub timeout_ms: Option<u64>,
    /// Keep stdin open for `/stdin` writes (otherwise /dev/null).
    #[serde(default)]
    pub stdin: bool,
}

pub async fn start(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<StartBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let row = running(&state, &who, &id)?;
    let (argv, shell) = body.cmd.split()?;
    let req = ExecRequest {
        argv: argv.clone(),
        shell: shell.clone(),
        env: body.env.into_iter().collect(),
        cwd: body.cwd,
        user: body.user,
        stdin: body.stdin,
        timeout_ms: body.timeout_ms,
        background: true,
        ..Default::default()
    };
    let (pid_id, pid) = with_agent(&state, &row.id, move |a| {
        a.exec_start(req).map(|(_stream, id, pid)| (id, pid))
    })
    .await?;
    state.metrics().count_exec();
    state.audit(
        &who.id,
        "process.start",
        Some(&row.id),
        json!({"process": pid_id, "argv": argv, "shell": shell, "user": body.user}),
    );
    Ok((StatusCode::CREATED, Json(json!({"id": pid_id, "pid": pid}))))
}

pub async fn procs(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let row = running(&state, &who, &id)?;
    let list = with_agent(&state, &row.id, |a| a.proc_list()).await?;
    Ok(Json(json!({ "processes": list })))
}

pub async fn proc_get(
    State(state): State<AppState>,
    who: Principal,
    Path((id, pid)): Path<(String, u64)>,
) -> ApiResult<Json<Value>> {
    let row = running(&state, &who, &id)?;
    let list = with_agent(&state, &row.id, |a| a.proc_list()).await?;
    match list.into_iter().find(|p| p.id == pid) {
        Some(p) => Ok(Json(serde_json::to_value(p).unwrap_or(Value::Null))),
        None => Err(ApiError::new(
            aibox_types::ErrorCode::NotFound,
            format!("no process {pid} in sandbox {id}"),
        )),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaitQuery {
    /// Give up after this long (default: wait for the exit, at most 10 min).
    pub timeout_ms: Option<u64>,
}

pub async fn proc_wait(
    State(state): State<AppState>,
    who: Principal,
    Path((id, pid)): Path<(String, u64)>,
    Query(q): Query<WaitQuery>,
) -> ApiResult<Json<Value>> {
    let row = running(&state, &who, &id)?;
    let t = Duration::from_millis(q.timeout_ms.unwrap_or(600_000).min(600_000));
    let exit = with_agent(&state, &row.id, move |a| a.proc_wait(pid, Some(t))).await?;
    Ok(Json(json!({
        "exit_code": exit.status(),
        "signal": exit.signal,
        "timed_out": exit.timed_out,
        "duration_ms": exit.duration_ms,
    })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KillBody {
    /// Signal number (default 15, SIGTERM).
    pub signal: Option<i32>,
}

pub async fn proc_kill(
    State(state): State<AppState>,
    who: Principal,
    Path((id, pid)): Path<(String, u64)>,
    ApiJson(body): ApiJson<KillBody>,
) -> ApiResult<StatusCode> {
    let row = running(&state, &who, &id)?;
    let sig = body.signal.unwrap_or(15);
    if !(1..=64).contains(&sig) {
        return Err(ApiError::invalid("signal must be between 1 and 64"));
    }
    with_agent(&state, &row.id, move |a| a.proc_kill(pid, sig)).await?;
    state.audit(
        &who.id,
        "process.kill",
        Some(&row.id),
        json!({"process": pid, "signal": sig}),
    );
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdinQuery {
    /// Close the process's stdin after these bytes.
    #[serde(default)]
    pub close: bool,
}

pub async fn proc_stdin(
    State(state): State<AppState>,
    who: Principal,
    Path((id, pid)): Path<(String, u64)>,
    Query(q): Query<StdinQuery>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let row = running(&state, &who, &id)?;
    with_agent(&state, &row.id, move |a| a.proc_stdin(pid, &body, q.close)).await?;
    Ok(StatusCode::NO_CONTENT)
}
