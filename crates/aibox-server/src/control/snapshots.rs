//! The snapshot use cases: take one (the sandbox frozen while its
//! filesystem is copied), list, show, delete, and make sandboxes from one
//! (restore: one; fork: N, all or none). A snapshot outlives its sandbox
//! and belongs to the key that took it.

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::store::SnapshotRow;
use crate::AppState;
use aibox_types::api::{
    CreateRequest, SandboxView, SnapshotList, SnapshotQuery, SnapshotRequest, SnapshotView,
    MAX_FORK,
};
use aibox_types::ErrorCode;
use serde_json::{json, Value};

pub use super::access::snapshot as owned;

/// A snapshot as the API shows it.
pub fn view(s: &SnapshotRow) -> SnapshotView {
    let m = &s.meta;
    SnapshotView {
        id: s.id.clone(),
        name: s.name.clone(),
        source_sandbox: s.source.clone(),
        created_at_ms: s.created_ms,
        template: m["template"].as_str().unwrap_or_default().to_string(),
        size_bytes: m["size_bytes"].as_u64().unwrap_or(0),
        entries: m["entries"].as_u64().unwrap_or(0),
        consistent: m["consistent"].as_bool().unwrap_or(false),
        memory: m["memory"].as_bool().unwrap_or(false),
        volumes: aibox_types::api::SnapshotVolume::of(&m["spec"]),
        spec: m["spec"].clone(),
    }
}

/// Snapshot sandbox `id`.
pub async fn create(
    state: &AppState,
    who: &Principal,
    id: &str,
    body: SnapshotRequest,
) -> ApiResult<SnapshotView> {
    if let Some(n) = &body.name {
        if !aibox_types::validate_name(n) {
            return Err(ApiError::invalid(
                "name must be 1-63 letters, digits, '.', '_' or '-'",
            ));
        }
    }
    let row = super::access::owned(state, who, id)?;
    if row.state != "running" && row.state != "paused" {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            format!("sandbox {id} is {}", row.state),
        ));
    }
    let max = state.config().max_snapshots;
    let kept = state
        .store()
        .snapshots(None)
        .map_err(|e| ApiError::internal("list snapshots", e))?
        .len() as u64;
    if kept >= max {
        let e = ApiError::new(
            ErrorCode::ResourceExhausted,
            format!("the server keeps at most {max} snapshots (max_snapshots); delete some first"),
        );
        state.audit(
            &who.id,
            "policy.denied",
            Some(&row.id),
            json!({"operation": "snapshot.create", "code": e.code, "message": e.message}),
        );
        return Err(e);
    }
    let _busy = state.busy(&row.id);
    let engine = state.engine();
    let sid = row.id.clone();
    let t = std::time::Instant::now();
    let name = body.name.clone();
    let meta = crate::fairness::spawn_blocking(move || engine.snapshot(&sid, name.as_deref()))
        .await
        .map_err(|e| ApiError::internal("snapshot task", e))??;
    let snap = SnapshotRow {
        id: meta.id.clone(),
        owner: who.id.clone(),
        name: body.name,
        source: row.id.clone(),
        created_ms: meta.created_unix_ms,
        meta: serde_json::to_value(&meta).unwrap_or(Value::Null),
    };
    if let Err(e) = state.store().insert_snapshot(&snap) {
        let engine = state.engine();
        let _ = tokio::task::spawn_blocking(move || engine.delete_snapshot(&meta.id)).await;
        return Err(ApiError::internal("recording the snapshot", e));
    }
    super::workspaces::sandbox_snapshot(state, &row, &snap.id);
    state.audit(
        &who.id,
        "snapshot.create",
        Some(&row.id),
        json!({"snapshot": snap.id, "bytes": meta.size_bytes, "duration_ms": t.elapsed().as_millis() as u64}),
    );
    Ok(view(&snap))
}

/// The caller's snapshots (every one's, for an admin), oldest first.
pub fn list(state: &AppState, who: &Principal, q: SnapshotQuery) -> ApiResult<SnapshotList> {
    let owner = (!who.admin()).then_some(who.id.as_str());
    let rows = state
        .store()
        .snapshots(owner)
        .map_err(|e| ApiError::internal("list snapshots", e))?;
    let snapshots: Vec<SnapshotView> = rows
        .iter()
        .filter(|s| q.sandbox.as_ref().is_none_or(|x| *x == s.source))
        .filter(|s| q.name.is_none() || s.name == q.name)
        .map(view)
        .collect();
    Ok(SnapshotList { snapshots })
}

pub fn get(state: &AppState, who: &Principal, id: &str) -> ApiResult<SnapshotView> {
    Ok(view(&owned(state, who, id)?))
}

pub async fn delete(state: &AppState, who: &Principal, id: &str) -> ApiResult<()> {
    let snap = owned(state, who, id)?;
    let engine = state.engine();
    let sid = snap.id.clone();
    tokio::task::spawn_blocking(move || engine.delete_snapshot(&sid))
        .await
        .map_err(|e| ApiError::internal("delete snapshot task", e))??;
    state
        .store()
        .remove_snapshot(&snap.id)
        .map_err(|e| ApiError::internal("remove snapshot", e))?;
    state.audit(
        &who.id,
        "snapshot.delete",
        Some(&snap.source),
        json!({"snapshot": snap.id}),
    );
    Ok(())
}

/// The create request of a sandbox from snapshot `id`: the request's
/// fields over the snapshot's spec.
fn from_snapshot(id: &str, mut req: CreateRequest) -> ApiResult<CreateRequest> {
    if req.snapshot.is_some() {
        return Err(ApiError::invalid(
            "the snapshot is given by the path, not the body",
        ));
    }
    req.snapshot = Some(id.to_string());
    Ok(req)
}

/// A new sandbox from snapshot `id`.
pub async fn restore(
    state: &AppState,
    who: &Principal,
    id: &str,
    req: CreateRequest,
    idempotency_key: Option<String>,
) -> ApiResult<(super::sandboxes::Created, SandboxView)> {
    owned(state, who, id)?;
    let req = from_snapshot(id, req)?;
    super::sandboxes::create(state, who, req, idempotency_key).await
}

/// `count` sandboxes from snapshot `id`, all or none.
pub async fn fork(
    state: &AppState,
    who: &Principal,
    id: &str,
    req: CreateRequest,
    count: u64,
) -> ApiResult<Vec<SandboxView>> {
    owned(state, who, id)?;
    if !(1..=MAX_FORK).contains(&count) {
        return Err(ApiError::invalid(format!(
            "count must be an integer from 1 to {MAX_FORK}"
        )));
    }
    let req = from_snapshot(id, req)?;
    let rows = state
        .store()
        .all()
        .map_err(|e| ApiError::internal("list", e))?;
    let active = rows
        .iter()
        .filter(|r| ["creating", "running", "paused"].contains(&r.state.as_str()))
        .count() as u64;
    let max = state.config().max_sandboxes;
    if active + count > max {
        return Err(ApiError::new(
            ErrorCode::ResourceExhausted,
            format!(
                "a fork of {count} needs {count} free sandbox slots; the server has {} of {max}",
                max.saturating_sub(active)
            ),
        )
        .retry_after(5));
    }
    let t = std::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..count {
        let (state, who, req) = (state.clone(), who.clone(), req.clone());
        tasks.spawn(async move {
            // No Idempotency-Key: it names one sandbox, and a fork makes many.
            crate::control::sandboxes::create(&state, &who, req, None)
                .await
                .map(|(_, v)| v)
        });
    }
    let mut made = Vec::new();
    let mut failed: Option<ApiError> = None;
    while let Some(r) = tasks.join_next().await {
        match r {
            Ok(Ok(v)) => made.push(v),
            Ok(Err(e)) => {
                failed.get_or_insert(e);
            }
            Err(e) => {
                failed.get_or_insert(ApiError::internal("fork task", e));
            }
        }
    }
    if let Some(e) = failed {
        // All or none: what was made goes again.
        for v in &made {
            let _ = state.destroy(&v.id).await;
            state.audit(
                &who.id,
                "sandbox.delete",
                Some(&v.id),
                json!({"reason": "fork failed"}),
            );
        }
        return Err(e);
    }
    made.sort_by_key(|v| (v.created_at_ms, v.id.clone()));
    state.audit(
        &who.id,
        "snapshot.fork",
        None,
        json!({"snapshot": id, "count": count, "sandboxes": made.iter().map(|v| v.id.clone()).collect::<Vec<_>>(), "duration_ms": t.elapsed().as_millis() as u64}),
    );
    Ok(made)
}
