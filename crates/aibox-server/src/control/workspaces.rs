//! The workspace use cases. A workspace is a persistent identity for the
//! sandboxes made in it: its files (a volume of the caller's, named
//! `workspace.NAME`, mounted at `/workspace` in each of them), its
//! environment (under each create's own), and its history (which sandbox,
//! when, from which snapshot, when it ended; the snapshots taken). Pausing
//! or deleting a sandbox never touches the workspace's files: they are
//! the volume's. A workspace belongs to the key that made it; another
//! tenant's is reported as absent.

use super::volumes;
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::store::{Row, WorkspaceRow};
use crate::{now_ms, AppState};
use aibox_types::api::{
    check_labels, valid_workspace_name, workspace_volume, CreateRequest, VolumeRequest,
    VolumeSnapshotRequest, WorkspaceEvent, WorkspaceEventKind, WorkspaceList, WorkspaceRequest,
    WorkspaceSnapshotRequest, WorkspaceView, WORKSPACE_PATH,
};
use aibox_types::{ErrorCode, SandboxSpec, VolumeMount};
use serde_json::json;
use std::path::Path;

fn absent(name: &str) -> ApiError {
    ApiError::new(ErrorCode::NotFound, format!("no workspace {name:?}"))
}

fn bad_name(name: &str) -> ApiError {
    ApiError::invalid(format!(
        "invalid workspace name {name:?}: use 1-53 letters, digits, '.', '_' or '-', not starting with '.' or '-'"
    ))
}

fn store_err(what: &'static str) -> impl FnOnce(crate::store::StoreError) -> ApiError {
    move |e| ApiError::internal(what, e)
}

/// The caller's workspace named `workspace` (or with that id); another
/// tenant's is reported as absent. An admin reaches any by id.
pub fn owned(state: &AppState, who: &Principal, workspace: &str) -> ApiResult<WorkspaceRow> {
    let store = state.store();
    let by_name = if valid_workspace_name(workspace) {
        store
            .workspace_by_name(&who.id, workspace)
            .map_err(store_err("get workspace"))?
    } else {
        None
    };
    let row = match by_name {
        Some(r) => Some(r),
        None if aibox_types::validate_id(workspace) => store
            .get_workspace(workspace)
            .map_err(store_err("get workspace"))?
            .filter(|r| who.admin() || r.owner == who.id),
        None if !valid_workspace_name(workspace) => return Err(bad_name(workspace)),
        None => None,
    };
    row.ok_or_else(|| absent(workspace))
}

fn event(
    kind: WorkspaceEventKind,
    sandbox: Option<&str>,
    snapshot: Option<&str>,
    from_snapshot: Option<&str>,
) -> WorkspaceEvent {
    WorkspaceEvent {
        at_ms: now_ms(),
        event: kind,
        sandbox: sandbox.map(str::to_string),
        snapshot: snapshot.map(str::to_string),
        from_snapshot: from_snapshot.map(str::to_string),
    }
}

fn record(state: &AppState, workspace: &str, e: WorkspaceEvent) {
    if let Err(err) = state.store().add_workspace_event(workspace, &e) {
        tracing::warn!(workspace, error = %err, "recording a workspace event failed");
    }
}

/// The volume that holds the workspace's files.
fn files_of(state: &AppState, row: &WorkspaceRow) -> ApiResult<crate::store::VolumeRow> {
    state
        .store()
        .get_volume(&row.volume)
        .map_err(store_err("get volume"))?
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::NotFound,
                format!("the files of workspace {:?} are gone", row.name),
            )
        })
}

/// The sandboxes made in workspace `id` that exist now (creating ones
/// included).
fn sandboxes_in(state: &AppState, id: &str) -> ApiResult<Vec<String>> {
    Ok(state
        .store()
        .all()
        .map_err(store_err("list"))?
        .into_iter()
        .filter(|r| r.spec["workspace"].as_str() == Some(id))
        .map(|r| r.id)
        .collect())
}

/// The workspace as the API shows it.
async fn view(state: &AppState, row: WorkspaceRow) -> ApiResult<WorkspaceView> {
    let volume = files_of(state, &row)?;
    let files = volumes::view(state, volume).await?;
    let sandboxes = sandboxes_in(state, &row.id)?;
    let history = state
        .store()
        .workspace_events(&row.id)
        .map_err(store_err("workspace history"))?;
    Ok(WorkspaceView {
        id: row.id,
        name: row.name,
        created_at_ms: row.created_ms,
        env: row.env,
        labels: row.labels,
        files,
        sandboxes,
        history,
    })
}

/// Make a workspace (and the volume that holds its files).
pub async fn create(
    state: &AppState,
    who: &Principal,
    req: WorkspaceRequest,
) -> ApiResult<WorkspaceView> {
    if !valid_workspace_name(&req.name) {
        return Err(bad_name(&req.name));
    }
    if state
        .store()
        .workspace_by_name(&who.id, &req.name)
        .map_err(store_err("get workspace"))?
        .is_some()
    {
        return Err(ApiError::new(
            ErrorCode::AlreadyExists,
            format!("a workspace named {:?} exists already", req.name),
        ));
    }
    for k in req.env.keys() {
        if k.is_empty() || k.contains('=') || k.contains('\0') {
            return Err(ApiError::invalid(format!(
                "env: invalid variable name {k:?}"
            )));
        }
    }
    if req.env.values().any(|v| v.contains('\0')) {
        return Err(ApiError::invalid("env: a value holds a NUL byte"));
    }
    check_labels(&req.labels).map_err(|e| ApiError::invalid(format!("labels: {e}")))?;
    let files = volumes::create(
        state,
        who,
        VolumeRequest {
            name: workspace_volume(&req.name),
            size: req.size.clone(),
            uid: None,
            labels: [("workspace".to_string(), req.name.clone())].into(),
        },
    )
    .await?;
    let row = WorkspaceRow {
        id: aibox_runtime::random_id(),
        owner: who.id.clone(),
        name: req.name.clone(),
        volume: files.id.clone(),
        env: req.env,
        labels: req.labels,
        created_ms: now_ms(),
    };
    let inserted = state.store().insert_workspace(&row);
    if !matches!(inserted, Ok(true)) {
        let _ = volumes::remove(state, who, &files.id).await;
        return Err(match inserted {
            Ok(_) => ApiError::new(
                ErrorCode::AlreadyExists,
                format!("a workspace named {:?} exists already", req.name),
            ),
            Err(e) => ApiError::internal("recording the workspace", e),
        });
    }
    record(
        state,
        &row.id,
        event(WorkspaceEventKind::Created, None, None, None),
    );
    state.audit(
        &who.id,
        "workspace.create",
        None,
        json!({"workspace": row.id, "name": row.name, "volume": row.volume}),
    );
    view(state, row).await
}

/// The caller's workspaces (every one's, for an admin), by name.
pub async fn list(state: &AppState, who: &Principal) -> ApiResult<WorkspaceList> {
    let owner = (!who.admin()).then_some(who.id.as_str());
    let rows = state
        .store()
        .workspaces(owner)
        .map_err(store_err("list workspaces"))?;
    let mut workspaces = Vec::new();
    for row in rows {
        match view(state, row).await {
            Ok(v) => workspaces.push(v),
            Err(e) if e.code == ErrorCode::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(WorkspaceList { workspaces })
}

pub async fn get(state: &AppState, who: &Principal, workspace: &str) -> ApiResult<WorkspaceView> {
    view(state, owned(state, who, workspace)?).await
}

/// Remove a workspace, its files and its history: refused (`conflict`)
/// while a sandbox is in it.
pub async fn remove(state: &AppState, who: &Principal, workspace: &str) -> ApiResult<()> {
    let row = owned(state, who, workspace)?;
    let inside = sandboxes_in(state, &row.id)?;
    if !inside.is_empty() {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            format!(
                "workspace {} has sandboxes ({}); destroy them first",
                row.name,
                inside.join(", ")
            ),
        ));
    }
    // Its files, by the volume's id (which an admin reaches too).
    match volumes::remove_files(state, who, &row.volume).await {
        Ok(()) => {}
        Err(e) if e.code == ErrorCode::NotFound => {}
        Err(e) => return Err(e),
    }
    state
        .store()
        .remove_workspace(&row.id)
        .map_err(store_err("forgetting the workspace"))?;
    state.audit(
        &who.id,
        "workspace.delete",
        None,
        json!({"workspace": row.id, "name": row.name}),
    );
    Ok(())
}

/// Keep the workspace's files as they are now, by name (a snapshot of its
/// volume, in its history).
pub async fn snapshot(
    state: &AppState,
    who: &Principal,
    workspace: &str,
    req: WorkspaceSnapshotRequest,
) -> ApiResult<WorkspaceView> {
    let row = owned(state, who, workspace)?;
    volumes::snapshot(
        state,
        who,
        &row.volume,
        VolumeSnapshotRequest {
            name: req.name.clone(),
        },
    )
    .await?;
    record(
        state,
        &row.id,
        event(WorkspaceEventKind::Snapshot, None, Some(&req.name), None),
    );
    view(state, row).await
}

/// A create in a workspace: its files at `/workspace`, its environment
/// under the request's own, and the workspace noted in the spec. A spec
/// from a snapshot already names its workspace (still the caller's, and
/// still there); a request's `workspace` replaces it.
pub fn enter(
    state: &AppState,
    who: &Principal,
    req: &CreateRequest,
    spec: &mut SandboxSpec,
) -> ApiResult<()> {
    let row = match (&req.workspace, &spec.workspace) {
        (Some(name), _) => {
            if !valid_workspace_name(name) {
                return Err(bad_name(name));
            }
            state
                .store()
                .workspace_by_name(&who.id, name)
                .map_err(store_err("get workspace"))?
                .ok_or_else(|| absent(name))?
        }
        (None, Some(id)) => state
            .store()
            .get_workspace(id)
            .map_err(store_err("get workspace"))?
            .filter(|r| r.owner == who.id)
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::NotFound,
                    "the workspace of the snapshot's sandbox is gone",
                )
            })?,
        (None, None) => return Ok(()),
    };
    let volume = files_of(state, &row)?;
    // The snapshot's workspace mount (if any) gives way to this one.
    let at = Path::new(WORKSPACE_PATH);
    spec.volumes.retain(|v| v.path != at);
    if spec.mounts.iter().any(|m| m.guest == at) || req.volumes.iter().any(|v| v.path == at) {
        return Err(ApiError::invalid(format!(
            "workspace: {WORKSPACE_PATH} is the workspace's, and something else is mounted there"
        )));
    }
    spec.volumes.push(VolumeMount {
        id: volume.id,
        name: volume.name,
        path: at.to_path_buf(),
        read_only: false,
    });
    for (k, v) in &row.env {
        if !req.env.contains_key(k) {
            spec.env.retain(|(old, _)| old != k);
            spec.env.push((k.clone(), v.clone()));
        }
    }
    spec.workspace = Some(row.id);
    Ok(())
}

/// A sandbox was made: in its workspace's history, with the snapshot it
/// was restored from.
pub fn sandbox_created(state: &AppState, sandbox: &str, spec: &SandboxSpec) {
    if let Some(ws) = &spec.workspace {
        record(
            state,
            ws,
            event(
                WorkspaceEventKind::SandboxCreated,
                Some(sandbox),
                None,
                spec.snapshot.as_deref(),
            ),
        );
    }
}

/// A sandbox ended (deleted, expired, idle too long).
pub fn sandbox_ended(state: &AppState, row: &Row) {
    if let Some(ws) = row.spec["workspace"].as_str() {
        record(
            state,
            ws,
            event(WorkspaceEventKind::SandboxEnded, Some(&row.id), None, None),
        );
    }
}

/// A snapshot of a sandbox in a workspace.
pub fn sandbox_snapshot(state: &AppState, row: &Row, snapshot: &str) {
    if let Some(ws) = row.spec["workspace"].as_str() {
        record(
            state,
            ws,
            event(
                WorkspaceEventKind::Snapshot,
                Some(&row.id),
                Some(snapshot),
                None,
            ),
        );
    }
}
