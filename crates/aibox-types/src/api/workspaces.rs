//! Workspaces: a persistent identity for the sandboxes made in it (its
//! files, its environment, its history), `/v1/workspaces…`, and the
//! `workspace` of a create.

use super::{Size, VolumeView};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A workspace name: as a volume's, shorter (its files are the volume
/// `workspace.NAME`).
pub const WORKSPACE_NAME_PATTERN: &str = r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,52}$";

/// Whether `name` is a valid workspace name.
pub fn valid_workspace_name(name: &str) -> bool {
    name.len() <= 53 && super::valid_volume_name(name)
}

/// The volume that holds a workspace's files.
pub fn workspace_volume(name: &str) -> String {
    format!("workspace.{name}")
}

/// Where a sandbox made in a workspace finds its files.
pub const WORKSPACE_PATH: &str = "/workspace";

/// `POST /v1/workspaces`: a new workspace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "CreateWorkspace")]
pub struct WorkspaceRequest {
    #[schemars(regex(pattern = r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,52}$"))]
    pub name: String,
    /// The quota of its files (default `1g`; 16m to 8t).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<Size>,
    /// Environment variables of every sandbox made in it (a create's own
    /// `env` wins).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// What happened in a workspace, oldest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum WorkspaceEventKind {
    /// The workspace was made.
    Created,
    /// A sandbox was made in it (`from_snapshot`: restored from one).
    SandboxCreated,
    /// That sandbox ended (deleted, expired, or idle too long).
    SandboxEnded,
    /// A snapshot of a sandbox in it (`snapshot`: the sandbox snapshot's
    /// id), or of its files (`snapshot`: the files' snapshot name).
    Snapshot,
}

/// One entry of a workspace's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct WorkspaceEvent {
    pub at_ms: u64,
    pub event: WorkspaceEventKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_snapshot: Option<String>,
}

/// A workspace as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "Workspace")]
pub struct WorkspaceView {
    pub id: String,
    pub name: String,
    pub created_at_ms: u64,
    pub env: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    /// Its files: the volume mounted at `/workspace` in each of its
    /// sandboxes (quota, usage, snapshots).
    pub files: VolumeView,
    /// Its sandboxes that exist now.
    pub sandboxes: Vec<String>,
    /// Oldest first.
    pub history: Vec<WorkspaceEvent>,
}

/// `GET /v1/workspaces`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct WorkspaceList {
    /// By name.
    pub workspaces: Vec<WorkspaceView>,
}

/// `POST /v1/workspaces/{workspace}/snapshots`: keep its files as they
/// are now, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "CreateWorkspaceSnapshot")]
pub struct WorkspaceSnapshotRequest {
    #[schemars(regex(pattern = r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,62}$"))]
    pub name: String,
}
