//! `/v1/templates`: the template store over REST. Listing is for every
//! key; importing, removing and pruning change what every tenant can use,
//! so they need an admin key.

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::AppState;
use aibox_types::ErrorCode;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

fn admin(who: &Principal, what: &str) -> ApiResult<()> {
    if who.admin() {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::PermissionDenied,
            format!("{what} needs an admin key: templates are shared by every tenant"),
        ))
    }
}

fn view(m: &aibox_runtime::oci::ImageMeta) -> Value {
    let mut v = serde_json::to_value(m).unwrap_or(Value::Null);
    v["size"] = json!(m.size());
    v
}

/// `GET /v1/templates`: the built-in `host` and every image, with the
/// store's disk use.
pub async fn list(State(state): State<AppState>, _who: Principal) -> ApiResult<Json<Value>> {
    let engine = state.engine();
    let (images, usage) = tokio::task::spawn_blocking(move || engine.templates())
        .await
        .map_err(|e| ApiError::internal("templates task", e))??;
    let mut all = vec![json!({"name": "host", "builtin": true})];
    all.extend(images.iter().map(view));
    Ok(Json(json!({
        "templates": all,
        "store": {"layers": usage.0, "bytes": usage.1},
    })))
}

/// `GET /v1/templates/{name}` (names may hold `/` and `:`).
pub async fn get(
    State(state): State<AppState>,
    _who: Principal,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    let engine = state.engine();
    let (images, _) = tokio::task::spawn_blocking(move || engine.templates())
        .await
        .map_err(|e| ApiError::internal("templates task", e))??;
    images
        .iter()
        .find(|m| m.name == name)
        .map(|m| Json(view(m)))
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::TemplateNotFound,
                format!("no template named {name:?}"),
            )
        })
}

/// `DELETE /v1/templates/{name}`: refused while a sandbox uses it.
pub async fn delete(
    State(state): State<AppState>,
    who: Principal,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    admin(&who, "removing a template")?;
    let users: Vec<String> = state
        .store()
        .all()
        .map_err(|e| ApiError::internal("list", e))?
        .into_iter()
        .filter(|r| r.spec["template"].as_str() == Some(name.as_str()))
        .map(|r| r.id)
        .collect();
    if !users.is_empty() {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            format!("template {name} is used by sandboxes: {}", users.join(", ")),
        ));
    }
    let engine = state.engine();
    let n = name.clone();
    tokio::task::spawn_blocking(move || engine.remove_template(&n))
        .await
        .map_err(|e| ApiError::internal("template task", e))??;
    state.audit(&who.id, "template.remove", None, json!({"name": name}));
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/templates/prune`: remove layers no template uses.
pub async fn prune(State(state): State<AppState>, who: Principal) -> ApiResult<Json<Value>> {
    admin(&who, "pruning templates")?;
    let engine = state.engine();
    let (layers, bytes) = tokio::task::spawn_blocking(move || engine.prune_templates())
        .await
        .map_err(|e| ApiError::internal("prune task", e))??;
    state.audit(
        &who.id,
        "template.prune",
        None,
        json!({"layers": layers, "bytes": bytes}),
    );
    Ok(Json(json!({"layers": layers, "bytes": bytes})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportQuery {
    /// The template's name (default: the archive's tag).
    pub name: Option<String>,
}

/// `POST /v1/templates/import?name=`: the body is an image archive
/// (`docker save`, `podman save`, or an OCI layout as a tar), streamed to
/// disk before it is unpacked.
pub async fn import(
    State(state): State<AppState>,
    who: Principal,
    Query(q): Query<ImportQuery>,
    body: Body,
) -> ApiResult<(StatusCode, Json<Value>)> {
    use futures_util::StreamExt;
    use tokio::io::AsyncWriteExt;
    admin(&who, "importing a template")?;
    if let Some(n) = &q.name {
        if !aibox_runtime::oci::valid_name(n) {
            return Err(ApiError::invalid(format!(
                "{n:?} is not a valid template name"
            )));
        }
    }
    let dir = state.config().data_dir.join("uploads");
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(|e| ApiError::internal("upload dir", e))?;
    let path = dir.join(format!("import-{}.tar", aibox_runtime::random_id()));
    let max = state.config().max_body;
    let written = async {
        let mut f = tokio::fs::File::create(&path)
            .await
            .map_err(|e| ApiError::internal("upload file", e))?;
        let mut n = 0u64;
        let mut stream = body.into_data_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| ApiError::invalid(format!("reading the upload: {e}")))?;
            n += chunk.len() as u64;
            if n > max {
                return Err(ApiError::new(
                    ErrorCode::PayloadTooLarge,
                    format!("the archive is larger than the server's max_body ({max} bytes)"),
                ));
            }
            f.write_all(&chunk)
                .await
                .map_err(|e| ApiError::internal("upload file", e))?;
        }
        f.flush()
            .await
            .map_err(|e| ApiError::internal("upload file", e))?;
        Ok::<u64, ApiError>(n)
    }
    .await;
    let result = match written {
        Ok(0) => Err(ApiError::invalid("empty body: send the image archive")),
        Ok(_) => {
            let engine = state.engine();
            let (p, name) = (path.clone(), q.name.clone());
            tokio::task::spawn_blocking(move || engine.import_template(&p, name.as_deref()))
                .await
                .map_err(|e| ApiError::internal("import task", e))
                .and_then(|r| r)
        }
        Err(e) => Err(e),
    };
    let _ = tokio::fs::remove_file(&path).await;
    let meta = result?;
    state.audit(
        &who.id,
        "template.import",
        None,
        json!({"name": meta.name, "digest": meta.digest, "layers": meta.layers.len()}),
    );
    Ok((StatusCode::CREATED, Json(view(&meta))))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PullBody {
    pub reference: String,
    pub name: Option<String>,
    /// Plain HTTP for this (non-loopback) registry.
    #[serde(default)]
    pub insecure: bool,
}

/// `POST /v1/templates/pull`: fetch an image from a registry (admin).
pub async fn pull(
    State(state): State<AppState>,
    who: Principal,
    crate::ApiJson(body): crate::ApiJson<PullBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    admin(&who, "pulling a template")?;
    let r = aibox_runtime::registry::Reference::parse(&body.reference)
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    let name = body
        .name
        .clone()
        .unwrap_or_else(|| default_name(&body.reference));
    if !aibox_runtime::oci::valid_name(&name) {
        return Err(ApiError::invalid(format!(
            "{name:?} is not a valid template name"
        )));
    }
    let engine = state.engine();
    let (n2, insecure) = (name.clone(), body.insecure);
    let meta = tokio::task::spawn_blocking(move || engine.pull_template(r, &n2, insecure))
        .await
        .map_err(|e| ApiError::internal("pull task", e))??;
    state.audit(
        &who.id,
        "template.pull",
        None,
        json!({"reference": body.reference, "name": meta.name, "digest": meta.digest}),
    );
    Ok((StatusCode::CREATED, Json(view(&meta))))
}

/// A template name for a reference: as written, with `:latest` when it
/// names neither a tag nor a digest.
pub fn default_name(reference: &str) -> String {
    let last = reference.rsplit('/').next().unwrap_or(reference);
    if last.contains(':') || reference.contains('@') {
        reference.to_string()
    } else {
        format!("{reference}:latest")
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromoteBody {
    pub name: String,
}

/// `POST /v1/snapshots/{id}/template`: make a snapshot a template (admin:
/// a template is visible to every tenant).
pub async fn promote(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    crate::ApiJson(body): crate::ApiJson<PromoteBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    admin(&who, "making a template")?;
    let snap = crate::snapshots::owned(&state, &who, &id)?;
    if !aibox_runtime::oci::valid_name(&body.name) {
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
    Ok((StatusCode::CREATED, Json(view(&meta))))
}
