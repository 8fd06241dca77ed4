//! Snapshots: `POST /v1/sandboxes/{id}/snapshots` takes one; `/v1/snapshots`
//! lists, shows and deletes them; `/v1/snapshots/{id}/restore` makes a new
//! sandbox from one and `/v1/snapshots/{id}/fork` makes N.
//!
//! Guarantees (docs/api.md): the sandbox is frozen while its filesystem is
//! copied, so a snapshot is consistent across files; its running processes
//! and host mounts are not part of it. A snapshot outlives its sandbox and
//! belongs to the key that took it. A restore starts from the source's
//! spec, which the request's fields override.

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::store::SnapshotRow;
use crate::AppState;
use aibox_types::api::{CreateRequest, SandboxView};
use aibox_types::ErrorCode;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

/// Most sandboxes one fork makes.
pub const MAX_FORK: u64 = 100;

/// A snapshot as the API shows it.
fn view(s: &SnapshotRow) -> Value {
    json!({
        "id": s.id,
        "name": s.name,
        "source_sandbox": s.source,
        "created_at_ms": s.created_ms,
        "template": s.meta["template"],
        "size_bytes": s.meta["size_bytes"],
        "entries": s.meta["entries"],
        "consistent": s.meta["consistent"],
        "memory": s.meta.get("memory").and_then(|m| m.as_bool()).unwrap_or(false),
        "spec": s.meta["spec"],
    })
}

pub(crate) use crate::control::snapshots::owned;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotBody {
    /// A name to find it by (1-63 letters, digits, '.', '_', '-').
    pub name: Option<String>,
}

pub async fn create(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let body: SnapshotBody = optional_json(&body)?;
    if let Some(n) = &body.name {
        if !aibox_types::validate_name(n) {
            return Err(ApiError::invalid(
                "name must be 1-63 letters, digits, '.', '_' or '-'",
            ));
        }
    }
    let row = crate::control::sandboxes::owned(&state, &who, &id)?;
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
    state.audit(
        &who.id,
        "snapshot.create",
        Some(&row.id),
        json!({"snapshot": snap.id, "bytes": meta.size_bytes, "duration_ms": t.elapsed().as_millis() as u64}),
    );
    Ok((StatusCode::CREATED, Json(view(&snap))))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only snapshots of this sandbox.
    pub sandbox: Option<String>,
    pub name: Option<String>,
}

pub async fn list(
    State(state): State<AppState>,
    who: Principal,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    let owner = (!who.admin()).then_some(who.id.as_str());
    let rows = state
        .store()
        .snapshots(owner)
        .map_err(|e| ApiError::internal("list snapshots", e))?;
    let out: Vec<Value> = rows
        .iter()
        .filter(|s| q.sandbox.as_ref().is_none_or(|x| *x == s.source))
        .filter(|s| q.name.is_none() || s.name == q.name)
        .map(view)
        .collect();
    Ok(Json(json!({ "snapshots": out })))
}

pub async fn get(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(view(&owned(&state, &who, &id)?)))
}

pub async fn delete(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let snap = owned(&state, &who, &id)?;
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
    Ok(StatusCode::NO_CONTENT)
}

/// A JSON body that may be left out (empty: the defaults).
fn optional_json<T: serde::de::DeserializeOwned + Default>(body: &[u8]) -> ApiResult<T> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    crate::error::parse_json(body)
}

/// A create request from a JSON object with `snapshot` set to `id`.
fn restore_request(id: &str, mut body: Value) -> ApiResult<CreateRequest> {
    if !body.is_object() {
        return Err(ApiError::invalid("the body must be a JSON object"));
    }
    if body.get("snapshot").is_some() {
        return Err(ApiError::invalid(
            "the snapshot is given by the path, not the body",
        ));
    }
    body["snapshot"] = json!(id);
    crate::error::parse_json(&serde_json::to_vec(&body).unwrap_or_default())
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
    owned(&state, &who, &id)?;
    let body: Value = optional_json(&body)?;
    let req = restore_request(&id, if body.is_null() { json!({}) } else { body })?;
    let key = crate::sandboxes::idempotency_key(&headers)?;
    let (created, v) = crate::control::sandboxes::create(&state, &who, req, key).await?;
    let status = match created {
        crate::control::sandboxes::Created::New => StatusCode::CREATED,
        crate::control::sandboxes::Created::Earlier => StatusCode::OK,
    };
    Ok((status, Json(v)))
}

/// `count` sandboxes from one snapshot, all or none.
pub async fn fork(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    owned(&state, &who, &id)?;
    let mut body: Value = optional_json(&body)?;
    let count = match body.as_object_mut().and_then(|o| o.remove("count")) {
        Some(c) => c
            .as_u64()
            .filter(|c| (1..=MAX_FORK).contains(c))
            .ok_or_else(|| {
                ApiError::invalid(format!("count must be an integer from 1 to {MAX_FORK}"))
            })?,
        None => return Err(ApiError::invalid("count is required")),
    };
    // The body's shape is checked once, before anything starts.
    restore_request(&id, body.clone())?;
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
        let (state, who, body, id) = (state.clone(), who.clone(), body.clone(), id.clone());
        tasks.spawn(async move {
            let req = restore_request(&id, body)?;
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
    Ok((StatusCode::CREATED, Json(json!({ "sandboxes": made }))))
}
