//! The volume use cases: create, list, show, remove, snapshot, clone, and
//! resolving a create's volume names to the caller's volumes. A volume
//! belongs to the key that made it; its name is unique among that key's
//! volumes; another tenant's is reported as absent. The key's ceiling
//! (`max_volumes`, `max_volume_bytes`) bounds what it keeps.

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

fn runtime(state: &AppState) -> ApiResult<&Runtime> {
    state.engine_ref().volumes()
}

/// A volume as the API shows it (the runtime's view; the name is the
/// row's, unique among its owner's).
fn view(rt: &Runtime, row: &VolumeRow, meta: &VolumeMeta) -> VolumeView {
    let mut v = rt.volume_view(meta);
    v.name = row.name.clone();
    v
}

/// The runtime's volume for a row; a row whose volume is gone (a crash
/// between the two) is dropped and reported as absent.
fn meta_of(state: &AppState, rt: &Runtime, row: &VolumeRow) -> ApiResult<VolumeMeta> {
    match rt.volume(&row.id) {
        Ok(m) => Ok(m),
        Err(aibox_runtime::Error::VolumeNotFound(_)) => {
            let _ = state.store().remove_volume(&row.id);
            Err(absent(&row.name))
        }
        Err(e) => Err(e.into()),
    }
}

/// The key may hold one more volume of `bytes`.
fn within_quota(state: &AppState, who: &Principal, bytes: u64) -> ApiResult<()> {
    let held = state
        .store()
        .volumes(Some(&who.id))
        .map_err(|e| ApiError::internal("list volumes", e))?;
    let total: u64 = held.iter().map(|v| v.size_bytes).sum();
    let r = who.within(|c| c.check_volume(held.len() as u64, total, bytes));
    if let Err(e) = &r {
        state.audit(
            &who.id,
            "policy.denied",
            None,
            json!({"operation": "volume.create", "code": e.code, "message": e.message}),
        );
    }
    r
}

/// Record a volume the runtime made; on a name taken meanwhile (a
/// concurrent create) the volume goes again.
fn record(state: &AppState, rt: &Runtime, who: &Principal, meta: &VolumeMeta) -> ApiResult<()> {
    let row = VolumeRow {
        id: meta.id.clone(),
        owner: who.id.clone(),
        name: meta.name.clone(),
        size_bytes: meta.size_bytes,
        created_ms: meta.created_unix_ms,
    };
    match state.store().insert_volume(&row) {
        Ok(true) => Ok(()),
        Ok(false) => {
            let _ = rt.remove_volume(&meta.id);
            Err(taken(&meta.name))
        }
        Err(e) => {
            let _ = rt.remove_volume(&meta.id);
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
            "size {} is out of range: use 16m to 16t",
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
    within_quota(state, who, size)?;
    let new = NewVolume {
        name: req.name.clone(),
        size_bytes: size,
        uid: req.uid.unwrap_or(DEFAULT_UID),
        labels: req.labels,
    };
    let engine = state.engine();
    let meta = crate::fairness::spawn_blocking(move || -> ApiResult<VolumeMeta> {
        Ok(engine.volumes()?.create_volume(&new)?)
    })
    .await
    .map_err(|e| ApiError::internal("volume task", e))??;
    let rt = runtime(state)?;
    record(state, rt, who, &meta)?;
    state.audit(
        &who.id,
        "volume.create",
        None,
        json!({"volume": meta.id, "name": meta.name, "bytes": meta.size_bytes, "enforced": meta.image}),
    );
    get(state, who, &meta.id)
}

/// The caller's volumes (every one's, for an admin), by name.
pub fn list(state: &AppState, who: &Principal, q: VolumeQuery) -> ApiResult<VolumeList> {
    let label = match &q.label {
        None => None,
        Some(l) => match l.split_once('=') {
            Some((k, v)) if !k.is_empty() => Some((k.to_string(), v.to_string())),
            _ => return Err(ApiError::invalid("label filter must be key=value")),
        },
    };
    let rt = runtime(state)?;
    let owner = (!who.admin()).then_some(who.id.as_str());
    let rows = state
        .store()
        .volumes(owner)
        .map_err(|e| ApiError::internal("list volumes", e))?;
    let mut kept = Vec::new();
    for row in rows {
        let Ok(meta) = meta_of(state, rt, &row) else {
            continue;
        };
        if let Some((k, v)) = &label {
            if meta.labels.get(k) != Some(v) {
                continue;
            }
        }
        kept.push((row, meta));
    }
    let metas: Vec<VolumeMeta> = kept.iter().map(|(_, m)| m.clone()).collect();
    let volumes = rt
        .volume_views(&metas)
        .into_iter()
        .zip(&kept)
        .map(|(mut v, (row, _))| {
            v.name = row.name.clone();
            v
        })
        .collect();
    Ok(VolumeList { volumes })
}

pub fn get(state: &AppState, who: &Principal, volume: &str) -> ApiResult<VolumeView> {
    let row = owned(state, who, volume)?;
    let rt = runtime(state)?;
    let meta = meta_of(state, rt, &row)?;
    Ok(view(rt, &row, &meta))
}

/// Remove a volume and its snapshots: refused (`conflict`) while a
/// sandbox has it mounted.
pub async fn remove(state: &AppState, who: &Principal, volume: &str) -> ApiResult<()> {
    let row = owned(state, who, volume)?;
    let engine = state.engine();
    let id = row.id.clone();
    let r = crate::fairness::spawn_blocking(move || -> ApiResult<()> {
        Ok(engine.volumes()?.remove_volume(&id)?)
    })
    .await
    .map_err(|e| ApiError::internal("volume task", e))?;
    match r {
        Ok(()) => {}
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
    let engine = state.engine();
    let (id, name) = (row.id.clone(), req.name.clone());
    let t = std::time::Instant::now();
    crate::fairness::spawn_blocking(move || -> ApiResult<()> {
        engine.volumes()?.snapshot_volume(&id, &name)?;
        Ok(())
    })
    .await
    .map_err(|e| ApiError::internal("volume task", e))??;
    state.audit(
        &who.id,
        "volume.snapshot",
        None,
        json!({"volume": row.id, "snapshot": req.name, "duration_ms": t.elapsed().as_millis() as u64}),
    );
    get(state, who, &row.id)
}

pub fn remove_snapshot(
    state: &AppState,
    who: &Principal,
    volume: &str,
    snapshot: &str,
) -> ApiResult<()> {
    let row = owned(state, who, volume)?;
    runtime(state)?
        .remove_volume_snapshot(&row.id, snapshot)
        .map_err(|e| match e {
            aibox_runtime::Error::VolumeNotFound(_) => ApiError::new(
                ErrorCode::NotFound,
                format!("volume {} has no snapshot {snapshot:?}", row.name),
            ),
            e => e.into(),
        })?;
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
    within_quota(state, who, row.size_bytes)?;
    let engine = state.engine();
    let id = row.id.clone();
    let t = std::time::Instant::now();
    let r = req.clone();
    let meta = crate::fairness::spawn_blocking(move || -> ApiResult<VolumeMeta> {
        Ok(engine
            .volumes()?
            .clone_volume(&id, r.snapshot.as_deref(), &r.name, r.labels)?)
    })
    .await
    .map_err(|e| ApiError::internal("volume task", e))?
    .map_err(|e| {
        if e.code == ErrorCode::NotFound && req.snapshot.is_some() {
            ApiError::new(
                ErrorCode::NotFound,
                format!(
                    "volume {} has no snapshot {:?}",
                    row.name,
                    req.snapshot.clone().unwrap_or_default()
                ),
            )
        } else {
            e
        }
    })?;
    let rt = runtime(state)?;
    record(state, rt, who, &meta)?;
    state.audit(
        &who.id,
        "volume.clone",
        None,
        json!({"volume": meta.id, "name": meta.name, "from": row.id, "snapshot": req.snapshot,
               "duration_ms": t.elapsed().as_millis() as u64}),
    );
    get(state, who, &meta.id)
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
