//! The template store's use cases: list, get, remove, prune, and make a
//! snapshot a template. Listing is for every key; what changes the store
//! changes what every tenant can use, so it needs an admin key. (Pulls,
//! imports and builds stream their progress: their handlers in
//! `crate::templates` drive the engine through the same admin check and
//! `view`.)

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::AppState;
use aibox_types::api::{StoreUsage, TemplateList, TemplateView};
use aibox_types::ErrorCode;
use serde_json::{json, Value};

pub fn admin(who: &Principal, what: &str) -> ApiResult<()> {
    if who.admin() {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::PermissionDenied,
            format!("{what} needs an admin key: templates are shared by every tenant"),
        ))
    }
}

/// An image as the API shows a template.
pub fn view(m: &aibox_runtime::image::oci::ImageMeta) -> TemplateView {
    let mut more = serde_json::Map::new();
    if let Some(b) = &m.base {
        more.insert("base".into(), json!(b));
    }
    TemplateView {
        name: m.name.clone(),
        builtin: false,
        digest: Some(m.digest.clone()),
        size: Some(m.size()),
        layers: Some(
            m.layers
                .iter()
                .map(|l| serde_json::to_value(l).unwrap_or(Value::Null))
                .collect(),
        ),
        config: serde_json::to_value(&m.config).ok(),
        created_ms: Some(m.created_ms),
        source: Some(json!(m.source)),
        more,
    }
}

/// `GET /v1/templates`: the built-in `host` and every image, with the
/// store's disk use.
pub async fn list(state: &AppState) -> ApiResult<TemplateList> {
    let engine = state.engine();
    let (images, usage) = tokio::task::spawn_blocking(move || engine.templates())
        .await
        .map_err(|e| ApiError::internal("templates task", e))??;
    let host = TemplateView {
        name: "host".into(),
        builtin: true,
        digest: None,
        size: None,
        layers: None,
        config: None,
        created_ms: None,
        source: None,
        more: Default::default(),
    };
    let mut templates = vec![host];
    templates.extend(images.iter().map(view));
    Ok(TemplateList {
        templates,
        store: StoreUsage {
            layers: usage.0,
            bytes: usage.1,
        },
    })
}

/// `GET /v1/templates/{name}` (names may hold `/` and `:`).
pub async fn get(state: &AppState, name: &str) -> ApiResult<TemplateView> {
    let engine = state.engine();
    let (images, _) = tokio::task::spawn_blocking(move || engine.templates())
        .await
        .map_err(|e| ApiError::internal("templates task", e))??;
    images
        .iter()
        .find(|m| m.name == name)
        .map(view)
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::TemplateNotFound,
                format!("no template named {name:?}"),
            )
        })
}

/// `DELETE /v1/templates/{name}`: refused while a sandbox uses it.
pub async fn delete(state: &AppState, who: &Principal, name: &str) -> ApiResult<()> {
    admin(who, "removing a template")?;
    let users: Vec<String> = state
        .store()
        .all()
        .map_err(|e| ApiError::internal("list", e))?
        .into_iter()
        .filter(|r| r.spec["template"].as_str() == Some(name))
        .map(|r| r.id)
        .collect();
    if !users.is_empty() {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            format!("template {name} is used by sandboxes: {}", users.join(", ")),
        ));
    }
    let engine = state.engine();
    let n = name.to_string();
    tokio::task::spawn_blocking(move || engine.remove_template(&n))
        .await
        .map_err(|e| ApiError::internal("template task", e))??;
    state.audit(&who.id, "template.remove", None, json!({"name": name}));
    Ok(())
}

/// `POST /v1/templates/prune[?build_cache=true]`: remove layers no
/// template (nor the build cache) uses.
pub async fn prune(state: &AppState, who: &Principal, build_cache: bool) -> ApiResult<StoreUsage> {
    admin(who, "pruning templates")?;
    let engine = state.engine();
    let (layers, bytes) = tokio::task::spawn_blocking(move || engine.prune_templates(build_cache))
        .await
        .map_err(|e| ApiError::internal("prune task", e))??;
    state.audit(
        &who.id,
        "template.prune",
        None,
        json!({"layers": layers, "bytes": bytes}),
    );
    Ok(StoreUsage { layers, bytes })
}

/// `POST /v1/snapshots/{id}/template`: make a snapshot a template (admin:
/// a template is visible to every tenant).
pub async fn promote(
    state: &AppState,
    who: &Principal,
    id: &str,
    body: aibox_types::api::PromoteRequest,
) -> ApiResult<TemplateView> {
    admin(who, "making a template")?;
    let snap = super::access::snapshot(state, who, id)?;
    if !aibox_runtime::image::oci::valid_name(&body.name) {
        return Err(ApiError::invalid(format!(
            "{:?} is not a valid template name",
            body.name
        )));
    }
    let engine = state.engine();
    let (sid, name) = (snap.id.clone(), body.name.clone());
    let meta = tokio::task::spawn_blocking(move || engine.promote_snapshot(&sid, &name))
        .await
        .map_err(|e| ApiError::internal("promote task", e))??;
    state.audit(
        &who.id,
        "template.promote",
        Some(&snap.source),
        json!({"snapshot": snap.id, "name": meta.name}),
    );
    Ok(view(&meta))
}
