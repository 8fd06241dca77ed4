//! API keys (admin only): create, list, set a key's ceiling, revoke. A new
//! key's secret is returned once, at its creation; only its hash is kept.

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::store::Scope;
use crate::{now_ms, AppState};
use aibox_runtime::new_secret;
use aibox_types::api::{KeyList, KeyPatch, KeyRequest, KeyView, NewKey};
use aibox_types::ceiling::Ceiling;
use aibox_types::ErrorCode;
use serde_json::json;

fn admin_only(who: &Principal) -> ApiResult<()> {
    if who.admin() {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::PermissionDenied,
            "managing keys needs an admin key",
        ))
    }
}

fn checked(ceiling: &Ceiling, scope: Scope) -> ApiResult<()> {
    ceiling
        .validate()
        .map_err(|e| ApiError::invalid(format!("ceiling: {e}")))?;
    if scope == Scope::Admin {
        return Err(ApiError::invalid(
            "admin keys have no ceiling: give the key scope user",
        ));
    }
    Ok(())
}

pub fn create(state: &AppState, who: &Principal, req: KeyRequest) -> ApiResult<NewKey> {
    admin_only(who)?;
    let name = req.name.trim();
    if name.is_empty() || name.len() > 64 || name.chars().any(char::is_control) {
        return Err(ApiError::invalid("name must be 1-64 printable characters"));
    }
    let max_memory = req
        .max_memory
        .as_deref()
        .map(|m| {
            aibox_types::parse_size(m).map_err(|e| ApiError::invalid(format!("max_memory: {e}")))
        })
        .transpose()?;
    if let Some(c) = &req.ceiling {
        checked(c, req.scope)?;
    }
    let id = format!("k{}", aibox_runtime::random_id());
    let secret = new_secret();
    state
        .store()
        .add_key(&id, name, &secret, req.scope, now_ms())
        .and_then(|()| state.store().set_quota(&id, req.max_sandboxes, max_memory))
        .and_then(|()| {
            state
                .store()
                .set_ceiling(&id, req.ceiling.as_ref())
                .map(drop)
        })
        .map_err(|e| ApiError::internal("add key", e))?;
    state.audit(
        &who.id,
        "key.create",
        None,
        json!({"key": id, "scope": req.scope}),
    );
    Ok(NewKey {
        id,
        name: name.to_string(),
        scope: req.scope,
        key: secret,
    })
}

pub fn list(state: &AppState, who: &Principal) -> ApiResult<KeyList> {
    admin_only(who)?;
    let keys = state
        .store()
        .list_keys()
        .map_err(|e| ApiError::internal("list keys", e))?;
    Ok(KeyList { keys })
}

/// `PATCH /v1/keys/{id}`: set or clear a key's own ceiling. Requests the
/// key makes from then on are held to it (sandboxes it already has keep
/// running; their next restore or network change is checked).
pub fn update(state: &AppState, who: &Principal, id: &str, patch: KeyPatch) -> ApiResult<KeyView> {
    admin_only(who)?;
    let Some(key) = state
        .store()
        .key_by_id(id)
        .map_err(|e| ApiError::internal("key lookup", e))?
    else {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            format!("no live key with id {id:?}"),
        ));
    };
    if let Some(ceiling) = &patch.ceiling {
        if let Some(c) = ceiling {
            checked(c, key.scope)?;
        }
        state
            .store()
            .set_ceiling(id, ceiling.as_ref())
            .map_err(|e| ApiError::internal("set ceiling", e))?;
        state.audit(
            &who.id,
            "key.ceiling",
            None,
            json!({"key": id, "ceiling": ceiling}),
        );
    }
    match state
        .store()
        .key_by_id(id)
        .map_err(|e| ApiError::internal("key lookup", e))?
    {
        Some(key) => Ok(key),
        None => Err(ApiError::new(
            ErrorCode::NotFound,
            format!("no live key with id {id:?}"),
        )),
    }
}

pub fn revoke(state: &AppState, who: &Principal, id: &str) -> ApiResult<()> {
    admin_only(who)?;
    // Never lock everyone out: the last live admin key stays.
    let keys = state
        .store()
        .list_keys()
        .map_err(|e| ApiError::internal("list keys", e))?;
    let live_admins: Vec<_> = keys
        .iter()
        .filter(|k| k.scope == Scope::Admin && k.revoked_ms.is_none())
        .collect();
    if live_admins.len() == 1 && live_admins[0].id == id {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            "this is the last admin key: create another admin key before revoking it",
        ));
    }
    if !state
        .store()
        .revoke_key(id, now_ms())
        .map_err(|e| ApiError::internal("revoke key", e))?
    {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            format!("no live key with id {id:?}"),
        ));
    }
    state.sessions().close_key(id);
    state.audit(&who.id, "key.revoke", None, json!({"key": id}));
    Ok(())
}
