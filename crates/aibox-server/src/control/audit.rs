//! The audit log (admin only): reading it, and checking its hash chain.

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::{store, AppState};
use aibox_types::api::{AuditList, AuditQuery, AuditVerdict};
use aibox_types::ErrorCode;

/// `GET /v1/audit`: `?after=SEQ` pages through the log oldest first (as
/// `aibox audit export` does); any of `before`, `actor`, `action`,
/// `sandbox`, `since_ms`, `until_ms`, or `order=desc` selects entries
/// newest first.
pub async fn list(state: &AppState, who: &Principal, q: AuditQuery) -> ApiResult<AuditList> {
    if !who.admin() {
        return Err(ApiError::new(
            ErrorCode::PermissionDenied,
            "the audit log needs an admin key",
        ));
    }
    let limit = q.limit.unwrap_or(1000);
    if limit == 0 || limit > 1000 {
        return Err(ApiError::invalid("limit must be between 1 and 1000"));
    }
    let empty = |v: &Option<String>| v.as_deref().is_some_and(str::is_empty);
    if empty(&q.actor) || empty(&q.action) || empty(&q.sandbox) {
        return Err(ApiError::invalid(
            "actor, action and sandbox filters must not be empty",
        ));
    }
    let filter = store::AuditFilter {
        before: q.before,
        actor: q.actor,
        action: q.action,
        sandbox: q.sandbox,
        since_ms: q.since_ms,
        until_ms: q.until_ms,
    };
    let desc = match q.order.as_deref() {
        None | Some("asc") => false,
        Some("desc") => true,
        Some(o) => {
            return Err(ApiError::invalid(format!(
                "order must be asc or desc, not {o:?}"
            )))
        }
    };
    let searched = desc
        || filter.before.is_some()
        || filter.actor.is_some()
        || filter.action.is_some()
        || filter.sandbox.is_some()
        || filter.since_ms.is_some()
        || filter.until_ms.is_some();
    if searched && q.after.is_some() {
        return Err(ApiError::invalid(
            "after pages oldest first and cannot be combined with filters or order=desc; use before",
        ));
    }
    let reader = state.clone();
    let entries = tokio::task::spawn_blocking(move || {
        // What was recorded before this request is in the answer.
        reader.flush_audit();
        let store = reader.store();
        if searched {
            store.audit_search(&filter, limit)
        } else {
            store.audit_entries(q.after.unwrap_or(0), limit)
        }
    })
    .await
    .map_err(|e| ApiError::internal("audit task", e))?
    .map_err(|e| ApiError::internal("audit", e))?;
    Ok(AuditList { entries })
}

/// Walk the audit log's hash chain.
pub async fn verify(state: &AppState, who: &Principal) -> ApiResult<AuditVerdict> {
    if !who.admin() {
        return Err(ApiError::new(
            ErrorCode::PermissionDenied,
            "the audit log needs an admin key",
        ));
    }
    let store = state.clone();
    let broken = tokio::task::spawn_blocking(move || {
        store.flush_audit();
        store.store().audit_verify()
    })
    .await
    .map_err(|e| ApiError::internal("audit verify task", e))?
    .map_err(|e| ApiError::internal("audit verify", e))?;
    let entries = state
        .store()
        .audit_count()
        .map_err(|e| ApiError::internal("audit count", e))?;
    Ok(AuditVerdict {
        ok: broken.is_none(),
        broken_at: broken,
        entries,
    })
}
