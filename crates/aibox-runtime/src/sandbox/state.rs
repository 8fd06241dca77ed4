//! Records of sandboxes on disk, so a sandbox outlives the process that
//! created it and can be found again by id, and uid-range slots.

use crate::sandbox::cgroup::Cgroup;
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
    /// The host uid the sandbox's 0 is (root mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid_base: Option<u32>,
    pub socket: PathBuf,
    /// PID 1's descriptor of the scratch tmpfs (overlay upper and work
    /// dirs): snapshots read the upper through `/proc/PID/fd/N`.
    #[serde(default)]
    pub scratch_fd: Option<i32>,
    /// The microVM, for sandboxes of the microvm backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm: Option<VmState>,
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

    /// The host uid the sandbox's uid 0 is, in root mode (a record from
    /// before `uid_base` was kept names only its slot, of the old base).
    pub fn uid_base(&self) -> Option<u32> {
        self.uid_base
            .or_else(|| self.uid_slot.map(|n| LEGACY_SLOT_BASE + n * SLOT_SIZE))
    }

    /// Is the recorded PID 1 still the process we started?
    pub fn alive(&self) -> bool {
        self.pid > 0 && aibox_sys::live_process_start_time(self.pid) == Some(self.start_time)
    }
}

/// Host uid ranges for root mode: slot N maps the sandbox's 0..65536 to
/// `SLOT_BASE + N * 65536`. The slots fill the range systemd leaves unused
/// (0x70000000..0x7FFE0000, docs: systemd.io/UIDS-GIDS): above what
/// distributions hand out in /etc/subuid (100000+) and above systemd's
/// container range (524288..1879048191: `nspawn --private-users=pick`,
/// machined, nsresourced), below its foreign range (0x7FFE0000) and the
/// signed-32-bit half no one should use. So no host user and no container
/// of another manager has these uids (the review's L7: the slots began at
/// 2^30, inside the container range).
pub const SLOT_BASE: u32 = 0x7000_0000;
pub const SLOT_SIZE: u32 = 65536;
/// (0x7FFE0000 - 0x70000000) / 65536.
pub const SLOT_COUNT: u32 = 4094;

/// Where slots began before (a record written then names its slot only).
const LEGACY_SLOT_BASE: u32 = 1 << 30;

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

/// The microVM part of a sandbox record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VmState {
    /// `qemu` or `firecracker`.
    pub vmm: String,
    pub accel: String,
    /// The VMM's pid and start time.
    pub vmm_pid: i32,
    pub vmm_start_time: u64,
    /// The VMM's control socket: QEMU's monitor (QMP) or Firecracker's API.
    #[serde(alias = "qmp")]
    pub control: PathBuf,
    /// The hybrid vsock socket the host reaches the guest through; none
    /// when it is QEMU's forwarded port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vsock: Option<PathBuf>,
    /// Firecracker's working directory (its chroot under the jailer): the
    /// names in its configuration and snapshots are relative to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<PathBuf>,
    pub memory_mib: u64,
    pub vcpus: u32,
    /// The writable disk.
    pub upper: PathBuf,
    /// The read-only layer images, top first.
    pub layers: Vec<PathBuf>,
    /// The guest kernel and initramfs it booted (a restore boots none but
    /// needs the same machine).
    #[serde(default)]
    pub kernel: PathBuf,
    #[serde(default)]
    pub initramfs: PathBuf,
    /// Host directories shared read-only over virtiofs: (host, guest).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shares: Vec<(PathBuf, PathBuf)>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use aibox_types::{IsolationReport, SandboxSpec};

    /// L7: every slot lies in the range systemd leaves unused, clear of
    /// its container range (nspawn, machined, nsresourced) and its foreign
    /// range, and of the upper half no one should use.
    #[test]
    fn l7_slots_lie_outside_systemds_ranges() {
        const CONTAINER: std::ops::RangeInclusive<u64> = 524_288..=1_879_048_191;
        const FOREIGN_AND_ABOVE: u64 = 0x7FFE_0000;
        let first = u64::from(slot_uid(0));
        let last = u64::from(slot_uid(SLOT_COUNT - 1)) + u64::from(SLOT_SIZE) - 1;
        assert!(first > *CONTAINER.end(), "{first}");
        assert!(last < FOREIGN_AND_ABOVE, "{last}");
        assert_eq!(
            (FOREIGN_AND_ABOVE - first) / u64::from(SLOT_SIZE),
            u64::from(SLOT_COUNT)
        );
    }

    #[test]
    fn an_old_record_keeps_its_uids() {
        let json = |extra: &str| {
            format!(
                r#"{{"id":"a","status":"running","created_unix_ms":0,"pid":1,"start_time":0,
                "spec":{},"isolation":{},"cgroup":{{"version":"none","dirs":[]}},
                "uid_slot":3,"socket":"/x"{extra}}}"#,
                serde_json::to_string(&SandboxSpec::default()).unwrap(),
                serde_json::to_string(&IsolationReport::default()).unwrap(),
            )
        };
        let old: Record = serde_json::from_str(&json("")).unwrap();
        assert_eq!(old.uid_base(), Some((1 << 30) + 3 * SLOT_SIZE));
        let new: Record = serde_json::from_str(&json(r#","uid_base":1879244800"#)).unwrap();
        assert_eq!(new.uid_base(), Some(1_879_244_800));
    }
}
