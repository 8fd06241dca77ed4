//! The OpenAPI 3.1 description of `/v1` (served at `/v1/openapi.json`) and
//! Swagger UI at `/docs`, whose files are embedded in the binary so the page
//! works offline. The bodies' schemas are derived from their types in
//! `aibox_types::api`; the operations (paths, parameters, status codes)
//! and the bodies not yet moved there are written out here. The
//! schemathesis run in the test suite holds the document to the handlers.

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use std::sync::{Arc, OnceLock};

fn reference(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn json_body(schema: Value) -> Value {
    json!({"required": true, "content": {"application/json": {"schema": schema}}})
}

fn ok(desc: &str, schema: Value) -> Value {
    json!({"description": desc, "content": {"application/json": {"schema": schema}}})
}

fn raw(desc: &str, media: &str) -> Value {
    json!({"description": desc, "content": {media: {"schema": {"type": "string", "format": "binary"}}}})
}

fn empty(desc: &str) -> Value {
    json!({"description": desc})
}

/// The error responses every authenticated operation can give.
fn errors(mut responses: Value, codes: &[&str]) -> Value {
    let e = json!({"description": "error", "content": {"application/json": {"schema": reference("Error")}}});
    for c in codes
        .iter()
        .chain(["400", "401", "403", "413", "429"].iter())
    {
        responses[*c] = e.clone();
    }
    responses
}

/// What an operation that reaches the sandbox's agent can fail with: the
/// sandbox unknown (404), not running (409) or its agent gone (410).
const AGENT: &[&str] = &["404", "409", "410"];

fn op(summary: &str, params: Value, body: Option<Value>, responses: Value) -> Value {
    let mut o = json!({"summary": summary, "parameters": params, "responses": responses});
    if let Some(b) = body {
        o["requestBody"] = b;
    }
    o
}

fn path_id() -> Value {
    json!({"name": "id", "in": "path", "required": true, "schema": {"type": "string", "pattern": "^[0-9a-f]{1,64}$"}})
}

fn path_pid() -> Value {
    json!({"name": "pid", "in": "path", "required": true, "schema": {"type": "integer", "minimum": 0}})
}

fn query(name: &str, required: bool, schema: Value) -> Value {
    json!({"name": name, "in": "query", "required": required, "schema": schema})
}

fn file_path() -> Value {
    query("path", true, json!({"type": "string", "pattern": "^/"}))
}

pub fn document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(build)
}

fn build() -> Value {
    let id = path_id();
    let sandbox = reference("Sandbox");
    let schemas = json!({});
    let mut schemas = schemas;
    // The bodies defined once in aibox-types, with the types they use.
    for (name, schema) in aibox_types::api::schemas() {
        schemas[name] = schema;
    }
    // A restore takes the create fields; a fork also `count`.
    let mut restore = schemas["CreateSandbox"].clone();
    restore["properties"]
        .as_object_mut()
        .map(|p| p.remove("snapshot"));
    let mut fork = restore.clone();
    fork["properties"]["count"] =
        json!({"type": "integer", "minimum": 1, "maximum": aibox_types::api::MAX_FORK});
    fork["required"] = json!(["count"]);
    schemas["Restore"] = restore;
    schemas["Fork"] = fork;
    let snap_id = json!({"name": "id", "in": "path", "required": true,
        "schema": {"type": "string", "pattern": "^[0-9a-f]{1,64}$"}, "description": "snapshot id"});
    let volume = json!({"name": "volume", "in": "path", "required": true,
        "schema": {"type": "string", "minLength": 1}, "description": "the volume's name or id"});
    let workspace = json!({"name": "workspace", "in": "path", "required": true,
        "schema": {"type": "string", "minLength": 1}, "description": "the workspace's name or id"});
    let optional_body = |schema: Value| json!({"required": false, "content": {"application/json": {"schema": schema}}});
    let sb_ok = ok("the sandbox", sandbox.clone());
    let paths = json!({
        "/v1/health": {"get": {"summary": "Liveness for anyone; capacity (active, max, memory budget) with a key", "security": [{}, {"bearer": []}], "responses": {
            "200": ok("server health", reference("Health"))}}},
        "/v1/sandboxes": {
            "post": op("Create a sandbox", json!([{"name": "Idempotency-Key", "in": "header", "required": false,
                    "schema": {"type": "string", "minLength": 1, "maxLength": 255}}]),
                Some(json_body(reference("CreateSandbox"))),
                errors(json!({"201": ok("created", sandbox.clone()), "200": ok("an earlier create with this Idempotency-Key", sandbox.clone())}),
                    &["403", "404", "409", "422", "503"])),
            "get": op("List sandboxes", json!([
                    query("state", false, json!({"type": "string"})),
                    query("label", false, json!({"type": "string", "pattern": "^[^=]+=.*$"})),
                    query("limit", false, json!({"type": "integer", "minimum": 1, "maximum": 1000})),
                    query("cursor", false, json!({"type": "string"})),
                    query("view", false, json!({"type": "string", "enum": ["full", "summary"]}))]),
                None, errors(json!({"200": ok("a page of sandboxes (view=summary: isolation is only {backend, level})", reference("SandboxList"))}), &[]))
        },
        "/v1/sandboxes/{id}": {
            "get": op("Get a sandbox with live usage", json!([id]), None, errors(json!({"200": sb_ok}), &["404"])),
            "delete": op("Destroy a sandbox", json!([id]), None, errors(json!({"204": empty("destroyed")}), &["404", "409"]))
        },
        "/v1/sandboxes/{id}/exec": {"post": op("Run a command to completion", json!([id]),
            Some(json_body(reference("Exec"))), errors(json!({"200": ok("the result", reference("ExecResult"))}), AGENT))},
        "/v1/sandboxes/{id}/pause": {"post": op("Freeze every process (the TTL clock stops)", json!([id]), None,
            errors(json!({"200": sb_ok}), &["404", "409"]))},
        "/v1/sandboxes/{id}/resume": {"post": op("Thaw a paused sandbox", json!([id]), None,
            errors(json!({"200": sb_ok}), &["404", "409"]))},
        "/v1/sandboxes/{id}/timeout": {"post": op("Set the remaining lifetime", json!([id]),
            Some(json_body(reference("Timeout"))),
            errors(json!({"200": sb_ok}), &["404"]))},
        "/v1/sandboxes/{id}/network": {"patch": op("Replace the egress policy (new connections see it at once)", json!([id]),
            Some(json_body(reference("Network"))), errors(json!({"200": sb_ok.clone()}), &["404", "409"]))},
        "/v1/sandboxes/{id}/ports": {
            "get": op("Listening ports, their URLs and the port token", json!([id]), None,
                errors(json!({"200": ok("ports", reference("Ports"))}), &["404"])),
            "patch": op("Make published ports public or private, or rotate the token", json!([id]),
                Some(json_body(reference("PortsPatch"))), errors(json!({"200": ok("ports", reference("Ports"))}), &["404"]))
        },
        "/v1/templates": {"get": op("List templates: the built-in host and the OCI images in the store", json!([]), None,
            errors(json!({"200": ok("templates", reference("TemplateList"))}), &[]))},
        "/v1/templates/{name}": {
            "get": op("Get a template (its name may hold / and :)", json!([{"name": "name", "in": "path", "required": true, "schema": {"type": "string"}}]), None,
                errors(json!({"200": ok("the template", reference("Template"))}), &["404"])),
            "delete": op("Forget a template (admin; 409 while a sandbox uses it)", json!([{"name": "name", "in": "path", "required": true, "schema": {"type": "string"}}]), None,
                errors(json!({"204": empty("removed")}), &["404", "409"]))
        },
        "/v1/templates/pull": {"post": op("Pull an image from a registry as a template (admin; plain HTTP only for loopback or with insecure). With `Accept: application/x-ndjson` the reply is 200 with JSON lines: `progress` {layer, done, total}, then `done` {template} or `error` {code, message}", json!([]),
            Some(json_body(reference("Pull"))),
            errors(json!({"201": ok("the template", reference("Template"))}), &["404", "502"]))},
        "/v1/snapshots/{id}/template": {"post": op("Make a snapshot a template (admin): its layer on top of the template it was taken from", json!([snap_id.clone()]),
            Some(json_body(reference("Promote"))),
            errors(json!({"201": ok("the template", reference("Template"))}), &["404"]))},
        "/v1/templates/prune": {"post": op("Remove layers no template (nor the build cache) uses (admin)",
            json!([query("build_cache", false, json!({"type": "boolean"}))]), None,
            errors(json!({"200": ok("removed", reference("StoreUsage"))}), &[]))},
        "/v1/templates/build": {"post": op("Build a template from the build context sent as a tar, holding an aibox.toml or a Dockerfile (admin). Replies with the build's events as JSON lines (step, output, layer, note), the last one `done` (with the template) or `error` (code, message; for a failed step: step, exit_code, and the kept sandbox)",
            json!([
                query("name", false, json!({"type": "string"})),
                query("file", false, json!({"type": "string"})),
                query("no_cache", false, json!({"type": "boolean"})),
                query("keep_failed", false, json!({"type": "boolean"})),
                query("network", false, json!({"type": "string", "enum": ["none", "allowlist", "full"]})),
                query("allow", false, json!({"type": "string", "description": "egress rules, comma-separated"})),
                query("memory", false, json!({"type": "string"})),
                query("disk", false, json!({"type": "string"})),
                query("cpus", false, json!({"type": "number"}))]),
            Some(json!({"required": true, "content": {"application/x-tar": {"schema": {"type": "string", "format": "binary"}}}})),
            errors(json!({"200": {"description": "the build's events, one JSON object per line",
                "content": {"application/x-ndjson": {"schema": {"type": "string"}}}}}), &["413"]))},
        "/v1/templates/import": {"post": op("Import an image archive (docker save, podman save, or an OCI layout as a tar; admin)",
            json!([query("name", false, json!({"type": "string"}))]),
            Some(json!({"required": true, "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}})),
            errors(json!({"201": ok("the template", reference("Template"))}), &["409"]))},
        "/v1/sandboxes/{id}/snapshots": {"post": op("Snapshot the sandbox's filesystem (frozen while copied)", json!([id]),
            Some(optional_body(reference("CreateSnapshot"))),
            errors(json!({"201": ok("the snapshot", reference("Snapshot"))}), &["404", "409", "410", "503"]))},
        "/v1/volumes": {
            "post": op("Create a volume: a named filesystem with a quota that outlives sandboxes", json!([]),
                Some(json_body(reference("CreateVolume"))),
                errors(json!({"201": ok("the volume", reference("Volume"))}), &["403", "409", "503"])),
            "get": op("List volumes (an admin: every key's)", json!([query("label", false, json!({"type": "string", "pattern": "^[^=]+=.*$"}))]), None,
                errors(json!({"200": ok("volumes, by name", reference("VolumeList"))}), &[]))
        },
        "/v1/volumes/{volume}": {
            "get": op("Get a volume (by name or id): quota, usage, the sandboxes using it, its snapshots", json!([volume.clone()]), None,
                errors(json!({"200": ok("the volume", reference("Volume"))}), &["404"])),
            "delete": op("Remove a volume and its snapshots (409 while a sandbox has it mounted)", json!([volume.clone()]), None,
                errors(json!({"204": empty("removed")}), &["404", "409"]))
        },
        "/v1/volumes/{volume}/snapshots": {"post": op("Snapshot a volume's files (a consistent copy, the filesystem frozen meanwhile)", json!([volume.clone()]),
            Some(json_body(reference("CreateVolumeSnapshot"))),
            errors(json!({"201": ok("the volume, with the snapshot", reference("Volume"))}), &["404", "409"]))},
        "/v1/volumes/{volume}/snapshots/{snapshot}": {"delete": op("Delete a volume snapshot", json!([volume.clone(),
                {"name": "snapshot", "in": "path", "required": true, "schema": {"type": "string"}}]), None,
            errors(json!({"204": empty("deleted")}), &["404"]))},
        "/v1/volumes/{volume}/clone": {"post": op("A new volume with this one's files (now, or as one of its snapshots holds them)", json!([volume]),
            Some(json_body(reference("CloneVolume"))),
            errors(json!({"201": ok("the new volume", reference("Volume"))}), &["403", "404", "409"]))},
        "/v1/workspaces": {
            "post": op("Create a workspace: files (a volume mounted at /workspace), an environment and a history shared by the sandboxes made in it", json!([]),
                Some(json_body(reference("CreateWorkspace"))),
                errors(json!({"201": ok("the workspace", reference("Workspace"))}), &["403", "409", "503"])),
            "get": op("List workspaces (an admin: every key's)", json!([]), None,
                errors(json!({"200": ok("workspaces, by name", reference("WorkspaceList"))}), &[]))
        },
        "/v1/workspaces/{workspace}": {
            "get": op("Get a workspace (by name or id): its files, sandboxes now, history", json!([workspace.clone()]), None,
                errors(json!({"200": ok("the workspace", reference("Workspace"))}), &["404"])),
            "delete": op("Remove a workspace, its files and history (409 while a sandbox is in it)", json!([workspace.clone()]), None,
                errors(json!({"204": empty("removed")}), &["404", "409"]))
        },
        "/v1/workspaces/{workspace}/snapshots": {"post": op("Keep a workspace's files as they are now, by name", json!([workspace]),
            Some(json_body(reference("CreateWorkspaceSnapshot"))),
            errors(json!({"201": ok("the workspace", reference("Workspace"))}), &["403", "404", "409"]))},
        "/v1/snapshots": {"get": op("List snapshots", json!([
                query("sandbox", false, json!({"type": "string"})),
                query("name", false, json!({"type": "string"}))]),
            None, errors(json!({"200": ok("snapshots, oldest first", reference("SnapshotList"))}), &[]))},
        "/v1/snapshots/{id}": {
            "get": op("Get a snapshot", json!([snap_id]), None, errors(json!({"200": ok("the snapshot", reference("Snapshot"))}), &["404"])),
            "delete": op("Delete a snapshot (409 while a sandbox restored from it runs)", json!([snap_id]), None,
                errors(json!({"204": empty("deleted")}), &["404", "409"]))
        },
        "/v1/snapshots/{id}/restore": {"post": op("Create a sandbox from a snapshot", json!([snap_id]),
            Some(optional_body(reference("Restore"))),
            errors(json!({"201": ok("created", sandbox.clone())}), &["404", "409", "422", "503"]))},
        "/v1/snapshots/{id}/fork": {"post": op("Create `count` sandboxes from a snapshot, all or none", json!([snap_id]),
            Some(json_body(reference("Fork"))),
            errors(json!({"201": ok("created", reference("Forked"))}), &["404", "409", "422", "503"]))},
        "/v1/sandboxes/{id}/files": {
            "get": op("Read a file (raw bytes)", json!([id, file_path()]), None,
                errors(json!({"200": raw("file contents", "application/octet-stream")}), AGENT)),
            "put": op("Write a file atomically (raw bytes)", json!([id, file_path(),
                    query("mode", false, json!({"type": "string", "pattern": "^[0-7]{1,4}$"}))]),
                Some(json!({"required": true, "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}})),
                errors(json!({"200": ok("written", reference("Written"))}), AGENT)),
            "delete": op("Delete a file or directory", json!([id, file_path(), query("recursive", false, json!({"type": "boolean"}))]),
                None, errors(json!({"204": empty("deleted")}), AGENT))
        },
        "/v1/sandboxes/{id}/files/list": {"get": op("List a directory", json!([id, file_path(),
            query("recursive", false, json!({"type": "boolean"}))]), None,
            errors(json!({"200": ok("entries", reference("FileList"))}), AGENT))},
        "/v1/sandboxes/{id}/files/stat": {"get": op("Stat a path", json!([id, file_path()]), None,
            errors(json!({"200": ok("metadata", reference("FileStat"))}), AGENT))},
        "/v1/sandboxes/{id}/files/mkdir": {"post": op("mkdir -p", json!([id]),
            Some(json_body(reference("Mkdir"))),
            errors(json!({"201": ok("created", reference("FileStat"))}), AGENT))},
        "/v1/sandboxes/{id}/files/rename": {"post": op("Rename a path", json!([id]),
            Some(json_body(reference("Rename"))),
            errors(json!({"204": empty("renamed")}), AGENT))},
        "/v1/sandboxes/{id}/tar": {
            "get": op("Download a directory as tar", json!([id, file_path()]), None,
                errors(json!({"200": raw("tar archive", "application/x-tar")}), AGENT)),
            "put": op("Unpack a tar archive into a directory", json!([id, file_path()]),
                Some(json!({"required": true, "content": {
                    "application/x-tar": {"schema": {"type": "string", "format": "binary"}},
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}})),
                errors(json!({"204": empty("unpacked")}), AGENT))
        },
        "/v1/sandboxes/{id}/processes": {
            "post": op("Start a background process", json!([id]),
                Some(json_body(reference("StartProcess"))),
                errors(json!({"201": ok("started", reference("Started"))}), AGENT)),
            "get": op("List processes", json!([id]), None, errors(json!({"200": ok("processes", reference("ProcessList"))}), AGENT))
        },
        "/v1/sandboxes/{id}/processes/{pid}": {"get": op("Get a process", json!([id, path_pid()]), None,
            errors(json!({"200": ok("the process", reference("Process"))}), AGENT))},
        "/v1/sandboxes/{id}/processes/{pid}/wait": {"post": op("Wait for a process to exit", json!([id, path_pid(),
            query("timeout_ms", false, json!({"type": "integer", "minimum": 0}))]), None,
            errors(json!({"200": ok("its exit", reference("ProcessExit"))}), &["404", "409", "410", "504"]))},
        "/v1/sandboxes/{id}/processes/{pid}/kill": {"post": op("Signal a process", json!([id, path_pid()]),
            Some(json_body(reference("Kill"))),
            errors(json!({"204": empty("signalled")}), AGENT))},
        "/v1/sandboxes/{id}/processes/{pid}/stdin": {"post": op("Write to a process's stdin", json!([id, path_pid(),
            query("close", false, json!({"type": "boolean"}))]),
            Some(json!({"required": true, "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}})),
            errors(json!({"204": empty("written")}), AGENT))},
        "/v1/keys": {
            "post": op("Create an API key (admin)", json!([]),
                Some(json_body(reference("CreateKey"))),
                errors(json!({"201": ok("the key; its secret is shown only here", reference("NewKey"))}), &["403"])),
            "get": op("List API keys (admin)", json!([]), None, errors(json!({"200": ok("keys", reference("KeyList"))}), &["403"]))
        },
        "/v1/keys/{id}": {"delete": op("Revoke an API key (admin; never the last admin key)", json!([{"name": "id", "in": "path", "required": true,
            "schema": {"type": "string"}}]), None, errors(json!({"204": empty("revoked")}), &["403", "404", "409"])),
            "patch": op("Set or clear a user key's own ceiling (admin; null: the server's user_ceiling)", json!([{"name": "id", "in": "path", "required": true,
            "schema": {"type": "string"}}]),
            Some(json_body(reference("KeyPatch"))),
            errors(json!({"200": ok("the key", reference("Key"))}), &["403", "404"]))},
        "/v1/audit/verify": {"get": op("Check the audit log's hash chain (admin)", json!([]), None,
            errors(json!({"200": ok("verdict", reference("AuditVerdict"))}), &[]))},
        "/v1/audit": {"get": op("Read the audit log (admin): `after` pages oldest first; any of before, actor, action (a prefix), sandbox, since_ms, until_ms or order=desc selects newest first (not with after)", json!([
                query("after", false, json!({"type": "integer", "minimum": 0})),
                query("before", false, json!({"type": "integer", "minimum": 0})),
                query("actor", false, json!({"type": "string", "minLength": 1})),
                query("action", false, json!({"type": "string", "minLength": 1})),
                query("sandbox", false, json!({"type": "string", "minLength": 1})),
                query("since_ms", false, json!({"type": "integer", "minimum": 0})),
                query("until_ms", false, json!({"type": "integer", "minimum": 0})),
                query("order", false, json!({"type": "string", "enum": ["asc", "desc"]})),
                query("limit", false, json!({"type": "integer", "minimum": 1, "maximum": 1000}))]),
            None, errors(json!({"200": ok("entries", reference("AuditList"))}), &["403"]))}
    });
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "aibox",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Sandboxes for AI agents. Streams (exec with live output and PTY, process re-attach, raw TCP to a port) are WebSockets at /v1/sandboxes/{id}/exec/ws, /v1/sandboxes/{id}/processes/{pid}/attach and /v1/sandboxes/{id}/forward/{port}; published ports answer at http://{port}-{id}.localhost:{server port}/ and /v1/sandboxes/{id}/ports/{port}/ (any method, proxied to the sandbox); see docs/api.md and docs/network.md."
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": schemas
        },
        "paths": paths
    })
}

pub async fn spec() -> Json<Value> {
    Json(document().clone())
}

fn ui_config() -> Arc<utoipa_swagger_ui::Config<'static>> {
    static CFG: OnceLock<Arc<utoipa_swagger_ui::Config<'static>>> = OnceLock::new();
    CFG.get_or_init(|| Arc::new(utoipa_swagger_ui::Config::new(["/v1/openapi.json"])))
        .clone()
}

pub async fn docs_index() -> Response {
    serve_ui("").await
}

pub async fn docs_file(Path(rest): Path<String>) -> Response {
    serve_ui(&rest).await
}

async fn serve_ui(rest: &str) -> Response {
    match utoipa_swagger_ui::serve(rest, ui_config()) {
        Ok(Some(file)) => (
            [(header::CONTENT_TYPE, file.content_type)],
            file.bytes.to_vec(),
        )
            .into_response(),
        Ok(None) => StatusCode::NOT_FOUND.into_response(),
        Err(e) => crate::error::ApiError::internal("swagger ui", e).into_response(),
    }
}
