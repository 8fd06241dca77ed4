//! Files inside a sandbox: `/v1/sandboxes/{id}/files…` and `/tar`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FileKind {
    File,
    Dir,
    Symlink,
    Other,
}

/// A path's metadata, as seen inside the sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct FileStat {
    pub path: String,
    pub kind: FileKind,
    pub size: u64,
    /// Permission bits and file type, as `st_mode`.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Seconds since the epoch.
    pub mtime: i64,
    /// A symlink's target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

/// `GET …/files/list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct FileList {
    pub entries: Vec<FileStat>,
}

/// `?path=` (absolute, inside the sandbox), with `recursive` for a list
/// or a delete.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PathQuery {
    #[schemars(regex(pattern = r"^/"))]
    pub path: String,
    #[serde(default)]
    pub recursive: bool,
}

/// `GET` and `PUT …/files`: the path, and for an upload its mode.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileQuery {
    #[schemars(regex(pattern = r"^/"))]
    pub path: String,
    /// Octal permission bits for uploads, e.g. `755`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-7]{1,4}$"))]
    pub mode: Option<String>,
}

/// What `PUT …/files` wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Written {
    pub path: String,
    pub size: u64,
}

/// `POST …/files/mkdir`: `mkdir -p`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Mkdir")]
pub struct MkdirRequest {
    #[schemars(regex(pattern = r"^/"))]
    pub path: String,
    /// Octal, e.g. "755".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-7]{1,4}$"))]
    pub mode: Option<String>,
}

/// `POST …/files/rename`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Rename")]
pub struct RenameRequest {
    #[schemars(regex(pattern = r"^/"))]
    pub from: String,
    #[schemars(regex(pattern = r"^/"))]
    pub to: String,
}
