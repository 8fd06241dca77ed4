//! Background processes in a sandbox, through its agent: start, list,
//! get, wait, signal, feed stdin.

use crate::auth::Principal;
use crate::control::access::running;
use crate::control::files::with_agent;
use crate::error::{ApiError, ApiResult};
use crate::AppState;
use aibox_protocol::ExecRequest;
use aibox_types::api::{ProcInfo, ProcessExit, ProcessList, StartRequest, Started};
use serde_json::json;
use std::time::Duration;

/// Longest a wait may take.
const MAX_WAIT: Duration = Duration::from_secs(600);

pub async fn start(
    state: &AppState,
    who: &Principal,
    id: &str,
    body: StartRequest,
) -> ApiResult<Started> {
    let row = running(state, who, id)?;
    let (argv, shell) = body.cmd.split()?;
    let req = ExecRequest {
        stdin: body.stdin,
        background: true,
        ..ExecRequest::command(
            argv.clone(),
            shell.clone(),
            body.env,
            body.cwd,
            body.user,
            body.timeout_ms,
        )
    };
    let (pid_id, pid) = with_agent(state, &row.id, move |a| {
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
    Ok(Started { id: pid_id, pid })
}

pub async fn list(state: &AppState, who: &Principal, id: &str) -> ApiResult<ProcessList> {
    let row = running(state, who, id)?;
    let processes = with_agent(state, &row.id, |a| a.proc_list()).await?;
    Ok(ProcessList { processes })
}

pub async fn get(state: &AppState, who: &Principal, id: &str, pid: u64) -> ApiResult<ProcInfo> {
    list(state, who, id)
        .await?
        .processes
        .into_iter()
        .find(|p| p.id == pid)
        .ok_or_else(|| {
            ApiError::new(
                aibox_types::ErrorCode::NotFound,
                format!("no process {pid} in sandbox {id}"),
            )
        })
}

/// Wait for a process to end (at most `timeout_ms`, and 10 minutes).
pub async fn wait(
    state: &AppState,
    who: &Principal,
    id: &str,
    pid: u64,
    timeout_ms: Option<u64>,
) -> ApiResult<ProcessExit> {
    let row = running(state, who, id)?;
    let t = timeout_ms
        .map_or(MAX_WAIT, Duration::from_millis)
        .min(MAX_WAIT);
    let exit = with_agent(state, &row.id, move |a| a.proc_wait(pid, Some(t))).await?;
    Ok(ProcessExit {
        exit_code: exit.status(),
        signal: exit.signal,
        timed_out: exit.timed_out,
        duration_ms: exit.duration_ms,
    })
}

pub async fn kill(
    state: &AppState,
    who: &Principal,
    id: &str,
    pid: u64,
    signal: Option<i32>,
) -> ApiResult<()> {
    let row = running(state, who, id)?;
    let sig = signal.unwrap_or(15);
    if !(1..=64).contains(&sig) {
        return Err(ApiError::invalid("signal must be between 1 and 64"));
    }
    with_agent(state, &row.id, move |a| a.proc_kill(pid, sig)).await?;
    state.audit(
        &who.id,
        "process.kill",
        Some(&row.id),
        json!({"process": pid, "signal": sig}),
    );
    Ok(())
}

pub async fn stdin(
    state: &AppState,
    who: &Principal,
    id: &str,
    pid: u64,
    data: Vec<u8>,
    close: bool,
) -> ApiResult<()> {
    let row = running(state, who, id)?;
    with_agent(state, &row.id, move |a| a.proc_stdin(pid, &data, close)).await?;
    Ok(())
}
