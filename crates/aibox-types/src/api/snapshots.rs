//! Snapshots of a sandbox's filesystem: `/v1/sandboxes/{id}/snapshots`,
//! `/v1/snapshots…`.

use super::SandboxView;
use crate::SandboxSpec;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Most sandboxes one fork makes.
pub const MAX_FORK: u64 = 100;

/// `POST /v1/sandboxes/{id}/snapshots` (the body may be left out).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "CreateSnapshot")]
pub struct SnapshotRequest {
    /// A name to find it by.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z0-9._-]{1,63}$"))]
    pub name: Option<String>,
}

/// A snapshot as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "Snapshot")]
pub struct SnapshotView {
    pub id: String,
    pub name: Option<String>,
    pub source_sandbox: String,
    pub created_at_ms: u64,
    pub template: String,
    /// Disk space of the layer's file data.
    pub size_bytes: u64,
    /// Files, directories, links and whiteouts in the layer.
    #[serde(default)]
    pub entries: u64,
    /// Taken with every process frozen.
    pub consistent: bool,
    /// A microVM's snapshot: memory and devices too, so a restore resumes
    /// its processes (not their network connections).
    #[serde(default)]
    pub memory: bool,
    /// The volumes the sandbox had mounted: their files are not in the
    /// snapshot (each says `included: false`); a restore mounts the same
    /// volumes as they are then.
    #[serde(default)]
    pub volumes: Vec<super::SnapshotVolume>,
    /// The spec of the sandbox it was taken from.
    #[schemars(with = "SandboxSpec")]
    pub spec: Value,
}

/// `GET /v1/snapshots`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SnapshotList {
    /// Oldest first.
    pub snapshots: Vec<SnapshotView>,
}

/// `GET /v1/snapshots` query.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SnapshotQuery {
    /// Only snapshots of this sandbox.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// What `POST /v1/snapshots/{id}/fork` made, all or none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Forked {
    pub sandboxes: Vec<SandboxView>,
}
