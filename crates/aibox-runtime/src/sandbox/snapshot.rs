//! Snapshots of a sandbox's filesystem, and restoring them.
//!
//! A snapshot is the sandbox's writable layer (the overlay upper directory,
//! which holds everything it changed: /workspace, /home, /etc, /tmp, ...)
//! written to `DATA_DIR/snapshots/<id>/layer` as a read-only layer (see
//! [`crate::image::layer`]), with `meta.json` beside it. The sandbox is frozen
//! while it is copied (when the host has a freezer), so the copy is
//! consistent; host mounts and process state are not part of it.
//!
//! Restoring creates a new sandbox whose overlay has the snapshot layer
//! between the template and a fresh upper: nothing is copied, so a restore
//! costs about what a create costs, and forking N sandboxes from one
//! snapshot shares the layer between all of them.
//!
//! Every sandbox restored from a snapshot holds a shared `flock` on the
//! snapshot's `lock` file for its whole life (its PID 1 inherits it, as it
//! does the uid slot's lock). Deleting takes the lock exclusively, so a
//! snapshot in use is never deleted, and a crash never leaves a stale
//! reference behind.

use crate::image::layer::{self, Owners};
use crate::sandbox::staged::{self, lock_file, lock_of as open_lock};
use crate::sandbox::state::Record;
use crate::{now_ms, random_id, Error, Runtime};
use aibox_types::SandboxSpec;
use serde::{Deserialize, Serialize};
use std::fs;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotMeta {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    pub created_unix_ms: u64,
    /// The sandbox it was taken from.
    pub source: String,
    pub template: String,
    /// The source sandbox's spec: what a restore starts from.
    pub spec: SandboxSpec,
    /// Bytes of file data in the layer.
    pub size_bytes: u64,
    /// Files, directories, links and whiteouts in the layer.
    pub entries: u64,
    /// Taken with every process of the sandbox frozen.
    pub consistent: bool,
    /// A microVM's snapshot: its memory and devices too, so a restore
    /// resumes the processes where they were (their network connections
    /// excepted).
    #[serde(default)]
    pub memory: bool,
}

const META: &str = "meta.json";
fn io_err(what: String) -> impl FnOnce(std::io::Error) -> Error {
    move |e| Error::Helper(format!("{what}: {e}"))
}

/// What a backend wrote into a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Copied {
    /// Disk space of the layer's file data.
    pub bytes: u64,
    /// Files, directories, links and whiteouts in the layer.
    pub entries: u64,
    /// Taken with every process frozen.
    pub consistent: bool,
    /// Memory and devices too (a microVM's), so a restore resumes its
    /// processes.
    pub memory: bool,
}

impl Runtime {
    pub fn snapshots_dir(&self) -> PathBuf {
        self.dirs().data.join("snapshots")
    }

    fn snapshot_dir(&self, id: &str) -> Result<PathBuf, Error> {
        if !aibox_types::validate_id(id) {
            return Err(Error::SnapshotNotFound(id.to_string()));
        }
        Ok(self.snapshots_dir().join(id))
    }

    /// Snapshot the filesystem of sandbox `sandbox`.
    pub fn snapshot(&self, sandbox: &str, name: Option<&str>) -> Result<SnapshotMeta, Error> {
        if let Some(n) = name {
            if !aibox_types::validate_name(n) {
                return Err(Error::InvalidSpec(format!(
                    "invalid snapshot name {n:?}: use 1-63 letters, digits, '.', '_' or '-'"
                )));
            }
        }
        let sb = self.get(sandbox)?;
        let rec = sb.record().clone();
        crate::sandbox::dirs::ensure_dir(&self.snapshots_dir(), 0o700)?;
        // One snapshot of a sandbox at a time: each freezes and thaws it.
        let guard = lock_file(&self.dirs().sandbox(sandbox), "snapshot.lock", true)
            .map_err(io_err(format!("locking sandbox {sandbox}")))?;
        aibox_sys::lock_exclusive(guard.as_fd())
            .map_err(io_err(format!("locking sandbox {sandbox}")))?;

        let id = random_id();
        let taken = || Error::Conflict(format!("snapshot {id} exists already"));
        staged::write(&self.snapshots_dir(), &id, taken, |tmp| {
            let copied = rec.backend().snapshot_into(self, &rec, tmp)?;
            let mut spec = rec.spec.clone();
            spec.snapshot = None;
            let meta = SnapshotMeta {
                id: id.clone(),
                name: name.map(str::to_string),
                created_unix_ms: now_ms(),
                source: rec.id.clone(),
                template: rec.spec.template.clone(),
                spec,
                size_bytes: copied.bytes,
                entries: copied.entries,
                consistent: copied.consistent,
                memory: copied.memory,
            };
            staged::write_json(tmp, META, &meta)?;
            Ok(meta)
        })
    }

    /// Copy the sandbox's upper directory into a layer at `dst`.
    pub(crate) fn copy_upper(
        &self,
        rec: &Record,
        fd: i32,
        dst: &Path,
    ) -> Result<layer::CopyStats, Error> {
        // The scratch tmpfs is reachable only through PID 1's descriptor;
        // check it is still the same process on both sides of the copy.
        let same = || aibox_sys::process_start_time(rec.pid) == Some(rec.start_time);
        if !same() {
            return Err(Error::Gone(rec.id.clone()));
        }
        let upper = PathBuf::from(format!("/proc/{}/fd/{fd}/upper", rec.pid));
        let owners = match rec.uid_base() {
            Some(base) => Owners::Shift { base },
            None => Owners::Keep,
        };
        let parent = match &rec.spec.snapshot {
            Some(p) => Some(self.snapshot_dir(p)?.join("layer")),
            None => None,
        };
        let stats = layer::build(&upper, parent.as_deref(), dst, owners).map_err(|e| {
            if same() {
                Error::Helper(format!("snapshot of {}: {e}", rec.id))
            } else {
                Error::Gone(rec.id.clone())
            }
        })?;
        if !same() {
            return Err(Error::Gone(rec.id.clone()));
        }
        Ok(stats)
    }

    /// Every snapshot, oldest first.
    pub fn snapshots(&self) -> Vec<SnapshotMeta> {
        let Ok(rd) = fs::read_dir(self.snapshots_dir()) else {
            return vec![];
        };
        let mut v: Vec<SnapshotMeta> = rd
            .flatten()
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .filter_map(|e| serde_json::from_slice(&fs::read(e.path().join(META)).ok()?).ok())
            .collect();
        v.sort_by(|a, b| (a.created_unix_ms, &a.id).cmp(&(b.created_unix_ms, &b.id)));
        v
    }

    pub fn snapshot_info(&self, id: &str) -> Result<SnapshotMeta, Error> {
        let dir = self.snapshot_dir(id)?;
        let bytes =
            fs::read(dir.join(META)).map_err(|_| Error::SnapshotNotFound(id.to_string()))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| Error::Helper(format!("snapshot {id}: corrupt metadata: {e}")))
    }

    /// Delete a snapshot; refused while a sandbox restored from it runs.
    pub fn delete_snapshot(&self, id: &str) -> Result<(), Error> {
        let dir = self.snapshot_dir(id)?;
        let lock = open_lock(&dir, false).map_err(|_| Error::SnapshotNotFound(id.to_string()))?;
        let free = aibox_sys::try_lock_exclusive(lock.as_fd())
            .map_err(io_err(format!("locking snapshot {id}")))?;
        if !free {
            return Err(Error::Conflict(format!(
                "snapshot {id} is in use by a running sandbox restored from it; destroy that first"
            )));
        }
        // Out of sight first (under the lock, so no restore starts), then gone.
        let trash = self
            .snapshots_dir()
            .join(format!(".trash-{id}-{}", random_id()));
        fs::rename(&dir, &trash).map_err(io_err(format!("deleting snapshot {id}")))?;
        drop(lock);
        layer::remove_tree(&trash).map_err(io_err(format!("deleting snapshot {id}")))
    }

    /// A snapshot's directory with its lock held shared: it cannot be
    /// deleted meanwhile (one being deleted is reported as absent).
    pub(crate) fn hold_snapshot(&self, id: &str) -> Result<(PathBuf, OwnedFd), Error> {
        let dir = self.snapshot_dir(id)?;
        let lock = open_lock(&dir, false).map_err(|_| Error::SnapshotNotFound(id.to_string()))?;
        if !aibox_sys::try_lock_shared(lock.as_fd())
            .map_err(io_err(format!("locking snapshot {id}")))?
        {
            return Err(Error::SnapshotNotFound(id.to_string()));
        }
        Ok((dir, lock))
    }

    /// For a restore: the snapshot's layer, and its lock held shared (for
    /// PID 1 to keep for the sandbox's life).
    pub(crate) fn open_snapshot(
        &self,
        id: &str,
        template: &str,
    ) -> Result<(PathBuf, OwnedFd), Error> {
        let (dir, lock) = self.hold_snapshot(id)?;
        let meta = self.snapshot_info(id)?;
        if meta.template != template {
            return Err(Error::InvalidSpec(format!(
                "snapshot {id} was taken from template {:?}, not {template:?}",
                meta.template
            )));
        }
        if meta.memory {
            return Err(Error::InvalidSpec(format!(
                "snapshot {id} holds a microVM: restore it with backend microvm"
            )));
        }
        let layer = dir.join("layer");
        let s = layer.to_string_lossy();
        if s.contains(',') || s.contains(':') {
            return Err(Error::Unsupported(format!(
                "snapshot path {s} contains ',' or ':', which overlay options cannot carry"
            )));
        }
        Ok((layer, lock))
    }

    /// Make snapshot `id` a template named `name`: the snapshot's layer on
    /// top of the layers of the template it was taken from (for `host`,
    /// on top of the host template itself).
    pub fn promote_snapshot(
        &self,
        id: &str,
        name: &str,
    ) -> Result<crate::image::oci::ImageMeta, Error> {
        if !crate::image::oci::valid_name(name) {
            return Err(Error::InvalidSpec(format!(
                "{name:?} is not a valid template name"
            )));
        }
        let (dir, _lock) = self.hold_snapshot(id)?;
        let meta = self.snapshot_info(id)?;
        if meta.memory {
            return Err(Error::Unsupported(format!(
                "snapshot {id} holds a microVM's memory and disk, not a layer: it cannot become a template"
            )));
        }
        let store = self.templates();
        let _store_lock = store.lock_shared()?;
        let (mut layers, config, base) = if meta.template == "host" {
            (
                Vec::new(),
                crate::image::oci::ImageConfig::default(),
                Some("host".to_string()),
            )
        } else {
            let b = store.get(&meta.template).ok_or_else(|| {
                Error::InvalidSpec(format!(
                    "snapshot {id} was taken from template {:?}, which is gone",
                    meta.template
                ))
            })?;
            (b.layers, b.config, b.base)
        };
        if layers.len() >= crate::image::oci::MAX_LAYERS {
            return Err(Error::InvalidSpec(format!(
                "template {:?} already has {} layers, the most a template may have",
                meta.template,
                layers.len()
            )));
        }
        layers.push(store.add_tree(&dir.join("layer"))?);
        let image = crate::image::oci::ImageMeta {
            name: name.to_string(),
            digest: layers.last().map(|l| l.digest.clone()).unwrap_or_default(),
            layers,
            config,
            created_ms: crate::now_ms(),
            source: format!("snapshot {id} of sandbox {}", meta.source),
            base,
        };
        store.save(&image)?;
        Ok(image)
    }

    /// Remove what interrupted snapshot writes and deletes left.
    pub fn gc_snapshots(&self) -> Vec<String> {
        staged::gc(&self.snapshots_dir(), |_| false)
    }
}
