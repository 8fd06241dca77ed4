//! Who may act on what: a caller's own sandboxes and snapshots (an
//! admin's: every one), and whether a sandbox is running. Another
//! tenant's is reported as absent, never as forbidden.

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::store::{Row, SnapshotRow};
use crate::{now_ms, AppState};
use aibox_types::ErrorCode;

/// The caller's sandbox `id`; another tenant's is reported as absent.
pub fn owned(state: &AppState, who: &Principal, id: &str) -> ApiResult<Row> {
    if !aibox_types::validate_id(id) {
        return Err(ApiError::invalid(format!("{id:?} is not a sandbox id")));
    }
    match state
        .store()
        .get(id)
        .map_err(|e| ApiError::internal("get", e))?
    {
        Some(r) if who.admin() || r.owner == who.id => Ok(r),
        _ => Err(ApiError::not_found(id)),
    }
}

/// The caller's sandbox, which must be running (not paused); counts as
/// activity for the idle timeout.
pub fn running(state: &AppState, who: &Principal, id: &str) -> ApiResult<Row> {
    let row = owned(state, who, id)?;
    match row.state.as_str() {
        "running" => {
            // Activity is kept to the second (the reaper's tick): a burst
            // of calls writes the database once.
            let now = now_ms();
            if now.saturating_sub(row.last_active_ms) >= 1000 {
                let _ = state.store().touch(&row.id, now);
            }
            Ok(row)
        }
        "paused" => Err(ApiError::new(
            ErrorCode::Conflict,
            format!("sandbox {id} is paused: resume it first"),
        )),
        other => Err(ApiError::new(
            ErrorCode::Conflict,
            format!("sandbox {id} is {other}"),
        )),
    }
}

/// The caller's snapshot `id`; another tenant's is reported as absent.
pub fn snapshot(state: &AppState, who: &Principal, id: &str) -> ApiResult<SnapshotRow> {
    if !aibox_types::validate_id(id) {
        return Err(ApiError::invalid(format!("{id:?} is not a snapshot id")));
    }
    match state
        .store()
        .get_snapshot(id)
        .map_err(|e| ApiError::internal("get snapshot", e))?
    {
        Some(s) if who.admin() || s.owner == who.id => Ok(s),
        _ => Err(ApiError::new(
            ErrorCode::NotFound,
            format!("no snapshot with id {id:?}"),
        )),
    }
}
