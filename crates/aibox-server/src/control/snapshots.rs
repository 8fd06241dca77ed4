//! The snapshot use cases' shared rule: whose snapshot is whose.

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::store::SnapshotRow;
use crate::AppState;
use aibox_types::ErrorCode;

/// The caller's snapshot `id`; another tenant's is reported as absent.
pub fn owned(state: &AppState, who: &Principal, id: &str) -> ApiResult<SnapshotRow> {
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
