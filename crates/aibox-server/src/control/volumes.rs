//! The volume use cases: create, list, show, remove, snapshot, clone, and
//! resolving a create's volume names to the caller's volumes. A volume
//! belongs to the key that made it; its name is unique among that key's
//! volumes; another tenant's is reported as absent. The key's ceiling
//! (`max_volumes`, `max_volume_bytes`: quotas and snapshots together)
//! bounds what it keeps. The runtime's work (mkfs, copies, usage) runs on
//! the blocking pool.

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::store::VolumeRow;
use crate::AppState;
use aibox_runtime::volume::{NewVolume, VolumeMeta};
use aibox_runtime::Runtime;
use aibox_types::api::{
    check_labels, valid_volume_name, CloneRequest, VolumeList, VolumeQuery, VolumeRequest,
    VolumeSnapshotRequest, VolumeView,
};
use aibox_types::{ErrorCode, SandboxSpec};
use serde_json::json;

/// The default quota of a new volume.
pub const DEFAULT_SIZE: u64 = 1 << 30;
/// The default owner of a new volume's top directory: the sandbox's
/// default user.
pub const DEFAULT_UID: u32 = 1000;

/// Checking a key's ceiling and recording what it then makes happen as
/// one step: parallel creates cannot all pass a check made before any of
/// them is recorded. (Volume creates are rare and take milliseconds.)
static MAKING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn absent(name: &str) -> ApiError {
    ApiError::new(ErrorCode::NotFound, format!("no volume {name:?}"))
}

fn bad_name(name: &str) -> ApiError {
    ApiError::invalid(format!(
        "invalid volume name {name:?}: use 1-63 letters, digits, '.', '_' or '-', not starting with '.' or '-'"
    ))
}

/// The caller's volume named `volume` (or with that id); another
/// tenant's is reported as absent. An admin reaches any by id.
pub fn owned(state: &AppState, who: &Principal, volume: &str) -> ApiResult<VolumeRow> {
    let store = state.store();
    let by_name = if valid_volume_name(volume) {
        store
            .volume_by_name(&who.id, volume)
            .map_err(|e| ApiError::internal("get volume", e))?
    } else {
        None
    };
    let row = match by_name {
        Some(r) => Some(r),
        None if aibox_types::validate_id(volume) => store
            .get_volume(volume)
            .map_err(|e| ApiError::internal("get volume", e))?
            .filter(|r| who.admin() || r.owner == who.id),
        None if !valid_volume_name(volume) => return Err(bad_name(volume)),
        None => None,
    };
    row.ok_or_else(|| absent(volume))
}

/// Run `f` on the runtime on the blocking pool.
async fn blocking<T: Send + 'static>(
    state: &AppState,
    f: impl FnOnce(&Runtime) -> ApiResult<T> + Send + 'static,
) -> ApiResult<T> {
    let engine = state.engine();
    crate::fairness::spawn_blocking(move || f(engine.volumes()?))
        .await
        .map_err(|e| ApiError::internal("volume task", e))?
}

/// The rows' volumes as the API shows them (a row whose volume the
/// runtime no longer has is left out: its removal was interrupted).
async fn views(state: &AppState, rows: Vec<VolumeRow>) -> ApiResult<Vec<VolumeView>> {
    blocking(state, move |rt| {
        let mut kept = Vec::new();
        for row in rows {
            match rt.volume(&row.id) {
                Ok(meta) => kept.push((row, meta)),
                Err(aibox_runtime::Error::VolumeNotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let metas: Vec<VolumeMeta> = kept.iter().map(|(_, m)| m.clone()).collect();
        Ok(rt
            .volume_views(&metas)
            .into_iter()
            .zip(&kept)
            .map(|(mut v, (row, _))| {
                // The name is the row's (unique among its owner's).
                v.name = row.name.clone();
                v
            })
            .collect())
    })
    .await
}

/// What the key holds against `max_volume_bytes`: its volumes' quotas and
/// their snapshots' copies.
async fn held(state: &AppState, who: &Principal) -> ApiResult<(u64, u64)> {
    let rows = state
        .store()
        .volumes(Some(&who.id))
        .map_err(|e| ApiError::internal("list volumes", e))?;
    let count = rows.len() as u64;
    let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
    let quotas: u64 = rows.iter().map(|r| r.size_bytes).sum();
    let snapshots = blocking(state, move |rt| {
        Ok(ids
            .iter()
            .flat_map(|id| rt.volume_snapshots(id))
            .map(|s| s.size_bytes)
            .sum::<u64>())
    })
    .await?;
    Ok((count, quotas + snapshots))
}

/// The key may hold one more volume (`new_volume`) or snapshot of `bytes`.
async fn within_quota(
    state: &AppState,
    who: &Principal,
    new_volume: bool,
    bytes: u64,
    operation: &str,
) -> ApiResult<()> {
    if who.ceiling.is_none() {
        return Ok(());
    }
    let (count, total) = held(state, who).await?;
    // A snapshot adds no volume: the count is checked as if it were one
    // fewer.
    let count = if new_volume {
        count
    } else {
        count.saturating_sub(1)
    };
    let r = who.within(|c| c.check_volume(count, total, bytes));
    if let Err(e) = &r {
        state.audit(
            &who.id,
            "policy.denied",
            None,
            json!({"operation": operation, "code": e.code, "message": e.message}),
        );
    }
    r
}

/// Record a volume the runtime made; on a name taken meanwhile (a
/// concurrent create) the volume goes again.
async fn record(state: &AppState, who: &Principal, meta: &VolumeMeta) -> ApiResult<()> {
    let row = VolumeRow {
        id: meta.id.clone(),
        owner: who.id.clone(),
        name: meta.name.clone(),
        size_bytes: meta.size_bytes,
        created_ms: meta.created_unix_ms,
    };
    let undo = |state: &AppState, id: String| {
        let state = state.clone();
        async move {
            let _ = blocking(&state, move |rt| Ok(rt.remove_volume(&id)?)).await;
        }
    };
    match state.store().insert_volume(&row) {
        Ok(true) => Ok(()),
        Ok(false) => {
            undo(state, meta.id.clone()).await;
            Err(taken(&meta.name))
        }
        Err(e) => {
            undo(state, meta.id.clone()).await;
            Err(ApiError::internal("recording the volume", e))
        }
    }
}

fn taken(name: &str) -> ApiError {
    ApiError::new(
        ErrorCode::AlreadyExists,
        format!("a volume named {name:?} exists already"),
    )
}

fn name_free(state: &AppState, who: &Principal, name: &str) -> ApiResult<()> {
    if !valid_volume_name(name) {
        return Err(bad_name(name));
    }
    match state.store().volume_by_name(&who.id, name) {
        Ok(None) => Ok(()),
        Ok(Some(_)) => Err(taken(name)),
        Err(e) => Err(ApiError::internal("get volume", e)),
    }
}

/// Make a volume.
pub async fn create(
    state: &AppState,
    who: &Principal,
    req: VolumeRequest,
) -> ApiResult<VolumeView> {
    name_free(state, who, &req.name)?;
    let size = match &req.size {
        Some(s) => {
            s.bytes()
                .map_err(|e| ApiError::invalid(format!("size: {e}")))?
                .0
        }
        None => DEFAULT_SIZE,
    };
    let (min, max) = (
        aibox_types::api::MIN_VOLUME_BYTES,
        aibox_types::api::MAX_VOLUME_BYTES,
    );
    if !(min..=max).contains(&size) {
        return Err(ApiError::invalid(format!(
            "size {} is out of range: use 16m to 8t",
            aibox_types::ByteSize(size)
        )));
    }
    if req.uid.is_some_and(|u| u > aibox_types::MAX_UID) {
        return Err(ApiError::invalid(format!(
            "uid must be between 0 and {}",
            aibox_types::MAX_UID
        )));
    }
    check_labels(&req.labels).map_err(|e| ApiError::invalid(format!("labels: {e}")))?;
    let _making = MAKING.lock().await;
    within_quota(state, who, true, size, "volume.create").await?;
    let new = NewVolume {
        name: req.name.clone(),
        size_bytes: size,
        uid: req.uid.unwrap_or(DEFAULT_UID),
        labels: req.labels,
        owner: Some(who.id.clone()),
    };
    let meta = blocking(state, move |rt| Ok(rt.create_volume(&new)?)).await?;
    record(state, who, &meta).await?;
    state.audit(
        &who.id,
        "volume.create",
        None,
        json!({"volume": meta.id, "name": meta.name, "bytes": meta.size_bytes, "enforced": meta.image}),
    );
    get(state, who, &meta.id).await
}

/// The caller's volumes (every one's, for an admin), by name.
pub async fn list(state: &AppState, who: &Principal, q: VolumeQuery) -> ApiResult<VolumeList> {
    let label = match &q.label {
        None => None,
        Some(l) => match l.split_once('=') {
            Some((k, v)) if !k.is_empty() => Some((k.to_string(), v.to_string())),
            _ => return Err(ApiError::invalid("label filter must be key=value")),
        },
    };
    let owner = (!who.admin()).then_some(who.id.as_str());
    let rows = state
        .store()
        .volumes(owner)
        .map_err(|e| ApiError::internal("list volumes", e))?;
    let mut volumes = views(state, rows).await?;
    if let Some((k, v)) = &label {
        volumes.retain(|x| x.labels.get(k) == Some(v));
    }
    Ok(VolumeList { volumes })
}

pub async fn get(state: &AppState, who: &Principal, volume: &str) -> ApiResult<VolumeView> {
    view(state, owned(state, who, volume)?).await
}

/// A volume's row as the API shows it.
pub async fn view(state: &AppState, row: VolumeRow) -> ApiResult<VolumeView> {
    let name = row.name.clone();
    views(state, vec![row])
        .await?
        .pop()
        .ok_or_else(|| absent(&name))
}

/// Remove a volume and its snapshots: refused (`conflict`) while a
/// sandbox has it mounted, or while it holds a workspace's files.
pub async fn remove(state: &AppState, who: &Principal, volume: &str) -> ApiResult<()> {
    let row = owned(state, who, volume)?;
    let workspaces = state
        .store()
        .workspaces(Some(&row.owner))
        .map_err(|e| ApiError::internal("list workspaces", e))?;
    if let Some(w) = workspaces.iter().find(|w| w.volume == row.id) {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            format!(
                "volume {} holds the files of workspace {}: remove the workspace",
                row.name, w.name
            ),
        ));
    }
    remove_files(state, who, &row.id).await
}

/// [`remove`] without the workspace check: a workspace's own removal.
pub(super) async fn remove_files(state: &AppState, who: &Principal, volume: &str) -> ApiResult<()> {
    let row = owned(state, who, volume)?;
    let id = row.id.clone();
    match blocking(state, move |rt| Ok(rt.remove_volume(&id)?)).await {
        Ok(()) => {}
        // Its removal was interrupted after the runtime's part: finish it.
        Err(e) if e.code == ErrorCode::NotFound => {}
        Err(e) => return Err(e),
    }
    state
        .store()
        .remove_volume(&row.id)
        .map_err(|e| ApiError::internal("forgetting the volume", e))?;
    state.audit(
        &who.id,
        "volume.delete",
        None,
        json!({"volume": row.id, "name": row.name}),
    );
    Ok(())
}

/// A named point-in-time copy of the volume's files.
pub async fn snapshot(
    state: &AppState,
    who: &Principal,
    volume: &str,
    req: VolumeSnapshotRequest,
) -> ApiResult<VolumeView> {
    let row = owned(state, who, volume)?;
    if !valid_volume_name(&req.name) {
        return Err(ApiError::invalid(format!(
            "invalid snapshot name {:?}: use 1-63 letters, digits, '.', '_' or '-'",
            req.name
        )));
    }
    let t = std::time::Instant::now();
    {
        let _making = MAKING.lock().await;
        let used = get(state, who, &row.id).await?.used_bytes;
        within_quota(state, who, false, used, "volume.snapshot").await?;
        let (id, name) = (row.id.clone(), req.name.clone());
        blocking(state, move |rt| {
            rt.snapshot_volume(&id, &name)?;
            Ok(())
        })
        .await?;
    }
    state.audit(
        &who.id,
        "volume.snapshot",
        None,
        json!({"volume": row.id, "snapshot": req.name, "duration_ms": t.elapsed().as_millis() as u64}),
    );
    get(state, who, &row.id).await
}

pub async fn remove_snapshot(
    state: &AppState,
    who: &Principal,
    volume: &str,
    snapshot: &str,
) -> ApiResult<()> {
    let row = owned(state, who, volume)?;
    let (id, snap) = (row.id.clone(), snapshot.to_string());
    blocking(state, move |rt| {
        rt.remove_volume_snapshot(&id, &snap).map_err(|e| match e {
            aibox_runtime::Error::VolumeNotFound(_) => ApiError::new(
                ErrorCode::NotFound,
                format!("the volume has no snapshot {snap:?}"),
            ),
            e => e.into(),
        })
    })
    .await?;
    state.audit(
        &who.id,
        "volume.snapshot.delete",
        None,
        json!({"volume": row.id, "snapshot": snapshot}),
    );
    Ok(())
}

/// A new volume of the caller's with the files of this one (now, or as
/// one of its snapshots holds them); it counts against the key's quota.
pub async fn clone(
    state: &AppState,
    who: &Principal,
    volume: &str,
    req: CloneRequest,
) -> ApiResult<VolumeView> {
    let row = owned(state, who, volume)?;
    name_free(state, who, &req.name)?;
    check_labels(&req.labels).map_err(|e| ApiError::invalid(format!("labels: {e}")))?;
    let t = std::time::Instant::now();
    let meta = {
        let _making = MAKING.lock().await;
        within_quota(state, who, true, row.size_bytes, "volume.clone").await?;
        let (id, r, owner) = (row.id.clone(), req.clone(), who.id.clone());
        let meta = blocking(state, move |rt| {
            Ok(rt.clone_volume(&id, r.snapshot.as_deref(), &r.name, r.labels, Some(owner))?)
        })
        .await
        .map_err(|e| match &req.snapshot {
            Some(s) if e.code == ErrorCode::NotFound => ApiError::new(
                ErrorCode::NotFound,
                format!("volume {} has no snapshot {s:?}", row.name),
            ),
            _ => e,
        })?;
        record(state, who, &meta).await?;
        meta
    };
    state.audit(
        &who.id,
        "volume.clone",
        None,
        json!({"volume": meta.id, "name": meta.name, "from": row.id, "snapshot": req.snapshot,
               "duration_ms": t.elapsed().as_millis() as u64}),
    );
    get(state, who, &meta.id).await
}

/// Resolve a create's volumes to the caller's own: a name the request
/// gave (no id yet), or the id a snapshot's spec carries (still the
/// caller's, and still there). Another tenant's volume is absent.
pub fn resolve(state: &AppState, who: &Principal, spec: &mut SandboxSpec) -> ApiResult<()> {
    for v in &mut spec.volumes {
        let row = if v.id.is_empty() {
            state
                .store()
                .volume_by_name(&who.id, &v.name)
                .map_err(|e| ApiError::internal("get volume", e))?
        } else {
            state
                .store()
                .get_volume(&v.id)
                .map_err(|e| ApiError::internal("get volume", e))?
                .filter(|r| r.owner == who.id)
        };
        let row = row.ok_or_else(|| absent(&v.name))?;
        v.id = row.id;
        v.name = row.name;
    }
    Ok(())
}

/// At start: a volume the runtime has with an owner but the database
/// does not (a server killed between the two steps of a create) goes
/// back to its owner, under its name when that is still free. Nothing is
/// removed.
pub fn reconcile(state: &AppState) {
    let Ok(rt) = state.engine_ref().volumes() else {
        return;
    };
    for meta in rt.volumes() {
        let Some(owner) = &meta.owner else { continue };
        if matches!(state.store().get_volume(&meta.id), Ok(None)) {
            let row = VolumeRow {
                id: meta.id.clone(),
                owner: owner.clone(),
                name: meta.name.clone(),
                size_bytes: meta.size_bytes,
                created_ms: meta.created_unix_ms,
            };
            if let Ok(true) = state.store().insert_volume(&row) {
                tracing::info!(volume = %meta.id, "volume given back to its owner");
            }
        }
    }
}
