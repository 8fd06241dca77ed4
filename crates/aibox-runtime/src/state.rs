//! Records of sandboxes on disk, so a sandbox outlives the process that
//! created it and can be found again by id, and uid-range slots.

use crate::cgroup::Cgroup;
use aibox_types::{IsolationReport, SandboxSpec};
use serde::{Deserialize, Serialize};
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("failed to write sandbox record {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to read sandbox record {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("sandbox record {path} is corrupt")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("no free uid range slot (all {0} are in use)")]
    NoSlot(u32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Creating,
    Running,
}

/// Everything needed to find, inspect and clean up a sandbox.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    pub status: Status,
    pub created_unix_ms: u64,
    /// Host pid of the sandbox's PID 1 (the agent) and its start time, which
    /// together identify it even after pid reuse.
    pub pid: i32,
    pub start_time: u64,
    pub spec: SandboxSpec,
    pub isolation: IsolationReport,
    pub cgroup: Cgroup,
    pub uid_slot: Option<u32>,
    pub socket: PathBuf,
    /// PID 1's descriptor of the scratch tmpfs (overlay upper and work
    /// dirs): snapshots read the upper through `/proc/PID/fd/N`.
    #[serde(default)]
    pub scratch_fd: Option<i32>,
    /// The microVM, for sandboxes of the microvm backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm: Option<crate::microvm::VmState>,
}

pub const RECORD: &str = "sandbox.json";

impl Record {
    pub fn save(&self, dir: &Path) -> Result<(), StateError> {
        let path = dir.join(RECORD);
        let tmp = dir.join(".sandbox.json.tmp");
        let err = |source| StateError::Write {
            path: path.clone(),
            source,
        };
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| err(io::Error::other(e)))?;
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(err)?;
        f.write_all(&bytes).map_err(err)?;
        fs::rename(&tmp, &path).map_err(err)
    }

    pub fn load(dir: &Path) -> Result<Record, StateError> {
        let path = dir.join(RECORD);
        let bytes = fs::read(&path).map_err(|source| StateError::Read {
            path: path.clone(),
            source,
        })?;
        serde_json::from_slice(&bytes).map_err(|source| StateError::Corrupt { path, source })
    }

    /// Is the recorded PID 1 still the process we started?
    pub fn alive(&self) -> bool {
        self.pid > 0 && aibox_sys::live_process_start_time(self.pid) == Some(self.start_time)
    }
}

/// Host uid ranges for root mode: slot N maps the sandbox's 0..65536 to
/// `SLOT_BASE + N * 65536`. The base is far above the ranges distributions
/// hand out in /etc/subuid (100000+), so no host user owns these uids.
pub const SLOT_BASE: u32 = 1 << 30;
pub const SLOT_SIZE: u32 = 65536;
pub const SLOT_COUNT: u32 = 16000;

pub fn slot_uid(slot: u32) -> u32 {
    SLOT_BASE + slot * SLOT_SIZE
}

/// A claimed uid-range slot: an exclusive `flock` on `slots/N`. The lock
/// belongs to the open file, which the sandbox's PID 1 inherits and keeps
/// for its whole life, so the kernel releases the slot when the last holder
/// dies — a crash can never leak one, and claiming one writes nothing to the
/// filesystem once the lock files exist (a file create and unlink per run
/// could stall for a millisecond on a journal commit).
#[derive(Debug)]
pub struct Slot {
    pub n: u32,
    pub file: fs::File,
}

/// Claim the first free slot.
pub fn claim_slot(slots: &Path) -> Result<Slot, StateError> {
    use std::os::fd::AsFd;
    for n in 0..SLOT_COUNT {
        let path = slots.join(n.to_string());
        let err = |source| StateError::Write {
            path: path.clone(),
            source,
        };
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(err)?;
        if aibox_sys::try_lock_exclusive(file.as_fd()).map_err(err)? {
            return Ok(Slot { n, file });
        }
    }
    Err(StateError::NoSlot(SLOT_COUNT))
}

/// Slots currently held by a live sandbox (or its creator).
/// Every held uid slot (tests compare these before and after).
pub fn held_slots(slots: &Path) -> Vec<u32> {
    let Ok(rd) = fs::read_dir(slots) else {
        return vec![];
    };
    let mut held: Vec<u32> = rd
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse().ok())
        .filter(|n| slot_held(slots, *n))
        .collect();
    held.sort_unstable();
    held
}

/// Take uid slot `n` if it is free (for `gc`, while it cleans what the
/// slot's last holder left); dropping the file releases it.
pub fn hold_slot(slots: &Path, n: u32) -> Option<fs::File> {
    use std::os::fd::AsFd;
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(slots.join(n.to_string()))
        .ok()?;
    aibox_sys::try_lock_exclusive(f.as_fd())
        .unwrap_or(false)
        .then_some(f)
}

/// Is uid slot `n` held (by a creator or a sandbox's PID 1)? Probing takes
/// the lock for a moment when it is free; dropping the file releases it.
pub fn slot_held(slots: &Path, n: u32) -> bool {
    use std::os::fd::AsFd;
    match fs::File::open(slots.join(n.to_string())) {
        Ok(f) => !aibox_sys::try_lock_exclusive(f.as_fd()).unwrap_or(false),
        // No slot file: nobody can hold it.
        Err(_) => false,
    }
}
