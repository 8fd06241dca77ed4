//! `/v1/templates`: the template store over REST. Listing is for every
//! key; importing, removing and pruning change what every tenant can use,
//! so they need an admin key.

use crate::auth::Principal;
use crate::control::templates::{self as control, admin, view};
use crate::error::{ApiError, ApiResult};
use crate::AppState;
use aibox_types::api::{
    BuildQuery, ImportQuery, PromoteRequest, PruneQuery, PullRequest, StoreUsage, TemplateList,
    TemplateView,
};
use aibox_types::ErrorCode;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

/// `GET /v1/templates`: the built-in `host` and every image, with the
/// store's disk use.
pub async fn list(State(state): State<AppState>, _who: Principal) -> ApiResult<Json<TemplateList>> {
    control::list(&state).await.map(Json)
}

/// `GET /v1/templates/{name}` (names may hold `/` and `:`).
pub async fn get(
    State(state): State<AppState>,
    _who: Principal,
    Path(name): Path<String>,
) -> ApiResult<Json<TemplateView>> {
    control::get(&state, &name).await.map(Json)
}

/// `DELETE /v1/templates/{name}`: refused while a sandbox uses it.
pub async fn delete(
    State(state): State<AppState>,
    who: Principal,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    control::delete(&state, &who, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/templates/prune[?build_cache=true]`: remove layers no
/// template (nor the build cache) uses.
pub async fn prune(
    State(state): State<AppState>,
    who: Principal,
    Query(q): Query<PruneQuery>,
) -> ApiResult<Json<StoreUsage>> {
    control::prune(&state, &who, q.build_cache).await.map(Json)
}

/// `DATA/uploads`, 0700: uploaded images and build contexts (set-id files,
/// secrets) are the admin's, unreadable to other local users (the
/// review's H3 and M8).
fn uploads_dir(state: &AppState) -> std::io::Result<std::path::PathBuf> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let dir = state.config().data_dir.join("uploads");
    match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?
        }
        Err(e) => return Err(e),
    }
    Ok(dir)
}

/// Stream a request body to a file under the data dir (at most the
/// server's `max_body`); returns the path and the bytes written.
async fn save_upload(
    state: &AppState,
    body: Body,
    prefix: &str,
) -> ApiResult<(std::path::PathBuf, u64)> {
    use futures_util::StreamExt;
    use tokio::io::AsyncWriteExt;
    let dir = uploads_dir(state).map_err(|e| ApiError::internal("upload dir", e))?;
    let path = dir.join(format!("{prefix}-{}.tar", aibox_runtime::random_id()));
    let max = state.config().max_body;
    let written = async {
        let mut f = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
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
                    format!("the upload is larger than the server's max_body ({max} bytes)"),
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
    match written {
        Ok(n) => Ok((path, n)),
        Err(e) => {
            let _ = tokio::fs::remove_file(&path).await;
            Err(e)
        }
    }
}

/// `POST /v1/templates/import?name=`: the body is an image archive
/// (`docker save`, `podman save`, or an OCI layout as a tar), streamed to
/// disk before it is unpacked.
pub async fn import(
    State(state): State<AppState>,
    who: Principal,
    Query(q): Query<ImportQuery>,
    body: Body,
) -> ApiResult<(StatusCode, Json<TemplateView>)> {
    admin(&who, "importing a template")?;
    if let Some(n) = &q.name {
        if !aibox_runtime::image::oci::valid_name(n) {
            return Err(ApiError::invalid(format!(
                "{n:?} is not a valid template name"
            )));
        }
    }
    let (path, written) = save_upload(&state, body, "import").await?;
    let result = match written {
        0 => Err(ApiError::invalid("empty body: send the image archive")),
        _ => {
            let engine = state.engine();
            let (p, name) = (path.clone(), q.name.clone());
            tokio::task::spawn_blocking(move || engine.import_template(&p, name.as_deref()))
                .await
                .map_err(|e| ApiError::internal("import task", e))
                .and_then(|r| r)
        }
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

/// `POST /v1/templates/pull`: fetch an image from a registry (admin).
/// With `Accept: application/x-ndjson` the reply streams the pull as JSON
/// lines: `progress` `{layer, done, total}` (at most ~10 a second per
/// layer, and each layer's last), then `done` `{template}` or `error`
/// `{code, message}`; otherwise it answers once, with the template.
pub async fn pull(
    State(state): State<AppState>,
    who: Principal,
    headers: axum::http::HeaderMap,
    crate::ApiJson(body): crate::ApiJson<PullRequest>,
) -> ApiResult<axum::response::Response> {
    admin(&who, "pulling a template")?;
    let r = aibox_runtime::image::registry::Reference::parse(&body.reference)
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    let name = body
        .name
        .clone()
        .unwrap_or_else(|| aibox_runtime::image::registry::default_name(&body.reference));
    if !aibox_runtime::image::oci::valid_name(&name) {
        return Err(ApiError::invalid(format!(
            "{name:?} is not a valid template name"
        )));
    }
    let streamed = headers
        .get(axum::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/x-ndjson"));
    let engine = state.engine();
    let insecure = body.insecure;
    let finish = move |state: &AppState, meta: &aibox_runtime::image::oci::ImageMeta| {
        state.audit(
            &who.id,
            "template.pull",
            None,
            json!({"reference": body.reference, "name": meta.name, "digest": meta.digest}),
        );
    };
    if !streamed {
        let meta = tokio::task::spawn_blocking(move || {
            engine.pull_template(r, &name, insecure, &mut |_, _, _| {})
        })
        .await
        .map_err(|e| ApiError::internal("pull task", e))??;
        finish(&state, &meta);
        return Ok(axum::response::IntoResponse::into_response((
            StatusCode::CREATED,
            Json(view(&meta)),
        )));
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(256);
    let send = move |v: Value| {
        let mut line = serde_json::to_vec(&v).unwrap_or_default();
        line.push(b'\n');
        // A client that went away does not stop the pull.
        let _ = tx.blocking_send(line);
    };
    tokio::task::spawn_blocking(move || {
        let mut last: std::collections::HashMap<String, std::time::Instant> = Default::default();
        let mut progress = |layer: &str, done: u64, total: u64| {
            let now = std::time::Instant::now();
            let due = last
                .get(layer)
                .is_none_or(|t| now.duration_since(*t).as_millis() >= 100);
            if due || done >= total {
                last.insert(layer.to_string(), now);
                send(json!({"type": "progress", "layer": layer, "done": done, "total": total}));
            }
        };
        match engine.pull_template(r, &name, insecure, &mut progress) {
            Ok(meta) => {
                finish(&state, &meta);
                send(json!({"type": "done", "template": view(&meta)}));
            }
            Err(e) => send(json!({"type": "error", "code": e.code.as_str(), "message": e.message})),
        }
    });
    ndjson(rx)
}

/// A response streaming the channel's JSON lines.
fn ndjson(rx: tokio::sync::mpsc::Receiver<Vec<u8>>) -> ApiResult<axum::response::Response> {
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|line| (Ok::<_, std::io::Error>(axum::body::Bytes::from(line)), rx))
    });
    axum::response::Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/x-ndjson")
        .header("cache-control", "no-store")
        .body(Body::from_stream(stream))
        .map_err(|e| ApiError::internal("stream response", e))
}

/// `POST /v1/snapshots/{id}/template`: make a snapshot a template (admin:
/// a template is visible to every tenant).
pub async fn promote(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    crate::ApiJson(body): crate::ApiJson<PromoteRequest>,
) -> ApiResult<(StatusCode, Json<TemplateView>)> {
    let v = control::promote(&state, &who, &id, body).await?;
    Ok((StatusCode::CREATED, Json(v)))
}

/// Relays a build's progress into the response stream, and gives its
/// step sandboxes their egress (and a record when one is kept).
struct Relay {
    state: AppState,
    owner: String,
    handle: tokio::runtime::Handle,
    tx: tokio::sync::mpsc::Sender<Vec<u8>>,
}

impl Relay {
    fn send(&self, v: &impl serde::Serialize) {
        let mut line = serde_json::to_vec(v).unwrap_or_default();
        line.push(b'\n');
        // A client that went away does not stop the build.
        let _ = self.tx.blocking_send(line);
    }
}

impl aibox_runtime::image::build::Hooks for Relay {
    fn event(&mut self, e: aibox_runtime::image::build::Event) {
        self.send(&e);
    }

    fn started(&mut self, sb: &aibox_runtime::Sandbox) -> Result<(), aibox_runtime::Error> {
        let spec = sb.record().spec.clone();
        self.handle
            .block_on(self.state.start_egress(sb.id(), &spec))
            .map(drop)
            .map_err(|e| aibox_runtime::Error::Unsupported(e.message))
    }

    fn finished(&mut self, sb: &aibox_runtime::Sandbox, kept: bool) {
        if !kept {
            self.handle.block_on(self.state.stop_egress(sb.id()));
            return;
        }
        let now = crate::now_ms();
        let rec = sb.record();
        let row = crate::store::Row {
            id: rec.id.clone(),
            owner: self.owner.clone(),
            state: "running".into(),
            spec: serde_json::to_value(&rec.spec).unwrap_or(Value::Null),
            labels: [("aibox.build".to_string(), json!("failed-step"))]
                .into_iter()
                .collect(),
            isolation: serde_json::to_value(&rec.isolation).unwrap_or(Value::Null),
            created_ms: now,
            expires_ms: Some(now + self.state.config().default_ttl.as_millis() as u64),
            idempotency_key: None,
            idle_timeout_ms: None,
            last_active_ms: now,
            remaining_ms: None,
            port_token: crate::control::sandboxes::new_token(),
            public_ports: false,
        };
        if let Err(e) = self.state.store().insert(&row) {
            tracing::error!(sandbox_id = %rec.id, error = %e, "recording a kept build sandbox");
        }
        self.state.audit(
            &self.owner,
            "sandbox.create",
            Some(&rec.id),
            json!({"template": rec.spec.template, "build": "kept failed step"}),
        );
    }
}

/// `POST /v1/templates/build?name=&file=`: the body is the build context
/// as a tar, holding the recipe (an aibox.toml or a Dockerfile). The reply
/// streams the build's events as JSON lines (`step`, `output`, `layer`,
/// `note`), ending with `done` (the template) or `error` (code, message,
/// and for a failed step its number, exit code and kept sandbox).
pub async fn build(
    State(state): State<AppState>,
    who: Principal,
    Query(q): Query<BuildQuery>,
    body: Body,
) -> ApiResult<axum::response::Response> {
    use aibox_types::egress::{Mode, Rule};
    admin(&who, "building a template")?;
    let network =
        Mode::from_options(q.network.as_deref(), q.allow.is_some()).map_err(ApiError::invalid)?;
    let rules: Vec<Rule> = q
        .allow
        .as_deref()
        .unwrap_or("")
        .split(',')
        .filter(|r| !r.trim().is_empty())
        .map(|r| r.parse::<Rule>())
        .collect::<Result<_, _>>()
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    let size = |what: &str, v: Option<&str>| {
        v.map(aibox_types::parse_size)
            .transpose()
            .map(|b| b.map(aibox_types::ByteSize))
            .map_err(|e| ApiError::invalid(format!("{what}: {e}")))
    };
    let memory = size("memory", q.memory.as_deref())?;
    let disk = size("disk", q.disk.as_deref())?;
    let (upload, n) = save_upload(&state, body, "build").await?;
    let context = uploads_dir(&state)
        .map_err(|e| ApiError::internal("upload dir", e))?
        .join(format!("context-{}", aibox_runtime::random_id()));
    let cleanup = {
        let (u, c) = (upload.clone(), context.clone());
        move || {
            let _ = std::fs::remove_file(&u);
            let _ = aibox_runtime::image::layer::remove_tree(&c);
        }
    };
    if n == 0 {
        cleanup();
        return Err(ApiError::invalid(
            "empty body: send the build context as a tar",
        ));
    }
    // Unpack the context and read the recipe before anything streams, so
    // their errors are plain error replies.
    let prepared = {
        let (upload, context, file) = (upload.clone(), context.clone(), q.file.clone());
        tokio::task::spawn_blocking(move || -> ApiResult<(String, aibox_runtime::image::recipe::Recipe)> {
            std::fs::create_dir_all(&context).map_err(|e| ApiError::internal("context dir", e))?;
            let f = std::fs::File::open(&upload).map_err(|e| ApiError::internal("context", e))?;
            let mut ar = tar::Archive::new(f);
            ar.set_preserve_permissions(true);
            ar.unpack(&context)
                .map_err(|e| ApiError::invalid(format!("the build context is not a valid tar: {e}")))?;
            let file = match file {
                Some(f) => f,
                None if context.join("aibox.toml").is_file() => "aibox.toml".into(),
                None => "Dockerfile".into(),
            };
            let rel = std::path::Path::new(&file);
            if rel.is_absolute()
                || rel
                    .components()
                    .any(|c| matches!(c, std::path::Component::ParentDir))
            {
                return Err(ApiError::invalid(format!(
                    "file {file:?} must be a path inside the build context"
                )));
            }
            // Through no symlink out of the context.
            let inside = std::fs::canonicalize(context.join(rel))
                .ok()
                .zip(std::fs::canonicalize(&context).ok())
                .is_some_and(|(f, c)| f.starts_with(c));
            if !inside && context.join(rel).exists() {
                return Err(ApiError::invalid(format!(
                    "file {file:?} leads outside the build context"
                )));
            }
            let text = std::fs::read_to_string(context.join(rel)).map_err(|e| {
                ApiError::invalid(format!(
                    "no recipe {file:?} in the build context ({e}): send an aibox.toml or a Dockerfile, or name it with file="
                ))
            })?;
            let recipe = aibox_runtime::image::recipe::parse(&file, &text)
                .map_err(|e| ApiError::invalid(e.to_string()))?;
            Ok((file, recipe))
        })
        .await
        .map_err(|e| ApiError::internal("build task", e))
        .and_then(|r| r)
    };
    let (file, recipe) = match prepared {
        Ok(v) => v,
        Err(e) => {
            cleanup();
            return Err(e);
        }
    };
    let Some(name) = q.name.clone().or_else(|| recipe.name.clone()) else {
        cleanup();
        return Err(ApiError::invalid(
            "name the template: name= (or `name` in the aibox.toml)",
        ));
    };
    if !aibox_runtime::image::oci::valid_name(&name) {
        cleanup();
        return Err(ApiError::invalid(format!(
            "{name:?} is not a valid template name"
        )));
    }
    let opts = aibox_runtime::image::build::BuildOptions {
        name: name.clone(),
        context: context.clone(),
        file: file.clone(),
        no_cache: q.no_cache,
        keep_failed: q.keep_failed,
        network: network.map(|m| (m, rules)),
        memory,
        cpus: q.cpus,
        disk,
        ignore: aibox_runtime::image::build::ignore_patterns(&context),
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(256);
    let mut relay = Relay {
        state: state.clone(),
        owner: who.id.clone(),
        handle: tokio::runtime::Handle::current(),
        tx,
    };
    let engine = state.engine();
    let owner = who.id.clone();
    tokio::task::spawn_blocking(move || {
        let started = std::time::Instant::now();
        let result = engine.build_template(&recipe, &opts, &mut relay);
        cleanup();
        match result {
            Ok(meta) => {
                relay.state.audit(
                    &owner,
                    "template.build",
                    None,
                    json!({"name": meta.name, "digest": meta.digest, "layers": meta.layers.len(), "seconds": started.elapsed().as_secs_f64()}),
                );
                relay.send(&json!({"type": "done", "template": view(&meta)}));
            }
            Err(e) => {
                let mut v =
                    json!({"type": "error", "code": e.code().as_str(), "message": e.to_string()});
                if let aibox_runtime::Error::Build(f) = &e {
                    v["step"] = json!(f.step);
                    v["of"] = json!(f.of);
                    v["instruction"] = json!(f.instruction);
                    v["exit_code"] = json!(f.exit_code);
                    v["sandbox"] = json!(f.sandbox);
                }
                relay.state.audit(
                    &owner,
                    "template.build_failed",
                    None,
                    json!({"name": opts.name, "code": e.code().as_str(), "message": e.to_string()}),
                );
                relay.send(&v);
            }
        }
    });
    ndjson(rx)
}
