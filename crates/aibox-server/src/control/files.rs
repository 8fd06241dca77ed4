//! Files inside a sandbox, through its agent (so every path is resolved
//! inside the sandbox): list, stat, mkdir, delete, rename, and reads and
//! writes of whole files held in memory (the REST API streams instead,
//! through the same checks).

use crate::auth::Principal;
use crate::control::access::running;
use crate::error::{ApiError, ApiResult};
use crate::AppState;
use aibox_runtime::{AgentClient, ClientError};
use aibox_types::api::{FileList, FileStat, MkdirRequest, RenameRequest, Written};
use serde_json::json;

/// A path inside the sandbox: absolute, without NUL.
pub fn abs(p: &str) -> ApiResult<String> {
    if !p.starts_with('/') || p.contains('\0') {
        return Err(ApiError::invalid(format!(
            "path {p:?} must be absolute (inside the sandbox)"
        )));
    }
    Ok(p.to_string())
}

/// Permission bits as octal text (`"755"`).
pub fn octal(m: Option<&str>) -> ApiResult<Option<u32>> {
    m.map(|m| {
        u32::from_str_radix(m, 8)
            .ok()
            .filter(|m| *m <= 0o7777)
            .ok_or_else(|| ApiError::invalid("mode must be octal, e.g. 644"))
    })
    .transpose()
}

/// Run `f` with the sandbox's agent on the blocking pool (within the
/// caller's fair share).
pub async fn with_agent<T: Send + 'static>(
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

pub async fn list(
    state: &AppState,
    who: &Principal,
    id: &str,
    path: &str,
    recursive: bool,
) -> ApiResult<FileList> {
    let row = running(state, who, id)?;
    let path = abs(path)?;
    let entries = with_agent(state, &row.id, move |a| a.list(&path, recursive, None)).await?;
    Ok(FileList { entries })
}

pub async fn stat(state: &AppState, who: &Principal, id: &str, path: &str) -> ApiResult<FileStat> {
    let row = running(state, who, id)?;
    let path = abs(path)?;
    with_agent(state, &row.id, move |a| a.stat(&path, None)).await
}

pub async fn delete(
    state: &AppState,
    who: &Principal,
    id: &str,
    path: &str,
    recursive: bool,
) -> ApiResult<()> {
    let row = running(state, who, id)?;
    let path = abs(path)?;
    let p2 = path.clone();
    with_agent(state, &row.id, move |a| a.remove(&p2, recursive, None)).await?;
    state.audit(&who.id, "file.delete", Some(&row.id), json!({"path": path}));
    Ok(())
}

/// `mkdir -p`.
pub async fn mkdir(
    state: &AppState,
    who: &Principal,
    id: &str,
    req: MkdirRequest,
) -> ApiResult<FileStat> {
    let row = running(state, who, id)?;
    let path = abs(&req.path)?;
    let mode = octal(req.mode.as_deref())?;
    let p2 = path.clone();
    let st = with_agent(state, &row.id, move |a| a.mkdir(&p2, mode, None)).await?;
    state.audit(&who.id, "file.mkdir", Some(&row.id), json!({"path": path}));
    Ok(st)
}

pub async fn rename(
    state: &AppState,
    who: &Principal,
    id: &str,
    req: RenameRequest,
) -> ApiResult<()> {
    let row = running(state, who, id)?;
    let (from, to) = (abs(&req.from)?, abs(&req.to)?);
    let (f2, t2) = (from.clone(), to.clone());
    with_agent(state, &row.id, move |a| a.rename(&f2, &t2, None)).await?;
    state.audit(
        &who.id,
        "file.rename",
        Some(&row.id),
        json!({"from": from, "to": to}),
    );
    Ok(())
}

/// A writer that keeps at most `cap` bytes and then refuses more, so a
/// read of an endless file (`/dev/zero`) ends.
struct Capped {
    buf: Vec<u8>,
    cap: usize,
    cut: bool,
}

impl std::io::Write for Capped {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let room = self.cap - self.buf.len();
        if data.len() > room {
            self.buf.extend_from_slice(&data[..room]);
            self.cut = true;
            return Err(std::io::Error::other("read cap reached"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A file's first `cap` bytes, and whether it has more.
pub async fn read(
    state: &AppState,
    who: &Principal,
    id: &str,
    path: &str,
    cap: usize,
) -> ApiResult<(Vec<u8>, bool)> {
    let row = running(state, who, id)?;
    let path = abs(path)?;
    let engine = state.engine();
    crate::fairness::spawn_blocking(move || {
        let mut out = Capped {
            buf: Vec::new(),
            cap,
            cut: false,
        };
        match engine.read_file_to(&row.id, &path, &mut |_| {}, &mut out) {
            Ok(()) => Ok((out.buf, false)),
            Err(_) if out.cut => Ok((out.buf, true)),
            Err(e) => Err(e),
        }
    })
    .await
    .map_err(|e| ApiError::internal("read task", e))?
}

/// Write a whole file (atomically: the agent renames a finished copy).
pub async fn write(
    state: &AppState,
    who: &Principal,
    id: &str,
    path: &str,
    data: Vec<u8>,
    mode: Option<&str>,
) -> ApiResult<Written> {
    let row = running(state, who, id)?;
    let path = abs(path)?;
    let mode = octal(mode)?;
    if data.len() as u64 > state.config().max_body {
        return Err(crate::error::ApiError::new(
            aibox_types::ErrorCode::PayloadTooLarge,
            format!(
                "the file is larger than this server's max_body ({} bytes)",
                state.config().max_body
            ),
        ));
    }
    let engine = state.engine();
    let (sid, p2, size) = (row.id.clone(), path.clone(), data.len() as u64);
    crate::fairness::spawn_blocking(move || {
        engine.write_file(&sid, &p2, &mut std::io::Cursor::new(data), mode)
    })
    .await
    .map_err(|e| ApiError::internal("write task", e))??;
    state.audit(
        &who.id,
        "file.write",
        Some(&row.id),
        json!({"path": path, "bytes": size}),
    );
    Ok(Written { path, size })
}
