//! The REST API's request and response bodies, defined once.
//!
//! The server parses these, the Rust client, the CLI and the MCP tools
//! build them, and the OpenAPI document's schemas are derived from them
//! ([`schemas`]), so the SDKs and the dashboard (checked against that
//! document) see the same fields. A field added here reaches every front
//! end or fails the parity test (`crates/aibox-cli/tests/parity.rs`).
//!
//! Requests refuse unknown fields, so a misspelt one is an error rather
//! than a silently ignored wish. Responses are open: a client built
//! against an older server keeps working when fields are added.

mod admin;
mod files;
mod ports;
mod processes;
mod snapshots;
mod volumes;
mod workspaces;

pub use admin::{
    AuditEntry, AuditList, AuditQuery, AuditVerdict, BuildQuery, ImportQuery, KeyList, KeyPatch,
    KeyRequest, KeyView, NewKey, PromoteRequest, PruneQuery, Pruned, PullRequest, Scope,
    StoreUsage, TemplateList, TemplateView,
};
pub use files::{
    FileKind, FileList, FileQuery, FileStat, MkdirRequest, PathQuery, RenameRequest, Written,
};
pub use ports::{PortView, PortsPatch, PortsView};
pub use processes::{
    ExitInfo, KillRequest, ProcInfo, ProcessExit, ProcessList, StartRequest, Started, StdinQuery,
    WaitQuery,
};
pub use snapshots::{Forked, SnapshotList, SnapshotQuery, SnapshotRequest, SnapshotView, MAX_FORK};
pub use volumes::{
    check_labels, valid_volume_name, CloneRequest, QuotaView, SnapshotVolume, VolumeList,
    VolumeQuery, VolumeRef, VolumeRequest, VolumeSnapshotRequest, VolumeSnapshotView, VolumeView,
    MAX_VOLUME_BYTES, MIN_VOLUME_BYTES, VOLUME_NAME_PATTERN,
};
pub use workspaces::{
    valid_workspace_name, workspace_volume, WorkspaceEvent, WorkspaceEventKind, WorkspaceList,
    WorkspaceRequest, WorkspaceSnapshotRequest, WorkspaceView, WORKSPACE_NAME_PATTERN,
    WORKSPACE_PATH,
};

use crate::egress::{Enforcement, Rule};
use crate::{
    parse_size, BackendKind, ByteSize, ErrorCode, IsolationLevel, IsolationReport, MountSpec,
    NetworkMode, SandboxSpec, UnitError, User,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// Bytes, or a size such as `512m` or `4g`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Size {
    Bytes(#[schemars(range(min = 0))] u64),
    Text(String),
}

impl Size {
    pub fn bytes(&self) -> Result<ByteSize, UnitError> {
        match self {
            Size::Bytes(b) => Ok(ByteSize(*b)),
            Size::Text(t) => parse_size(t).map(ByteSize),
        }
    }
}

impl From<ByteSize> for Size {
    fn from(b: ByteSize) -> Size {
        Size::Bytes(b.0)
    }
}

/// `POST /v1/sandboxes`: a new sandbox. Every field is optional; what is
/// left out comes from the server's defaults (or, for a restore, from the
/// snapshot's spec).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "CreateSandbox")]
pub struct CreateRequest {
    /// The template (image) to start from (default `host`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub template: Option<String>,
    /// CPU time as a number of CPUs (e.g. 0.5); unlimited when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Size>,
    /// The most processes and threads at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub pids: Option<u64>,
    /// The root filesystem's writable space.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<Size>,
    /// Environment variables of every process (on top of the template's).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// The working directory of commands (default `/workspace`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workdir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<User>,
    /// Lifetime in seconds (default: the server's `default_ttl`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub ttl_seconds: Option<u64>,
    /// Destroy after this many seconds without API activity (exec, files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub idle_timeout_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Free-form labels (keys 1-63 bytes, values at most 255), for listing
    /// with `?label=K=V`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Refuse to create the sandbox unless it gets at least this level.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_isolation: Option<IsolationLevel>,
    /// Isolation backend (default: the server's `default_backend`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<BackendKind>,
    /// Host paths to mount (only under the operator's `allowed_mounts`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<MountSpec>,
    /// The caller's volumes to mount (`aibox volume`); they outlive the
    /// sandbox.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<VolumeRef>,
    /// Make the sandbox in this workspace of the caller's: its files at
    /// `/workspace`, its environment under `env`, and an entry in its
    /// history.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,52}$"))]
    pub workspace: Option<String>,
    /// Start from this snapshot's filesystem; its spec is the base that
    /// the other fields override.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9a-f]{1,64}$"))]
    pub snapshot: Option<String>,
    /// Egress: mode and rules (default: no network).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkRequest>,
    /// Published ports answer without the sandbox's port token.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub public: bool,
}

/// A request field the server cannot take, with the field's name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    pub field: &'static str,
    pub message: String,
}

impl FieldError {
    pub fn new(field: &'static str, message: impl Into<String>) -> FieldError {
        FieldError {
            field,
            message: message.into(),
        }
    }
}

impl CreateRequest {
    /// Lay the request's sandbox fields over `spec` (the defaults, or a
    /// snapshot's spec for a restore). The one place a create field
    /// becomes part of a sandbox: the server and the CLI's local mode
    /// both come here. Fields that are not the sandbox's own (lifetime,
    /// labels, public ports, the snapshot) are the caller's to apply;
    /// policy (ceilings, allowed mounts, budgets) and the spec's own
    /// `validate` too.
    pub fn apply(&self, spec: &mut SandboxSpec) -> Result<(), FieldError> {
        if let Some(t) = &self.template {
            spec.template = t.clone();
        }
        if self.cpus.is_some() {
            spec.cpus = self.cpus;
        }
        if let Some(m) = &self.memory {
            spec.memory = Some(
                m.bytes()
                    .map_err(|e| FieldError::new("memory", e.to_string()))?,
            );
        }
        if let Some(d) = &self.disk {
            spec.disk = Some(
                d.bytes()
                    .map_err(|e| FieldError::new("disk", e.to_string()))?,
            );
        }
        if self.pids.is_some() {
            spec.pids = self.pids;
        }
        for (k, v) in &self.env {
            spec.env.retain(|(old, _)| old != k);
            spec.env.push((k.clone(), v.clone()));
        }
        if let Some(w) = &self.workdir {
            spec.workdir = w.clone();
        }
        if let Some(u) = self.user {
            spec.user = u;
        }
        if self.require_isolation.is_some() {
            spec.require_isolation = self.require_isolation;
        }
        if self.backend.is_some() {
            spec.backend = self.backend;
        }
        if self.hostname.is_some() {
            spec.hostname = self.hostname.clone();
        }
        if let Some(n) = &self.network {
            spec.network = n.mode;
            spec.network_rules = n.rules.clone();
            if n.enforcement.is_some() {
                if n.mode == NetworkMode::None {
                    return Err(FieldError::new(
                        "network.enforcement",
                        "needs network mode allowlist or full",
                    ));
                }
                spec.network_enforcement = n.enforcement;
            }
        }
        if !self.mounts.is_empty() {
            spec.mounts = self.mounts.clone();
        }
        if !self.volumes.is_empty() {
            for v in &self.volumes {
                v.check().map_err(|e| FieldError::new("volumes", e))?;
            }
            // By name: the caller resolves each to its volume's id (the
            // server among the caller's own volumes), which `validate`
            // requires.
            spec.volumes = self
                .volumes
                .iter()
                .map(|v| crate::VolumeMount {
                    id: String::new(),
                    name: v.name.clone(),
                    path: v.path.clone(),
                    read_only: v.read_only,
                })
                .collect();
        }
        if self.ttl_seconds == Some(0) {
            return Err(FieldError::new("ttl_seconds", "must be positive"));
        }
        if self.idle_timeout_seconds == Some(0) {
            return Err(FieldError::new("idle_timeout_seconds", "must be positive"));
        }
        check_labels(&self.labels).map_err(|e| FieldError::new("labels", e))?;
        Ok(())
    }
}

/// A sandbox's egress policy: `PATCH /v1/sandboxes/{id}/network`, and the
/// `network` of a create.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Network")]
pub struct NetworkRequest {
    pub mode: NetworkMode,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1000))]
    pub rules: Vec<Rule>,
    /// `proxy` or `l4` (create only; default: the best the host offers,
    /// and `l4` fails the create when the host cannot give it: it needs
    /// nftables and iproute2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enforcement: Option<Enforcement>,
}

/// Where a sandbox is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SandboxState {
    Creating,
    Running,
    Paused,
}

impl SandboxState {
    pub fn as_str(self) -> &'static str {
        match self {
            SandboxState::Creating => "creating",
            SandboxState::Running => "running",
            SandboxState::Paused => "paused",
        }
    }
}

impl std::str::FromStr for SandboxState {
    type Err = String;
    fn from_str(s: &str) -> Result<SandboxState, String> {
        match s {
            "creating" => Ok(SandboxState::Creating),
            "running" => Ok(SandboxState::Running),
            "paused" => Ok(SandboxState::Paused),
            other => Err(format!("unknown sandbox state {other:?}")),
        }
    }
}

/// The limits in effect, defaults included (`cpus` null: unlimited).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Limits {
    pub memory: u64,
    pub disk: u64,
    pub pids: u64,
    pub cpus: Option<f64>,
}

impl Limits {
    pub fn of(spec: &SandboxSpec) -> Limits {
        Limits {
            memory: spec.memory_bytes(),
            disk: spec.disk_bytes(),
            pids: spec.pids_limit(),
            cpus: spec.cpus,
        }
    }
}

/// A sandbox as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "Sandbox")]
pub struct SandboxView {
    pub id: String,
    pub state: SandboxState,
    pub created_at_ms: u64,
    /// When the TTL ends (null while paused: the clock is stopped).
    pub expires_at_ms: Option<u64>,
    /// TTL left, frozen while paused.
    pub remaining_ms: Option<u64>,
    pub idle_timeout_seconds: Option<u64>,
    pub labels: BTreeMap<String, String>,
    /// The sandbox's settings, defaults included.
    #[schemars(with = "SandboxSpec")]
    pub spec: Value,
    pub limits: Option<Limits>,
    /// What isolation the sandbox really got (null while creating; in a
    /// list with `view=summary`, only `backend` and `level`).
    #[schemars(schema_with = "isolation_schema")]
    pub isolation: Value,
    /// Published ports answer without the port token.
    pub public_ports: bool,
    /// Live usage while it runs (`GET /v1/sandboxes/{id}` only; null
    /// elsewhere).
    #[serde(default)]
    pub usage: Option<Value>,
}

/// A sandbox's isolation as a view shows it: the whole report, its
/// summary (in a list with `view=summary`), or null while creating.
fn isolation_schema(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let report = g.subschema_for::<IsolationReport>();
    let level = g.subschema_for::<IsolationLevel>();
    schemars::json_schema!({
        "anyOf": [
            report,
            {"type": "object", "required": ["backend"], "properties": {
                "backend": {"type": "string"},
                "level": {"anyOf": [level, {"type": "null"}]}}},
            {"type": "null"}
        ]
    })
}

impl SandboxView {
    /// The spec, typed (None if this server's spec has fields this
    /// client does not know).
    pub fn typed_spec(&self) -> Option<SandboxSpec> {
        serde_json::from_value(self.spec.clone()).ok()
    }
}

/// `GET /v1/sandboxes`: a page of sandboxes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SandboxList {
    pub sandboxes: Vec<SandboxView>,
    /// The cursor of the next page (null: this was the last).
    pub next: Option<String>,
}

/// `GET /v1/sandboxes` query.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pub state: Option<SandboxState>,
    /// `key=value`.
    pub label: Option<String>,
    #[schemars(range(min = 1, max = 1000))]
    pub limit: Option<u64>,
    pub cursor: Option<String>,
    /// `full` (default) or `summary`.
    pub view: Option<String>,
}

/// `POST /v1/sandboxes/{id}/timeout`: the remaining lifetime.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Timeout")]
pub struct TimeoutRequest {
    #[schemars(range(min = 1))]
    pub ttl_seconds: u64,
}

/// A command: an argv array, or one string run by `/bin/sh -c`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Cmd {
    Argv(#[schemars(length(min = 1))] Vec<String>),
    Shell(#[schemars(length(min = 1))] String),
}

impl Cmd {
    /// (argv, shell string); an empty command is refused.
    pub fn split(self) -> Result<(Vec<String>, Option<String>), FieldError> {
        match self {
            Cmd::Argv(v) if v.is_empty() || v[0].is_empty() => {
                Err(FieldError::new("cmd", "must not be empty"))
            }
            Cmd::Argv(v) => Ok((v, None)),
            Cmd::Shell(s) if s.trim().is_empty() => {
                Err(FieldError::new("cmd", "must not be empty"))
            }
            Cmd::Shell(s) => Ok((vec![], Some(s))),
        }
    }
}

/// `POST /v1/sandboxes/{id}/exec`: run a command to completion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Exec")]
pub struct ExecRequest {
    pub cmd: Cmd,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<User>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub timeout_ms: Option<u64>,
    /// Text fed to the command's stdin (otherwise /dev/null).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin: Option<String>,
    /// Per-stream cap in bytes (default and most: the server's
    /// `max_exec_output`); the rest is counted, not kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub max_output: Option<u64>,
}

impl ExecRequest {
    pub fn new(cmd: Cmd) -> ExecRequest {
        ExecRequest {
            cmd,
            env: BTreeMap::new(),
            cwd: None,
            user: None,
            timeout_ms: None,
            stdin: None,
            max_output: None,
        }
    }
}

/// The result of `POST /v1/sandboxes/{id}/exec`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ExecResult {
    /// The exit status, or 128 + the signal that ended the command.
    pub exit_code: i32,
    pub signal: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub timed_out: bool,
    #[serde(default)]
    pub stdout_truncated: bool,
    #[serde(default)]
    pub stderr_truncated: bool,
    pub duration_ms: u64,
}

/// `GET /v1/health`: liveness for anyone; with a key, the capacity too.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Health {
    pub status: String,
    pub version: String,
    /// Sandboxes: active, max, running, paused, creating (with a key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandboxes: Option<Value>,
    /// The memory budget and what is reserved of it (with a key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activity: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<HealthLimits>,
}

/// The lifetimes a server gives (with a key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct HealthLimits {
    pub default_ttl_seconds: u64,
    pub max_ttl_seconds: u64,
}

/// Every error response: `{"error": {"code", "message"}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "Error")]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ErrorDetail {
    /// The stable error code.
    pub code: ErrorCode,
    pub message: String,
}

impl std::fmt::Display for ErrorDetail {
    /// `message (code)`: one line a person or a model can act on.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.code.as_str())
    }
}

/// The OpenAPI 3.1 component schemas of the API's bodies, keyed by the
/// names the document's operations refer to (`#/components/schemas/…`),
/// with the types they refer to in turn.
pub fn schemas() -> serde_json::Map<String, Value> {
    let mut g = schemars::generate::SchemaSettings::draft2020_12()
        .with(|s| {
            s.definitions_path = "/components/schemas".into();
            s.meta_schema = None;
        })
        .into_generator();
    // Each type registers itself (and what it refers to) under its
    // schema name: `CreateSandbox`, `Network`, `Sandbox`, …
    g.subschema_for::<ErrorBody>();
    g.subschema_for::<CreateRequest>();
    g.subschema_for::<SandboxList>();
    g.subschema_for::<TimeoutRequest>();
    g.subschema_for::<ExecRequest>();
    g.subschema_for::<ExecResult>();
    g.subschema_for::<FileList>();
    g.subschema_for::<Written>();
    g.subschema_for::<MkdirRequest>();
    g.subschema_for::<RenameRequest>();
    g.subschema_for::<ProcessList>();
    g.subschema_for::<StartRequest>();
    g.subschema_for::<Started>();
    g.subschema_for::<ProcessExit>();
    g.subschema_for::<KillRequest>();
    g.subschema_for::<SnapshotRequest>();
    g.subschema_for::<SnapshotList>();
    g.subschema_for::<Forked>();
    g.subschema_for::<PortsView>();
    g.subschema_for::<PortsPatch>();
    g.subschema_for::<Health>();
    g.subschema_for::<KeyRequest>();
    g.subschema_for::<NewKey>();
    g.subschema_for::<KeyPatch>();
    g.subschema_for::<KeyList>();
    g.subschema_for::<AuditList>();
    g.subschema_for::<AuditVerdict>();
    g.subschema_for::<TemplateList>();
    g.subschema_for::<PullRequest>();
    g.subschema_for::<PromoteRequest>();
    g.subschema_for::<StoreUsage>();
    g.subschema_for::<VolumeRequest>();
    g.subschema_for::<VolumeList>();
    g.subschema_for::<VolumeSnapshotRequest>();
    g.subschema_for::<CloneRequest>();
    g.subschema_for::<WorkspaceRequest>();
    g.subschema_for::<WorkspaceList>();
    g.subschema_for::<WorkspaceSnapshotRequest>();
    g.take_definitions(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_create_request_round_trips_and_sends_only_what_is_set() {
        let r = CreateRequest {
            backend: Some(BackendKind::Microvm),
            memory: Some(Size::Text("512m".into())),
            ..Default::default()
        };
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v, json!({"backend": "microvm", "memory": "512m"}));
        assert_eq!(serde_json::from_value::<CreateRequest>(v).unwrap(), r);
        assert!(serde_json::from_value::<CreateRequest>(json!({"bakend": "x"})).is_err());
    }

    #[test]
    fn apply_lays_fields_over_the_base_and_names_the_bad_one() {
        let mut spec = SandboxSpec::default();
        let r = CreateRequest {
            hostname: Some("h".into()),
            env: [("A".to_string(), "1".to_string())].into(),
            ..Default::default()
        };
        r.apply(&mut spec).unwrap();
        assert_eq!(spec.hostname.as_deref(), Some("h"));
        assert_eq!(spec.env, vec![("A".to_string(), "1".to_string())]);
        let bad = CreateRequest {
            memory: Some(Size::Text("lots".into())),
            ..Default::default()
        };
        assert_eq!(bad.apply(&mut spec).unwrap_err().field, "memory");
    }

    #[test]
    fn the_schemas_name_every_body_and_resolve_every_reference() {
        let s = schemas();
        for name in ["Error", "CreateSandbox", "Network", "Sandbox", "Exec"] {
            assert!(s.contains_key(name), "{name}");
        }
        let text = Value::Object(s.clone()).to_string();
        for part in text.split("#/components/schemas/").skip(1) {
            let name: String = part.chars().take_while(|c| *c != '"').collect();
            assert!(s.contains_key(&name), "dangling reference {name}");
        }
        assert_eq!(s["CreateSandbox"]["additionalProperties"], json!(false));
        assert_eq!(s["Error"]["required"], json!(["error"]));
    }
}
