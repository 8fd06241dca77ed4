//! Volumes: named filesystems that outlive sandboxes, `/v1/volumes…`, and
//! how a create asks for them (`volumes` of `POST /v1/sandboxes`).

use super::Size;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// A volume name: 1-63 letters, digits, `.`, `_` or `-` (not starting
/// with `.` or `-`), unique among its owner's volumes.
pub const VOLUME_NAME_PATTERN: &str = r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,62}$";

/// Whether `name` is a valid volume (or volume snapshot) name.
pub fn valid_volume_name(name: &str) -> bool {
    crate::validate_name(name) && !name.starts_with(['.', '-'])
}

/// The smallest volume: ext4 needs room for its journal and tables.
pub const MIN_VOLUME_BYTES: u64 = 16 << 20;
/// The largest volume one request may make (8 TiB: well inside ext4's
/// largest file, which the image is, on the filesystem under it).
pub const MAX_VOLUME_BYTES: u64 = 8 << 40;

/// `volumes` of a create: mount the caller's volume `name` at `path`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "VolumeRef")]
pub struct VolumeRef {
    #[schemars(regex(pattern = r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,62}$"))]
    pub name: String,
    /// Absolute path inside the sandbox.
    #[schemars(regex(pattern = r"^/"))]
    pub path: PathBuf,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
}

impl std::str::FromStr for VolumeRef {
    type Err = String;
    /// `NAME:/path[:ro|:rw]`.
    fn from_str(s: &str) -> Result<VolumeRef, String> {
        let parts: Vec<&str> = s.split(':').collect();
        let (name, path, read_only) = match parts.as_slice() {
            [n, p] => (*n, *p, false),
            [n, p, "ro"] => (*n, *p, true),
            [n, p, "rw"] => (*n, *p, false),
            [_, _, m] => {
                return Err(format!(
                    "invalid volume mode {m:?} in {s:?}: expected ro or rw"
                ))
            }
            _ => return Err(format!("invalid volume {s:?}: expected NAME:/PATH[:ro]")),
        };
        let v = VolumeRef {
            name: name.into(),
            path: path.into(),
            read_only,
        };
        v.check()?;
        Ok(v)
    }
}

impl std::fmt::Display for VolumeRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.name, self.path.display())?;
        if self.read_only {
            f.write_str(":ro")?;
        }
        Ok(())
    }
}

impl VolumeRef {
    /// The name is a volume name and the path a mount target.
    pub fn check(&self) -> Result<(), String> {
        if !valid_volume_name(&self.name) {
            return Err(format!(
                "invalid volume name {:?}: use 1-63 letters, digits, '.', '_' or '-', not starting with '.' or '-'",
                self.name
            ));
        }
        crate::check_target(&self.path)
    }
}

/// `POST /v1/volumes`: a new volume.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "CreateVolume")]
pub struct VolumeRequest {
    #[schemars(regex(pattern = r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,62}$"))]
    pub name: String,
    /// Its quota: the most its files may take (default `1g`; 16m to 8t).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<Size>,
    /// The owner (uid and gid, as the sandbox sees them) of its top
    /// directory; default 1000, the sandbox's default user. Use 0 for
    /// sandboxes that run as root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 65534))]
    pub uid: Option<u32>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// How a volume's quota is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "VolumeQuota")]
pub struct QuotaView {
    pub bytes: u64,
    /// Writes past the quota fail inside the sandbox (`ENOSPC`).
    pub enforced: bool,
    /// How it is enforced, or why it is not.
    pub how: String,
}

/// A point-in-time copy of a volume, to clone from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "VolumeSnapshot")]
pub struct VolumeSnapshotView {
    pub name: String,
    pub created_at_ms: u64,
    /// Disk space its copy takes.
    pub size_bytes: u64,
}

/// A volume as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "Volume")]
pub struct VolumeView {
    pub id: String,
    pub name: String,
    pub created_at_ms: u64,
    pub quota: QuotaView,
    /// Bytes its files take now.
    pub used_bytes: u64,
    pub uid: u32,
    pub labels: BTreeMap<String, String>,
    /// What it was cloned from (`VOLUME` or `VOLUME@SNAPSHOT`), if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloned_from: Option<String>,
    /// The sandboxes that have it mounted now.
    pub in_use_by: Vec<String>,
    pub snapshots: Vec<VolumeSnapshotView>,
}

/// `GET /v1/volumes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct VolumeList {
    /// By name.
    pub volumes: Vec<VolumeView>,
}

/// `GET /v1/volumes` query.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VolumeQuery {
    /// Only volumes with this label (`K=V`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

/// `POST /v1/volumes/{name}/snapshots`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "CreateVolumeSnapshot")]
pub struct VolumeSnapshotRequest {
    #[schemars(regex(pattern = r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,62}$"))]
    pub name: String,
}

/// `POST /v1/volumes/{name}/clone`: a new volume with the files of this
/// one (or of one of its snapshots).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "CloneVolume")]
pub struct CloneRequest {
    /// The new volume's name.
    #[schemars(regex(pattern = r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,62}$"))]
    pub name: String,
    /// Clone this snapshot of the volume rather than its current files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// A volume of a sandbox's snapshot: which, where, and that its files are
/// not in the snapshot (a restore mounts the volume as it is then).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SnapshotVolume {
    pub name: String,
    pub path: PathBuf,
    pub read_only: bool,
    /// Always false: a volume's files live in the volume, not in the
    /// sandbox's snapshot (use a volume snapshot for those).
    pub included: bool,
}

impl SnapshotVolume {
    /// The volumes of a snapshot's spec (the source sandbox's).
    pub fn of(spec: &serde_json::Value) -> Vec<SnapshotVolume> {
        serde_json::from_value::<Vec<crate::VolumeMount>>(spec["volumes"].clone())
            .unwrap_or_default()
            .into_iter()
            .map(|v| SnapshotVolume {
                name: v.name,
                path: v.path,
                read_only: v.read_only,
                included: false,
            })
            .collect()
    }
}

/// Labels as the API takes them: keys 1-63 bytes, values at most 255.
pub fn check_labels(labels: &BTreeMap<String, String>) -> Result<(), String> {
    for (k, v) in labels {
        if k.is_empty() || k.len() > 63 || v.len() > 255 {
            return Err(format!("{k:?}: keys are 1-63 bytes, values at most 255"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_volume_ref_parses_and_prints_back() {
        let v: VolumeRef = "pip-cache:/home/user/.cache/pip:ro".parse().unwrap();
        assert_eq!(v.name, "pip-cache");
        assert!(v.read_only);
        assert_eq!(v.to_string(), "pip-cache:/home/user/.cache/pip:ro");
        let rw: VolumeRef = "data:/data".parse().unwrap();
        assert!(!rw.read_only);
        for bad in [
            "data",
            "data:relative",
            "../x:/data",
            "data:/proc/x",
            "data:/d:rx",
            "-x:/d",
            "a:/b:ro:extra",
        ] {
            assert!(bad.parse::<VolumeRef>().is_err(), "{bad}");
        }
    }
}
