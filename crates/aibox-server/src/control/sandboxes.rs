//! The sandbox use cases: create (fresh or from a snapshot), list, get,
//! pause and resume, lifetime, egress policy, exec, delete. Each takes
//! the caller's principal and a typed request from `aibox_types::api`
//! and enforces ownership, policy, quotas and the audit log; the REST
//! handlers (`crate::sandboxes`) and the MCP tools call these.

use super::access::{owned, running};
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::store::Row;
use crate::{now_ms, AppState};
use aibox_protocol::ExecRequest;
use aibox_types::api::{
    self, CreateRequest, Limits, ListQuery, SandboxList, SandboxState, SandboxView, TimeoutRequest,
};
use aibox_types::{ByteSize, ErrorCode, SandboxSpec};
use serde_json::{json, Value};

/// What a create did: made a new sandbox, or found the one an earlier
/// create with the same idempotency key made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    New,
    Earlier,
}

/// States that hold resources.
const ACTIVE: [&str; 3] = ["creating", "running", "paused"];

/// A sandbox's row as the API shows it.
pub(crate) fn view(r: Row) -> SandboxView {
    let limits = serde_json::from_value::<SandboxSpec>(r.spec.clone())
        .ok()
        .map(|s| Limits::of(&s));
    SandboxView {
        state: r.state.parse().unwrap_or(SandboxState::Running),
        created_at_ms: r.created_ms,
        expires_at_ms: r.expires_ms,
        remaining_ms: r
            .remaining_ms
            .or_else(|| r.expires_ms.map(|e| e.saturating_sub(now_ms()))),
        idle_timeout_seconds: r.idle_timeout_ms.map(|m| m / 1000),
        labels: r
            .labels
            .into_iter()
            .filter_map(|(k, v)| Some((k, v.as_str()?.to_string())))
            .collect(),
        limits,
        spec: r.spec,
        isolation: r.isolation,
        public_ports: r.public_ports,
        usage: None,
        id: r.id,
    }
}

fn spec_of(state: &AppState, who: &Principal, req: &CreateRequest) -> ApiResult<SandboxSpec> {
    // A restore starts from the snapshot's spec (the source sandbox's).
    let mut spec = match &req.snapshot {
        Some(id) => {
            let snap = super::access::snapshot(state, who, id)?;
            let mut base: SandboxSpec = serde_json::from_value(snap.meta["spec"].clone())
                .map_err(|e| ApiError::internal("snapshot spec", e))?;
            if req.template.as_ref().is_some_and(|t| *t != base.template) {
                return Err(ApiError::invalid(format!(
                    "snapshot {id} was taken from template {:?}; a restore cannot change it",
                    base.template
                )));
            }
            base.snapshot = Some(snap.id);
            base.timeout_ms = None;
            // A kept build step's capabilities stay with the build.
            base.build_caps = false;
            base
        }
        None => SandboxSpec::default(),
    };
    req.apply(&mut spec)?;
    super::workspaces::enter(state, who, req, &mut spec)?;
    super::volumes::resolve(state, who, &mut spec)?;
    if spec.backend.is_none() {
        spec.backend = Some(state.config().default_backend);
    }
    // Checked again on a restore: the operator may have narrowed the list.
    // The check is on the path as written (no `..`, by validate), and the
    // runtime then resolves it beneath the allowed path it names without
    // following a symlink: a link a sandbox planted in a shared directory
    // cannot lead a later mount out of it (the review's C2).
    for m in &mut spec.mounts {
        m.validate().map_err(ApiError::invalid)?;
        let Some(root) = aibox_types::ceiling::grant_root(&state.config().allowed_mounts, &m.host)
        else {
            return Err(ApiError::new(
                ErrorCode::PermissionDenied,
                format!(
                    "host mount {} is not under a path the operator allowed (allowed_mounts)",
                    m.host.display()
                ),
            ));
        };
        m.within = Some(root.to_path_buf());
    }
    spec.validate().map_err(ApiError::invalid)?;
    // A restore too: the key's ceiling may have been lowered since.
    who.within(|c| c.check_spec(&spec))?;
    Ok(spec)
}

/// Pause (freeze every process and stop the TTL clock, keeping what is
/// left of it) or resume (thaw, and restart the clock with that rest).
pub async fn freeze(
    state: &AppState,
    who: &Principal,
    id: &str,
    pause: bool,
) -> ApiResult<SandboxView> {
    let row = owned(state, who, id)?;
    state.check_not_busy(&row.id)?;
    let from = if pause { "running" } else { "paused" };
    if row.state != from {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            format!("sandbox {id} is {}", row.state),
        ));
    }
    let engine = state.engine();
    let sid = row.id.clone();
    tokio::task::spawn_blocking(move || engine.pause(&sid, pause))
        .await
        .map_err(|e| ApiError::internal("freezer task", e))??;
    let now = now_ms();
    let recorded = if pause {
        state
            .store()
            .set_paused(&row.id, row.expires_ms.map(|e| e.saturating_sub(now)))
    } else {
        state
            .store()
            .set_resumed(&row.id, row.remaining_ms.map(|r| now + r), now)
    };
    recorded.map_err(|e| ApiError::internal("freezer state", e))?;
    let action = if pause {
        "sandbox.pause"
    } else {
        "sandbox.resume"
    };
    state.audit(&who.id, action, Some(&row.id), json!({}));
    Ok(view(owned(state, who, id)?))
}

/// Set the remaining lifetime (while paused, what is left when resumed).
pub fn set_timeout(
    state: &AppState,
    who: &Principal,
    id: &str,
    body: TimeoutRequest,
) -> ApiResult<SandboxView> {
    let row = owned(state, who, id)?;
    let max = state.config().max_ttl;
    if body.ttl_seconds == 0 || body.ttl_seconds > max.as_secs() {
        return Err(ApiError::invalid(format!(
            "ttl_seconds must be between 1 and {}",
            max.as_secs()
        )));
    }
    who.within(|c| c.check_ttl(body.ttl_seconds))?;
    let ms = body.ttl_seconds * 1000;
    let r = if row.state == "paused" {
        state.store().set_paused(&row.id, Some(ms))
    } else {
        state.store().set_expiry(&row.id, Some(now_ms() + ms))
    };
    r.map_err(|e| ApiError::internal("set timeout", e))?;
    state.audit(
        &who.id,
        "sandbox.timeout",
        Some(&row.id),
        json!({"ttl_seconds": body.ttl_seconds}),
    );
    Ok(view(owned(state, who, id)?))
}

/// Create a sandbox (fresh, or restored from `req.snapshot`); policy
/// refusals go to the audit log.
/// `Created::Earlier` when `idempotency_key` names an earlier create of
/// this caller's: its sandbox, not a second one.
pub async fn create(
    state: &AppState,
    who: &Principal,
    req: CreateRequest,
    idempotency_key: Option<String>,
) -> ApiResult<(Created, SandboxView)> {
    let r = create_sandbox(state, who, req, idempotency_key).await;
    // Policy refusals are part of the record: who was refused what, and why.
    if let Err(e) = &r {
        if matches!(
            e.code,
            ErrorCode::PermissionDenied
                | ErrorCode::ResourceExhausted
                | ErrorCode::IsolationUnavailable
        ) {
            state.audit(
                &who.id,
                "policy.denied",
                None,
                json!({"operation": "sandbox.create", "code": e.code, "message": e.message}),
            );
        }
    }
    r
}

async fn create_sandbox(
    state: &AppState,
    who: &Principal,
    req: CreateRequest,
    idem: Option<String>,
) -> ApiResult<(Created, SandboxView)> {
    let state = state.clone();
    let spec = spec_of(&state, who, &req)?;
    // A sandbox larger than the whole memory budget, or than the key's
    // quota, can never be created: bad input, not a full server (503 would
    // tell the caller to retry).
    let want = spec.memory_bytes();
    let budget = state.config().memory_budget;
    if want > budget {
        return Err(ApiError::invalid(format!(
            "memory {} is more than this server's whole memory budget ({}): ask for less",
            ByteSize(want),
            ByteSize(budget)
        )));
    }
    if let Some(q) = who.max_memory.filter(|q| want > *q) {
        return Err(ApiError::invalid(format!(
            "memory {} is more than this key's whole memory quota ({}): ask for less",
            ByteSize(want),
            ByteSize(q)
        )));
    }
    let ttl = match req.ttl_seconds {
        // The default never exceeds the key's ceiling.
        None => {
            let cap = who
                .ceiling
                .as_ref()
                .and_then(|c| c.max_ttl_seconds)
                .map(std::time::Duration::from_secs);
            state
                .config()
                .default_ttl
                .min(cap.unwrap_or(std::time::Duration::MAX))
        }
        Some(0) => return Err(ApiError::invalid("ttl_seconds must be positive")),
        Some(s) => std::time::Duration::from_secs(s),
    };
    if ttl > state.config().max_ttl {
        return Err(ApiError::invalid(format!(
            "ttl_seconds {} is above the server's maximum ({})",
            ttl.as_secs(),
            state.config().max_ttl.as_secs()
        )));
    }
    who.within(|c| c.check_ttl(ttl.as_secs()))?;
    if req.public {
        who.within(|c| c.check_public_ports())?;
    }
    // Capacity and idempotency are decided under one lock, so parallel
    // creates cannot all squeeze past the limit.
    let id = {
        let _g = state.create_lock().lock().await;
        if let Some(key) = &idem {
            if let Some(r) = state
                .store()
                .by_idempotency_key(&who.id, key)
                .map_err(|e| ApiError::internal("idempotency", e))?
            {
                if r.state == "creating" {
                    return Err(ApiError::new(
                        ErrorCode::Conflict,
                        "a create with this Idempotency-Key is still in progress",
                    ));
                }
                return Ok((Created::Earlier, view(r)));
            }
        }
        let rows = state
            .store()
            .all()
            .map_err(|e| ApiError::internal("list", e))?;
        let active: Vec<&Row> = rows
            .iter()
            .filter(|r| ACTIVE.contains(&r.state.as_str()))
            .collect();
        let max = state.config().max_sandboxes;
        if active.len() as u64 >= max {
            return Err(ApiError::new(
                ErrorCode::ResourceExhausted,
                format!("the server is at its limit of {max} sandboxes"),
            )
            .retry_after(5));
        }
        let mine: Vec<&&Row> = active.iter().filter(|r| r.owner == who.id).collect();
        if let Some(q) = who.max_sandboxes {
            if mine.len() as u64 >= q {
                return Err(ApiError::new(
                    ErrorCode::ResourceExhausted,
                    format!("this key's quota of {q} sandboxes is used up"),
                )
                .retry_after(5));
            }
        }
        if let Some(q) = who.max_memory {
            let used: u64 = mine.iter().map(|r| row_memory(r)).sum();
            if used.saturating_add(spec.memory_bytes()) > q {
                return Err(ApiError::new(
                    ErrorCode::ResourceExhausted,
                    format!(
                        "this key's memory quota is used up: {} of {} in use, {} requested",
                        ByteSize(used),
                        ByteSize(q),
                        ByteSize(spec.memory_bytes())
                    ),
                )
                .retry_after(5));
            }
        }
        let used: u64 = active.iter().map(|r| row_memory(r)).sum();
        let budget = state.config().memory_budget;
        if used.saturating_add(spec.memory_bytes()) > budget {
            return Err(ApiError::new(
                ErrorCode::ResourceExhausted,
                format!(
                    "memory budget exhausted: {} of {} in use, {} requested",
                    ByteSize(used),
                    ByteSize(budget),
                    ByteSize(spec.memory_bytes())
                ),
            )
            .retry_after(5));
        }
        // A placeholder row, so a crash between here and the runtime's
        // record leaves something restart adoption can reconcile.
        let id = format!("pending-{}", aibox_runtime::random_id());
        let now = now_ms();
        state
            .store()
            .insert(&Row {
                id: id.clone(),
                owner: who.id.clone(),
                state: "creating".into(),
                spec: serde_json::to_value(&spec).unwrap_or(Value::Null),
                labels: req
                    .labels
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                    .collect(),
                isolation: Value::Null,
                created_ms: now,
                expires_ms: Some(now + ttl.as_millis() as u64),
                idempotency_key: idem.clone(),
                idle_timeout_ms: req.idle_timeout_seconds.map(|s| s * 1000),
                last_active_ms: now,
                remaining_ms: None,
                port_token: new_token(),
                public_ports: req.public,
            })
            .map_err(|e| ApiError::internal("insert", e))?;
        id
    };
    let engine = state.engine();
    let spec2 = spec.clone();
    let t = std::time::Instant::now();
    let created = tokio::task::spawn_blocking(move || engine.create(&spec2))
        .await
        .map_err(|e| ApiError::internal("create task", e))?;
    state.metrics().observe_create(t.elapsed().as_secs_f64());
    let created = match created {
        Ok(c) => c,
        Err(e) => {
            let _ = state.store().remove(&id);
            state.audit(
                &who.id,
                "sandbox.create_failed",
                None,
                json!({"code": e.code, "message": e.message}),
            );
            return Err(e);
        }
    };
    let store = state.store();
    let finish = || -> Result<Row, crate::store::StoreError> {
        let mut row = store.get(&id)?.ok_or(crate::store::StoreError::Sql(
            rusqlite::Error::QueryReturnedNoRows,
        ))?;
        store.remove(&id)?;
        row.id = created.id.clone();
        row.state = "running".into();
        row.isolation = serde_json::to_value(&created.isolation).unwrap_or(Value::Null);
        store.insert(&row)?;
        Ok(row)
    };
    let row = match finish() {
        Ok(r) => r,
        Err(e) => {
            let engine = state.engine();
            let sid = created.id.clone();
            let _ = tokio::task::spawn_blocking(move || engine.destroy(&sid)).await;
            return Err(ApiError::internal("recording the sandbox", e));
        }
    };
    match state.start_egress(&row.id, &spec).await {
        Ok(report) => state.record_egress(&row, report),
        Err(e) => {
            let _ = state.destroy(&row.id).await;
            return Err(e);
        }
    }
    let row = state
        .store()
        .get(&row.id)
        .map_err(|e| ApiError::internal("get", e))?
        .unwrap_or(row);
    state.audit(
        &who.id,
        "sandbox.create",
        Some(&row.id),
        json!({"template": spec.template, "memory": spec.memory_bytes(), "ttl_s": ttl.as_secs(), "snapshot": spec.snapshot}),
    );
    super::workspaces::sandbox_created(&state, &row.id, &spec);
    Ok((Created::New, view(row)))
}

fn row_memory(r: &Row) -> u64 {
    serde_json::from_value::<SandboxSpec>(r.spec.clone())
        .map(|s| s.memory_bytes())
        .unwrap_or(0)
}

/// A page of the caller's sandboxes (every one's, for an admin).
pub fn list(state: &AppState, who: &Principal, q: ListQuery) -> ApiResult<SandboxList> {
    let limit = q.limit.unwrap_or(100);
    if limit == 0 || limit > 1000 {
        return Err(ApiError::invalid("limit must be between 1 and 1000"));
    }
    let summary = match q.view.as_deref() {
        None | Some("full") => false,
        Some("summary") => true,
        Some(v) => {
            return Err(ApiError::invalid(format!(
                "view must be full or summary, not {v:?}"
            )))
        }
    };
    let label = match &q.label {
        None => None,
        Some(l) => match l.split_once('=') {
            Some((k, v)) if !k.is_empty() => Some((k.to_string(), v.to_string())),
            _ => return Err(ApiError::invalid("label filter must be key=value")),
        },
    };
    let after = match &q.cursor {
        None => None,
        Some(c) => {
            let (ms, id) = c
                .split_once('.')
                .and_then(|(ms, id)| Some((ms.parse::<u64>().ok()?, id.to_string())))
                .ok_or_else(|| ApiError::invalid("bad cursor"))?;
            Some((ms, id))
        }
    };
    let owner = (!who.admin()).then_some(who.id.as_str());
    let mut out = Vec::new();
    let mut cursor = after.clone();
    let mut next = None;
    // Filters apply after paging in the store; keep reading until the
    // page is full or the store is exhausted.
    'pages: loop {
        let page = state
            .store()
            .list(owner, cursor.as_ref().map(|(m, i)| (*m, i.as_str())), limit)
            .map_err(|e| ApiError::internal("list", e))?;
        let exhausted = (page.len() as u64) < limit;
        for r in page {
            cursor = Some((r.created_ms, r.id.clone()));
            let state_ok = q.state.is_none_or(|s| s.as_str() == r.state);
            let label_ok = label
                .as_ref()
                .is_none_or(|(k, v)| r.labels.get(k).and_then(Value::as_str) == Some(v.as_str()));
            if state_ok && label_ok && !r.id.starts_with("pending-") {
                let mut v = view(r);
                if summary && v.isolation.is_object() {
                    v.isolation =
                        json!({"backend": v.isolation["backend"], "level": v.isolation["level"]});
                }
                out.push(v);
                if out.len() as u64 == limit {
                    next = cursor.as_ref().map(|(m, i)| format!("{m}.{i}"));
                    break 'pages;
                }
            }
        }
        if exhausted {
            break;
        }
    }
    Ok(SandboxList {
        sandboxes: out,
        next,
    })
}

/// One sandbox, with live usage (CPU, memory, pids) while it runs.
pub async fn get(state: &AppState, who: &Principal, id: &str) -> ApiResult<SandboxView> {
    let row = owned(state, who, id)?;
    let usage = if row.state == "running" || row.state == "paused" {
        let engine = state.engine();
        let sid = row.id.clone();
        tokio::task::spawn_blocking(move || engine.stats(&sid))
            .await
            .ok()
            .flatten()
    } else {
        None
    };
    let mut v = view(row);
    v.usage = usage;
    Ok(v)
}

pub async fn delete(state: &AppState, who: &Principal, id: &str) -> ApiResult<()> {
    let row = owned(state, who, id)?;
    if row.state == "creating" {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            "the sandbox is still being created",
        ));
    }
    state.check_not_busy(&row.id)?;
    state.destroy(&row.id).await?;
    state.audit(&who.id, "sandbox.delete", Some(&row.id), json!({}));
    Ok(())
}

/// Run a command to completion; both streams are capped by the server.
pub async fn exec(
    state: &AppState,
    who: &Principal,
    id: &str,
    body: api::ExecRequest,
) -> ApiResult<api::ExecResult> {
    let row = running(state, who, id)?;
    let (argv, shell) = body.cmd.split()?;
    let req = ExecRequest {
        stdin: body.stdin.is_some(),
        // The server's cap, whatever the request asks: both streams are
        // held in memory (and again in the JSON reply).
        max_output: Some(
            body.max_output
                .unwrap_or(state.config().max_exec_output)
                .min(state.config().max_exec_output),
        ),
        ..ExecRequest::command(
            argv.clone(),
            shell.clone(),
            body.env,
            body.cwd,
            body.user,
            body.timeout_ms,
        )
    };
    let engine = state.engine();
    let sid = row.id.clone();
    let stdin = body.stdin;
    let t = std::time::Instant::now();
    let out = crate::fairness::spawn_blocking(move || {
        engine.exec(&sid, req, stdin.as_deref().map(str::as_bytes))
    })
    .await
    .map_err(|e| ApiError::internal("exec task", e))??;
    state.metrics().observe_exec(t.elapsed().as_secs_f64());
    let exit = &out.exit;
    state.audit(
        &who.id,
        "sandbox.exec",
        Some(&row.id),
        json!({"argv": argv, "shell": shell, "user": body.user, "exit_code": exit.status(), "duration_ms": exit.duration_ms}),
    );
    Ok(api::ExecResult {
        exit_code: exit.status(),
        signal: exit.signal,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        timed_out: exit.timed_out,
        stdout_truncated: exit.stdout_truncated,
        stderr_truncated: exit.stderr_truncated,
        duration_ms: exit.duration_ms,
    })
}

/// Replace a sandbox's egress policy; new connections see it at once.
pub async fn set_network(
    state: &AppState,
    who: &Principal,
    id: &str,
    body: api::NetworkRequest,
) -> ApiResult<SandboxView> {
    let row = owned(state, who, id)?;
    let mut spec: SandboxSpec = serde_json::from_value(row.spec.clone())
        .map_err(|e| ApiError::internal("sandbox spec", e))?;
    if spec.network == aibox_types::NetworkMode::None && body.mode != aibox_types::NetworkMode::None
    {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            format!(
                "sandbox {id} was created without network; create it with network mode allowlist or full to give it egress"
            ),
        ));
    }
    if body
        .enforcement
        .is_some_and(|e| Some(e) != spec.network_enforcement)
    {
        return Err(ApiError::invalid(
            "network enforcement is chosen when the sandbox is created",
        ));
    }
    spec.network = body.mode;
    spec.network_rules = body.rules;
    spec.validate().map_err(ApiError::invalid)?;
    who.within(|c| c.check_rules(&spec.network_rules))?;
    let value = serde_json::to_value(&spec).map_err(|e| ApiError::internal("spec", e))?;
    state
        .store()
        .set_spec(&row.id, &value)
        .map_err(|e| ApiError::internal("set network", e))?;
    let policy = aibox_types::egress::Policy {
        mode: spec.network,
        rules: spec.network_rules.clone(),
    };
    // The listener keeps running even for mode none (it then refuses
    // everything), so the policy can be opened again later.
    if !state.set_egress_policy(&row.id, policy).await? {
        let report = state.start_egress(&row.id, &spec).await?;
        state.record_egress(&row, report);
    }
    state.audit(
        &who.id,
        "sandbox.network",
        Some(&row.id),
        json!({"mode": spec.network, "rules": spec.network_rules}),
    );
    Ok(view(owned(state, who, id)?))
}

/// A sandbox's port token: 128 random bits in hex.
pub fn new_token() -> String {
    let mut b = [0u8; 16];
    if aibox_runtime::fill_random(&mut b).is_err() {
        std::process::abort();
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}
